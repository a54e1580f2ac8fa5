"""The denoiser block's gated cross-attention step in plain torch: the definition the kernels are tested against.

One call computes, for a batch of rows each conditioned on its own instruction,

    q   = LayerNorm(h) Wq^T + bq                                   (B, T, D)
    y   = softmax(q_h k_h^T / sqrt(dh) + bias) v_h, per head h       (B, T, D)
    out = h + const + y Wf^T + bf                                   (B, T, D)

where (Wf, bf) is the motion branch's output projection followed by its zero gate, folded into one linear map
(`fold_output_gate`): the two are linear maps with nothing between them, so gate(out(y)) == y Wf^T + bf up to
rounding. `bias` is the (B, N) additive key bias (0 keep, -1e4 drop) of the instruction's token mask.

`CrossAttentionWeights` is what every implementation reads (the Triton kernels, the SDPA fallback, the explicit
reference, and the exported graph); `DenoiserLayer.cross_attention_weights()` builds it once per weight version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class CrossAttentionWeights:
    """The motion branch of one denoiser block, ready for a fused kernel (all (D, D) or (D,))."""

    norm_weight: Tensor      # (D,) LayerNorm affine weight
    norm_bias: Tensor        # (D,)
    eps: float               # LayerNorm epsilon
    q_weight: Tensor         # (D, D) query projection, nn.Linear layout (out, in)
    q_bias: Tensor           # (D,)
    out_weight: Tensor       # (D, D) output projection and gate folded: gate.W @ out.W
    out_bias: Tensor         # (D,)   gate.W @ out.b + gate.b

    @property
    def d_model(self) -> int:
        return self.q_weight.shape[0]

    @property
    def norm_shape(self) -> tuple[int, ...]:
        """LayerNorm's normalized shape as plain ints, so a traced graph keeps it static (TorchScript's ONNX
        exporter refuses a LayerNorm whose shape is read from the traced input)."""
        return (int(self.norm_weight.numel()),)


def fold_output_gate(out_proj: nn.Linear, gate: nn.Module) -> tuple[Tensor, Tensor]:
    """out_proj then gate (an nn.Linear, or nn.Identity in the no-gate ablation) -> one (W (D,D), b (D,)).

    The product is formed in float32 (exact up to one rounding into the parameters' dtype).
    """
    if isinstance(gate, nn.Identity):
        return out_proj.weight, out_proj.bias
    if not isinstance(gate, nn.Linear):
        raise TypeError(f"gate must be nn.Linear or nn.Identity, got {type(gate).__name__}")
    dtype = out_proj.weight.dtype
    wg, wo = gate.weight.float(), out_proj.weight.float()
    weight = wg @ wo                                                   # (D, D)
    bias = wg @ out_proj.bias.float() + gate.bias.float()             # (D,)
    return weight.to(dtype), bias.to(dtype)


def attention_bias_rows(mask: Tensor) -> Tensor:
    """(B, N) 1/0 token mask -> (B, N) float32 additive bias (0 keep, -1e4 drop), as in the denoiser."""
    return (mask.to(torch.float32) - 1.0) * 1e4


def _heads(x: Tensor, heads: int) -> Tensor:
    """(B, L, D) -> (B, H, L, dh)."""
    B, L, D = x.shape
    return x.view(B, L, heads, D // heads).transpose(1, 2)


def gated_cross_attention(h: Tensor, w: CrossAttentionWeights, k: Tensor, v: Tensor, bias: Tensor, const: Tensor,
                          heads: int, explicit: bool = False, gate: nn.Module | None = None) -> Tensor:
    """h (B,T,D) hidden state, k/v (B,N,D) this layer's motion keys/values, bias (B,N) additive key bias,
    const (B,D) emotion + keyframe branch output -> the block's new hidden state (B,T,D).

    explicit=False attends with torch's SDPA (the fallback on CPU and during export); explicit=True writes the
    masked softmax out (matmul, max-subtracted exp, sum; float32 inside) as the literal definition.
    gate: only to measure the fold (benchmarks/bench_kernels.py): w.out_* is then the bare output projection and
    `gate` runs after it, unfolded.
    """
    B, T, D = h.shape
    q = F.linear(F.layer_norm(h, w.norm_shape, w.norm_weight, w.norm_bias, w.eps), w.q_weight, w.q_bias)
    qh, kh, vh = _heads(q, heads), _heads(k, heads), _heads(v, heads)        # (B, H, T|N, dh)
    if explicit:
        scores = (qh.float() @ kh.float().transpose(-1, -2)) / math.sqrt(D // heads) + bias.float()[:, None, None, :]
        y = (torch.softmax(scores, dim=-1) @ vh.float()).to(h.dtype)         # (B, H, T, dh)
    else:
        y = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=bias.to(h.dtype)[:, None, None, :])
    y = y.transpose(1, 2).reshape(B, T, D)
    update = F.linear(y, w.out_weight, w.out_bias)
    return h + const[:, None, :] + (update if gate is None else gate(update))


def gated_cross_attention_unfused(h: Tensor, norm: nn.LayerNorm, q_proj: nn.Linear, k: Tensor, v: Tensor,
                                  bias: Tensor, const: Tensor, heads: int, out_proj: nn.Module,
                                  gate: nn.Module) -> Tensor:
    """The pre-fold eager path, module by module (out_proj, then gate): the benchmark's 'unfused eager' row."""
    B, T, D = h.shape
    qh, kh, vh = _heads(q_proj(norm(h)), heads), _heads(k, heads), _heads(v, heads)
    y = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=bias.to(h.dtype)[:, None, None, :])
    return h + const[:, None, :] + gate(out_proj(y.transpose(1, 2).reshape(B, T, D)))
