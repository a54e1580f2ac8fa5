"""Half-precision inference for the torch backend: weights cast once, numerically delicate parts kept in fp32.

`cast_for_inference(model, "fp16"|"bf16")` casts the weights of the matmul-shaped layers (Linear, Conv1d/2d:
over 99% of the FLOPs) to the half type once, in place, and leaves in fp32 what needs the range or the
precision: normalisation layers (LayerNorm, GroupNorm), embeddings, loose parameters (the denoiser's known-
frame embedding) and every buffer (positions, motion statistics). `autocast(device, precision)` is the context
every forward runs in: it feeds the half-type layers half inputs and keeps the ops on autocast's fp32 list
(norms and softmax on CUDA, grid_sample everywhere) in fp32; the warp's sampling grid is built in fp32 in the
model itself (engine/modules/vae.py `warp`), since bf16 cannot address a 256-pixel grid (8 mantissa bits).
The autocast cast cache is off, as CUDA-graph capture requires, and unneeded: the big weights are already in
the half type. The DDIM state and every output leave the backend as fp32.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

PRECISIONS = ("fp32", "fp16", "bf16")
HALF_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


class PrecisionError(ValueError):
    pass


def torch_dtype(precision: str) -> torch.dtype:
    """'fp32' | 'fp16' | 'bf16' -> the torch dtype, or PrecisionError naming the choices."""
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in table:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return table[precision]


def cast_for_inference(model: nn.Module, precision: str) -> nn.Module:
    """Cast the weights of Linear/Conv layers to the precision's dtype once (in place; "fp32" casts a half model
    back); everything else stays fp32."""
    dtype = torch_dtype(precision)
    for module in model.modules():
        if isinstance(module, HALF_LAYERS):
            for p in module.parameters(recurse=False):
                if p.dtype != dtype:
                    p.data = p.data.to(dtype)
    return model


def half_fraction(model: nn.Module) -> float:
    """Fraction of the parameters held in a 16-bit float type (for reports and tests)."""
    total = half = 0
    for p in model.parameters():
        total += p.numel()
        half += p.numel() if p.dtype in (torch.float16, torch.bfloat16) else 0
    return half / max(total, 1)


def autocast(device: torch.device | str, precision: str):
    """The context a forward runs in: autocast to the half type (cache off), or nothing for fp32."""
    dtype = torch_dtype(precision)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype, cache_enabled=False)
