"""The DDIM denoising loop of one batched chunk, written once for any array type.

The pipeline runs it on numpy arrays, one `Backend.denoise` call per step; a device backend runs the very same
function on its own tensors (torch on CUDA, inside a captured CUDA graph: engine/modules/device_loop.py), so
the loop's arithmetic has one definition: the sampler's `step` (engine/ddim.py) and the guidance mix below.
It only indexes, slices, multiplies and adds, which numpy arrays and torch tensors spell alike.

Shapes (B sessions, R = B + G denoiser rows, G guided sessions, T window frames, P known prefix frames,
M motion latent size):
  x        (B, T, M)  initial noise (the caller's copy is overwritten where the prefix is pinned)
  prefix   (B, P, M)  clean motion of the known prefix, or None (P = 0)
  rows     (R,)       int: which session each denoiser row reads (arange(B) then the guided sessions),
                      or None when nothing is guided (R = B)
  guided   (G,)       int: the guided sessions, or None
  noises   per step i: (B, T, M) fresh noise where the step's sigma > 0 (eta > 0), else None / ignored
  denoise(x_rows (R, T, M), i) -> x0 (R, T, M): rows 0..B-1 with each session's instruction, rows B.. with
  the default instruction for each guided session.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .ddim import DDIMSampler


def denoise_chunk(sampler: DDIMSampler, denoise: Callable, x, prefix=None, rows=None, guided=None,
                  guidance: float = 1.0, noises: Sequence | None = None):
    """Run every DDIM step of the sampler's schedule; returns the final sample (B, T, M)."""
    B = x.shape[0]
    P = 0 if prefix is None else prefix.shape[1]
    for i in range(sampler.num_steps):
        if P:
            x[:, :P] = prefix                                       # the known prefix stays clean
        out = denoise(x if rows is None else x[rows], i)            # (R, T, M)
        x0 = out[:B]
        if guided is not None:
            neutral = out[B:]                                       # (G, T, M) default instruction
            x0[guided] = neutral + guidance * (x0[guided] - neutral)
        x = sampler.step(x0, i, x, noise=None if noises is None else noises[i])
    return x


def draw_step_noise(sampler: DDIMSampler, draw: Callable) -> list | None:
    """Per-step noise for eta > 0 in the order the sessions' generators are consumed (after the initial noise,
    step by step): `draw()` returns one step's (B, T, M). None when no step has sigma > 0."""
    if not any(c.sigma > 0 for c in sampler.coefficients):
        return None
    return [draw() if c.sigma > 0 else None for c in sampler.coefficients]
