"""Shared training plumbing: run directories, resumable state, logging, learning-rate schedule."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch


class RunDir:
    """runs/<name>/: state.pt (model + optimizer + step + RNG, written atomically), log.jsonl, config.json."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.state_path = self.path / "state.pt"
        self.log_path = self.path / "log.jsonl"

    def save_state(self, state: dict) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.state_path)

    def load_state(self) -> dict | None:
        if not self.state_path.exists():
            return None
        return torch.load(self.state_path, map_location="cpu", weights_only=False)

    def log(self, record: dict) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def write_json(self, name: str, data: dict) -> None:
        (self.path / name).write_text(json.dumps(data, indent=2, default=str))


VAE_STATS_BUFFERS = {"motion_shift", "motion_scale"}


def load_vae_weights(vae, weights: dict, new_parts_ok: bool = False, fresh: tuple[str, ...] = ()) -> None:
    """Load a VAE training state's weights; states written before the motion-statistics buffers existed
    lack only those (they stay identity: VAE training works on raw latents). With `new_parts_ok`, weights of a
    plain VAE may also start a warp VAE: its warp parts keep their zero initialisation. Parameters under the
    `fresh` prefixes may be missing (they keep their initialisation). The decoder's detail head may always be
    missing: it starts at zero, so a state written without it is the same model."""
    missing, unexpected = vae.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith(vae.DETAIL_PART)]
    if new_parts_ok:
        missing = [k for k in missing if not k.startswith(vae.WARP_PARTS)]
    if fresh:
        missing = [k for k in missing if not k.startswith(fresh)]
    if unexpected or set(missing) - VAE_STATS_BUFFERS:
        raise RuntimeError(f"VAE state does not match the model: missing {missing}, unexpected {unexpected}")


def init_weights(path: str, prefix: str) -> dict:
    """Weights to start a fresh run from: a packaged checkpoint (safetensors; keys under `prefix`, e.g.
    "vae.") or another run's state.pt. Optimiser state is not carried over."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return {k[len(prefix):]: v.float() for k, v in load_file(path).items() if k.startswith(prefix)}
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state["model"] if "model" in state else state


def rng_state(rng: np.random.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def restore_rng(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])


def cosine_lr(step: int, total: int, base: float, warmup: int = 200, floor: float = 0.05) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


class Stopwatch:
    def __init__(self, budget_minutes: float | None):
        self.t0 = time.time()
        self.budget = None if budget_minutes is None else budget_minutes * 60

    @property
    def elapsed(self) -> float:
        return time.time() - self.t0

    def expired(self) -> bool:
        return self.budget is not None and self.elapsed >= self.budget


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [-1, 1] (peak-to-peak 2)."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(4.0 / mse)
