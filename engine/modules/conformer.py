"""Conformer building blocks shared by the audio encoder and the denoiser.

Macaron layout as in torchaudio's Conformer (which the authors' code extends): half-step FFN,
self-attention, convolution module (pointwise -> GLU -> depthwise -> BatchNorm -> SiLU -> pointwise),
half-step FFN, final LayerNorm. Tensors are batch-first (B, T, D) throughout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConformerConfig


def sinusoidal_table(length: int, dim: int) -> Tensor:
    """Absolute sinusoidal positions (Vaswani et al.): (length, dim), sin on even, cos on odd channels."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)
    return table


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """(B,) diffusion steps -> (B, dim) sinusoidal features (sin half, cos half)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * (-math.log(10000.0) / (half - 1)))
    args = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class FeedForward(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.dropout(F.silu(self.fc1(self.norm(x))))))


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over frames (no mask: windows are always full)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm(x)).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)                 # (B, H, T, Dh)
        return self.dropout(self.out(y.transpose(1, 2).reshape(B, T, D)))


class ConvModule(nn.Module):
    def __init__(self, d: int, kernel: int, dropout: float):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"depthwise kernel must be odd, got {kernel}")
        self.norm = nn.LayerNorm(d)
        self.pointwise_in = nn.Conv1d(d, 2 * d, 1)
        self.depthwise = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.batch_norm = nn.BatchNorm1d(d)
        self.pointwise_out = nn.Conv1d(d, d, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(x).transpose(1, 2)                            # (B, D, T)
        y = F.glu(self.pointwise_in(y), dim=1)
        y = F.silu(self.batch_norm(self.depthwise(y)))
        return self.dropout(self.pointwise_out(y)).transpose(1, 2)


class ConformerLayer(nn.Module):
    """One plain Conformer block (the audio encoder's); the denoiser's block adds conditioning."""

    def __init__(self, cfg: ConformerConfig):
        super().__init__()
        d = cfg.d_model
        self.ffn1 = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.attn = SelfAttention(d, cfg.heads, cfg.dropout)
        self.conv = ConvModule(d, cfg.kernel, cfg.dropout)
        self.ffn2 = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.final_norm = nn.LayerNorm(d)

    def forward(self, x: Tensor) -> Tensor:
        x = x + 0.5 * self.ffn1(x)
        x = x + self.attn(x)
        x = x + self.conv(x)
        x = x + 0.5 * self.ffn2(x)
        return self.final_norm(x)
