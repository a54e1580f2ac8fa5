"""Combine trained VAE and motion-generator states into one strict demo checkpoint (safetensors).

    instructavatar train package --vae runs/vae/state.pt --motion runs/motion/state.pt \
        --out instructavatar/assets/demo/demo.safetensors [--dtype fp16]
    instructavatar train package --motion-only runs/motion_audio_only/state.pt \
        --out instructavatar/assets/demo/audio_only.safetensors

`--motion-only` writes a motion generator alone (audio encoder + denoiser): the quality tables' audio-only lower
bound ships that way, so Table 1 reruns from a clean clone with the checkpoint's VAE (`train quality main`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..engine.config import get_config
from ..engine.loader import DEMO_WEIGHTS
from ..engine.modules.model import InstructAvatar
from ..engine.modules.vae import VAE
from ..engine.modules.weights import check_state_dict, read_metadata, save_checkpoint

FINGERPRINT_NAME = "fingerprint.json"
AUDIO_ONLY_WEIGHTS = DEMO_WEIGHTS.with_name("audio_only.safetensors")
MOTION_FORMAT = "instructavatar-motion-v1"
MOTION_PREFIXES = ("audio_encoder.", "denoiser.")


def combined_state(vae: dict, motion: dict) -> dict:
    """One model state dict from a VAE training state and a motion training state: the VAE weights, the
    latent statistics the motion run trained on (vae.motion_shift / motion_scale), the motion weights."""
    state = {f"vae.{k}": v for k, v in vae["model"].items()}
    state["vae.motion_shift"] = motion["motion_stats"]["shift"]
    state["vae.motion_scale"] = motion["motion_stats"]["scale"]
    state.update(motion["model"])
    return state


def with_zero_detail(expected: dict, state: dict) -> dict:
    """A combined state from a VAE trained without the decoder's detail head (`train vae --detail off`, or
    before it existed): the head's weights filled with the zeros it starts from, which is the same model."""
    part = "vae." + VAE.DETAIL_PART
    if any(k.startswith(part) for k in state):
        return state
    return {**state, **{k: torch.zeros_like(v) for k, v in expected.items() if k.startswith(part)}}


def refuse_ablation(flags: dict, what: str = "package the main run") -> None:
    """Ablations with another structure (single branch, no zero gates) do not load into the config's model."""
    if any(flags.get(k) for k in ("single_branch", "no_zero_gates")):
        raise SystemExit(f"this motion run is an ablation with a different structure; {what}")


def motion_state_from_checkpoint(path: str | Path) -> dict:
    """A packaged checkpoint's motion generator as a motion training state (weights + the latent statistics it
    was trained with), so that a decoder-side fine-tune (`train vae --keep-latents`) is packaged with the
    shipped generator: `train package --vae RUN/state.pt --motion demo.safetensors`."""
    from safetensors.torch import load_file

    w, meta = load_file(str(path)), read_metadata(path)
    return {"model": {k: v.float() for k, v in w.items() if k.startswith(MOTION_PREFIXES)},
            "motion_stats": {"shift": w["vae.motion_shift"].float(), "scale": w["vae.motion_scale"].float()},
            "step": meta.get("motion_step"), "seconds": 60 * float(meta.get("motion_minutes", 0)), "flags": {}}


def package(vae_state: Path, motion_state: Path, out: Path, config: str = "demo", dtype: str = "fp16") -> Path:
    cfg = get_config(config)
    model = InstructAvatar(cfg, pretrained_text=False)
    vae = torch.load(vae_state, map_location="cpu", weights_only=False)
    if str(motion_state).endswith(".safetensors"):
        motion = motion_state_from_checkpoint(motion_state)
    else:
        motion = torch.load(motion_state, map_location="cpu", weights_only=False)
    refuse_ablation(motion.get("flags", {}))
    expected = model.trainable_state_dict()
    state = with_zero_detail(expected, combined_state(vae, motion))
    check_state_dict(expected, state, f"{vae_state} + {motion_state}")
    with torch.no_grad():
        for k, v in expected.items():
            v.copy_(state[k])
    meta = {"vae_step": vae.get("step"), "vae_minutes": round(vae.get("seconds", 0) / 60, 1),
            "motion_step": motion.get("step"), "motion_minutes": round(motion.get("seconds", 0) / 60, 1)}
    save_checkpoint(model, out, dtype=torch.float16 if dtype == "fp16" else None, extra_metadata=meta)
    return out


def package_motion_only(motion_state: Path, out: Path, config: str = "demo") -> Path:
    """A motion training state's generator alone (fp16), with its training flags and steps in the metadata."""
    from safetensors.torch import save_file

    cfg = get_config(config)
    motion = torch.load(motion_state, map_location="cpu", weights_only=False)
    flags = motion.get("flags", {})
    refuse_ablation(flags, f"it cannot load into the {config} config")
    expected = {k: v for k, v in InstructAvatar(cfg, pretrained_text=False).trainable_state_dict().items()
                if k.startswith(MOTION_PREFIXES)}
    check_state_dict(expected, motion["model"], str(motion_state))
    tensors = {k: v.detach().cpu().half().contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in motion["model"].items()}
    meta = {"format": MOTION_FORMAT, "config": cfg.name, "flags": json.dumps(flags),
            "motion_step": str(motion.get("step")), "motion_minutes": str(round(motion.get("seconds", 0) / 60, 1)),
            "motion_shift": json.dumps(motion["motion_stats"]["shift"].tolist()),
            "motion_scale": json.dumps(motion["motion_stats"]["scale"].tolist())}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=meta)
    return out


def load_motion_only(model: InstructAvatar, path: str | Path) -> dict:
    """Replace `model`'s motion generator by the one in `path` (written by `package_motion_only`), strictly.
    The generator must have been trained on the latents of `model`'s VAE: its latent statistics must match.
    Returns the file's metadata."""
    import numpy as np
    from safetensors.torch import load_file

    from ..engine.modules.weights import WeightsError

    meta = read_metadata(path)
    if meta.get("format") != MOTION_FORMAT:
        raise WeightsError(f"{path}: not a motion-generator file (format {meta.get('format')!r}); write one with "
                           "`instructavatar train package --motion-only RUN/state.pt`")
    expected = {k: v for k, v in model.trainable_state_dict().items() if k.startswith(MOTION_PREFIXES)}
    state = load_file(str(path))
    check_state_dict(expected, state, str(path))
    shift, scale = (np.array(json.loads(meta[k]), np.float32) for k in ("motion_shift", "motion_scale"))
    if not (np.allclose(shift, model.vae.motion_shift.numpy(), atol=1e-2)
            and np.allclose(scale, model.vae.motion_scale.numpy(), rtol=1e-2)):
        raise WeightsError(f"{path}: trained on another VAE's motion latents (latent statistics differ)")
    with torch.no_grad():
        for k, v in expected.items():
            v.copy_(state[k])
    return meta


FINGERPRINT_INSTRUCTION = "Talk happily and raise your eyebrows."
FINGERPRINT_FRAMES = 20           # two chunks: the first (no prefix) and one that continues it
FINGERPRINT_STEPS = 4


def fingerprint(weights: str | Path | None = None) -> dict:
    """A fixed-seed generation from the checkpoint, reduced to numbers a test can compare: the bundled
    portrait and speech (first 0.8 s), FINGERPRINT_INSTRUCTION, 4 DDIM steps, the config's instruction
    guidance, seed 0; frames mean-pooled to
    8x8 per channel and the emitted motion latents."""
    import numpy as np

    from ..demo import DEMO_PORTRAIT, DEMO_SPEECH
    from ..engine.loader import load_pipeline
    from ..engine.media.audio_io import load_audio, normalize_loudness

    pipe = load_pipeline("demo", weights=weights, steps=FINGERPRINT_STEPS, threads=1)
    cfg = pipe.cfg
    audio = normalize_loudness(load_audio(DEMO_SPEECH, cfg.media.sample_rate, cfg.max_audio_seconds))
    audio = audio[: FINGERPRINT_FRAMES * cfg.media.samples_per_frame]
    session, _ = pipe.new_session(DEMO_PORTRAIT, FINGERPRINT_INSTRUCTION, seed=0, keep_motion=True)
    frames = np.concatenate([session.push_audio(audio), session.flush()])
    s = cfg.media.image_size
    pooled = frames.reshape(len(frames), 8, s // 8, 8, s // 8, 3).mean(axis=(2, 4))
    motion = np.concatenate(session.motion_log)
    return {"instruction": FINGERPRINT_INSTRUCTION, "steps": FINGERPRINT_STEPS, "guidance": pipe.guidance,
            "frames": len(frames),
            "pooled_frames": np.round(pooled, 2).tolist(), "motion": np.round(motion, 4).tolist()}


def write_fingerprint(weights: Path, out: Path) -> Path:
    out.write_text(json.dumps(fingerprint(weights)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="instructavatar train package")
    ap.add_argument("--vae", default="runs/vae/state.pt")
    ap.add_argument("--motion-only", default=None, metavar="STATE",
                    help="write this motion state's generator alone to --out "
                         "(default: assets/demo/audio_only.safetensors)")
    ap.add_argument("--motion", default="runs/motion/state.pt")
    ap.add_argument("--out", default=None, help="default: assets/demo/demo.safetensors (audio_only.safetensors "
                                                 "with --motion-only)")
    ap.add_argument("--config", default="demo")
    ap.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")
    args = ap.parse_args(argv)
    if args.motion_only:
        path = package_motion_only(Path(args.motion_only), Path(args.out or AUDIO_ONLY_WEIGHTS), args.config)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0
    args.out = args.out or str(DEMO_WEIGHTS)
    path = package(Path(args.vae), Path(args.motion), Path(args.out), args.config, args.dtype)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    fp = write_fingerprint(path, path.with_name(FINGERPRINT_NAME))
    print(f"wrote {fp} (the fixed-seed generation tests/test_demo_checkpoint.py compares with)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
