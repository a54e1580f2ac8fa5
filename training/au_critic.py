"""A training-only AU critic: a small frame network, trained here on renderer output, whose reading of the
decoded frame's action units is a perceptual loss for the VAE decoder (`train vae --au-critic FILE`).

    instructavatar train critic --out runs/au_critic.safetensors [--frames 40000 --steps 4000]

Why: pixel losses let the decoder leave out what is small in the frame but carries an AU (cheek blush, the
brow furrow, nose wrinkles, the chin crease, the lip corners): reconstruction of the truth's own motion scored
clip AU_F1 0.56 on the video where the renderer's frames score 0.96 (docs/STATUS.md). The critic tells the
decoder, per frame, which of the single-frame-visible AUs (`evaluators.VISIBLE_AUS`) a viewer would not see.

It is kept apart from the evaluators on purpose: the evaluators measure the model, so nothing is trained against
them. The critic has its own architecture (`CRITIC_CONFIG`: other widths, strides and hidden size), seed and frames
(128 px renders of train identities: half with independent balanced AUs, half drawn like the VAE's own targets),
and the decoder sees it only through random photometric augmentation (`train_evaluators.augment`), so that what
lowers the loss is a visible AU rather than a pattern one network happens to respond to. Whether the AUs became
visible is then judged by the evaluators and, independently of any network, by the PSNR on the pixels the AUs
change (`train vae` eval, "on the AUs' pixels").
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..avatarworld import controls as C
from ..avatarworld.evaluators import VISIBLE_AUS, EvaluatorConfig, EvaluatorNet, face_crop
from ..avatarworld.train_evaluators import augment  # the evaluators' training augmentation, one definition

FORMAT = "instructavatar-au-critic-v1"
CRITIC_CONFIG = EvaluatorConfig(widths=(24, 48, 96, 160), strides=(2, 2, 2, 2), hidden=160)
VISIBLE_COLUMNS: list[int] = [C.AU_IDS.index(a) for a in VISIBLE_AUS]    # among the critic's AU outputs


def critic_frames(n: int, seed: int, size: int = 128, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(n, s, s, 3) uint8 critic inputs and their (n, NUM_CONTROLS) controls: train identities, half with
    independent balanced AUs (`train_evaluators.random_controls`), half drawn like the VAE's targets."""
    from ..avatarworld import identity
    from ..avatarworld.train_evaluators import random_controls as balanced_controls
    from ..avatarworld.train_evaluators import render_inputs
    from .vae_data import random_controls as vae_controls

    rng = np.random.default_rng([seed, 11])
    half = n // 2
    ctrl = np.concatenate([balanced_controls(half, rng), np.stack([vae_controls(rng) for _ in range(n - half)])])
    ids = rng.choice(np.array(identity.identity_ids("train")), n)
    return render_inputs(ids, ctrl, np.full(n, size), CRITIC_CONFIG, workers), ctrl.astype(np.float32)


def train_critic(n_frames: int, steps: int, seed: int, batch: int = 64, lr: float = 2e-3,
                 workers: int = 1) -> tuple[EvaluatorNet, dict]:
    from ..avatarworld.train_evaluators import train

    t0 = time.time()
    inputs, ctrl = critic_frames(n_frames, seed, workers=workers)
    t1 = time.time()
    net = train(inputs, ctrl, CRITIC_CONFIG, steps, batch, lr, seed, log_every=250)
    return net, {"frames": n_frames, "steps": steps, "seed": seed, "render_s": t1 - t0, "train_s": time.time() - t1}


@torch.no_grad()
def critic_f1(net: EvaluatorNet, n: int, seed: int) -> dict[str, float]:
    """Per-frame F1 of the visible AUs on fresh frames of held-out identities (a sanity check of the critic)."""
    from ..avatarworld import identity
    from ..avatarworld.train_evaluators import random_controls as balanced_controls
    from ..avatarworld.train_evaluators import render_inputs

    rng = np.random.default_rng([seed, 13])
    ctrl = balanced_controls(n, rng)
    ids = rng.choice(np.array(identity.identity_ids("heldout")), n)
    x = torch.from_numpy(render_inputs(ids, ctrl, np.full(n, 128), CRITIC_CONFIG, 1)).permute(0, 3, 1, 2).float()
    pred = (net.eval()(x / 255.0)["au_logit"][:, VISIBLE_COLUMNS] > 0).numpy()
    true = ctrl[:, C.AU_SLICE][:, VISIBLE_COLUMNS] >= C.AU_ACTIVE_THRESHOLD
    tp, fp, fn = (pred & true).sum(), (pred & ~true).sum(), (~pred & true).sum()
    return {"visible_au_f1": float(2 * tp / max(2 * tp + fp + fn, 1)), "check_frames": n}


def save_critic(net: EvaluatorNet, path: str | Path, info: dict) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(sd, str(path), metadata={"format": FORMAT, "config": json.dumps(asdict(net.cfg)),
                                       "au_ids": json.dumps(list(C.AU_IDS)), "info": json.dumps(info)})
    return path


def load_critic(path: str | Path, device: str | torch.device = "cpu") -> EvaluatorNet:
    """The critic, frozen and in eval mode (strict load; refuses the evaluators' checkpoint)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an AU critic (format {meta.get('format')!r}); train one with "
                         "`instructavatar train critic` (the evaluators are never a training signal)")
    if json.loads(meta["au_ids"]) != list(C.AU_IDS):
        raise ValueError(f"{path}: trained for AUs {meta['au_ids']}, the world has {list(C.AU_IDS)}")
    d = json.loads(meta["config"])
    net = EvaluatorNet(EvaluatorConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}))
    net.load_state_dict(load_file(str(path)), strict=True)
    return net.to(device).eval().requires_grad_(False)


def au_critic_loss(critic: EvaluatorNet, frames: torch.Tensor, controls: torch.Tensor,
                   g: torch.Generator | None = None) -> torch.Tensor:
    """BCE of the critic's visible-AU logits on decoded frames (B, 3, S, S) in [-1, 1] against the targets'
    AU activity (controls (B, NUM_CONTROLS): intensity >= AU_ACTIVE_THRESHOLD). Gradients reach the frames only."""
    x = augment(face_crop((frames + 1.0) * 0.5, critic.cfg), g)
    logits = critic(x)["au_logit"][:, VISIBLE_COLUMNS]
    au = controls[:, C.AU_SLICE][:, VISIBLE_COLUMNS]
    return F.binary_cross_entropy_with_logits(logits, (au >= C.AU_ACTIVE_THRESHOLD).float())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="instructavatar train critic", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/au_critic.safetensors")
    ap.add_argument("--frames", type=int, default=40000, help="training frames rendered (128 px)")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=17, help="kept apart from the evaluators' seed (0)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="render processes")
    args = ap.parse_args(argv)
    if args.frames < args.batch or args.steps < 1:
        ap.error("--frames must be >= --batch and --steps >= 1")
    torch.set_num_threads(args.threads)
    net, info = train_critic(args.frames, args.steps, args.seed, args.batch, args.lr, args.workers)
    info.update(critic_f1(net, 1000, args.seed + 1), args=vars(args))
    path = save_critic(net, args.out, info)
    print(json.dumps(info, default=float))
    print(f"[critic] wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
