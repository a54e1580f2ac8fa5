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
`--expression-weight W` adds W to the loss weight of the pixels the action units change in the target (where it
differs from the same frame rendered with every AU at zero, dilated 2 px: furrows, blush, folds, wrinkles, the chin
crease, eyelids); they are a few percent of the frame and the plain loss let the decoder leave them out.
`--au-weight W` adds a training-only linear head that reads the 16 AU intensities of the target frame (the world's
controls) from the motion latent (MSE, weighted W). It pushes the motion encoder to keep the expression in the
latent, where the decoder and the motion generator can use it; the head is saved in the run state, not in the
checkpoint.
`--au-critic FILE` (from `instructavatar train critic`, training/au_critic.py) adds a perceptual AU loss: a separately
trained frame network reads the decoded frame, and the BCE of its single-frame-visible AUs against the target's AU
activity is weighted `--au-critic-weight`. The evaluators that score the model are never used for this.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..avatarworld.controls import AU_NAMES, INDEX
from ..engine.config import get_config
from ..engine.modules.vae import VAE
from .au_critic import au_critic_loss, load_critic
from .common import RunDir, Stopwatch, cosine_lr, init_weights, load_vae_weights, psnr, restore_rng, rng_state
from .vae_data import FramePairSampler, fixed_eval_set


def kl(moments: torch.Tensor) -> torch.Tensor:
    mean, logvar = moments.chunk(2, dim=1)
    logvar = logvar.clamp(-30, 20)
    return 0.5 * (mean**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()


def dot_mask(points: torch.Tensor, size: int, grid: int) -> torch.Tensor:
    """(B, 1, grid, grid): 1 at the pixels the landmark-dot image (`landmark_image` at grid px, hard dots)
    draws for `points` (B, N, 2) in pixels of a size-px frame."""
    b = points.shape[0]
    idx = (points * (grid / size)).floor().long()
    ok = ((idx >= 0) & (idx < grid)).all(-1)
    flat = torch.where(ok, idx[..., 1] * grid + idx[..., 0], grid * grid)    # off-frame points -> a spare slot
    m = torch.zeros(b, grid * grid + 1, device=points.device)
    m.scatter_(1, flat, 1.0)
    return m[:, :-1].view(b, 1, grid, grid)


def feature_mask(batch: dict[str, torch.Tensor], size: int, grid: int) -> torch.Tensor:
    """(B, 1, size, size): 1 within a few pixels of a landmark dot (brows, eyes, nose, lips, jaw), else 0.
    The dots are those of the motion encoder's landmark image (B,3,grid,grid), or drawn at grid px from the
    target's landmark points when the encoder reads coordinates."""
    lm = batch["landmarks"]
    if lm.dim() == 4:
        dots = (lm.amax(dim=1, keepdim=True) > -0.9).float()           # landmark image is [-1, 1], black bg
    else:
        dots = dot_mask(batch["target_points"], size, grid)
    near = F.max_pool2d(dots, kernel_size=7, stride=1, padding=3)
    return F.interpolate(near, size=(size, size), mode="nearest")


def feature_weight(batch: dict[str, torch.Tensor], size: int, grid: int, face_weight: float) -> torch.Tensor:
    """(B, 1, size, size) loss weight: 1 everywhere, 1 + face_weight within a few pixels of a landmark dot."""
    return 1.0 + face_weight * feature_mask(batch, size, grid)


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
               face_weight: float = 0.0, au_head: torch.nn.Module | None = None, au_weight: float = 0.0,
               expression_weight: float = 0.0, critic: torch.nn.Module | None = None, critic_weight: float = 0.0,
               critic_gen: torch.Generator | None = None) -> dict:
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
    grid = vae.cfg.landmark_size
    w = feature_weight(batch, target.shape[-1], grid, face_weight) if face_weight > 0 else 1.0
    if expression_weight > 0 and "expression" in batch:         # the pixels the AUs change, dilated 2 px
        w = w + expression_weight * F.max_pool2d(batch["expression"], kernel_size=5, stride=1, padding=2)
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
    if critic is not None and "controls" in batch:               # perceptual AU loss (training/au_critic.py)
        losses["au_critic"] = au_critic_loss(critic, recon, batch["controls"], critic_gen)
        losses["total"] = losses["total"] + critic_weight * losses["au_critic"]
    losses["psnr"] = psnr(recon.detach(), target).mean()
    if not train:                               # PSNR over the facial features only (where the AUs are)
        near = feature_mask(batch, target.shape[-1], grid)
        err = (((recon - target) ** 2) * near).flatten(1).sum(1) / (near.flatten(1).sum(1) * 3).clamp(min=1)
        losses["psnr_features"] = (10 * torch.log10(4.0 / err.clamp(min=1e-10))).mean()
        if "expression" in batch:              # PSNR over the pixels the AUs change (frames that have any)
            m = batch["expression"]
            has = m.flatten(1).sum(1) > 0
            err = (((recon - target) ** 2) * m).flatten(1).sum(1) / (m.flatten(1).sum(1) * 3).clamp(min=1)
            losses["psnr_expression"] = (10 * torch.log10(4.0 / err[has].clamp(min=1e-10))).mean()
    return losses


def training_points(renderer, ids, n: int, rng: np.random.Generator, image_size: int, vae_cfg) -> np.ndarray:
    """(n, N, 2) motion-encoder coordinates of frames drawn like the VAE's targets (for input statistics)."""
    from ..avatarworld.identity import identity
    from .vae_data import motion_input, random_controls

    pts = np.stack([renderer.landmarks(identity(int(rng.choice(ids))), random_controls(rng)) for _ in range(n)])
    return motion_input(pts, image_size, vae_cfg)


def distill_point_encoder(vae: VAE, image_encoder: torch.nn.Module, image_size: int, steps: int,
                          rng: np.random.Generator, batch: int = 64, lr: float = 1e-3) -> dict[str, float]:
    """Start a landmark-points motion encoder where an image one left off: regress the image encoder's moments
    (KL mean and log-variance) from the same frames' coordinates (frames drawn like the VAE's targets, train
    identities), so the decoder keeps reading the latent it was trained on. Returns the last losses."""
    from ..avatarworld.identity import identity, identity_ids
    from ..avatarworld.render import FaceRenderer
    from .vae_data import motion_input, random_controls

    renderer, ids = FaceRenderer(image_size), identity_ids("train")
    image_cfg = replace(vae.cfg, landmark_points=0)
    encoder = vae.motion_encoder
    encoder.set_input_stats(torch.from_numpy(training_points(renderer, ids, 2048, rng, image_size, vae.cfg)))
    opt = torch.optim.AdamW(encoder.parameters(), lr=lr, weight_decay=0.0)
    image_encoder.eval()
    out: dict[str, float] = {}
    for step in range(steps):
        pts = np.stack([renderer.landmarks(identity(int(rng.choice(ids))), random_controls(rng))
                        for _ in range(batch)])
        with torch.no_grad():
            want = image_encoder(torch.from_numpy(motion_input(pts, image_size, image_cfg)))
        got = encoder(torch.from_numpy(motion_input(pts, image_size, vae.cfg)))
        mean_err = F.mse_loss(got.chunk(2, 1)[0], want.chunk(2, 1)[0])
        loss = mean_err + 0.1 * F.mse_loss(got.chunk(2, 1)[1], want.chunk(2, 1)[1])
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out = {"distill_mse_mean": float(mean_err.detach()), "distill_latent_var": float(want.chunk(2, 1)[0].var())}
        if (step + 1) % 100 == 0:
            print(f"[vae] distilling the points motion encoder: step {step + 1}/{steps} mean MSE "
                  f"{out['distill_mse_mean']:.4f} (latent variance {out['distill_latent_var']:.4f})", flush=True)
    return out


def with_motion_grid(cfg, grid: str | None):
    """Experiment: another motion-latent grid, "CxS" (C channels on an S x S grid), e.g. "3x8" (the paper's
    3 x 16 x 16 at 256 px has the same cells per pixel). The decoder's input width follows."""
    if not grid:
        return cfg
    ch, side = (int(v) for v in grid.lower().split("x"))
    levels = (cfg.vae.landmark_size // cfg.vae.motion.shuffle // side).bit_length()    # downsamplings + 1
    if cfg.vae.landmark_size // (cfg.vae.motion.shuffle * 2 ** (levels - 1)) != side:
        raise ValueError(f"motion grid side {side} is not landmark_size / shuffle / 2^k")
    mults = tuple(min(2 ** i, 4) for i in range(levels))
    motion = replace(cfg.vae.motion, out_channels=ch, ch_mult=mults)
    decoder = replace(cfg.vae.decoder, in_channels=cfg.vae.appearance.out_channels + ch)
    return replace(cfg, vae=replace(cfg.vae, motion=motion, decoder=decoder))


def with_motion_input(cfg, motion_input: str | None):
    """The config with the motion encoder reading "points" (the world's landmark coordinates) or the "image"."""
    if motion_input is None or (motion_input == "points") == bool(cfg.vae.landmark_points):
        return cfg
    from ..avatarworld.render import NUM_LANDMARKS

    points = NUM_LANDMARKS if motion_input == "points" else 0
    return replace(cfg, vae=replace(cfg.vae, landmark_points=points))


def to_tensors(batch: dict[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    keep = ("source", "target", "landmarks", "source_points", "target_points", "controls", "expression")
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
    ap.add_argument("--expression-weight", type=float, default=0.0,
                    help="extra reconstruction weight on the pixels the action units change (see the module doc)")
    ap.add_argument("--au-weight", type=float, default=0.0,
                    help="weight of the AU read-out from the motion latent (see the module doc; 0 = off)")
    ap.add_argument("--motion-input", choices=("points", "image"), default=None,
                    help="what the motion encoder reads: the landmark coordinates or the landmark-dot image (default: "
                         "the config's vae.landmark_points; the demo reads points). Experiment: a demo VAE that reads "
                         "the image is not loadable by the engine's demo config")
    ap.add_argument("--soft-dots", action="store_true",
                    help="experiment (with --motion-input image): the motion encoder reads sub-pixel (bilinear) "
                         "landmark dots; `train latents` and `quality` draw hard dots, so such a VAE is not packaged")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--stop-at", type=int, default=None,
                    help="stop (and save) at this step; the learning-rate schedule still spans --steps")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the RNG state saved for resuming is the CPU one)")
    ap.add_argument("--init-from", default=None,
                    help="start a new run from these weights (demo.safetensors or a state.pt); no optimiser state")
    ap.add_argument("--distill-steps", type=int, default=1500,
                    help="--init-from a VAE whose motion encoder reads the landmark image, into one that reads the "
                         "points: steps of regressing the old encoder's latents first (see distill_point_encoder)")
    ap.add_argument("--freeze-motion", action="store_true",
                    help="keep the motion encoder fixed (once motion training has started on its latents)")
    ap.add_argument("--detail", choices=("on", "off"), default=None,
                    help="with the warp: the decoder's additive detail head (default: the config's vae.detail, on; "
                         "train_demo.sh trains the phases before it was added with off)")
    ap.add_argument("--au-critic", default=None,
                    help="an AU critic (`instructavatar train critic`): adds its perceptual AU loss on the decoded "
                         "frames")
    ap.add_argument("--au-critic-weight", type=float, default=0.1, help="weight of the --au-critic loss")
    ap.add_argument("--keep-latents", action="store_true",
                    help="keep the motion latent space fixed: the motion and keyframe encoders are frozen, so a motion "
                         "generator trained on this VAE's latents stays valid (a decoder-side fine-tune)")
    args = ap.parse_args(argv)
    if args.au_weight < 0 or args.face_weight < 0 or args.expression_weight < 0 or args.au_critic_weight < 0:
        ap.error("--au-weight, --face-weight, --expression-weight and --au-critic-weight must be >= 0")
    if args.au_critic and not Path(args.au_critic).is_file():
        ap.error(f"--au-critic {args.au_critic}: file not found (train one with `instructavatar train critic`)")
    if args.keep_latents and args.au_weight > 0:
        ap.error("--keep-latents freezes the motion encoder, which the AU read-out (--au-weight) trains")
    cfg = with_motion_input(with_motion_grid(get_config(args.config), args.motion_grid), args.motion_input)
    if args.soft_dots and cfg.vae.landmark_points:
        ap.error(f"--soft-dots: the {args.config} VAE reads landmark coordinates, not dots (--motion-input image)")

    torch.set_num_threads(args.threads)
    if args.warp is not None:
        cfg = replace(cfg, vae=replace(cfg.vae, warp=args.warp == "on"))
    if args.detail is not None:
        cfg = replace(cfg, vae=replace(cfg.vae, detail=args.detail == "on"))
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
        weights = init_weights(args.init_from, "vae.")
        if cfg.vae.landmark_points and "motion_encoder.conv_in.weight" in weights:   # image encoder -> points
            from ..engine.modules.vae import Encoder

            image_encoder = Encoder(cfg.vae.motion)
            image_encoder.load_state_dict({k[len("motion_encoder."):]: v for k, v in weights.items()
                                           if k.startswith("motion_encoder.")})
            load_vae_weights(vae, {k: v for k, v in weights.items() if not k.startswith("motion_encoder.")},
                             new_parts_ok=cfg.vae.warp, fresh=("motion_encoder.",))
            print(f"[vae] initialised from {args.init_from}; its landmark-image motion encoder is distilled into "
                  f"the points encoder ({args.distill_steps} steps)", flush=True)
            run.log({"step": 0, **distill_point_encoder(vae, image_encoder, cfg.media.image_size,
                                                        args.distill_steps, np.random.default_rng(args.seed + 1))})
        else:
            load_vae_weights(vae, weights, new_parts_ok=cfg.vae.warp)
            print(f"[vae] initialised from {args.init_from}")
            if au_head is not None and args.init_from.endswith(".pt"):      # keep a trained AU read-out
                init_state = torch.load(args.init_from, map_location="cpu", weights_only=False)
                if "au_head" in init_state:
                    au_head.load_state_dict(init_state["au_head"])
                    print("[vae] AU read-out taken over too")
    elif cfg.vae.landmark_points:                # a fresh points encoder standardises by the training landmarks
        from ..avatarworld.identity import identity_ids
        from ..avatarworld.render import FaceRenderer

        vae.motion_encoder.set_input_stats(torch.from_numpy(training_points(
            FaceRenderer(cfg.media.image_size), identity_ids("train"), 2048, np.random.default_rng(args.seed + 1),
            cfg.media.image_size, cfg.vae)))
    device = torch.device(args.device)
    vae.to(device)
    critic = None
    if args.au_critic:
        critic = load_critic(args.au_critic, device)
        print(f"[vae] AU critic {args.au_critic}, weight {args.au_critic_weight}")
    critic_gen = torch.Generator().manual_seed(args.seed + 5)
    if state is not None and "critic_rng" in state:
        critic_gen.set_state(state["critic_rng"])
    if au_head is not None:
        au_head.to(device)
    if state is not None:                       # optimiser tensors follow their parameters
        for st in opt.state.values():
            for k, v in st.items():
                if torch.is_tensor(v) and k != "step":
                    st[k] = v.to(device)
    if args.freeze_motion or args.keep_latents:
        vae.motion_encoder.requires_grad_(False)
        print("[vae] motion encoder frozen")
    if args.keep_latents:
        vae.keyframe_encoder.requires_grad_(False)
        print("[vae] keyframe encoder frozen (the latent space stays the motion generator's)")
    sampler = FramePairSampler(cfg.media.image_size, cfg.vae, "train", soft_dots=args.soft_dots,
                               expression=args.expression_weight > 0)
    evalset = to_tensors(fixed_eval_set(cfg.media.image_size, cfg.vae, 32, soft_dots=args.soft_dots,
                                        expression=args.expression_weight > 0),
                         device)
    clock = Stopwatch(args.minutes)

    def save():
        weights = {k: v.cpu() for k, v in vae.state_dict().items()}
        extra = {"au_head": {k: v.cpu() for k, v in au_head.state_dict().items()}} if au_head is not None else {}
        run.save_state({"model": weights, "optimizer": opt.state_dict(), "rng": rng_state(rng),
                        "step": step, "seconds": spent + clock.elapsed, "config": cfg.name,
                        "soft_dots": args.soft_dots, "critic_rng": critic_gen.get_state(), **extra})

    t_log = time.time()
    last = args.steps if args.stop_at is None else min(args.steps, args.stop_at)
    while step < last and not clock.expired():
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, args.steps, args.lr)
        vae.train()
        losses = vae_losses(vae, to_tensors(sampler.batch(args.batch, rng), device), args.kl_weight,
                            face_weight=args.face_weight, au_head=au_head, au_weight=args.au_weight,
                            expression_weight=args.expression_weight, critic=critic,
                            critic_weight=args.au_critic_weight, critic_gen=critic_gen)
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
                ev = vae_losses(vae, evalset, args.kl_weight, train=False, au_head=au_head, critic=critic,
                                critic_gen=torch.Generator().manual_seed(0))
            rec = {"step": step, "eval_psnr_heldout": float(ev["psnr"]), "eval_keyframe": float(ev["keyframe"]),
                   "eval_psnr_features": float(ev["psnr_features"])}
            if "flow_px" in ev:
                rec["eval_flow_px"] = float(ev["flow_px"])
            if "au_mse" in ev:
                rec["eval_au_mse"] = float(ev["au_mse"])
            if "psnr_expression" in ev:
                rec["eval_psnr_expression"] = float(ev["psnr_expression"])
            if "au_critic" in ev:
                rec["eval_au_critic"] = float(ev["au_critic"])
            run.log(rec)
            print(f"[vae] eval (held-out identities) psnr {rec['eval_psnr_heldout']:.2f} dB, around the facial "
                  f"features {rec['eval_psnr_features']:.2f} dB"
                  + (f", landmark flow error {rec['eval_flow_px']:.2f} px" if "eval_flow_px" in rec else "")
                  + (f", AU read-out MSE {rec['eval_au_mse']:.4f}" if "eval_au_mse" in rec else "")
                  + (f", on the AUs' pixels {rec['eval_psnr_expression']:.2f} dB" if "eval_psnr_expression" in rec
                     else "")
                  + (f", AU critic BCE {rec['eval_au_critic']:.4f}" if "eval_au_critic" in rec else ""),
                  flush=True)
        if step % args.save_every == 0:
            save()
    save()
    print(f"[vae] stopped at step {step}; state in {run.state_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
