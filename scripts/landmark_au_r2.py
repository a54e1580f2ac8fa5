"""How much of the world's AU intensities a linear read-out recovers (held-out R^2, ridge) from the exact landmark
coordinates, against the landmark-dot images the VAE's motion encoder reads.

    .venv/bin/python scripts/landmark_au_r2.py [--frames 3000]

A diagnostic for the motion representation (docs/STATUS.md): frames drawn like the VAE's training targets
(training/vae_data.random_controls), train-split identities; the last 500 frames are the held-out part.
"""

from __future__ import annotations

import argparse

import numpy as np

from instructavatar.avatarworld.identity import identity, identity_ids
from instructavatar.avatarworld.render import FaceRenderer, landmark_image
from instructavatar.training.train_vae import AU_COLUMNS
from instructavatar.training.vae_data import random_controls


def ridge_r2(x: np.ndarray, y: np.ndarray, n_fit: int, lam: float) -> float:
    """Held-out R^2 (averaged over outputs' variance) of ridge regression fitted on the first n_fit rows."""
    x = x.astype(np.float64)
    xc = x - x[:n_fit].mean(0)
    y_mean = y[:n_fit].mean(0)
    if x.shape[1] > n_fit:                                           # dual form when features > samples
        a = np.linalg.solve(xc[:n_fit] @ xc[:n_fit].T + lam * np.eye(n_fit), y[:n_fit] - y_mean)
        pred = xc[n_fit:] @ (xc[:n_fit].T @ a) + y_mean
    else:
        w = np.linalg.solve(xc[:n_fit].T @ xc[:n_fit] + lam * np.eye(x.shape[1]), xc[:n_fit].T @ (y[:n_fit] - y_mean))
        pred = xc[n_fit:] @ w + y_mean
    return float(1 - ((pred - y[n_fit:]) ** 2).mean() / y[n_fit:].var(0).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng, renderer, ids = np.random.default_rng(args.seed), FaceRenderer(128), identity_ids("train")
    coords, dots64, dots128, aus = [], [], [], []
    for _ in range(args.frames):
        c = random_controls(rng)
        _, lm = renderer.render_with_landmarks(identity(int(rng.choice(ids))), c)
        coords.append(lm.ravel())
        dots64.append(landmark_image(lm, 128, 64).ravel() / 255.0)
        dots128.append(landmark_image(lm, 128, 128).ravel() / 255.0)
        aus.append(c[AU_COLUMNS])
    y, n_fit = np.array(aus), args.frames - 500
    for name, x in (("landmark coordinates", coords), ("64x64 dot image", dots64), ("128x128 dot image", dots128)):
        r2 = max(ridge_r2(np.array(x), y, n_fit, lam) for lam in (0.1, 1.0, 10.0, 100.0))
        print(f"{name}: held-out R^2 of the 16 AU intensities {r2:.3f}")


if __name__ == "__main__":
    main()
