"""Train the demo VAE (appearance encoder, motion encoder, keyframe encoder, decoder) on rendered pairs.

    instructavatar train vae --config demo --run runs/vae [--minutes 60] [--steps 20000]

Resumable: state.pt in the run directory is rewritten every `--save-every` steps and on exit; running the
same command again continues from it (same data stream: the sampler's RNG state is saved too).
Loss: L1 + MSE reconstruction of the target frame from (source appearance, target landmarks), a small KL
on both latents, and the keyframe head regressing the motion encoder's latent from the target's RGB.
`--face-weight W` multiplies the reconstruction error by 1 + W around the facial features (the landmark dots,
dilated): brows, eyelids and lips are a small part of the frame but carry every action unit.
With the warp decoder (`vae.warp`, on for the demo; `--warp off` trains a plain one), the flow it predicts is also
supervised where the world knows the answer: at each target landmark it should point at the same landmark in the
source (`flow_landmark_error`, in pixels, weighted FLOW_WEIGHT). `--init-from` a plain VAE starts the warp parts
at zero.
`--au-weight W` adds a training-only linear head that reads the 16 AU intensities of the target frame (the world's
controls) from the motion latent (MSE, weighted W). It pushes the motion encoder to keep the expression in the
latent, where the decoder and the motion generator can use it; the head is saved in the run state, not in the
checkpoint.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..avatarworld.controls import AU_NAMES, INDEX
from ..engine.config import get_config
from ..engine.vae import VAE
from .common import RunDir, Stopwatch, cosine_lr, init_weights, load_vae_weights, psnr, restore_rng, rng_state
from .vae_data import FramePairSampler, fixed_eval_set


def kl(moments: torch.Tensor) -> torch.Tensor:
    mean, logvar = moments.chunk(2, dim=1)
    logvar = logvar.clamp(-30, 20)
    return 0.5 * (mean**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()


def feature_mask(landmarks: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, size, size): 1 within a few pixels of a landmark dot (brows, eyes, nose, lips, jaw), else 0."""
    dots = (landmarks.amax(dim=1, keepdim=True) > -0.9).float()           # landmark image is [-1, 1], black bg
    near = F.max_pool2d(dots, kernel_size=7, stride=1, padding=3)
    return F.interpolate(near, size=(size, size), mode="nearest")


def feature_weight(landmarks: torch.Tensor, size: int, face_weight: float) -> torch.Tensor:
    """(B, 1, size, size) loss weight: 1 everywhere, 1 + face_weight within a few pixels of a landmark dot."""
    return 1.0 + face_weight * feature_mask(landmarks, size)


FLOW_WEIGHT = 0.05     # per pixel of landmark error: ~5 px at the start weighs about twice the L1 term


def flow_landmark_error(flow: torch.Tensor, target_points: torch.Tensor, source_points: torch.Tensor,
                        size: int) -> torch.Tensor:
    """Mean distance in pixels between where the backward flow samples the source at each target landmark and
    where that landmark really is in the source. flow (B,2,a,a) normalised offsets; points (B,L,2) pixels."""
    to_norm = lambda p: p * (2.0 / size) - 1.0                                        # noqa: E731
    t = to_norm(target_points)
    at = F.grid_sample(flow, t[:, :, None, :], mode="bilinear", padding_mode="border",
                       align_corners=False)[..., 0].transpose(1, 2)                  # (B, L, 2)
    err = (t + at - to_norm(source_points)) * (size / 2.0)
    return err.norm(dim=-1).mean()


AU_COLUMNS: list[int] = [INDEX[name] for name in AU_NAMES]     # the AU intensities among the world's controls


def au_head_for(vae: VAE) -> torch.nn.Linear:
    """A linear read-out of the AU intensities (len(AU_NAMES),) from a flattened motion latent mean."""
    return torch.nn.Linear(vae.cfg.motion_dim, len(AU_COLUMNS))


def vae_losses(vae: VAE, batch: dict[str, torch.Tensor], kl_weight: float, train: bool = True,
               face_weight: float = 0.0, au_head: torch.nn.Module | None = None, au_weight: float = 0.0) -> dict:
    app_m = vae.appearance_encoder(batch["source"])
    mot_m = vae.motion_encoder(batch["landmarks"])
    app_mean, app_logvar = app_m.chunk(2, dim=1)
    mot_mean, mot_logvar = mot_m.chunk(2, dim=1)
    if train:                                   # reparameterised samples (KL autoencoder)
        app = app_mean + torch.randn_like(app_mean) * (0.5 * app_logvar.clamp(-30, 20)).exp()
        mot = mot_mean + torch.randn_like(mot_mean) * (0.5 * mot_logvar.clamp(-30, 20)).exp()
    else:
        app, mot = app_mean, mot_mean
    app = vae.appearance_state(app, batch["source"])     # warp: + the source's pixels and motion (keyframe head)
    recon, flow = vae.decode_raw_with_flow(mot.flatten(1), app)
    target = batch["target"]
    key = vae.keyframe_encoder(target)
    w = feature_weight(batch["landmarks"], target.shape[-1], face_weight) if face_weight > 0 else 1.0
    losses = {
        "l1": ((recon - target).abs() * w).mean(),
        "mse": (((recon - target) ** 2) * w).mean(),
        "kl": kl(app_m) + kl(mot_m),
        "keyframe": F.mse_loss(key, mot_mean.flatten(1).detach()),
    }
    losses["total"] = losses["l1"] + losses["mse"] + kl_weight * losses["kl"] + 0.1 * losses["keyframe"]
    if flow is not None and "target_points" in batch:
        losses["flow_px"] = flow_landmark_error(flow, batch["target_points"], batch["source_points"],
                                                target.shape[-1])
        losses["total"] = losses["total"] + FLOW_WEIGHT * losses["flow_px"]
    if au_head is not None and "controls" in batch:
        losses["au_mse"] = F.mse_loss(au_head(mot_mean.flatten(1)), batch["controls"][:, AU_COLUMNS])
        losses["total"] = losses["total"] + au_weight * losses["au_mse"]
    losses["psnr"] = psnr(recon.detach(), target).mean()
    if not train:                               # PSNR over the facial features only (where the AUs are)
        near = feature_mask(batch["landmarks"], target.shape[-1])
        err = (((recon - target) ** 2) * near).flatten(1).sum(1) / (near.flatten(1).sum(1) * 3).clamp(min=1)
        losses["psnr_features"] = (10 * torch.log10(4.0 / err.clamp(min=1e-10))).mean()
    return losses


def with_motion_grid(cfg, grid: str | None):
    """Experiment: another motion-latent grid, "CxS" (C channels on an S x S grid), e.g. "3x8" (the paper's
    3 x 16 x 16 at 256 px has the same cells per pixel). The decoder's input width follows."""
    if not grid:
        return cfg
    from dataclasses import replace

    ch, side = (int(v) for v in grid.lower().split("x"))
    levels = (cfg.vae.landmark_size // cfg.vae.motion.shuffle // side).bit_length()    # downsamplings + 1
    if cfg.vae.landmark_size // (cfg.vae.motion.shuffle * 2 ** (levels - 1)) != side:
        raise ValueError(f"motion grid side {side} is not landmark_size / shuffle / 2^k")
    mults = tuple(min(2 ** i, 4) for i in range(levels))
    motion = replace(cfg.vae.motion, out_channels=ch, ch_mult=mults)
    decoder = replace(cfg.vae.decoder, in_channels=cfg.vae.appearance.out_channels + ch)
    return replace(cfg, vae=replace(cfg.vae, motion=motion, decoder=decoder))


def to_tensors(batch: dict[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    keep = ("source", "target", "landmarks", "source_points", "target_points", "controls")
    return {k: torch.from_numpy(np.asarray(v, np.float32)).to(device) for k, v in batch.items() if k in keep}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="instructavatar train vae")
    ap.add_argument("--config", default="demo")
    ap.add_argument("--run", default="runs/vae")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--minutes", type=float, default=None, help="stop (and save) after this much wall time")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--kl-weight", type=float, default=1e-5)
    ap.add_argument("--motion-grid", default=None,
                    help="experiment: motion latent 'CxS' instead of the config's (e.g. 3x8); not loadable by the "
                         "engine's demo config")
    ap.add_argument("--warp", choices=("on", "off"), default=None,
                    help="decoder warps the portrait by a predicted flow, supervised at the landmarks (default: "
                         "the config's vae.warp, on for the demo; train_demo.sh trains the plain phases with off)")
    ap.add_argument("--face-weight", type=float, default=0.0,
                    help="extra reconstruction weight around the facial features (see the module doc)")
    ap.add_argument("--au-weight", type=float, default=0.0,
                    help="weight of the AU read-out from the motion latent (see the module doc; 0 = off)")
    ap.add_argument("--soft-dots", action="store_true",
                    help="experiment: the motion encoder reads sub-pixel (bilinear) landmark dots; `train latents`, "
                         "`prepare` and `quality` still draw hard dots, so such a VAE is not packaged yet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--stop-at", type=int, default=None,
                    help="stop (and save) at this step; the learning-rate schedule still spans --steps")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the RNG state saved for resuming is the CPU one)")
    ap.add_argument("--init-from", default=None,
                    help="start a new run from these weights (demo.safetensors or a state.pt); no optimiser state")
    ap.add_argument("--freeze-motion", action="store_true",
                    help="keep the motion encoder fixed (once motion training has started on its latents)")
    args = ap.parse_args(argv)
    if args.au_weight < 0 or args.face_weight < 0:
        ap.error("--au-weight and --face-weight must be >= 0")

    torch.set_num_threads(args.threads)
    cfg = with_motion_grid(get_config(args.config), args.motion_grid)
    if args.warp is not None and (args.warp == "on") != cfg.vae.warp:
        from dataclasses import replace

        cfg = replace(cfg, vae=replace(cfg.vae, warp=args.warp == "on"))
    run = RunDir(args.run)
    run.write_json("args.json", vars(args))
    torch.manual_seed(args.seed)
    vae = VAE(cfg.vae, cfg.media.image_size)
    au_head = au_head_for(vae) if args.au_weight > 0 else None
    params = list(vae.parameters()) + (list(au_head.parameters()) if au_head is not None else [])
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    rng = np.random.default_rng(args.seed)
    step, spent = 0, 0.0
    state = run.load_state()
    if state is not None:
        load_vae_weights(vae, state["model"])
        if au_head is not None:
            if "au_head" not in state:
                raise SystemExit(f"[vae] {run.state_path} was trained without --au-weight; start a new run "
                                 "(--init-from it) to add the AU read-out")
            au_head.load_state_dict(state["au_head"])
        if state.get("soft_dots", False) != args.soft_dots:
            raise SystemExit(f"[vae] {run.state_path} was trained with{'' if state.get('soft_dots') else 'out'} "
                             "--soft-dots; resume it with the same landmark dots")
        opt.load_state_dict(state["optimizer"])
        restore_rng(rng, state["rng"])
        step, spent = state["step"], state.get("seconds", 0.0)
        print(f"[vae] resumed at step {step} ({spent / 60:.1f} min so far)")
    elif args.init_from:
        load_vae_weights(vae, init_weights(args.init_from, "vae."), new_parts_ok=cfg.vae.warp)
        print(f"[vae] initialised from {args.init_from}")
    device = torch.device(args.device)
    vae.to(device)
    if au_head is not None:
        au_head.to(device)
    if state is not None:                       # optimiser tensors follow their parameters
        for st in opt.state.values():
            for k, v in st.items():
                if torch.is_tensor(v) and k != "step":
                    st[k] = v.to(device)
    if args.freeze_motion:
        vae.motion_encoder.requires_grad_(False)
        print("[vae] motion encoder frozen")
    sampler = FramePairSampler(cfg.media.image_size, cfg.vae.landmark_size, "train", soft_dots=args.soft_dots)
    evalset = to_tensors(fixed_eval_set(cfg.media.image_size, cfg.vae.landmark_size, 32, soft_dots=args.soft_dots),
                         device)
    clock = Stopwatch(args.minutes)

    def save():
        weights = {k: v.cpu() for k, v in vae.state_dict().items()}
        extra = {"au_head": {k: v.cpu() for k, v in au_head.state_dict().items()}} if au_head is not None else {}
        run.save_state({"model": weights, "optimizer": opt.state_dict(), "rng": rng_state(rng),
                        "step": step, "seconds": spent + clock.elapsed, "config": cfg.name,
                        "soft_dots": args.soft_dots, **extra})

    t_log = time.time()
    last = args.steps if args.stop_at is None else min(args.steps, args.stop_at)
    while step < last and not clock.expired():
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, args.steps, args.lr)
        vae.train()
        losses = vae_losses(vae, to_tensors(sampler.batch(args.batch, rng), device), args.kl_weight,
                            face_weight=args.face_weight, au_head=au_head, au_weight=args.au_weight)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_([p for p in params if p.requires_grad], 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            rec = {"step": step, "seconds": round(spent + clock.elapsed, 1),
                   **{k: round(float(v.detach()), 5) for k, v in losses.items()}}
            run.log(rec)
            print(f"[vae] step {step} loss {rec['total']:.4f} psnr {rec['psnr']:.2f} "
                  f"({(time.time() - t_log) / 25:.2f} s/step)", flush=True)
            t_log = time.time()
        if step % args.eval_every == 0 or step == args.steps:
            vae.eval()
            with torch.no_grad():
                ev = vae_losses(vae, evalset, args.kl_weight, train=False, au_head=au_head)
            rec = {"step": step, "eval_psnr_heldout": float(ev["psnr"]), "eval_keyframe": float(ev["keyframe"]),
                   "eval_psnr_features": float(ev["psnr_features"])}
            if "flow_px" in ev:
                rec["eval_flow_px"] = float(ev["flow_px"])
            if "au_mse" in ev:
                rec["eval_au_mse"] = float(ev["au_mse"])
            run.log(rec)
            print(f"[vae] eval (held-out identities) psnr {rec['eval_psnr_heldout']:.2f} dB, around the facial "
                  f"features {rec['eval_psnr_features']:.2f} dB"
                  + (f", landmark flow error {rec['eval_flow_px']:.2f} px" if "eval_flow_px" in rec else "")
                  + (f", AU read-out MSE {rec['eval_au_mse']:.4f}" if "eval_au_mse" in rec else ""),
                  flush=True)
        if step % args.save_every == 0:
            save()
    save()
    print(f"[vae] stopped at step {step}; state in {run.state_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
