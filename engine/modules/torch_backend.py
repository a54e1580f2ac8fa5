"""The torch implementation of the `Backend` interface (engine/backend.py): eager on CPU, and on CUDA the fast
path (docs/gpu.md): weights cast once to fp16/bf16 (engine/modules/precision.py), the chunk's whole DDIM loop and
the decoder run as shape-keyed static calls replayed as CUDA graphs (engine/modules/device_loop.py,
engine/modules/cuda_graphs.py), torch.compile optional."""

from __future__ import annotations

import numpy as np

from ..backend import InstructionTensors


class TorchBackend:
    """Torch on CPU or CUDA. Arrays cross the boundary with zero copies on CPU (torch.from_numpy / .numpy()).

    precision: fp32 | fp16 | bf16 (weights cast once; norms, embeddings and the warp grid stay fp32).
    device_loop: run the chunk's DDIM loop and the decoder on the device as static-buffer calls (default: on
    CUDA); cuda_graphs: capture them as CUDA graphs (CUDA only; LRU of `graph_cache` shapes); compile: wrap the
    denoiser and the decoder in torch.compile (static shapes)."""

    name = "torch"

    def __init__(self, model, device: str = "cpu", threads: int | None = None, precision: str = "fp32",
                 cuda_graphs: bool = False, compile: bool = False, device_loop: bool | None = None,
                 graph_cache: int = 8):
        import torch

        from .precision import autocast, cast_for_inference, torch_dtype

        self.torch = torch
        torch_dtype(precision)                                           # PrecisionError before any work
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r}: this torch ({torch.__version__}) has no usable CUDA "
                               "(install a CUDA build of torch: docs/gpu.md)")
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs needs a CUDA device, got device {device!r}")
        if threads:
            torch.set_num_threads(threads)
        self.precision = precision
        self.model = cast_for_inference(model.to(self.device).eval(), precision)
        self._autocast = lambda: autocast(self.device, precision)
        if self.device.type == "cuda":
            self.name = "torch-cuda"
        self.runner = None
        if device_loop or (device_loop is None and (self.device.type == "cuda" or compile)):
            from .device_loop import DeviceRunner

            self.runner = DeviceRunner(self.model, self.device, precision, graphs=cuda_graphs,
                                       capacity=graph_cache, compile=compile)
            self.denoise_chunk = self.runner.denoise_chunk               # the pipeline's optional whole-loop call

    def _t(self, a):
        if isinstance(a, self.torch.Tensor):                         # a resident handle's tensor
            return a.to(self.device)
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def _np(self, t) -> np.ndarray:
        return t.detach().to("cpu").float().numpy() if t.dtype != self.torch.int64 else t.cpu().numpy()

    def _run(self, fn, *arrays):
        with self.torch.inference_mode(), self._autocast():
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
        mask = mask.astype(np.float32)
        if self.runner is not None:                  # device path: the handle stays resident on the device
            return InstructionTensors(const=const.float(), keys=keys.float(), values=values.float(),
                                      mask=self._t(mask))
        return InstructionTensors(const=self._np(const), keys=self._np(keys), values=self._np(values), mask=mask)

    def stack_instructions(self, items: list[InstructionTensors]) -> InstructionTensors:
        """Batch handles (engine/backend.py): numpy ones as `InstructionTensors.stack`, resident ones on the device
        (tokens padded to the longest, masked out)."""
        if not isinstance(items[0].keys, self.torch.Tensor):
            return InstructionTensors.stack(items)
        F = self.torch.nn.functional
        n = max(it.keys.shape[2] for it in items)
        pad = lambda a, k: F.pad(a, (0, 0, 0, n - a.shape[2]) if k else (0, n - a.shape[1]))  # noqa: E731
        cat = self.torch.cat
        return InstructionTensors(const=cat([it.const for it in items]), keys=cat([pad(it.keys, 1) for it in items]),
                                  values=cat([pad(it.values, 1) for it in items]),
                                  mask=cat([pad(it.mask, 0) for it in items]))

    def encode_audio(self, wave, blink=None):
        return self._np(self._run(self.model.audio_encoder, wave, *(() if blink is None else (blink,))))

    def denoise(self, x_t, t, audio, known, inst):
        return self._np(self._run(self.model.denoiser, x_t, t, audio, known, inst.const, inst.keys, inst.values,
                                  inst.mask))

    def decode(self, motion, appearance):
        if self.runner is not None:
            return self.runner.decode(motion, appearance)
        return self._np(self._run(self.model.vae.decode, motion, appearance))
