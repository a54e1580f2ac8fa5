"""A probe that reads motion latents directly: latent -> AU activity and intensity, head pose, mouth, eyes, gaze.

The frame evaluators (avatarworld/evaluators.py) judge what a viewer sees, so they measure the motion
generator and the VAE decoder together. This probe measures the motion generator alone: it is trained on
ground truth only (the frozen motion encoder's latents of the world's landmark images, paired with the
controls that drew them), never on model output, and then reads the latents the generator emits. Its
predictions have the same keys as `Evaluators.predict`, and the same context rules (AU25/AU26 from the mouth
opening beyond the speech jaw, AU43/AU45 from eye-closure duration) turn them into AU activity, so
`avatarworld.metrics` scores them exactly like frames.

    instructavatar train probe --data data/motion --out instructavatar/assets/demo/latent_probe.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..avatarworld import controls as C
from ..avatarworld.evaluators import resolve_eye_aus, resolve_mouth_aus

A = len(C.AU_IDS)
OUTPUTS = {"au_logit": A, "au_intensity": A, "pose": 3, "mouth": 1, "eyes": 2, "gaze": 2}
POSE_DEG = 30.0                     # pose targets are divided by this


class LatentProbe(nn.Module):
    def __init__(self, motion_dim: int, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(motion_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, sum(OUTPUTS.values())))

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(OUTPUTS, self.net(z).split(list(OUTPUTS.values()), dim=-1)))


def targets(controls: np.ndarray) -> dict[str, np.ndarray]:
    c = np.asarray(controls, np.float32)
    return {"au_logit": C.active_aus(c).astype(np.float32), "au_intensity": c[:, C.AU_SLICE],
            "pose": c[:, C.ROTATION_SLICE] / POSE_DEG, "mouth": C.mouth_opening(c)[:, None],
            "eyes": np.stack(C.eye_closure(c), 1), "gaze": c[:, C.GAZE_SLICE]}


def probe_loss(out: dict[str, torch.Tensor], tgt: dict[str, torch.Tensor]) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(out["au_logit"], tgt["au_logit"])
    for k in ("au_intensity", "pose", "mouth", "eyes", "gaze"):
        loss = loss + F.smooth_l1_loss(out[k], tgt[k], beta=0.05)
    return loss


def train_probe(latents: np.ndarray, controls: np.ndarray, steps: int = 3000, batch: int = 512, lr: float = 2e-3,
                seed: int = 0) -> LatentProbe:
    """latents (N, M) normalised motion latents, controls (N, NUM_CONTROLS) that drew them."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    probe = LatentProbe(latents.shape[1])
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    z = torch.from_numpy(np.asarray(latents, np.float32))
    tgt = {k: torch.from_numpy(v) for k, v in targets(controls).items()}
    for _ in range(steps):
        idx = torch.randint(0, len(z), (batch,), generator=g)
        loss = probe_loss(probe(z[idx]), {k: v[idx] for k, v in tgt.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return probe.eval()


@torch.no_grad()
def probe_predict(probe: LatentProbe, motion: np.ndarray, speech_jaw: np.ndarray | None = None,
                  mouth_au_table: dict | None = None) -> dict[str, np.ndarray]:
    """(T, M) normalised motion latents of one clip -> the keys of `Evaluators.predict` (pose in degrees),
    with the evaluators' context rules applied."""
    out = probe(torch.from_numpy(np.asarray(motion, np.float32)))
    pred = {"au_prob": torch.sigmoid(out["au_logit"]).numpy(), "au_intensity": out["au_intensity"].numpy(),
            "pose": out["pose"].numpy() * POSE_DEG, "eyes": out["eyes"].numpy(), "gaze": out["gaze"].numpy(),
            "mouth": np.concatenate([out["mouth"].numpy(), np.zeros((len(motion), 2), np.float32)], 1)}
    pred = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in pred.items()}
    resolve_eye_aus(pred)
    if speech_jaw is not None and mouth_au_table:
        resolve_mouth_aus(pred, speech_jaw, mouth_au_table)
    return pred


def save_probe(probe: LatentProbe, path: Path, info: dict) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in probe.state_dict().items()}, str(path),
              metadata={"format": "instructavatar-latent-probe", "info": json.dumps(info)})
    return path


def load_probe(path: str | Path) -> LatentProbe:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "instructavatar-latent-probe":
        raise ValueError(f"{path}: not a latent-probe file")
    sd = load_file(str(path))
    probe = LatentProbe(sd["net.0.weight"].shape[1], sd["net.0.weight"].shape[0])
    probe.load_state_dict(sd, strict=True)
    return probe.eval()


def main(argv: list[str] | None = None) -> int:
    from .motion_data import MotionData

    ap = argparse.ArgumentParser(prog="instructavatar train probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/motion")
    ap.add_argument("--out", default="runs/latent_probe.safetensors")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    data = MotionData(Path(args.data))
    ctrl = data.controls
    # hold out 10% of the clips to report the probe's own accuracy
    n = len(data)
    val = np.zeros(len(ctrl), bool)
    for c in range(n - n // 10, n):
        val[data.frame_offsets[c]:data.frame_offsets[c + 1]] = True
    probe = train_probe(data.latents[~val], ctrl[~val], steps=args.steps)
    pred = probe_predict(probe, data.latents[val])
    t = ctrl[val]
    active = C.active_aus(t)
    det = pred["au_prob"] >= 0.5
    tp, fp, fn = (det & active).sum(), (det & ~active).sum(), (~det & active).sum()
    info = {"steps": args.steps, "train_frames": int((~val).sum()), "val_frames": int(val.sum()),
            "val_au_f1_micro": float(2 * tp / max(1, 2 * tp + fp + fn)),
            "val_pose_mae_deg": float(np.abs(pred["pose"] - t[:, C.ROTATION_SLICE]).mean()),
            "val_mouth_mae": float(np.abs(pred["mouth"][:, 0] - C.mouth_opening(t)).mean()),
            "seconds": round(time.time() - t0, 1)}
    probe = train_probe(data.latents, ctrl, steps=args.steps)      # the shipped probe sees all clips
    save_probe(probe, Path(args.out), info)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
