"""Checkpoints: safetensors save/load with strict checking, and the authors' parameter-name map.

Our checkpoints hold every trainable tensor except the frozen text encoder (it ships in its own
package, MiniLM, or comes from the user's CLIP file). A load that does not match exactly fails with
one error that lists missing keys, unexpected keys and shape mismatches.

The metadata block records the config name and a format version so a checkpoint for another config is
refused with a clear message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .model import TEXT_ENCODER_PREFIX, InstructAvatar
from .state_dict import state_dict_mismatch

FORMAT_VERSION = "1"


class WeightsError(RuntimeError):
    pass


def save_checkpoint(model: InstructAvatar, path: str | Path, dtype: torch.dtype | None = None,
                    extra_metadata: dict | None = None) -> None:
    state = model.trainable_state_dict()
    tensors = {}
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v
    meta = {"format": FORMAT_VERSION, "config": model.cfg.name,
            "config_json": json.dumps(model.cfg.to_dict(), default=str)}
    meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


def read_metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def check_state_dict(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], source: str) -> None:
    problem = state_dict_mismatch(expected, given)
    if problem:
        raise WeightsError(f"weights {source} do not match the model; {problem}")


def load_checkpoint(model: InstructAvatar, path: str | Path) -> dict:
    """Strictly load `path` into `model` (all but the text encoder). Returns the file's metadata."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        meta = read_metadata(path)
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"cannot read weights {path}: not a valid safetensors file ({e})") from None
    if meta.get("config") and meta["config"] != model.cfg.name:
        raise WeightsError(f"weights {path} are for config {meta['config']!r}, not {model.cfg.name!r}")
    expected = model.trainable_state_dict()
    check_state_dict(expected, state, str(path))
    with torch.no_grad():
        for k, v in expected.items():
            v.copy_(state[k].to(v.dtype))
    return meta


# -- the authors' parameter names ---------------------------------------------------------------------
# The authors' training code (github.com/wangyuchi369/InstructAvatar, no weights released) saves two
# Lightning checkpoints: the motion generator (`UnifiedSplitEOSTETFAllTalkingA2VqvaeKeylaPoseModel`:
# `backbone.*`, `audio_encoder.*`, `audio_downsample.*`, `keylatent_encoder.*`, `instruct_encoder.*`,
# `emotion_adapter.*`, `motion_adapter.*`, `pose_pred.*`, `pose_proj.*`, `clip_text_encoder.*`) and the
# VAE (`AutoEncoderKLwithLDMK`: `encoder.*`, `ldmk_encoder.*`, `decoder.*`, `quant_conv*`,
# `post_quant_conv`, `quant_ldmk_and_conv`, `downs.*`, `ups.*`, `loss.*`). The two key sets are disjoint,
# so `map_authors_state_dict` takes either or both merged into one dict. Every authors' key is matched
# by exactly one rule below (first match wins): a rule with a target renames (and maybe reshapes) the
# tensor; a rule without one records why that tensor has no counterpart in our model. docs/weights.md
# is generated from the same table (`describe_mapping()`).

EXACT, APPROX, NONE = "exact", "approx", "none"


@dataclass(frozen=True)
class KeyRule:
    pattern: str              # regex, full match against the authors' key
    target: str | None        # our key (re.sub template); None: no counterpart (see `note`)
    fidelity: str             # EXACT: same function; APPROX: same role and shape, surrounding maths differs
    note: str
    transform: str | None = None  # "conv1_to_linear" | "split_qkv" (target holds "{qkv}")


_L = r"(\d+)"
# torchaudio Conformer sub-modules (the authors copied torchaudio 0.13's layer) -> ours.
_CONFORMER_PARTS: list[tuple[str, str, str]] = [
    # (regex part, our part template with \{a} \{b} for the part's groups, readable form for the docs)
    (r"ffn([12])\.sequential\.0\.(weight|bias)", r"ffn\{a}.norm.\{b}", "ffnK.sequential.0 -> ffnK.norm"),
    (r"ffn([12])\.sequential\.1\.(weight|bias)", r"ffn\{a}.fc1.\{b}", "ffnK.sequential.1 -> ffnK.fc1"),
    (r"ffn([12])\.sequential\.4\.(weight|bias)", r"ffn\{a}.fc2.\{b}", "ffnK.sequential.4 -> ffnK.fc2"),
    (r"self_attn_layer_norm\.(weight|bias)", r"attn.norm.\{a}", "self_attn_layer_norm -> attn.norm"),
    (r"self_attn\.in_proj_(weight|bias)", r"attn.qkv.\{a}",
     "self_attn.in_proj_{weight,bias} -> attn.qkv (same [q;k;v] row order and head split)"),
    (r"self_attn\.out_proj\.(weight|bias)", r"attn.out.\{a}", "self_attn.out_proj -> attn.out"),
    (r"conv_module\.layer_norm\.(weight|bias)", r"conv.norm.\{a}", "conv_module.layer_norm -> conv.norm"),
    (r"conv_module\.sequential\.0\.(weight|bias)", r"conv.pointwise_in.\{a}",
     "conv_module.sequential.0 -> conv.pointwise_in"),
    (r"conv_module\.sequential\.2\.(weight|bias)", r"conv.depthwise.\{a}",
     "conv_module.sequential.2 -> conv.depthwise"),
    (r"conv_module\.sequential\.3\.(weight|bias|running_mean|running_var|num_batches_tracked)",
     r"conv.batch_norm.\{a}", "conv_module.sequential.3 (BatchNorm1d incl. running stats) -> conv.batch_norm"),
    (r"conv_module\.sequential\.5\.(weight|bias)", r"conv.pointwise_out.\{a}",
     "conv_module.sequential.5 -> conv.pointwise_out"),
    (r"final_layer_norm\.(weight|bias)", r"final_norm.\{a}", "final_layer_norm -> final_norm"),
]


def _conformer_rules(theirs: str, ours: str, note: str) -> list[KeyRule]:
    rules = []
    for part, target, _ in _CONFORMER_PARTS:
        # group 1 is the layer index; the part's own groups follow (2, 3).
        t = target.replace(r"\{a}", r"\2").replace(r"\{b}", r"\3")
        rules.append(KeyRule(rf"{theirs}\.{_L}\.{part}", rf"{ours}.\1.{t}", EXACT, note))
    return rules


_BRANCHES = [
    # (authors' cross-attention, its pre-norm, its gate, our branch, fidelity, note)
    ("cross_attn_text_motion", "cross_attn_layer_norm_text_motion", "motion_zero_conv", "motion", EXACT,
     "motion branch (all instruction tokens); query pre-norm -> our cond_norm"),
    ("cross_attn_text", "cross_attn_layer_norm_text", "emotion_zero_conv", "emotion", EXACT,
     "emotion branch (CLIP text_embeds repeated 77x -> uniform attention, query path cancels)"),
    ("cross_attn", "cross_attn_layer_norm", None, "keyframe", APPROX,
     "keyframe branch; theirs combines it by FiLM (film.*), ours adds it behind a zero gate"),
]

_B = r"backbone\.conformer_layers\." + _L + r"\."
_D = r"denoiser.layers.\1."


def _branch_rules() -> list[KeyRule]:
    rules: list[KeyRule] = []
    for attn, norm, gate, ours, fid, note in _BRANCHES:
        rules += [
            KeyRule(_B + attn + r"\.in_proj_(weight|bias)", _D + ours + r".{qkv}.\2", fid, note, "split_qkv"),
            KeyRule(_B + attn + r"\.(q|k|v)_proj_weight", _D + ours + r".\2.weight", fid,
                    note + " (kdim != d_model layout)"),
            KeyRule(_B + attn + r"\.out_proj\.(weight|bias)", _D + ours + r".out.\2", fid, note),
        ]
        if gate is not None:
            rules.append(KeyRule(_B + gate + r"\.weight", _D + ours + ".gate.weight", EXACT,
                                 "zero conv: Conv1d(d, d, 1, bias=False) (d,d,1) -> Linear (d,d); "
                                 "our gate bias is set to 0", "conv1_to_linear"))
        if ours == "motion":
            rules.append(KeyRule(_B + norm + r"\.(weight|bias)", _D + r"cond_norm.\2", EXACT,
                                 "pre-norm of the motion cross-attention = our shared cond_norm"))
        else:
            rules.append(KeyRule(_B + norm + r"\.(weight|bias)", None, NONE,
                                 f"pre-norm of the {ours} cross-attention's query; its context is one "
                                 "repeated vector, so the softmax is uniform and the query has no effect "
                                 "(ours shares cond_norm)"))
    return rules


def _ldm_rules(theirs: str, ours: str, fid: str, note: str, reverse_up: bool = False) -> list[KeyRule]:
    """LDM Encoder/Decoder names -> ours (same names, but a Downsample/Upsample's `.conv.` level is flat)."""
    p = re.escape(theirs) + r"\."
    rules = []
    if reverse_up:   # LDM Decoder.up[i] is resolution level i (up[0] = full size); ours is built low res first
        rules += [KeyRule(p + r"up\.(\d+)\.upsample\.conv\.(weight|bias)", ours + r".up.<REV\1>.upsample.\2",
                          fid, note + "; up index reversed (ours low resolution first)"),
                  KeyRule(p + r"up\.(\d+)\.(block\..+)", ours + r".up.<REV\1>.\2", fid,
                          note + "; up index reversed (ours low resolution first)")]
    else:
        rules.append(KeyRule(p + r"down\.(\d+)\.downsample\.conv\.(weight|bias)", ours + r".down.\1.downsample.\2",
                             fid, note))
    parts = "conv_in|mid|norm_out|conv_out" + ("" if reverse_up else "|down")
    rules.append(KeyRule(p + rf"((?:{parts})\..+)", ours + r".\1", fid, note))
    return rules


AUTHORS_KEY_RULES: list[KeyRule] = [
    # ---- audio encoder: audio_downsample + PosConformer (talking/modules/a2diffae/conformer.py)
    KeyRule(r"audio_downsample\.(weight|bias)", r"audio_encoder.downsample.\1", EXACT,
            "Conv1d(512, 512, 3, stride 2) 50 Hz -> 25 Hz"),
    KeyRule(r"audio_encoder\.pos_enc\.pe", None, NONE,
            "sinusoidal table (same formula); ours is a non-persistent buffer, recomputed"),
    *_conformer_rules(r"audio_encoder\.conformer_layers", "audio_encoder.layers", "audio Conformer layer"),
    KeyRule(r"audio_encoder\.out_proj\.(weight|bias)", r"audio_encoder.out_proj.\1", EXACT, "512 -> d_model"),
    # ---- denoiser: UnifiedSplitTFTEZeroConvCondConformer (talking/modules/a2vqvae/condconformer.py)
    KeyRule(r"backbone\.input_projection\.(weight|bias)", r"denoiser.in_proj.\1", APPROX,
            "theirs applies ReLU after the input projection, ours does not"),
    KeyRule(r"backbone\.out_proj\.(weight|bias)", r"denoiser.out_proj.\1", EXACT, "d_model -> motion latent"),
    KeyRule(r"backbone\.pos_enc\.pe", None, NONE,
            "sinusoidal table (same formula); ours is a non-persistent buffer, recomputed"),
    KeyRule(r"backbone\.mlp\.(0|2)\.(weight|bias)", None, NONE,
            "time MLP d -> 4d (Mish) -> d on continuous t in (0,1) (pe_scale 1); ours d -> d (SiLU) -> d "
            "on integer DDPM steps: shapes and input scale differ"),
    KeyRule(_B + r"diffusion_projection\.(weight|bias)", None, NONE,
            "per-layer time projection added at every layer input; ours adds the time embedding once"),
    KeyRule(_B + r"cond_projection\.(weight|bias)", None, NONE,
            "per-layer audio projection added after ffn1 in every layer; ours adds audio once at the input"),
    KeyRule(_B + r"film\.(gain|bias)\.(weight|bias)", None, NONE,
            "FiLM combining the keyframe cross-attention (x = r * gain(r + a) + bias(r + a)); ours is "
            "additive (h + gate(a))"),
    *_conformer_rules(r"backbone\.conformer_layers", "denoiser.layers", "denoiser Conformer layer"),
    *_branch_rules(),
    # ---- condition encoders and heads of the LightningModule (talking/models/a2vqvae/diff_keyla_headpose.py)
    KeyRule(r"keylatent_encoder\..+", None, NONE,
            "TalkingMLPEncoder: in_proj + num_layers hidden Linear + out_proj (6 Linear for num_layers 4), "
            "ReLU; our keyframe adapter has `layers` Linear with SiLU"),
    KeyRule(r"instruct_encoder\..+", None, NONE,
            "TalkingMLPEncoder (6 Linear, ReLU) shared by both text branches; ours has none"),
    KeyRule(r"(emotion|motion)_adapter\.fc\.(0|2)\.weight", None, NONE,
            "CLIP-Adapter d -> d/4 -> d (no bias, ReLU), blended 0.4 x + 0.6 adapter(x); ours: MLP adapter"),
    KeyRule(r"pose_pred\..+", None, NONE,
            "ConditionPredictor (2 Conv1d k3 + LayerNorm + Linear) predicting pose from audio features; "
            "ours predicts pose from the denoiser's hidden state"),
    KeyRule(r"pose_proj\.(weight|bias)", None, NONE,
            "pose (3) -> d added to the audio features; ours takes no pose input"),
    KeyRule(r"au_classifier\..+", None, NONE, "AU classifier (only with use_au_class_loss); ours differs"),
    KeyRule(r"clip_text_encoder\..+", None, NONE,
            "frozen CLIP ViT-L/14 (HF names); never in our checkpoints, load it with --clip-weights"),
    KeyRule(r"backbone_ema\..+", None, NONE, "EMA copy of the backbone (LitEma, dots removed from names)"),
    # ---- VAE: AutoEncoderKLwithLDMK (talking/models/vqvae_2enc/autoencoder.py, encdec.py)
    KeyRule(r"quant_conv\.(weight|bias)", "vae.appearance_encoder.conv_out.\\1", EXACT,
            "1x1 conv folded into the appearance encoder's conv_out (exact)"),
    *_ldm_rules("encoder", "vae.appearance_encoder", EXACT, "LDM Encoder"),
    *_ldm_rules("ldmk_encoder", "vae.motion_encoder", APPROX,
                "LDM Encoder on landmarks; theirs reads 256 px and adds downs.* + quant_conv_ldmk, "
                "ours reads landmark_size px"),
    KeyRule(r"(post_quant_conv|quant_ldmk_and_conv)\.(weight|bias)", "vae.decoder.conv_in.\\2", APPROX,
            "1x1 convs 6 -> 3 -> 3 folded into decoder.conv_in (3 -> 6 input channels); exact except "
            "the 1-pixel border, where zero padding sees their biases"),
    *_ldm_rules("decoder", "vae.decoder", EXACT, "LDM Decoder (theirs: no tanh on the output; ours: tanh)",
                reverse_up=True),
    KeyRule(r"downs\.\d+\.conv\.(weight|bias)", None, NONE,
            "2 extra stride-2 convs on the landmark moments (64 -> 16); our motion encoder has none"),
    KeyRule(r"quant_conv_ldmk\.(weight|bias)", None, NONE,
            "1x1 conv after downs.*: cannot be folded through them"),
    KeyRule(r"ups\.\d+\.conv\.(weight|bias)", None, NONE,
            "learned upsampling of the motion latent (16 -> 64); ours upsamples by nearest neighbour"),
    KeyRule(r"loss\..+", None, NONE, "LPIPS + discriminator (training loss)"),
]

# Our tensors that no authors' tensor fills (a partial load leaves them as initialised).
OURS_WITHOUT_SOURCE: list[tuple[str, str]] = [
    ("audio_encoder.frontend.*", "wav2vec2/XLSR-53 conv features are precomputed offline by the authors; "
                                 "load them with load_wav2vec2_feature_weights"),
    ("denoiser.time_mlp.*", "their time MLP has other shapes (backbone.mlp.*)"),
    ("denoiser.known_embedding", "our marker for the clean prefix frames of a streaming window; theirs "
                                 "generates whole clips"),
    ("denoiser.emotion_adapter.*, denoiser.motion_adapter.*", "their text path is instruct_encoder + "
                                                              "CLIP-Adapter"),
    ("denoiser.keyframe_adapter.*", "keylatent_encoder has 6 Linear with ReLU"),
    ("denoiser.layers.N.keyframe.gate.*", "their keyframe branch has FiLM, no gate"),
    ("denoiser.layers.N.{emotion,motion}.gate.bias", "set to zero (their zero conv has no bias)"),
    ("denoiser.pose_head.*, denoiser.au_head.*, denoiser.intensity_head.*", "no counterpart"),
    ("vae.keyframe_encoder.*", "our addition (portrait -> motion latent)"),
    ("vae.motion_shift, vae.motion_scale", "per-dimension motion-latent statistics; theirs divide by a scalar "
                                           "(4) in the motion generator: keep 0 / 1 and latent_scale 4"),
]

_SYNTHETIC_ZERO_BIAS = re.compile(r"denoiser\.layers\.\d+\.(emotion|motion)\.gate\.weight")


@dataclass
class AuthorsMapping:
    mapped: dict[str, torch.Tensor]        # our names -> tensors (reshaped / folded)
    unmapped: list[str]                    # authors' keys not carried over (no counterpart or unknown)
    reasons: dict[str, str]                # authors' key -> why it did not map ("unknown key" if no rule)
    sources: dict[str, list[str]]          # our key -> the authors' keys it was built from
    fidelity: dict[str, str]               # our key -> EXACT / APPROX


def _match(key: str) -> tuple[KeyRule, re.Match] | None:
    for rule in AUTHORS_KEY_RULES:
        m = re.fullmatch(rule.pattern, key)
        if m:
            return rule, m
    return None


def _decoder_levels(state: dict[str, torch.Tensor]) -> int | None:
    idx = [int(m.group(1)) for k in state if (m := re.match(r"decoder\.up\.(\d+)\.", k))]
    return max(idx) + 1 if idx else None


def _fold_1x1_after(w: torch.Tensor, b: torch.Tensor, qw: torch.Tensor, qb: torch.Tensor):
    """conv (w, b) followed by a 1x1 conv (qw, qb) == one conv: exact."""
    f = torch.float32 if w.device.type != "meta" else w.dtype
    q = qw.reshape(qw.shape[0], qw.shape[1]).to(f)
    w2 = torch.einsum("oc,cihw->oihw", q, w.to(f))
    return w2.to(w.dtype), (q @ b.to(f) + qb.to(f)).to(b.dtype)


def _fold_1x1_before(w: torch.Tensor, b: torch.Tensor, a: torch.Tensor, c: torch.Tensor):
    """1x1 affine map y = a z + c followed by conv (w, b) == one conv on z (bias exact away from padding)."""
    f = torch.float32 if w.device.type != "meta" else w.dtype
    a, w32 = a.reshape(a.shape[0], a.shape[1]).to(f), w.to(f)
    w2 = torch.einsum("oihw,ij->ojhw", w32, a)
    return w2.to(w.dtype), (b.to(f) + torch.einsum("oihw,i->o", w32, c.to(f))).to(b.dtype)


def map_authors(state: dict[str, torch.Tensor], num_decoder_levels: int | None = None) -> AuthorsMapping:
    """Rename (and reshape / fold) an authors'-layout state dict to ours, with the reason for every loss."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    levels = num_decoder_levels if num_decoder_levels is not None else _decoder_levels(state)
    out = AuthorsMapping({}, [], {}, {}, {})
    pending: dict[str, torch.Tensor] = {}          # tensors consumed by a fold, by authors' name

    def put(ours: str, value: torch.Tensor, srcs: list[str], fid: str) -> None:
        if ours in out.mapped:
            raise WeightsError(f"authors' keys {out.sources[ours]} and {srcs} both map to {ours}")
        out.mapped[ours], out.sources[ours], out.fidelity[ours] = value, srcs, fid

    for key, value in state.items():
        hit = _match(key)
        if hit is None:
            out.unmapped.append(key)
            out.reasons[key] = "unknown key (no rule)"
            continue
        rule, m = hit
        if rule.target is None:
            out.unmapped.append(key)
            out.reasons[key] = rule.note
            continue
        if key.startswith(("quant_conv.", "post_quant_conv.", "quant_ldmk_and_conv.")):
            pending[key] = value
            continue
        new = m.expand(rule.target) if "{qkv}" not in rule.target else None
        if rule.transform == "split_qkv":
            parts = value.chunk(3, dim=0)
            for name, part in zip("qkv", parts):
                put(m.expand(rule.target.replace("{qkv}", name)), part.contiguous(), [key], rule.fidelity)
            continue
        if "<REV" in new:
            if levels is None:
                raise WeightsError("decoder.up.* needs the number of decoder levels")
            new = re.sub(r"<REV(\d+)>", lambda g: str(levels - 1 - int(g.group(1))), new)
        if rule.transform == "conv1_to_linear":
            if value.dim() != 3 or value.shape[-1] != 1:
                raise WeightsError(f"{key}: expected a kernel-1 Conv1d weight (out, in, 1), got "
                                   f"{tuple(value.shape)}")
            value = value[..., 0].contiguous()
        put(new, value, [key], rule.fidelity)
        if rule.transform == "conv1_to_linear" and _SYNTHETIC_ZERO_BIAS.fullmatch(new):
            put(new[: -len("weight")] + "bias", value.new_zeros(value.shape[0]), [key], rule.fidelity)

    # Folds: quant_conv into the appearance encoder's conv_out; the decoder's input 1x1 convs into conv_in.
    def take(names: list[str]) -> list[torch.Tensor] | None:
        return [pending.pop(n) for n in names] if all(n in pending for n in names) else None

    enc = "vae.appearance_encoder.conv_out."
    q = take(["quant_conv.weight", "quant_conv.bias"])
    if q is not None and enc + "weight" in out.mapped:
        w, b = _fold_1x1_after(out.mapped[enc + "weight"], out.mapped[enc + "bias"], *q)
        srcs = out.sources[enc + "weight"] + ["quant_conv.weight", "quant_conv.bias"]
        out.mapped[enc + "weight"], out.mapped[enc + "bias"] = w, b
        out.sources[enc + "weight"] = out.sources[enc + "bias"] = srcs
    elif q is not None:
        pending.update({"quant_conv.weight": q[0], "quant_conv.bias": q[1]})
    if q is None and enc + "weight" in out.mapped:     # moments without their 1x1 conv: not the same map
        out.fidelity[enc + "weight"] = out.fidelity[enc + "bias"] = APPROX

    dec = "vae.decoder.conv_in."
    names = ["quant_ldmk_and_conv.weight", "quant_ldmk_and_conv.bias", "post_quant_conv.weight",
             "post_quant_conv.bias"]
    parts = take(names)
    if parts is not None and dec + "weight" in out.mapped:
        qa, qc, pa, pc = parts
        p2 = pa.reshape(pa.shape[0], -1)
        a = p2 @ qa.reshape(qa.shape[0], -1).to(p2.dtype)                      # (z, 2 z)
        c = p2 @ qc.to(p2.dtype) + pc.to(p2.dtype)
        w, b = _fold_1x1_before(out.mapped[dec + "weight"], out.mapped[dec + "bias"], a, c)
        out.mapped[dec + "weight"], out.mapped[dec + "bias"] = w, b
        for k in (dec + "weight", dec + "bias"):
            out.sources[k] = out.sources[k] + names
            out.fidelity[k] = APPROX
    else:
        if parts is not None:
            pending.update(dict(zip(names, parts)))
        for k in (dec + "weight", dec + "bias"):   # z channels in, ours reads appearance ++ motion
            if k in out.mapped:
                src = out.sources.pop(k)[0]
                del out.mapped[k], out.fidelity[k]
                out.unmapped.append(src)
                out.reasons[src] = "decoder.conv_in reads the fused latent; it maps only folded with " \
                                   "post_quant_conv and quant_ldmk_and_conv, absent here"
    for key in pending:                             # a fold whose partner is absent
        out.unmapped.append(key)
        out.reasons[key] = "folded into a neighbouring conv, which is absent from this state dict"
    return out


def map_authors_state_dict(state: dict[str, torch.Tensor], num_decoder_levels: int | None = None
                           ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename an authors'-layout state dict to ours. Returns (mapped, authors' keys that did not map).

    `state` is the `state_dict` of the authors' motion-generator checkpoint, of their VAE checkpoint, or
    both merged. The decoder's level count is inferred from `decoder.up.N` unless given.
    """
    result = map_authors(state, num_decoder_levels)
    return result.mapped, result.unmapped


def load_authors_state_dict(model: InstructAvatar, state: dict[str, torch.Tensor]) -> AuthorsMapping:
    """Copy every mappable authors' tensor into `model` (a partial load, e.g. to initialise fine-tuning).

    Raises WeightsError if a mapped tensor is not one of our keys or has another shape (wrong config).
    Our tensors without a source keep their values; `AuthorsMapping` tells which were filled.
    """
    result = map_authors(state)
    own = model.trainable_state_dict()
    unknown = sorted(k for k in result.mapped if k not in own)
    wrong = sorted(f"{k}: authors {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                   for k, v in result.mapped.items() if k in own and tuple(v.shape) != tuple(own[k].shape))
    if unknown or wrong:
        raise WeightsError(f"authors' weights do not fit config {model.cfg.name!r}: "
                           + "; ".join(([f"not in our model: {', '.join(unknown[:12])}"] if unknown else [])
                                       + ([f"shape mismatches: {', '.join(wrong[:12])}"] if wrong else [])))
    with torch.no_grad():
        for k, v in result.mapped.items():
            own[k].copy_(v.to(own[k].dtype))
    return result


def describe_mapping() -> str:
    """The rule table as Markdown (authors' pattern -> ours, fidelity, note); docs/weights.md embeds it."""
    rows = ["| authors' key (regex) | ours | fidelity | notes |", "|---|---|---|---|"]
    conformer_done = False
    for r in AUTHORS_KEY_RULES:
        if r.note in ("audio Conformer layer", "denoiser Conformer layer"):
            if not conformer_done:   # one row per Conformer part, for both stacks
                conformer_done = True
                for _, _, readable in _CONFORMER_PARTS:
                    a, b = readable.split(" -> ", 1)
                    rows.append(f"| `{{audio_encoder,backbone}}.conformer_layers.N.{a}` | "
                                f"`{{audio_encoder,denoiser}}.layers.N.{b}` | exact | torchaudio Conformer layer |")
            continue
        note = r.note + (f" [{r.transform}]" if r.transform else "")
        cell = (r.target or "—").replace("|", "\\|")
        rows.append(f"| `{r.pattern.replace('|', chr(92) + '|')}` | `{cell}` | {r.fidelity} | {note} |")
    rows += ["", "Our tensors with no authors' source:", ""]
    rows += [f"- `{k}`: {why}" for k, why in OURS_WITHOUT_SOURCE]
    return "\n".join(rows)


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


__all__ = ["WeightsError", "save_checkpoint", "load_checkpoint", "check_state_dict", "read_metadata",
           "map_authors_state_dict", "AUTHORS_KEY_RULES", "TEXT_ENCODER_PREFIX", "strip_prefix",
           "KeyRule", "AuthorsMapping", "map_authors", "load_authors_state_dict", "describe_mapping",
           "OURS_WITHOUT_SOURCE"]
