"""Random cross-attention problems for the kernel tests: each row its own instruction (keys, values, mask)."""

from __future__ import annotations

import torch

from instructavatar.kernels.reference import CrossAttentionWeights, attention_bias_rows


def make_weights(D: int, seed: int = 0, dtype=torch.float32, device="cpu") -> CrossAttentionWeights:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g) * scale + shift).to(device=device, dtype=dtype)

    return CrossAttentionWeights(norm_weight=r(D, scale=0.2, shift=1.0), norm_bias=r(D, scale=0.1), eps=1e-5,
                                 q_weight=r(D, D, scale=D ** -0.5), q_bias=r(D, scale=0.1),
                                 out_weight=r(D, D, scale=D ** -0.5), out_bias=r(D, scale=0.1))


def make_inputs(real_tokens: list[int], T: int, N: int, D: int, seed: int = 1, dtype=torch.float32, device="cpu"):
    """One row per entry of real_tokens (how many of its N tokens are real) -> h, k, v, bias (B,N), const."""
    B = len(real_tokens)
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(B, N)
    for b, n in enumerate(real_tokens):
        mask[b, :n] = 1.0
    h = torch.randn(B, T, D, generator=g) * 1.5 + 0.3          # a non-zero mean: LayerNorm has work to do
    k, v = torch.randn(B, N, D, generator=g), torch.randn(B, N, D, generator=g)
    const = torch.randn(B, D, generator=g)
    cast = dict(device=device, dtype=dtype)
    return h.to(**cast), k.to(**cast), v.to(**cast), attention_bias_rows(mask).to(device), const.to(**cast)


def upcast(w: CrossAttentionWeights) -> CrossAttentionWeights:
    """The same weights in float32 on the CPU (for the float32 reference of a low-precision run)."""
    f = lambda t: t.detach().float().cpu()       # noqa: E731
    return CrossAttentionWeights(f(w.norm_weight), f(w.norm_bias), w.eps, f(w.q_weight), f(w.q_bias),
                                 f(w.out_weight), f(w.out_bias))
