"""Which implementation runs the denoiser block's gated cross-attention, and the folded weights it reads.

`gated_cross_attention(h, weights, k, v, bias, const, heads)` is what `DenoiserLayer.forward` calls. It runs
  - "triton": the fused kernels (kernels/cross_attention.py) — chosen automatically for CUDA tensors when no
    gradient is needed (the kernels have no backward);
  - "sdpa": plain torch with scaled_dot_product_attention (kernels/reference.py) — everywhere else, and always
    while exporting or tracing (torch.onnx, torch.jit tracing/scripting, torch.export, torch.compile), because
    Triton kernels do not travel into ONNX or TensorRT graphs;
  - "reference": the explicit softmax definition (kernels/reference.py), for tests.
The choice is "auto" unless forced by the environment variable INSTRUCTAVATAR_ATTENTION=auto|triton|sdpa|reference
(read at each call) or, taking precedence, the `attention_mode(...)` context manager (per thread / task).
Forcing "triton" off CUDA needs TRITON_INTERPRET=1 set before the kernels are imported (the tests do this).
If "auto" picks the kernels and they fail (a GPU or Triton build they cannot compile for), one warning names the
error and the process stays on SDPA; a forced "triton" raises instead.

`folded_weights(layer_parts...)` builds `CrossAttentionWeights` with the output projection and the zero gate
folded into one matrix; `FoldCache` keeps it per weight version, so at inference the fold costs nothing per step.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from .reference import CrossAttentionWeights, fold_output_gate
from .reference import gated_cross_attention as torch_gated_cross_attention

ENV = "INSTRUCTAVATAR_ATTENTION"
MODES = ("auto", "triton", "sdpa", "reference")
_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar("instructavatar_attention", default=None)
_triton_failure: str | None = None      # set once if "auto" could not run the kernels; auto then stays on SDPA


def _validate(mode: str, where: str) -> str:
    if mode not in MODES:
        raise ValueError(f"{where}: expected one of {', '.join(MODES)}, got {mode!r}")
    return mode


@contextlib.contextmanager
def attention_mode(mode: str) -> Iterator[None]:
    """Force an implementation inside the block (overrides INSTRUCTAVATAR_ATTENTION)."""
    token = _forced.set(_validate(mode, "attention_mode"))
    try:
        yield
    finally:
        _forced.reset(token)


def requested_mode() -> str:
    """The mode asked for: the context manager's, else the environment's, else "auto"."""
    forced = _forced.get()
    if forced is not None:
        return forced
    return _validate(os.environ.get(ENV, "auto").strip().lower() or "auto", ENV)


def exporting() -> bool:
    """True while torch records a graph (ONNX export, jit trace/script, torch.export, torch.compile)."""
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return True
    compiler = getattr(torch, "compiler", None)
    for probe in ("is_exporting", "is_compiling"):
        fn = getattr(compiler, probe, None)
        if fn is not None and fn():
            return True
    return False


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def resolve(h: Tensor, *inputs: Tensor) -> str:
    """The implementation that will run for these tensors: "triton", "sdpa" or "reference"."""
    mode = requested_mode()
    if exporting():
        return "reference" if mode == "reference" else "sdpa"
    if mode == "auto":
        return "triton" if h.is_cuda and triton_available() and not _needs_grad(h, *inputs) else "sdpa"
    if mode == "triton" and _needs_grad(h, *inputs):
        raise RuntimeError(f"{ENV}=triton: the Triton cross-attention has no backward; use sdpa (or auto) to train")
    return mode


def gated_cross_attention(h: Tensor, weights: CrossAttentionWeights, k: Tensor, v: Tensor, bias: Tensor,
                          const: Tensor, heads: int) -> Tensor:
    """h (B,T,D), k/v (B,N,D), bias (B,N) additive key bias, const (B,D) -> new hidden state (B,T,D)."""
    global _triton_failure
    mode = resolve(h, k, v, const, weights.q_weight, weights.out_weight)
    if mode == "triton" and not (_triton_failure and requested_mode() == "auto"):
        try:
            from .cross_attention import fused_gated_cross_attention  # first use only: triton is optional

            return fused_gated_cross_attention(h, weights, k, v, bias, const, heads)
        except Exception as err:            # auto: a GPU or Triton build the kernels cannot compile for
            if requested_mode() != "auto":
                raise
            _triton_failure = f"{type(err).__name__}: {err}".splitlines()[0]
            warnings.warn(f"fused cross-attention unavailable ({_triton_failure}); using SDPA", stacklevel=2)
    return torch_gated_cross_attention(h, weights, k, v, bias, const, heads, explicit=mode == "reference")


def folded_weights(norm: nn.LayerNorm, q_proj: nn.Linear, out_proj: nn.Linear,
                   gate: nn.Module) -> CrossAttentionWeights:
    """The motion branch's LayerNorm, query projection and output projection + gate folded (one matrix)."""
    out_weight, out_bias = fold_output_gate(out_proj, gate)
    return CrossAttentionWeights(norm_weight=norm.weight, norm_bias=norm.bias, eps=norm.eps, q_weight=q_proj.weight,
                                 q_bias=q_proj.bias, out_weight=out_weight, out_bias=out_bias)


def _version_key(params: list[Tensor]) -> tuple:
    """Identity of the parameters' current values: storage, dtype, device and in-place version counter."""
    key = []
    for p in params:
        try:
            version = p._version
        except RuntimeError:            # inference tensors keep no version counter: storage identity only
            version = None
        key.append((p.data_ptr(), p.dtype, p.device, tuple(p.shape), version))
    return tuple(key)


class FoldCache:
    """Folded weights of one layer, rebuilt only when a parameter changes (load, optimizer step, .to(), .half()).

    While a gradient is needed, or while torch records a graph, the fold is recomputed from the parameters at
    every call: differentiable for training, and part of the traced graph (where ONNX Runtime folds it into a
    constant) for export, so no detached tensor is baked in.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._weights: CrossAttentionWeights | None = None

    def get(self, norm: nn.LayerNorm, q_proj: nn.Linear, out_proj: nn.Linear, gate: nn.Module) -> CrossAttentionWeights:
        params = [*norm.parameters(), *q_proj.parameters(), *out_proj.parameters(), *gate.parameters()]
        if exporting() or _needs_grad(*params):
            return folded_weights(norm, q_proj, out_proj, gate)
        # inference-mode tensors may not enter autograd outside inference mode: the mode is part of the key
        key = (torch.is_inference_mode_enabled(), _version_key(params))
        if key != self._key or self._weights is None:
            with torch.no_grad():
                self._weights = folded_weights(norm, q_proj, out_proj, gate)
            self._key = key
        return self._weights
