"""Train the photo-mode geometry head: motion latent -> the world's landmark displacements and head pose.

Photo mode (engine/photo/) animates a real photograph by warping it, so it needs the motion as geometry.
The world's renderer gives that geometry exactly: for a frame with controls c of identity i,

    expression = (landmarks(i, c with pose zeroed) - landmarks(i, neutral)) / interocular distance   (129, 2)
    pose       = (yaw, pitch, roll) / 30 degrees                                                       (3,)

and the frozen VAE motion encoder gives the latent the generator would emit for c (the latents of the
world's landmarks, the same thing the latent probe reads). A small MLP learns latent -> (expression, pose);
it runs in numpy at inference (engine/photo/head.py), so the photo path stays torch-free.

    instructavatar train photo-head --out instructavatar/assets/demo/photo_head.safetensors

Resumable: the rendered training pairs are cached in `--work` (data.npz); a run with an existing cache only
trains. Training pairs follow the VAE's training mix (training/vae_data.random_controls: emotions with
speech, motion instructions, random controls) on training identities; a held-out 10% reports the fit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..avatarworld.controls import INDEX, POSE_SLICE, ROTATION_SLICE, neutral
from ..avatarworld.identity import identity, identity_ids
from ..avatarworld.render import LANDMARK_REGIONS, NUM_LANDMARKS, FaceRenderer

POSE_DEG = 30.0


def interocular(points: np.ndarray) -> float:
    """Distance between the two eye-contour centres of world landmarks (129, 2)."""
    return float(np.linalg.norm(points[LANDMARK_REGIONS["eye_l"]].mean(0) - points[LANDMARK_REGIONS["eye_r"]].mean(0)))


def geometry_targets(renderer: FaceRenderer, ident, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(expression (129, 2) in interocular units, pose (3,) / 30 deg) of one frame: the head's targets."""
    still = controls.copy()
    still[POSE_SLICE] = 0.0
    base = renderer.landmarks(ident, neutral())
    expr = (renderer.landmarks(ident, still) - base) / interocular(base)
    return expr.astype(np.float32), (controls[ROTATION_SLICE] / POSE_DEG).astype(np.float32)


def canonical_neutral(count: int = 64) -> np.ndarray:
    """(129, 2) the world's mean neutral landmarks, centred on the eye midpoint, in interocular units: where the
    photo rig measures arc lengths along the world's contours and the world's eye opening."""
    renderer = FaceRenderer(128)
    out = []
    for i in identity_ids("train")[:count]:
        p = renderer.landmarks(identity(i), neutral()).astype(np.float64)
        mid = (p[LANDMARK_REGIONS["eye_l"]].mean(0) + p[LANDMARK_REGIONS["eye_r"]].mean(0)) / 2
        out.append((p - mid) / interocular(p))
    return np.mean(out, 0).astype(np.float32)


def make_pairs(n: int, seed: int, image_size: int, vae_cfg, encode, progress=None) -> dict[str, np.ndarray]:
    """n training pairs: latents (n, M), expression (n, 129, 2), pose (n, 3). `encode(points)` = VAE latents."""
    from .vae_data import motion_input, random_controls

    rng = np.random.default_rng(seed)
    renderer = FaceRenderer(image_size)
    ids = identity_ids("train")
    pts, expr, pose = [], [], []
    for k in range(n):
        ident = identity(int(rng.choice(ids)))
        c = random_controls(rng)
        if rng.random() < 0.15:                      # plenty of near-neutral frames: photo mode's resting face
            c = c * 0.0
            c[INDEX["speech_jaw"]] = rng.uniform(0, 0.3)
        pts.append(renderer.landmarks(ident, c))
        e, p = geometry_targets(renderer, ident, c)
        expr.append(e)
        pose.append(p)
        if progress and (k + 1) % 2000 == 0:
            progress(k + 1)
    points = np.stack(pts)
    latents = np.concatenate([encode(motion_input(points[i:i + 512], image_size, vae_cfg))
                              for i in range(0, n, 512)])
    return {"latents": latents.astype(np.float32), "expression": np.stack(expr), "pose": np.stack(pose)}


def train_head(data: dict[str, np.ndarray], steps: int, hidden: int = 256, lr: float = 2e-3, seed: int = 0,
               batch: int = 256):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    z = torch.from_numpy(data["latents"])
    y = torch.from_numpy(np.concatenate([data["expression"].reshape(len(z), -1), data["pose"]], 1))
    m_in, m_out = z.shape[1], y.shape[1]
    net = nn.Sequential(nn.Linear(m_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                        nn.Linear(hidden, m_out))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    w = torch.ones(m_out)
    w[-3:] = 0.3                                      # pose is read in units of 30 degrees
    for _ in range(steps):
        idx = torch.randint(0, len(z), (batch,), generator=g)
        loss = (torch.nn.functional.smooth_l1_loss(net(z[idx]), y[idx], reduction="none", beta=0.02) * w).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def export_weights(net) -> dict[str, np.ndarray]:
    """The MLP as named float16 arrays (engine/photo/head.py reads them)."""
    layers = [m for m in net if hasattr(m, "weight")]
    out = {}
    for i, layer in enumerate(layers):
        out[f"w{i}"] = np.ascontiguousarray(layer.weight.detach().numpy().T, np.float16)     # (in, out)
        out[f"b{i}"] = layer.bias.detach().numpy().astype(np.float16)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="instructavatar train photo-head", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/photo_head.safetensors")
    ap.add_argument("--work", default="runs/photo_head", help="cache of the rendered training pairs (resumable)")
    ap.add_argument("--pairs", type=int, default=24000)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import torch
    from safetensors.numpy import save_file

    from ..engine.config import get_config
    from ..engine.loader import build_model

    torch.set_num_threads(args.threads)
    t0 = time.time()
    cfg = get_config("demo")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cache = work / f"data_{args.pairs}_{args.seed}.npz"
    if cache.is_file():
        data = dict(np.load(cache))
        print(f"pairs: {cache} (cached)")
    else:
        model = build_model(cfg)

        def encode(points):
            with torch.inference_mode():
                return model.vae.encode_motion(torch.from_numpy(points)).numpy()

        data = make_pairs(args.pairs, args.seed, cfg.media.image_size, cfg.vae, encode,
                          progress=lambda k: print(f"  rendered {k}/{args.pairs} ({time.time() - t0:.0f}s)"))
        np.savez(cache, **data)
    n_val = len(data["latents"]) // 10
    train = {k: v[n_val:] for k, v in data.items()}
    net = train_head(train, args.steps, seed=args.seed)
    with torch.no_grad():
        pred = net(torch.from_numpy(data["latents"][:n_val])).numpy()
    e_err = np.abs(pred[:, :-3] - data["expression"][:n_val].reshape(n_val, -1)).mean()
    e_scale = np.abs(data["expression"][:n_val]).mean()
    p_err = np.abs(pred[:, -3:] - data["pose"][:n_val]).mean(0) * POSE_DEG
    mouth = LANDMARK_REGIONS["mouth_inner"]
    gap_t = data["expression"][:n_val][:, mouth[12], 1] - data["expression"][:n_val][:, mouth[4], 1]
    pe = pred[:, :-3].reshape(n_val, NUM_LANDMARKS, 2)
    gap_p = pe[:, mouth[12], 1] - pe[:, mouth[4], 1]
    info = {"pairs": len(data["latents"]), "steps": args.steps, "seed": args.seed,
            "val_expression_mae_iod": float(e_err), "val_expression_mean_abs_iod": float(e_scale),
            "val_pose_mae_deg": [float(x) for x in p_err],
            "val_mouth_gap_corr": float(np.corrcoef(gap_t, gap_p)[0, 1]),
            "seconds": round(time.time() - t0, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({**export_weights(net), "neutral": canonical_neutral()}, str(out),
              metadata={"format": "instructavatar-photo-head", "info": json.dumps(info)})
    print(json.dumps(info, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
