"""Combine trained VAE and motion-generator states into one strict demo checkpoint (safetensors).

    instructavatar train package --vae runs/vae/state.pt --motion runs/motion/state.pt \
        --out instructavatar/assets/demo/demo.safetensors [--dtype fp16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..engine.config import get_config
from ..engine.loader import DEMO_WEIGHTS
from ..engine.model import InstructAvatar
from ..engine.weights import check_state_dict, save_checkpoint


def package(vae_state: Path, motion_state: Path, out: Path, config: str = "demo", dtype: str = "fp16") -> Path:
    cfg = get_config(config)
    model = InstructAvatar(cfg, pretrained_text=False)
    vae = torch.load(vae_state, map_location="cpu", weights_only=False)
    motion = torch.load(motion_state, map_location="cpu", weights_only=False)
    flags = motion.get("flags", {})
    if any(flags.get(k) for k in ("single_branch", "no_zero_gates")):
        raise SystemExit("this motion run is an ablation with a different structure; package the main run")
    state = {f"vae.{k}": v for k, v in vae["model"].items()}
    state.update(motion["model"])
    expected = model.trainable_state_dict()
    check_state_dict(expected, state, f"{vae_state} + {motion_state}")
    with torch.no_grad():
        for k, v in expected.items():
            v.copy_(state[k])
    meta = {"vae_step": vae.get("step"), "vae_minutes": round(vae.get("seconds", 0) / 60, 1),
            "motion_step": motion.get("step"), "motion_minutes": round(motion.get("seconds", 0) / 60, 1)}
    save_checkpoint(model, out, dtype=torch.float16 if dtype == "fp16" else None, extra_metadata=meta)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="instructavatar train package")
    ap.add_argument("--vae", default="runs/vae/state.pt")
    ap.add_argument("--motion", default="runs/motion/state.pt")
    ap.add_argument("--out", default=str(DEMO_WEIGHTS))
    ap.add_argument("--config", default="demo")
    ap.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")
    args = ap.parse_args(argv)
    path = package(Path(args.vae), Path(args.motion), Path(args.out), args.config, args.dtype)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
