"""The small interface through which the pipeline drives the model's components.

Every method takes and returns numpy arrays with fixed names and shapes, so a backend is one class:
`TorchBackend` (engine/modules/torch_backend.py: eager torch on CPU or CUDA); ONNX Runtime and TensorRT
backends implement the same methods over exported graphs. The per-instruction tensors travel as plain
arrays (`InstructionTensors`), so an exported denoiser step takes them as inputs.

Shapes (B = sessions in a batch, T = window frames, M = motion latent size, D = denoiser width,
L = denoiser layers, N = instruction tokens, S = audio samples):
  encode_appearance  image (B,3,H,W) f32 [-1,1]                 -> (B,Ca,h,w)  (Ca: vae.appearance_channels)
  encode_keyframe    image (B,3,H,W) f32 [-1,1]                 -> (B,M) motion latent
  encode_motion      landmark image (B,3,l,l) f32 [-1,1], or    -> (B,M) motion latent
                     points (B,P,2) f32 [-1,1] (vae.landmark_points = P > 0)
  encode_text        ids (B,N) i64, mask (B,N) i64              -> tokens (B,N,Dt), pooled (B,Dt)
  condition          tokens, mask, pooled, keyframe (B,M) scaled -> InstructionTensors
  encode_audio       wave (B,S) f32 16 kHz, S = T*640,          -> (B,T,D)
                     blink (B,T) f32 idle-blink cue or None (models with audio.blink_cue; engine/blinks.py)
  denoise            x_t (B,T,M), t (B,) i64, audio (B,T,D), known (B,T) f32, InstructionTensors
                                                                -> x0 (B,T,M)
  decode             motion (N,M), appearance (N,Ca,h,w)        -> frames (N,3,H,W) f32 [-1,1]
A "motion latent" is the VAE's normalised one (per-dimension training statistics, VAE.motion_shift/scale);
the pipeline divides it by the config's latent_scale for diffusion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class InstructionTensors:
    const: np.ndarray      # (B, L, D)
    keys: np.ndarray       # (B, L, N, D)
    values: np.ndarray     # (B, L, N, D)
    mask: np.ndarray       # (B, N) float32 1 = real token

    @staticmethod
    def stack(items: list[InstructionTensors]) -> InstructionTensors:
        """Batch several sessions' instructions, padding tokens to the longest (masked out)."""
        n = max(it.keys.shape[2] for it in items)

        def pad(a: np.ndarray, axis: int) -> np.ndarray:
            widths = [(0, 0)] * a.ndim
            widths[axis] = (0, n - a.shape[axis])
            return np.pad(a, widths)

        return InstructionTensors(
            const=np.concatenate([it.const for it in items]),
            keys=np.concatenate([pad(it.keys, 2) for it in items]),
            values=np.concatenate([pad(it.values, 2) for it in items]),
            mask=np.concatenate([pad(it.mask, 1) for it in items]),
        )


class Backend(Protocol):
    name: str

    def encode_appearance(self, image: np.ndarray) -> np.ndarray: ...
    def encode_keyframe(self, image: np.ndarray) -> np.ndarray: ...
    def encode_motion(self, landmarks: np.ndarray) -> np.ndarray: ...
    def encode_text(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def condition(self, tokens: np.ndarray, mask: np.ndarray, pooled: np.ndarray,
                  keyframe: np.ndarray) -> InstructionTensors: ...
    def encode_audio(self, wave: np.ndarray, blink: np.ndarray | None = None) -> np.ndarray: ...
    def denoise(self, x_t: np.ndarray, t: np.ndarray, audio: np.ndarray, known: np.ndarray,
                inst: InstructionTensors) -> np.ndarray: ...
    def decode(self, motion: np.ndarray, appearance: np.ndarray) -> np.ndarray: ...


class BackendError(RuntimeError):
    pass


BACKENDS = ("auto", "torch")


def resolve_backend(name: str) -> str:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; available here: {', '.join(BACKENDS)}")
    return "torch" if name == "auto" else name
