"""The torch backend's device path: a chunk's whole DDIM loop and the decoder as shape-keyed static calls.

`DeviceRunner.denoise_chunk` runs engine/chunk_loop.py's `denoise_chunk` (the pipeline's own loop, one
definition) on torch tensors on the backend's device, with the denoiser in the backend's precision; on CUDA with
`graphs` the whole loop (every step, the guidance mix, the DDIM updates, the prefix pinning) is captured once
per shape as one CUDA graph and replayed per chunk. `decode` does the same for the VAE decoder. Keys hold
everything the captured work bakes in: shapes, the sampler's schedule (timesteps and coefficients) and the
guidance scale. Inputs may be numpy arrays (uploaded) or tensors already on the device (the backend's resident
per-instruction and per-portrait tensors: copied device to device into the static buffers).

Shapes as in engine/chunk_loop.py; instruction tensors const (R,L,D), keys/values (R,L,N,D), mask (R,N).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..chunk_loop import denoise_chunk
from ..ddim import DDIMSampler
from .cuda_graphs import ShapeCache
from .precision import autocast


def schedule_key(sampler: DDIMSampler) -> tuple:
    """What a captured loop bakes in from the sampler: timesteps and every step's coefficients."""
    return (tuple(int(t) for t in sampler.timesteps),
            tuple((c.c_x0, c.c_eps, c.sigma, c.sqrt_ab, c.sqrt_1mab) for c in sampler.coefficients))


class DeviceRunner:
    def __init__(self, model, device: torch.device, precision: str = "fp32", graphs: bool = False,
                 capacity: int = 8, compile: bool = False, cache: ShapeCache | None = None):
        self.model = model
        self.device = device
        self.precision = precision
        self.cache = cache if cache is not None else ShapeCache(capacity, graphs=graphs)
        self.denoiser = model.denoiser
        self.decoder = model.vae.decode
        if compile:                         # static shapes: each cache key is compiled (and captured) once
            self.denoiser = torch.compile(model.denoiser, dynamic=False)
            self.decoder = torch.compile(model.vae.decode, dynamic=False)

    def _dev(self, a, dtype=torch.float32) -> Tensor:
        if isinstance(a, Tensor):
            return a.to(self.device, dtype)
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device, dtype)

    # -- the chunk's denoising loop -------------------------------------------------------------------
    def denoise_chunk(self, sampler: DDIMSampler, x, prefix, audio, known, inst, rows, guided, guidance: float,
                      noises) -> np.ndarray:
        """The pipeline's `Backend.denoise_chunk` (engine/backend.py): x (B,T,M) initial noise -> final (B,T,M)."""
        B, T, M = x.shape
        P = 0 if prefix is None else prefix.shape[1]
        R = len(rows)
        G = 0 if guided is None else len(guided)
        names = ["x", "audio", "known", "const", "keys", "values", "mask"]
        tensors = [self._dev(x), self._dev(audio), self._dev(known), self._dev(inst.const),
                   self._dev(inst.keys), self._dev(inst.values), self._dev(inst.mask)]
        if P:
            names.append("prefix")
            tensors.append(self._dev(prefix))
        if G:
            names += ["rows", "guided"]
            tensors += [self._dev(rows, torch.int64), self._dev(guided, torch.int64)]
        if noises is not None:
            names.append("noise")
            zeros = np.zeros((B, T, M), np.float32)
            tensors.append(self._dev(np.stack([zeros if n is None else np.asarray(n) for n in noises])))
        key = ("denoise_chunk", B, T, M, P, R, G, tuple(inst.keys.shape[1:]), schedule_key(sampler),
               float(guidance), noises is not None, self.precision)
        t_steps = [int(t) for t in sampler.timesteps]

        def loop(*bufs: Tensor) -> Tensor:
            a = dict(zip(names, bufs))
            ts = [torch.full((R,), t, dtype=torch.int64, device=self.device) for t in t_steps]

            def denoise(x_rows: Tensor, i: int) -> Tensor:
                with autocast(self.device, self.precision):
                    out = self.denoiser(x_rows, ts[i], a["audio"], a["known"], a["const"], a["keys"], a["values"],
                                        a["mask"])
                return out.float()

            return denoise_chunk(sampler, denoise, a["x"].clone(), a.get("prefix"), a.get("rows"), a.get("guided"),
                                 guidance, a.get("noise"))

        return self.cache.run(key, loop, tensors, lambda out: out.float().cpu().numpy())

    # -- the decoder ----------------------------------------------------------------------------------
    def decode(self, motion, appearance) -> np.ndarray:
        """motion (N,M), appearance (N,Ca,h,w) -> frames (N,3,S,S) f32 [-1,1]."""
        tensors = [self._dev(motion), self._dev(appearance)]
        key = ("decode", tuple(tensors[0].shape), tuple(tensors[1].shape), self.precision)

        def decode(m: Tensor, app: Tensor) -> Tensor:
            with autocast(self.device, self.precision):
                return self.decoder(m, app).float()

        return self.cache.run(key, decode, tensors, lambda out: out.cpu().numpy())
