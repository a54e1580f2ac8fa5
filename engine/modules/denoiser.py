"""The motion generator: a Conformer that predicts clean motion latents (x0) from noisy ones.

Per frame: noisy motion latent -> d_model, plus the audio features (element-wise), the diffusion-time
embedding and absolute positions. Each block adds, behind zero-initialised gates (h = h + Z(CrossAttn)):
  - the emotion branch: attends to the instruction's pooled/end-of-text embedding (adapter A_e);
  - the motion branch: attends to all instruction token embeddings (adapter A_m), padding masked;
  - the keyframe branch: attends to a reference frame's motion latent (keyframe adapter).
Streaming continuity: frames flagged `known` carry clean motion (the previous chunk's tail) instead of
noise, marked by a learned embedding; training shows the model random known prefixes, so at inference
the new frames continue the old ones.
The emotion and keyframe branches attend to one repeated vector, so their softmax is uniform and their
output is one constant vector per layer per instruction. `condition()` computes those constants and the
motion branch's keys and values once per instruction; `forward()` takes them as plain tensors, so the
exported graph and a fused kernel see the same inputs. `forward_reference()` runs the literal,
uncached attention (the test oracle for the cache).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...kernels.dispatch import FoldCache, gated_cross_attention
from ...kernels.reference import CrossAttentionWeights
from ..config import AdapterConfig, DenoiserConfig
from .conformer import ConvModule, FeedForward, SelfAttention, sinusoidal_table, timestep_embedding


class MLPAdapter(nn.Module):
    """`layers` linear layers with SiLU between them: in_dim -> hidden ... -> out_dim."""

    def __init__(self, in_dim: int, out_dim: int, cfg: AdapterConfig):
        super().__init__()
        dims = [in_dim] + [cfg.hidden] * (cfg.layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = F.silu(x)
        return x


def zero_gate(d: int, enabled: bool) -> nn.Module:
    """The paper's zero convolution: a kernel-1 Conv1d along time == a Linear, weight and bias zero."""
    if not enabled:
        return nn.Identity()
    gate = nn.Linear(d, d)
    nn.init.zeros_(gate.weight)
    nn.init.zeros_(gate.bias)
    return gate


def attention_bias(mask: Tensor) -> Tensor:
    """(B, N) 1/0 key mask -> (B, 1, 1, N) additive bias (0 keep, -1e4 drop)."""
    return ((mask.to(torch.float32) - 1.0) * 1e4)[:, None, None, :]


class ConditionBranch(nn.Module):
    """Projections of one cross-attention branch and its zero gate."""

    def __init__(self, d: int, gates: bool):
        super().__init__()
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.out = nn.Linear(d, d)
        self.gate = zero_gate(d, gates)

    def constant(self, context: Tensor) -> Tensor:
        """Output for a single (repeated) context vector: uniform softmax -> gate(out(v(c))). (B,D)->(B,D)"""
        return self.gate(self.out(self.v(context)))

    def reference(self, hq: Tensor, context: Tensor, bias: Tensor | None, heads: int) -> Tensor:
        """Literal cross-attention + gate (no shortcut). hq: (B,T,D) normed hidden; context: (B,N,D)."""
        B, T, D = hq.shape
        N = context.shape[1]
        q = self.q(hq).view(B, T, heads, D // heads).transpose(1, 2)
        k = self.k(context).view(B, N, heads, D // heads).transpose(1, 2)
        v = self.v(context).view(B, N, heads, D // heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.gate(self.out(y.transpose(1, 2).reshape(B, T, D)))


class DenoiserLayer(nn.Module):
    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        c = cfg.conformer
        d = c.d_model
        self.heads = c.heads
        self.two_branch = cfg.two_branch
        self.ffn1 = FeedForward(d, c.ffn_dim, c.dropout)
        self.attn = SelfAttention(d, c.heads, c.dropout)
        self.conv = ConvModule(d, c.kernel, c.dropout)
        self.cond_norm = nn.LayerNorm(d)
        self.motion = ConditionBranch(d, cfg.zero_gates)
        self.emotion = ConditionBranch(d, cfg.zero_gates) if cfg.two_branch else None
        self.keyframe = ConditionBranch(d, cfg.zero_gates)
        self.ffn2 = FeedForward(d, c.ffn_dim, c.dropout)
        self.final_norm = nn.LayerNorm(d)
        self._fold = FoldCache()          # derived from the parameters above; not part of the state dict

    def _backbone_head(self, h: Tensor) -> Tensor:
        h = h + 0.5 * self.ffn1(h)
        h = h + self.attn(h)
        return h + self.conv(h)

    def _backbone_tail(self, h: Tensor) -> Tensor:
        h = h + 0.5 * self.ffn2(h)
        return self.final_norm(h)

    def instruction_tensors(self, emotion: Tensor, keyframe: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-instruction constant (B,D) and motion keys/values (B,N,D) of this layer."""
        const = self.keyframe.constant(keyframe)
        if self.emotion is not None:
            const = const + self.emotion.constant(emotion)
        return const, self.motion.k(tokens), self.motion.v(tokens)

    def cross_attention_weights(self) -> CrossAttentionWeights:
        """The motion branch as the fused step reads it: cond_norm, the query projection, and out + gate folded
        into one matrix and bias (kernels/reference.py). Built once per weight version at inference (every
        backend and the exported graph read this one fold); rebuilt differentiably while training."""
        return self._fold.get(self.cond_norm, self.motion.q, self.motion.out, self.motion.gate)

    def forward(self, h: Tensor, const: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        """h (B,T,D), const (B,D), k/v (B,N,D) this layer's instruction tensors, bias (B,1,1,N) -> (B,T,D)."""
        h = self._backbone_head(h)
        # h + const + gate(out(attention(q(cond_norm(h)), k, v))): Triton on CUDA, SDPA elsewhere (kernels/dispatch.py)
        h = gated_cross_attention(h, self.cross_attention_weights(), k, v, bias.flatten(1), const, self.heads)
        return self._backbone_tail(h)

    def forward_reference(self, h: Tensor, emotion: Tensor, keyframe: Tensor, tokens: Tensor, bias: Tensor) -> Tensor:
        h = self._backbone_head(h)
        hq = self.cond_norm(h)
        T = h.shape[1]
        update = self.motion.reference(hq, tokens, bias, self.heads)
        update = update + self.keyframe.reference(hq, keyframe[:, None].expand(-1, T, -1), None, self.heads)
        if self.emotion is not None:
            update = update + self.emotion.reference(hq, emotion[:, None].expand(-1, T, -1), None, self.heads)
        return self._backbone_tail(h + update)


# What `condition` returns for one instruction + keyframe, computed once (plain tensors, so both ONNX
# exporters take it): const (B, L, D) emotion + keyframe branch output per layer, keys and values
# (B, L, N, D) motion-branch keys/values per layer. The token mask (B, N) travels beside it.
InstructionCache = tuple[Tensor, Tensor, Tensor]


class Denoiser(nn.Module):
    def __init__(self, cfg: DenoiserConfig, motion_dim: int, text_dim: int):
        super().__init__()
        c = cfg.conformer
        d = c.d_model
        self.cfg = cfg
        self.in_proj = nn.Linear(motion_dim, d)
        self.known_embedding = nn.Parameter(torch.randn(d) * 0.02)      # marks clean prefix frames
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.register_buffer("positions", sinusoidal_table(cfg.max_frames, d), persistent=False)
        self.emotion_adapter = MLPAdapter(text_dim, d, cfg.emotion_adapter) if cfg.two_branch else None
        self.motion_adapter = MLPAdapter(text_dim, d, cfg.motion_adapter)
        self.keyframe_adapter = MLPAdapter(motion_dim, d, cfg.keyframe_adapter)
        self.layers = nn.ModuleList(DenoiserLayer(cfg) for _ in range(c.layers))
        self.out_proj = nn.Linear(d, motion_dim)
        # Training heads (not used at inference): pose per frame, AUs and intensity from pooled x0.
        self.pose_head = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, cfg.pose_dim))
        self.au_head = nn.Sequential(nn.Linear(motion_dim, d), nn.SiLU(), nn.Linear(d, cfg.num_aus))
        self.intensity_head = nn.Sequential(nn.Linear(motion_dim, d), nn.SiLU(), nn.Linear(d, cfg.num_intensities))

    # -- per instruction ------------------------------------------------------------------------------
    def _contexts(self, tokens: Tensor, pooled: Tensor, keyframe: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        emotion = self.emotion_adapter(pooled) if self.emotion_adapter is not None else pooled.new_zeros(0)
        return emotion, self.keyframe_adapter(keyframe), self.motion_adapter(tokens)

    def condition(self, tokens: Tensor, pooled: Tensor, keyframe: Tensor) -> InstructionCache:
        """tokens (B,N,Dt), pooled (B,Dt), keyframe (B,M) scaled latent -> (const (B,L,D), keys (B,L,N,D),
        values (B,L,N,D)). The token mask is not needed here: padded keys are masked at every step."""
        emotion, key, motion = self._contexts(tokens, pooled, keyframe)
        per_layer = [layer.instruction_tensors(emotion, key, motion) for layer in self.layers]
        const, keys, values = (torch.stack(parts, dim=1) for parts in zip(*per_layer))
        return const, keys, values

    # -- per step -------------------------------------------------------------------------------------
    def _embed(self, x_t: Tensor, t: Tensor, audio: Tensor, known: Tensor) -> Tensor:
        T = x_t.shape[1]
        temb = self.time_mlp(timestep_embedding(t, self.positions.shape[1]))     # (B, D)
        return (self.in_proj(x_t) + audio + temb[:, None, :] + self.positions[:T][None]
                + known[:, :, None] * self.known_embedding)

    def forward(self, x_t: Tensor, t: Tensor, audio: Tensor, known: Tensor, const: Tensor, keys: Tensor,
                values: Tensor, mask: Tensor) -> Tensor:
        """One denoiser step (the exported signature): x_t (B,T,M) noisy motion (clean where known), t (B,) int,
        audio (B,T,D), known (B,T) 1 = clean prefix frame, cached instruction tensors, mask (B,N) -> x0 (B,T,M)."""
        return self.forward_hidden(x_t, t, audio, known, const, keys, values, mask)[0]

    def forward_hidden(self, x_t: Tensor, t: Tensor, audio: Tensor, known: Tensor, const: Tensor, keys: Tensor,
                       values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """`forward`, also returning the last hidden state (B,T,D) that the training heads read."""
        h = self._embed(x_t, t, audio, known)
        bias = attention_bias(mask)
        for i, layer in enumerate(self.layers):
            h = layer(h, const[:, i], keys[:, i], values[:, i], bias)
        return self.out_proj(h), h

    def forward_cached(self, x_t: Tensor, t: Tensor, audio: Tensor, cache: InstructionCache, mask: Tensor,
                       known: Tensor | None = None, return_hidden: bool = False):
        """Convenience for training and tests: `forward` (or `forward_hidden`) from `condition`'s tuple."""
        known = x_t.new_zeros(x_t.shape[:2]) if known is None else known
        fn = self.forward_hidden if return_hidden else self.forward
        return fn(x_t, t, audio, known, *cache, mask)

    def forward_reference(self, x_t: Tensor, t: Tensor, audio: Tensor, tokens: Tensor, mask: Tensor,
                          pooled: Tensor, keyframe: Tensor, known: Tensor | None = None) -> Tensor:
        """The literal, uncached computation (test oracle for `condition` + `forward`)."""
        emotion, key, motion = self._contexts(tokens, pooled, keyframe)
        known = x_t.new_zeros(x_t.shape[:2]) if known is None else known
        h = self._embed(x_t, t, audio, known)
        bias = attention_bias(mask)
        for layer in self.layers:
            h = layer.forward_reference(h, emotion, key, motion, bias)
        return self.out_proj(h)

    # -- training heads -------------------------------------------------------------------------------
    def heads(self, x0: Tensor, hidden: Tensor) -> dict[str, Tensor]:
        pooled = x0.mean(dim=1)
        return {"pose": self.pose_head(hidden), "au_logits": self.au_head(pooled),
                "intensity_logits": self.intensity_head(pooled)}
