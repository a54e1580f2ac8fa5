"""Triton kernels for the denoiser block's gated cross-attention (definition: kernels/reference.py).

Two kernels, each one pass, the block's hidden state written once:

1. `_ln_q_attention_kernel`, grid (row b, head, query block): LayerNorm of the block's hidden rows (statistics
   in float32, two passes over D in BLOCK_D chunks) fused into the query projection's prologue, then scores
   against ALL of the row's keys in one tile (N <= N_PAD: 64 demo / 77 paper tokens, so no online-softmax loop),
   the (B, N) additive key bias, softmax in float32, and P @ V. Writes the head's slice of y (B, T, D).
2. `_out_proj_residual_kernel`, grid (block of B*T rows, block of output features): y @ Wf^T with the output
   projection and zero gate folded into Wf, bf (kernels/reference.py `fold_output_gate`), + const of the row's
   instruction, + the residual h, written once as the new hidden state.

Why two and not one: the output projection sums over all heads; one program per (row, query block) holding
all heads would need a (BLOCK_T, D) float32 accumulator and (dh, D) weight tiles (768 wide in the paper
config), and splitting heads over programs would need atomics (several writes of the hidden state, and a
result that depends on their order). y is (B, T, D): a few hundred KB at most, written once and read once.

Every row b has its own keys, values, bias and const: a batch mixes sessions and instructions freely.
dtypes: float32 (dots in IEEE fp32, as torch's default matmul), float16 and bfloat16 (dots on the storage
dtype, float32 accumulation, softmax and epilogue in float32). Block sizes are constexpr and tuned by
`triton.autotune` over a few configs per (T, N, D); under TRITON_INTERPRET=1 (CPU tensors, the tests) nothing
is tuned: the caller names the blocks, or the largest tiles run (fewest programs: the interpreter pays per
program and per op, not per element). Written for Triton >= 3.0 APIs only
(checked on 3.9 here; the GPU machine has 3.6).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from .reference import CrossAttentionWeights

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"     # read once, as triton.jit does at import

# Few configs on purpose: every one is compiled per (dtype, D) the first time a shape is tuned. With all keys in
# one (dh x N_PAD) tile per program, 8 warps roughly halve the registers per thread (ptxas for sm_90, paper block,
# fp16: 252 -> 140 at BLOCK_T 16); the autotuner picks.
ATTENTION_CONFIGS = [
    triton.Config({"BLOCK_T": 16, "BLOCK_D": 64}, num_warps=4),
    triton.Config({"BLOCK_T": 16, "BLOCK_D": 64}, num_warps=8),
    triton.Config({"BLOCK_T": 32, "BLOCK_D": 64}, num_warps=8),
    triton.Config({"BLOCK_T": 32, "BLOCK_D": 128}, num_warps=8),
]
OUTPUT_CONFIGS = [
    triton.Config({"BLOCK_M": 32, "BLOCK_O": 64, "BLOCK_K": 64}, num_warps=4),
    triton.Config({"BLOCK_M": 16, "BLOCK_O": 64, "BLOCK_K": 64}, num_warps=4),
    triton.Config({"BLOCK_M": 64, "BLOCK_O": 64, "BLOCK_K": 32}, num_warps=4),
    triton.Config({"BLOCK_M": 64, "BLOCK_O": 128, "BLOCK_K": 64}, num_warps=8),
]


@triton.jit(do_not_specialize=["T", "N"])          # one binary per config for every window and token count
def _ln_q_attention_kernel(
    h_ptr, lnw_ptr, lnb_ptr, wq_ptr, bq_ptr, k_ptr, v_ptr, bias_ptr, y_ptr,
    T, N, eps, scale,
    stride_hb, stride_ht, stride_kb, stride_kn, stride_vb, stride_vn, stride_biasb, stride_yb, stride_yt,
    D: tl.constexpr, DH: tl.constexpr, DH_PAD: tl.constexpr, N_PAD: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0)
    head = tl.program_id(1)
    offs_t = tl.program_id(2) * BLOCK_T + tl.arange(0, BLOCK_T)            # (BLOCK_T,) query frames
    t_ok = offs_t < T
    h_rows = h_ptr + b * stride_hb + offs_t[:, None] * stride_ht             # (BLOCK_T, 1) row pointers
    dot_ty = tl.float32 if UPCAST else y_ptr.dtype.element_ty               # operand dtype of every tl.dot

    # LayerNorm statistics in float32: mean, then the centred second moment (two passes, like torch).
    acc = tl.zeros((BLOCK_T,), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        ok = t_ok[:, None] & (offs_d < D)[None, :]
        acc += tl.sum(tl.load(h_rows + offs_d[None, :], mask=ok, other=0.0).to(tl.float32), axis=1)
    mean = acc / D
    acc = tl.zeros((BLOCK_T,), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        ok = t_ok[:, None] & (offs_d < D)[None, :]
        x = tl.load(h_rows + offs_d[None, :], mask=ok, other=0.0).to(tl.float32)
        xc = tl.where(ok, x - mean[:, None], 0.0)
        acc += tl.sum(xc * xc, axis=1)
    rstd = 1.0 / tl.sqrt(acc / D + eps)

    # This head's queries: LayerNorm applied chunk by chunk in the projection's prologue.
    offs_e = tl.arange(0, DH_PAD)                                             # (DH_PAD,) feature in the head
    e_ok = offs_e < DH
    cols = head * DH + offs_e                                                 # columns of q, k, v, y
    q = tl.zeros((BLOCK_T, DH_PAD), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        d_ok = offs_d < D
        x = tl.load(h_rows + offs_d[None, :], mask=t_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        g = tl.load(lnw_ptr + offs_d, mask=d_ok, other=0.0).to(tl.float32)
        beta = tl.load(lnb_ptr + offs_d, mask=d_ok, other=0.0).to(tl.float32)
        xn = (x - mean[:, None]) * rstd[:, None] * g[None, :] + beta[None, :]          # (BLOCK_T, BLOCK_D)
        wq_t = tl.load(wq_ptr + cols[None, :] * D + offs_d[:, None],                     # (BLOCK_D, DH_PAD) = Wq^T
                       mask=d_ok[:, None] & e_ok[None, :], other=0.0)
        q += tl.dot(xn.to(dot_ty), wq_t.to(dot_ty), input_precision=PRECISION)
    q = (q + tl.load(bq_ptr + cols, mask=e_ok, other=0.0).to(tl.float32)[None, :]) * scale

    # Scores over every key of this row in one tile, the row's additive bias, softmax in float32.
    offs_n = tl.arange(0, N_PAD)
    n_ok = offs_n < N
    k_t = tl.load(k_ptr + b * stride_kb + offs_n[None, :] * stride_kn + cols[:, None],   # (DH_PAD, N_PAD) = K^T
                  mask=e_ok[:, None] & n_ok[None, :], other=0.0)
    s = tl.dot(q.to(dot_ty), k_t.to(dot_ty), input_precision=PRECISION)                  # (BLOCK_T, N_PAD)
    key_bias = tl.load(bias_ptr + b * stride_biasb + offs_n, mask=n_ok, other=float("-inf")).to(tl.float32)
    s = s + key_bias[None, :]
    p = tl.exp(s - tl.max(s, axis=1)[:, None])
    p = p / tl.sum(p, axis=1)[:, None]
    vals = tl.load(v_ptr + b * stride_vb + offs_n[:, None] * stride_vn + cols[None, :],  # (N_PAD, DH_PAD)
                   mask=n_ok[:, None] & e_ok[None, :], other=0.0)
    y = tl.dot(p.to(dot_ty), vals.to(dot_ty), input_precision=PRECISION)                 # (BLOCK_T, DH_PAD)
    tl.store(y_ptr + b * stride_yb + offs_t[:, None] * stride_yt + cols[None, :], y.to(y_ptr.dtype.element_ty),
             mask=t_ok[:, None] & e_ok[None, :])


@triton.jit(do_not_specialize=["R", "T"])
def _out_proj_residual_kernel(
    y_ptr, wo_ptr, bo_ptr, const_ptr, h_ptr, out_ptr,
    R, T,
    stride_cb, stride_hb, stride_ht,
    D: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr,
):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)             # (BLOCK_M,) rows of the B*T batch
    m_ok = offs_m < R
    row_b = offs_m // T
    row_t = offs_m % T
    offs_o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)             # (BLOCK_O,) output features
    o_ok = offs_o < D
    dot_ty = tl.float32 if UPCAST else out_ptr.dtype.element_ty

    acc = tl.zeros((BLOCK_M, BLOCK_O), dtype=tl.float32)
    for k0 in range(0, D, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_ok = offs_k < D
        a = tl.load(y_ptr + offs_m[:, None] * D + offs_k[None, :], mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        w_t = tl.load(wo_ptr + offs_o[None, :] * D + offs_k[:, None],                   # (BLOCK_K, BLOCK_O) = Wf^T
                      mask=k_ok[:, None] & o_ok[None, :], other=0.0)
        acc += tl.dot(a.to(dot_ty), w_t.to(dot_ty), input_precision=PRECISION)

    ok = m_ok[:, None] & o_ok[None, :]
    acc += tl.load(bo_ptr + offs_o, mask=o_ok, other=0.0).to(tl.float32)[None, :]
    acc += tl.load(const_ptr + row_b[:, None] * stride_cb + offs_o[None, :], mask=ok, other=0.0).to(tl.float32)
    h_at = row_b[:, None] * stride_hb + row_t[:, None] * stride_ht + offs_o[None, :]
    acc += tl.load(h_ptr + h_at, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs_m[:, None] * D + offs_o[None, :], acc.to(out_ptr.dtype.element_ty), mask=ok)


_ln_q_attention_tuned = triton.autotune(configs=ATTENTION_CONFIGS, key=["T", "N", "D", "DH"])(_ln_q_attention_kernel)
_out_proj_residual_tuned = triton.autotune(configs=OUTPUT_CONFIGS, key=["R", "D"])(_out_proj_residual_kernel)

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _pad(n: int) -> int:
    """Power-of-two tile extent >= n, and >= 16 (tl.dot's smallest dimension)."""
    return max(16, triton.next_power_of_2(n))


def _check(h: Tensor, w: CrossAttentionWeights, k: Tensor, v: Tensor, bias: Tensor, const: Tensor, heads: int):
    if h.dtype not in DTYPES:
        raise TypeError(f"fused cross-attention supports {[str(d) for d in DTYPES]}, got {h.dtype}")
    if h.dim() != 3 or k.dim() != 3:
        raise ValueError(f"expected h (B, T, D) and k, v (B, N, D), got {tuple(h.shape)} and {tuple(k.shape)}")
    B, T, D = h.shape
    N = k.shape[1]
    want = {"k": (B, N, D), "v": (B, N, D), "bias": (B, N), "const": (B, D), "q_weight": (D, D),
            "out_weight": (D, D)}
    got = {"k": k, "v": v, "bias": bias, "const": const, "q_weight": w.q_weight, "out_weight": w.out_weight}
    for name, shape in want.items():
        if tuple(got[name].shape) != shape:
            raise ValueError(f"{name} must have shape {shape} for h {tuple(h.shape)}, got {tuple(got[name].shape)}")
    if D % heads:
        raise ValueError(f"d_model {D} is not divisible by {heads} heads")
    if not INTERPRETED and not h.is_cuda:
        raise RuntimeError("the Triton cross-attention kernels need CUDA tensors "
                           "(or TRITON_INTERPRET=1 set before instructavatar.kernels.cross_attention is imported)")


def fused_gated_cross_attention(h: Tensor, w: CrossAttentionWeights, k: Tensor, v: Tensor, bias: Tensor,
                                const: Tensor, heads: int, attention_config: dict | None = None,
                                output_config: dict | None = None) -> Tensor:
    """The Triton implementation of kernels.reference.gated_cross_attention (same arguments and result).

    attention_config / output_config: explicit block sizes (e.g. {"BLOCK_T": 16, "BLOCK_D": 64}, plus optional
    num_warps) instead of autotuning; under the interpreter the default is the largest tiles.
    """
    _check(h, w, k, v, bias, const, heads)
    B, T, D = h.shape
    N = k.shape[1]
    dt = h.dtype
    dh = D // heads

    def same(x: Tensor) -> Tensor:            # one dtype, unit stride on the feature axis
        x = x if x.dtype == dt else x.to(dt)
        return x if x.stride(-1) == 1 else x.contiguous()

    h, k, v, const = same(h), same(k), same(v), same(const)
    wq, bq, wo, bo = (same(t).contiguous() for t in (w.q_weight, w.q_bias, w.out_weight, w.out_bias))
    lnw, lnb = w.norm_weight.contiguous(), w.norm_bias.contiguous()
    bias = bias.to(torch.float32).contiguous()
    upcast = INTERPRETED and dt == torch.bfloat16       # the interpreter's tl.dot mishandles bf16 operands
    # fp32 operands: IEEE, no TF32 (torch's default matmul); fp16/bf16: Triton's default (no effect on them)
    precision = "ieee" if dt == torch.float32 else "tf32"
    y = torch.empty(B, T, D, device=h.device, dtype=dt)
    out = torch.empty(B, T, D, device=h.device, dtype=dt)

    common = dict(D=D, DH=dh, DH_PAD=_pad(dh), N_PAD=_pad(N), UPCAST=upcast, PRECISION=precision)
    args = (h, lnw, lnb, wq, bq, k, v, bias, y, T, N, float(w.eps), 1.0 / dh ** 0.5,
            h.stride(0), h.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), bias.stride(0),
            y.stride(0), y.stride(1))
    cfg = attention_config or ({"BLOCK_T": min(64, _pad(T)), "BLOCK_D": min(1024, _pad(D))} if INTERPRETED else None)
    if cfg is None:
        grid = lambda meta: (B, heads, triton.cdiv(T, meta["BLOCK_T"]))      # noqa: E731
        _ln_q_attention_tuned[grid](*args, **common)
    else:
        _ln_q_attention_kernel[(B, heads, triton.cdiv(T, cfg["BLOCK_T"]))](*args, **common, **_launch(cfg))

    R = B * T
    common = dict(D=D, UPCAST=upcast, PRECISION=precision)
    args = (y, wo, bo, const, h, out, R, T, const.stride(0), h.stride(0), h.stride(1))
    cfg = output_config or ({"BLOCK_M": min(128, _pad(R)), "BLOCK_O": min(1024, _pad(D)), "BLOCK_K": min(1024, _pad(D))}
                            if INTERPRETED else None)
    if cfg is None:
        grid = lambda meta: (triton.cdiv(R, meta["BLOCK_M"]), triton.cdiv(D, meta["BLOCK_O"]))   # noqa: E731
        _out_proj_residual_tuned[grid](*args, **common)
    else:
        grid = (triton.cdiv(R, cfg["BLOCK_M"]), triton.cdiv(D, cfg["BLOCK_O"]))
        _out_proj_residual_kernel[grid](*args, **common, **_launch(cfg))
    return out


def _launch(cfg: dict) -> dict:
    """A config dict (block sizes, optional num_warps/num_stages) -> launch keyword arguments."""
    keep = {key: val for key, val in cfg.items() if key.startswith("BLOCK_") or key in ("num_warps", "num_stages")}
    return {key: val for key, val in keep.items() if val is not None}
