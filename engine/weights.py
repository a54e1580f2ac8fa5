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
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .model import TEXT_ENCODER_PREFIX, InstructAvatar

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
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = sorted(f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
                        for k in set(expected) & set(given) if tuple(given[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or mismatched:
        def show(items):
            return ", ".join(items[:12]) + (f" ... (+{len(items) - 12} more)" if len(items) > 12 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {show(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {show(mismatched)}")
        raise WeightsError(f"weights {source} do not match the model; " + "; ".join(parts))


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
# Where our structure matches the authors' training code (wangyuchi369/InstructAvatar), their names map
# onto ours by these rules, applied in order. Documented in docs/weights.md; `map_authors_state_dict`
# applies them and reports what did not map.
AUTHORS_KEY_RULES: list[tuple[str, str]] = [
    # Conformer layers (torchaudio layout) inside the denoiser backbone and the audio encoder.
    (r"^model\.backbone\.conformer_layers\.(\d+)\.", r"denoiser.layers.\1."),
    (r"^model\.audio_encoder\.conformer_layers\.(\d+)\.", r"audio_encoder.layers.\1."),
    (r"\.ffn(\d)\.sequential\.0\.", r".ffn\1.norm."),
    (r"\.ffn(\d)\.sequential\.1\.", r".ffn\1.fc1."),
    (r"\.ffn(\d)\.sequential\.4\.", r".ffn\1.fc2."),
    (r"\.self_attn_layer_norm\.", r".attn.norm."),
    (r"\.self_attn\.in_proj_", r".attn.qkv."),
    (r"\.self_attn\.out_proj\.", r".attn.out."),
    (r"\.conv_module\.layer_norm\.", r".conv.norm."),
    (r"\.conv_module\.sequential\.0\.", r".conv.pointwise_in."),
    (r"\.conv_module\.sequential\.2\.", r".conv.depthwise."),
    (r"\.conv_module\.sequential\.3\.", r".conv.batch_norm."),
    (r"\.conv_module\.sequential\.5\.", r".conv.pointwise_out."),
    (r"\.final_layer_norm\.", r".final_norm."),
    # LDM autoencoder naming is kept as is (encoder.down.N.block.M..., decoder.up.N...), so the VAE maps
    # by prefix. Note: LDM stores decoder.up in high-to-low resolution order; ours is built low-to-high.
    (r"^first_stage_model\.encoder\.", r"vae.appearance_encoder."),
    (r"^first_stage_model\.ldmk_encoder\.", r"vae.motion_encoder."),
    (r"^first_stage_model\.decoder\.", r"vae.decoder."),
]


def map_authors_state_dict(state: dict[str, torch.Tensor], num_decoder_levels: int | None = None
                           ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename an authors'-layout state dict to ours. Returns (mapped, names that no rule touched)."""
    mapped, untouched = {}, []
    for key, value in state.items():
        new = key
        for pattern, repl in AUTHORS_KEY_RULES:
            new = re.sub(pattern, repl, new)
        if num_decoder_levels is not None:
            m = re.match(r"^vae\.decoder\.up\.(\d+)\.(.*)$", new)
            if m:
                new = f"vae.decoder.up.{num_decoder_levels - 1 - int(m.group(1))}.{m.group(2)}"
        if new == key:
            untouched.append(key)
        mapped[new] = value
    return mapped, untouched


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


__all__ = ["WeightsError", "save_checkpoint", "load_checkpoint", "check_state_dict", "read_metadata",
           "map_authors_state_dict", "AUTHORS_KEY_RULES", "TEXT_ENCODER_PREFIX", "strip_prefix"]
