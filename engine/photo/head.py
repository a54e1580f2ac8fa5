"""Photo mode's geometry head at inference: normalised motion latents -> world landmark displacements + pose.

A three-layer MLP trained by `instructavatar train photo-head` (training/photo_head.py) on the world's exact
geometry, run here in numpy (float32) so the photo path needs no torch. The file also carries the world's
canonical neutral landmarks (interocular units) that the rig (engine/photo/rig.py) measures contours on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import instructavatar

HEAD_FILE = Path(instructavatar.__file__).resolve().parent / "assets" / "demo" / "photo_head.safetensors"
POSE_DEG = 30.0


@dataclass(frozen=True)
class GeometryHead:
    weights: tuple[tuple[np.ndarray, np.ndarray], ...]    # ((in, out) weight, (out,) bias) per layer
    neutral: np.ndarray                                     # (129, 2) canonical world neutral, interocular units

    @property
    def motion_dim(self) -> int:
        return self.weights[0][0].shape[0]

    def __call__(self, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """latents (N, M) normalised motion latents -> expression (N, 129, 2) interocular units, pose (N, 3) deg."""
        h = np.asarray(latents, np.float32)
        if h.ndim != 2 or h.shape[1] != self.motion_dim:
            raise ValueError(f"the photo head reads motion latents (N, {self.motion_dim}), got {h.shape}")
        for i, (w, b) in enumerate(self.weights):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = h / (1.0 + np.exp(-h))                  # SiLU
        n = len(self.neutral)
        return h[:, :2 * n].reshape(-1, n, 2), h[:, 2 * n:2 * n + 3] * POSE_DEG


def load_head(path: str | Path | None = None) -> GeometryHead:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    p = Path(path) if path else HEAD_FILE
    if not p.is_file():
        raise FileNotFoundError(f"photo head not found: {p} (train one: instructavatar train photo-head)")
    with safe_open(str(p), "np") as f:
        if (f.metadata() or {}).get("format") != "instructavatar-photo-head":
            raise ValueError(f"{p}: not a photo-head file")
    sd = load_file(str(p))
    layers = tuple((sd[f"w{i}"].astype(np.float32), sd[f"b{i}"].astype(np.float32))
                   for i in range(sum(k.startswith("w") for k in sd)))
    return GeometryHead(weights=layers, neutral=sd["neutral"].astype(np.float32))
