"""Train the motion generator (audio encoder + denoiser with its adapters and heads) on prepared data.

    instructavatar train motion --config demo --data data/motion --run runs/motion [--minutes 60]

Loss (paper 3.4): MSE on x0 (motion latents, scaled by 1/latent_scale) + lambda_pose * pose MSE +
lambda_au * AU BCE (window-level AU activity) + lambda_inten * intensity CE (talk clips only).
Windows are `stream.window_frames` long; half of them carry a clean known prefix of `prefix_frames`
(the streaming contract). The keyframe is a frame of the same identity with another emotion
(keyframe substitution). Ablations: --no-au-loss, --single-branch, --no-zero-gates, --no-keyframe-sub,
--no-text (audio-only lower bound: every instruction replaced by the default one).
Idle-blink cue (configs with `audio.blink_cue`, the demo): the audio encoder gets the truth's AU45 track of the
window (engine/blinks.py draws it at inference), zero on clips whose instruction asks for a blink.
Resumable: rerun the same command to continue from runs/<name>/state.pt.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from ..avatarworld.controls import AU_IDS
from ..avatarworld.controls import INDEX as CONTROL_INDEX
from ..engine.config import ModelConfig, get_config
from ..engine.ddim import vp_alphas_cumprod
from ..engine.modules.audio_encoder import AudioEncoder
from ..engine.modules.denoiser import Denoiser
from .common import RunDir, Stopwatch, cosine_lr, init_weights, restore_rng, rng_state
from .motion_data import MotionData


class MotionModel(torch.nn.Module):
    """The trainable part of the motion path; parameter names match InstructAvatar's."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.denoiser.conformer.d_model
        self.audio_encoder = AudioEncoder(cfg.audio, out_dim=d)
        self.denoiser = Denoiser(cfg.denoiser, motion_dim=cfg.motion_dim, text_dim=cfg.text.width)


def config_for_flags(cfg: ModelConfig, flags: dict) -> ModelConfig:
    """The structure an (ablation) run trained: `flags` as saved in its state (single_branch, no_zero_gates)."""
    return replace(cfg, denoiser=replace(cfg.denoiser, two_branch=not flags.get("single_branch", False),
                                         zero_gates=not flags.get("no_zero_gates", False)))


def model_config(args) -> ModelConfig:
    return config_for_flags(get_config(args.config), vars(args))


NEW_ZERO_INIT = ("audio_encoder.blink_proj.",)   # parameters a checkpoint from before them may lack (start at zero)


def idle_blink_cue(data: MotionData) -> np.ndarray:
    """(frames,) float32 blink cue for training (engine/blinks.py): the truth's AU45 track (the world's
    raised-cosine blinks), except on clips whose instruction asks for a blink, where it is zero and the
    instruction alone must make the blink (at inference the engine's schedule supplies the idle ones)."""
    cue = data.controls[:, CONTROL_INDEX["au45"]].astype(np.float32).copy()
    instructed = data.target_aus[:, AU_IDS.index(45)] > 0                       # (clips,)
    for c in np.flatnonzero(instructed):
        cue[data.frame_offsets[c]: data.frame_offsets[c] + data.lengths[c]] = 0.0
    return cue


class WindowSampler:
    def __init__(self, data: MotionData, cfg: ModelConfig, args):
        self.d, self.cfg, self.args = data, cfg, args
        self.W = cfg.stream.window_frames
        self.P = cfg.stream.prefix_frames
        self.scale = cfg.diffusion.latent_scale
        self.ok = np.flatnonzero(data.lengths >= self.W)
        self.blink = data.au_frames[:, AU_IDS.index(45)]                 # (frames,) idle or instructed blinks
        self.blink_cue = idle_blink_cue(data) if cfg.audio.blink_cue else None

    def batch(self, B: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        d, W, spf = self.d, self.W, self.d.spf
        cs = rng.choice(self.ok, B)
        x0, wave, tok, mask, pooled, key, pose, au, inten, inten_ok, known, blink, cue = ([] for _ in range(13))
        for c in cs:
            off, T = d.frame_offsets[c], d.lengths[c]
            s = int(rng.integers(0, T - W + 1))
            x0.append(d.latents[off + s: off + s + W] / self.scale)
            wave.append(d.audio[c][s * spf:(s + W) * spf])
            k = 0 if self.args.no_text else int(rng.integers(d.tokens.shape[1]))
            tok.append(d.tokens[c, k].astype(np.float32))
            mask.append(d.token_mask[c, k].astype(np.float32))
            pooled.append(d.pooled[c, k].astype(np.float32))
            if self.args.no_keyframe_sub:
                key.append(d.latents[off + int(rng.integers(T))] / self.scale)
            else:
                key.append(d.keyframes[c] / self.scale)
            pose.append(d.pose[off + s: off + s + W] / 30.0)
            au.append((d.au_frames[off + s: off + s + W].sum(0) >= 3).astype(np.float32))
            blink.append(float(self.blink[off + s: off + s + W].any()))
            if self.blink_cue is not None:
                cue.append(self.blink_cue[off + s: off + s + W])
            inten.append(max(d.intensity[c] - 1, 0))
            inten_ok.append(float(d.kind[c] == "talk"))
            kn = np.zeros(W, np.float32)
            if rng.random() < 0.5:
                kn[: self.P] = 1.0
            known.append(kn)
        out = {k: torch.from_numpy(np.stack(v)) for k, v in dict(
            x0=x0, wave=wave, tokens=tok, mask=mask, pooled=pooled, keyframe=key, pose=pose, au=au,
            known=known, inten_ok=np.array(inten_ok, np.float32), blink=np.array(blink, np.float32)).items()}
        out["intensity"] = torch.tensor(inten, dtype=torch.int64)
        if cue:
            out["blink_cue"] = torch.from_numpy(np.stack(cue))
        if self.args.no_text:
            out["tokens"], out["mask"], out["pooled"] = self.default_text(B)
        return out

    def default_text(self, B):
        # the default instruction's embedding (index 0 of a talk_neutral clip); same for every window
        d = self.d
        c = next(i for i, k in enumerate(d.kind) if k == "talk_neutral")
        rep = lambda a: torch.from_numpy(np.repeat(a[c, :1].astype(np.float32), B, 0))  # noqa: E731
        return rep(d.tokens), rep(d.token_mask), rep(d.pooled)


def losses(model: MotionModel, batch: dict, alphas_cumprod: torch.Tensor, args) -> dict[str, torch.Tensor]:
    x0 = batch["x0"]
    B, W, M = x0.shape
    t = torch.randint(0, len(alphas_cumprod), (B,), device=x0.device)
    ab = alphas_cumprod[t].view(B, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn_like(x0)
    known = batch["known"]
    x_t = torch.where(known[..., None] > 0, x0, x_t)
    audio = model.audio_encoder(batch["wave"], batch.get("blink_cue"))
    cache = model.denoiser.condition(batch["tokens"], batch["pooled"], batch["keyframe"])
    x0_hat, hidden = model.denoiser.forward_cached(x_t, t, audio, cache, batch["mask"], known=known,
                                                   return_hidden=True)
    free = (1 - known)[..., None]
    if args.blink_weight > 0:          # windows with a blink count (1 + blink_weight) times in the latent error
        free = free * (1 + args.blink_weight * batch["blink"]).view(B, 1, 1)
    out = {"mse": (((x0_hat - x0) ** 2) * free).sum() / (free.sum() * M)}
    heads = model.denoiser.heads(x0_hat, hidden)
    out["pose"] = F.mse_loss(heads["pose"], batch["pose"])
    out["au"] = F.binary_cross_entropy_with_logits(heads["au_logits"], batch["au"])
    ce = F.cross_entropy(heads["intensity_logits"], batch["intensity"], reduction="none")
    out["intensity"] = (ce * batch["inten_ok"]).sum() / batch["inten_ok"].sum().clamp_min(1)
    au_w = 0.0 if args.no_au_loss else args.lambda_au
    out["total"] = out["mse"] + args.lambda_pose * out["pose"] + au_w * out["au"] + args.lambda_inten * out["intensity"]
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="instructavatar train motion")
    ap.add_argument("--config", default="demo")
    ap.add_argument("--data", default="data/motion",
                    help="prepared data folder, or several separated by commas (all normalised with the first's "
                         "latent statistics)")
    ap.add_argument("--run", default="runs/motion")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--lambda-pose", type=float, default=0.1)
    ap.add_argument("--lambda-au", type=float, default=0.1)
    ap.add_argument("--lambda-inten", type=float, default=0.1)
    ap.add_argument("--blink-weight", type=float, default=0.0,
                    help="weight the latent error of training windows that hold a blink by 1 + this (blinks are "
                         "under-produced otherwise; docs/STATUS.md)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--stop-at", type=int, default=None,
                    help="stop (and save) at this step; the learning-rate schedule still spans --steps")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the RNG state saved for resuming is the CPU one)")
    ap.add_argument("--init-from", default=None,
                    help="start a new run from these weights (demo.safetensors or a state.pt); no optimiser state")
    for flag in ("--no-au-loss", "--single-branch", "--no-zero-gates", "--no-keyframe-sub", "--no-text"):
        ap.add_argument(flag, action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.blink_weight < 0:
        ap.error("--blink-weight must be >= 0")
    torch.set_num_threads(args.threads)
    cfg = model_config(args)
    try:                                   # bad data folders are a usage error, before the run folder is made
        data = MotionData(args.data, args.config)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        ap.error(str(e))
    run = RunDir(args.run)
    run.write_json("args.json", vars(args))
    torch.manual_seed(args.seed)
    model = MotionModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    rng = np.random.default_rng(args.seed)
    step, spent = 0, 0.0
    state = run.load_state()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        restore_rng(rng, state["rng"])
        step, spent = state["step"], state.get("seconds", 0.0)
        print(f"[motion] resumed at step {step}")
    elif args.init_from:
        weights = init_weights(args.init_from, "")
        missing, unexpected = model.load_state_dict(
            {k: v for k, v in weights.items() if k.startswith(("audio_encoder.", "denoiser."))}, strict=False)
        new = [k for k in missing if k.startswith(NEW_ZERO_INIT)]      # added since, zero-initialised: keep
        if unexpected or len(new) != len(missing):
            raise SystemExit(f"[motion] {args.init_from} does not fit this model: missing "
                             f"{sorted(set(missing) - set(new))[:5]}, unexpected {sorted(unexpected)[:5]}")
        print(f"[motion] initialised from {args.init_from}" + (f" (new, zero-initialised: {new})" if new else ""))
    device = torch.device(args.device)
    model.to(device)
    for st in opt.state.values():                   # optimiser tensors follow their parameters
        for k, v in st.items():
            if torch.is_tensor(v) and k != "step":
                st[k] = v.to(device)
    sampler = WindowSampler(data, cfg, args)
    ac = torch.from_numpy(vp_alphas_cumprod(cfg.diffusion).astype(np.float32)).to(device)
    clock = Stopwatch(args.minutes)

    def save():
        weights = {k: v.cpu() for k, v in model.state_dict().items()}
        run.save_state({"model": weights, "optimizer": opt.state_dict(), "rng": rng_state(rng),
                        "step": step, "seconds": spent + clock.elapsed, "config": cfg.name,
                        "motion_stats": {"shift": torch.from_numpy(data.shift), "scale": torch.from_numpy(data.scale)},
                        "flags": {k: getattr(args, k) for k in ("no_au_loss", "single_branch", "no_zero_gates",
                                                                  "no_keyframe_sub", "no_text")}})

    t_log = time.time()
    last = args.steps if args.stop_at is None else min(args.steps, args.stop_at)
    while step < last and not clock.expired():
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, args.steps, args.lr)
        model.train()
        out = losses(model, {k: v.to(device) for k, v in sampler.batch(args.batch, rng).items()}, ac, args)
        opt.zero_grad(set_to_none=True)
        out["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            rec = {"step": step, "seconds": round(spent + clock.elapsed, 1),
                   **{k: round(float(v.detach()), 5) for k, v in out.items()}}
            run.log(rec)
            print(f"[motion] step {step} mse {rec['mse']:.4f} au {rec['au']:.3f} int {rec['intensity']:.3f} "
                  f"pose {rec['pose']:.3f} ({(time.time() - t_log) / 50:.2f} s/step)", flush=True)
            t_log = time.time()
        if step % args.save_every == 0:
            save()
    save()
    print(f"[motion] stopped at step {step}; state in {run.state_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
