"""The eager-torch implementation of the `Backend` interface (engine/backend.py)."""

from __future__ import annotations

import numpy as np

from ..backend import InstructionTensors


class TorchBackend:
    """Eager torch. Arrays cross the boundary with zero copies on CPU (torch.from_numpy / .numpy())."""

    name = "torch"

    def __init__(self, model, device: str = "cpu", threads: int | None = None):
        import torch

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def _t(self, a: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def _np(self, t) -> np.ndarray:
        return t.detach().to("cpu").float().numpy() if t.dtype != self.torch.int64 else t.cpu().numpy()

    def _run(self, fn, *arrays):
        with self.torch.inference_mode():
            return fn(*(self._t(a) for a in arrays))

    def encode_appearance(self, image):
        return self._np(self._run(self.model.vae.encode_appearance, image))

    def encode_keyframe(self, image):
        return self._np(self._run(self.model.vae.encode_keyframe, image))

    def encode_motion(self, landmarks):
        return self._np(self._run(self.model.vae.encode_motion, landmarks))

    def encode_text(self, ids, mask):
        tokens, pooled = self._run(self.model.text_encoder, ids, mask)
        return self._np(tokens), self._np(pooled)

    def condition(self, tokens, mask, pooled, keyframe):
        const, keys, values = self._run(self.model.denoiser.condition, tokens, pooled, keyframe)
        return InstructionTensors(const=self._np(const), keys=self._np(keys), values=self._np(values),
                                  mask=mask.astype(np.float32))

    def encode_audio(self, wave, blink=None):
        return self._np(self._run(self.model.audio_encoder, wave, *(() if blink is None else (blink,))))

    def denoise(self, x_t, t, audio, known, inst):
        return self._np(self._run(self.model.denoiser, x_t, t, audio, known, inst.const, inst.keys, inst.values,
                                  inst.mask))

    def decode(self, motion, appearance):
        return self._np(self._run(self.model.vae.decode, motion, appearance))
