"""The small interface through which the pipeline drives the model's components.

Every method takes and returns numpy arrays with fixed names and shapes, so a backend is one class:
`TorchBackend` (engine/modules/torch_backend.py: eager torch on CPU or CUDA), `OrtBackend`
(engine/ort_backend.py: ONNX Runtime over the graphs of export/specs.py, torch-free); a TensorRT backend
implements the same methods over engines built from the same graphs.

Per-instruction tensors are a backend-owned handle: `condition` returns it, the pipeline keeps it on the
session and passes it back to `denoise`, and batches several with `stack_instructions` (never looking
inside). The CPU backends use `InstructionTensors` (numpy arrays); a GPU backend returns device-resident
buffers, so nothing is re-uploaded per DDIM step.

Shapes (B = sessions in a batch, T = window frames, M = motion latent size, D = denoiser width,
L = denoiser layers, N = instruction tokens, S = audio samples):
  encode_appearance  image (B,3,H,W) f32 [-1,1]                 -> (B,Ca,h,w)  (Ca: vae.appearance_channels)
  encode_keyframe    image (B,3,H,W) f32 [-1,1]                 -> (B,M) motion latent
  encode_motion      landmark image (B,3,l,l) f32 [-1,1], or    -> (B,M) motion latent
                     points (B,P,2) f32 [-1,1] (vae.landmark_points = P > 0)
  encode_text        ids (B,N) i64, mask (B,N) i64              -> tokens (B,N,Dt), pooled (B,Dt)
  condition          tokens, mask, pooled, keyframe (B,M) scaled -> handle (InstructionTensors on CPU)
  stack_instructions [handle, ...]                               -> one handle for their rows, tokens padded
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
    def stack_instructions(self, items: list) -> object: ...
    def denoise(self, x_t: np.ndarray, t: np.ndarray, audio: np.ndarray, known: np.ndarray,
                inst: InstructionTensors) -> np.ndarray: ...
    def decode(self, motion: np.ndarray, appearance: np.ndarray) -> np.ndarray: ...


def stack_instructions(backend, items: list):
    """Batch instruction handles through the backend (InstructionTensors.stack for backends without one)."""
    fn = getattr(backend, "stack_instructions", None)
    return fn(items) if fn is not None else InstructionTensors.stack(items)


class BackendError(RuntimeError):
    pass


BACKENDS = ("auto", "ort", "torch", "torch-cuda", "trt")
# auto: the fastest backend present, in this order (ORT fp32 measured faster than eager torch on the CPU:
# benchmarks/RESULTS.md, "Backends"; the GPU backends first where an NVIDIA GPU is present: docs/gpu.md)
AUTO_ORDER = ("trt", "torch-cuda", "ort", "torch")
BACKEND_LIBRARY = {"ort": "onnxruntime", "torch": "torch", "torch-cuda": "torch", "trt": "tensorrt"}
GPU_BACKENDS = ("torch-cuda", "trt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")   # what `--precision` may ask; each backend says which it runs
PRECISION_HELP = ("torch / torch-cuda: the weights' precision (torch-cuda default bf16); trt: fp16 engines by "
                  "default; ort: fp32 (default) or int8 (the export's int8 graphs, today the decoder: quality cost in "
                  "benchmarks/RESULTS.md)")


def nvidia_gpu_present() -> bool:
    """Whether the NVIDIA driver reports a GPU (Linux; imports nothing, so `auto` stays cheap on a CPU machine)."""
    import os

    gpus = "/proc/driver/nvidia/gpus"
    return (os.path.isdir(gpus) and bool(os.listdir(gpus))) or os.path.exists("/dev/nvidia0")


def backend_present(name: str) -> bool:
    """Whether the backend's runtime library can be imported here (without importing it)."""
    import importlib.util
    import sys

    module = BACKEND_LIBRARY[name]
    if name in GPU_BACKENDS and not nvidia_gpu_present():
        return False
    if module in sys.modules:
        return sys.modules[module] is not None          # None: blocked (as the torch-free tests do)
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def resolve_backend(name: str, usable=None) -> str:
    """A concrete backend name for `name`; `auto` picks the first of AUTO_ORDER that is present and (when a
    `usable(name) -> bool` is given, e.g. "has exported graphs for this config") usable."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; available here: {', '.join(BACKENDS)}")
    if name != "auto":
        if name in GPU_BACKENDS and not nvidia_gpu_present():
            raise BackendError(f"backend {name!r} needs an NVIDIA GPU and driver; none was found here (docs/gpu.md)")
        if not backend_present(name):
            lib = BACKEND_LIBRARY[name]
            raise BackendError(f"backend {name!r} needs {lib}, which is not installed (pip install {lib})")
        return name
    for candidate in AUTO_ORDER:
        if backend_present(candidate) and (usable is None or usable(candidate)):
            return candidate
    raise BackendError("no backend is usable here: install onnxruntime (with exported graphs) or torch")
