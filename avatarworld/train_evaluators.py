"""Train the synthetic world's evaluators (evaluators.py) on renderer output only, calibrate them and measure
them on held-out identities.

    python -m instructavatar.avatarworld.train_evaluators --out avatarworld/checkpoints

Data (all rendered here, seeded; identities from the train split only):

- half "random" frames: every AU independently absent / below threshold / active (balanced so each AU is active
  in about a third of the frames), eye closures and winks, speech mouth, head pose over its whole range,
  translation and gaze uniform;
- half "behaviour" frames: frames of clips from clips.make_clip (train specs: talk with emotions and real
  espeak speech, motion instructions, neutral talk), so the realistic co-occurrences are covered.

Frames are rendered at 128 px (75%), 64 px (15%) or 256 px (10%) and go through the evaluator's own
preprocessing (crop + resize to 64). After training: the AU25/AU26 lookup table is fitted on behaviour
controls, the intensity-level thresholds on renders of train-identity emotion clips; then the evaluators
are measured on held-out identities (i.i.d. random frames and whole held-out clips) and the checkpoint is
written as fp16 safetensors with the calibration and the measured accuracies in its metadata.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from multiprocessing import get_context

import numpy as np
import torch
import torch.nn.functional as F

from . import clips, identity, metrics
from . import controls as C
from .evaluators import (
    CHECKPOINT_NAME,
    VISIBLE_AUS,
    EvaluatorConfig,
    EvaluatorNet,
    Evaluators,
    controls_to_targets,
    fit_mouth_au_table,
    frames_to_input,
)

RENDER_SIZES = (128, 64, 256)
RENDER_SIZE_P = (0.75, 0.15, 0.10)
SPEECH_CACHE = os.path.expanduser("~/.cache/instructavatar/speech")


# --------------------------------------------------------------------------------------------------- data
def random_controls(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, NUM_CONTROLS) independent random frames with balanced AU activity (see module doc)."""
    c = np.zeros((n, C.NUM_CONTROLS), np.float32)
    for k, a in enumerate(C.AU_IDS):
        p_active = 0.12 if a in (43, 45) else 0.33        # closed eyes hide the eye AUs: keep them rarer
        u = rng.random(n)
        active = rng.uniform(C.AU_ACTIVE_THRESHOLD, 1.0, n)
        below = rng.uniform(0.0, C.AU_ACTIVE_THRESHOLD, n)
        c[:, k] = np.where(u < p_active, active, np.where(u < p_active + 0.25, below, 0.0))
    for name in C.EYE_NAMES:
        u = rng.random(n)
        c[:, C.INDEX[name]] = np.where(u < 0.1, rng.uniform(0.0, 1.0, n), 0.0)
    talking = rng.random(n) < 0.5
    c[:, C.INDEX["speech_jaw"]] = np.where(talking, rng.uniform(0.0, 0.85, n), 0.0)
    c[:, C.INDEX["speech_width"]] = np.where(talking, rng.uniform(-1.0, 1.0, n), 0.0)
    c[:, C.INDEX["speech_round"]] = np.where(talking, rng.uniform(0.0, 1.0, n) ** 1.5, 0.0)
    wide = rng.random(n) < 0.7
    for name, lim in (("yaw", 30.0), ("pitch", 25.0), ("roll", 25.0)):
        c[:, C.INDEX[name]] = np.where(wide, rng.uniform(-lim, lim, n), rng.normal(0.0, lim / 6, n))
    for name in ("tx", "ty"):
        c[:, C.INDEX[name]] = rng.uniform(-0.1, 0.1, n)
    for name in C.GAZE_NAMES:
        c[:, C.INDEX[name]] = rng.uniform(-1.0, 1.0, n)
    return C.clip_controls(c)


def make_clips(n: int, seed: int, split: str) -> list[clips.Clip]:
    return [clips.make_clip(clips.spec_for_index(seed, i, split), cache_dir=SPEECH_CACHE) for i in range(n)]


def behaviour_controls(n: int, rng: np.random.Generator, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, NUM_CONTROLS) frames drawn from train clips of the data generator, and their identity indices."""
    per_clip = 24
    cl = make_clips((n + per_clip - 1) // per_clip, seed, "train")
    ctrl, ids = [], []
    for clip in cl:
        t = rng.choice(clip.n_frames, min(per_clip, clip.n_frames), replace=False)
        ctrl.append(clip.controls[t])
        ids.append(np.full(len(t), clip.identity))
    return np.concatenate(ctrl)[:n], np.concatenate(ids)[:n]


def _render_chunk(args) -> np.ndarray:
    ids, ctrl, sizes, cfg = args
    torch.set_num_threads(1)
    from .render import FaceRenderer

    renderers = {s: FaceRenderer(s) for s in set(sizes.tolist())}
    out = np.empty((len(ids), cfg.size, cfg.size, 3), np.uint8)
    for i, (ident, c, s) in enumerate(zip(ids, ctrl, sizes)):
        frame = renderers[int(s)].render(identity.identity(int(ident)), c)
        x = frames_to_input(frame[None], cfg)[0].permute(1, 2, 0)
        out[i] = (x * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    return out


def render_inputs(ids: np.ndarray, ctrl: np.ndarray, sizes: np.ndarray, cfg: EvaluatorConfig,
                  workers: int) -> np.ndarray:
    """Render frames and apply the evaluator's preprocessing: (N, size, size, 3) uint8 network inputs."""
    chunk = 500
    jobs = [(ids[i:i + chunk], ctrl[i:i + chunk], sizes[i:i + chunk], cfg) for i in range(0, len(ids), chunk)]
    if workers <= 1:
        parts = [_render_chunk(j) for j in jobs]
    else:
        with get_context("fork").Pool(workers) as pool:
            parts = pool.map(_render_chunk, jobs)
    return np.concatenate(parts) if parts else np.zeros((0, cfg.size, cfg.size, 3), np.uint8)


def render_clip_frames(clip: clips.Clip, size: int = 128, step: int = 1, limit: int | None = None) -> np.ndarray:
    from .render import FaceRenderer

    ctrl = clip.controls[:limit:step]
    return FaceRenderer(size).render_clip(identity.identity(clip.identity), ctrl)


def build_dataset(n: int, seed: int, cfg: EvaluatorConfig, workers: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 1])
    n_rand = n // 2
    train_ids = np.array(identity.identity_ids("train"))
    ctrl_r = random_controls(n_rand, rng)
    ids_r = rng.choice(train_ids, n_rand)
    ctrl_b, ids_b = behaviour_controls(n - n_rand, rng, seed)
    ctrl = np.concatenate([ctrl_r, ctrl_b])
    ids = np.concatenate([ids_r, ids_b])
    sizes = rng.choice(RENDER_SIZES, len(ids), p=RENDER_SIZE_P)
    return render_inputs(ids, ctrl, sizes, cfg, workers), ctrl


# --------------------------------------------------------------------------------------------------- training
def augment(x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
    """Random per-frame contrast/brightness, a random blur and pixel noise on (B, 3, s, s) 0..1 frames (the random
    numbers drawn on the CPU from g, so a run is the same on any device; differentiable in x)."""
    b, dev = x.shape[0], x.device
    scale = (0.85 + 0.3 * torch.rand(b, 1, 1, 1, generator=g)).to(dev)
    shift = (0.06 * (torch.rand(b, 1, 1, 1, generator=g) - 0.5)).to(dev)
    x = x * scale + shift
    blur = (torch.rand(b, 1, 1, 1, generator=g) < 0.25).to(dev)
    x = torch.where(blur, F.avg_pool2d(x, 3, 1, 1, count_include_pad=False), x)
    x = x + 0.015 * torch.randn(x.shape, generator=g).to(dev)
    return x.clamp(0.0, 1.0)


def loss_fn(out: dict[str, torch.Tensor], tgt: dict[str, torch.Tensor]) -> torch.Tensor:
    hub = lambda a, b: F.smooth_l1_loss(a, b, beta=0.05)  # noqa: E731
    return (F.binary_cross_entropy_with_logits(out["au_logit"], tgt["au_active"])
            + 2.0 * hub(out["au_intensity"], tgt["au_intensity"]) + 2.0 * hub(out["pose"], tgt["pose"])
            + 2.0 * hub(out["mouth"], tgt["mouth"]) + hub(out["gaze"], tgt["gaze"]) + hub(out["eyes"], tgt["eyes"]))


def train(inputs: np.ndarray, ctrl: np.ndarray, cfg: EvaluatorConfig, steps: int, batch: int, lr: float,
          seed: int, log_every: int = 100) -> EvaluatorNet:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = EvaluatorNet(cfg).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    x_all = torch.from_numpy(inputs)                                  # (N, S, S, 3) uint8
    tgt_all = {k: torch.from_numpy(v) for k, v in controls_to_targets(ctrl).items()}
    n = len(x_all)
    perm = torch.randperm(n, generator=g)
    pos, t0 = 0, time.time()
    net.train()
    for step in range(steps):
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos:pos + batch]
        pos += batch
        x = x_all[idx].permute(0, 3, 1, 2).float().div(255.0).contiguous(memory_format=torch.channels_last)
        out = net(augment(x, g))
        loss = loss_fn(out, {k: v[idx] for k, v in tgt_all.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d}/{steps} loss {loss.item():.4f} {time.time() - t0:6.0f}s", flush=True)
    return net.eval()


# --------------------------------------------------------------------------------------------------- evaluation
def iid_report(ev: Evaluators, n: int, seed: int, workers: int) -> dict:
    """Per-frame accuracy on i.i.d. random frames (random + behaviour mix) of held-out identities."""
    rng = np.random.default_rng([seed, 7])
    held = np.array(identity.identity_ids("heldout"))
    ctrl = np.concatenate([random_controls(n // 2, rng), behaviour_controls(n - n // 2, rng, seed + 17)[0]])
    ids = rng.choice(held, len(ctrl))
    sizes = np.full(len(ctrl), 128)
    frames = render_frames_full(ids, ctrl, sizes, workers)
    pred = ev.predict(frames, temporal=False)
    rep = frame_report(pred, ctrl)
    half = n // 2
    for name, sl in (("random", slice(0, half)), ("behaviour", slice(half, None))):
        sub = frame_report({k: v[sl] for k, v in pred.items()}, ctrl[sl])
        rep[name] = {k: sub[k] for k in ("au_f1_micro", "au_f1_macro", "au_f1_visible_micro",
                                         "au_f1_visible_macro", "pose_mae_deg", "mouth_opening_mae")}
    return rep


def _render_full_chunk(args) -> np.ndarray:
    ids, ctrl, sizes = args
    from .render import FaceRenderer

    r = FaceRenderer(int(sizes[0]))
    return np.stack([r.render(identity.identity(int(i)), c) for i, c in zip(ids, ctrl)])


def render_frames_full(ids: np.ndarray, ctrl: np.ndarray, sizes: np.ndarray, workers: int) -> np.ndarray:
    chunk = 400
    jobs = [(ids[i:i + chunk], ctrl[i:i + chunk], sizes[i:i + chunk]) for i in range(0, len(ids), chunk)]
    if workers <= 1:
        return np.concatenate([_render_full_chunk(j) for j in jobs])
    with get_context("fork").Pool(workers) as pool:
        return np.concatenate(pool.map(_render_full_chunk, jobs))


def frame_report(pred: dict[str, np.ndarray], ctrl: np.ndarray, aus: tuple[int, ...] | None = None) -> dict:
    cols = [C.AU_IDS.index(a) for a in (aus or C.AU_IDS)]
    true_active = C.active_aus(ctrl)
    pa = pred["au_prob"] >= metrics.AU_PROB_THRESHOLD
    vis = [C.AU_IDS.index(a) for a in VISIBLE_AUS]
    f_all = metrics.frame_f1(np.where(np.isin(np.arange(len(C.AU_IDS)), cols), pa, False),
                             np.where(np.isin(np.arange(len(C.AU_IDS)), cols), true_active, False))
    f_vis = metrics.frame_f1(np.where(np.isin(np.arange(len(C.AU_IDS)), vis), pa, False),
                             np.where(np.isin(np.arange(len(C.AU_IDS)), vis), true_active, False))
    t = controls_to_targets(ctrl)
    pose_err = np.abs(pred["pose"] - ctrl[:, C.ROTATION_SLICE])
    mouth = pred["mouth"]
    rep = {
        "frames": int(len(ctrl)),
        "au_f1_micro": f_all["micro"], "au_f1_macro": f_all["macro"],
        "au_f1_visible_micro": f_vis["micro"], "au_f1_visible_macro": f_vis["macro"],
        "au_f1_per_au": {k: v for k, v in f_all.items() if k.startswith("au")},
        "au_intensity_mae": float(np.abs(pred["au_intensity"] - ctrl[:, C.AU_SLICE]).mean()),
        "pose_mae_deg": float(pose_err.mean()),
        "yaw_mae_deg": float(pose_err[:, 0].mean()), "pitch_mae_deg": float(pose_err[:, 1].mean()),
        "roll_mae_deg": float(pose_err[:, 2].mean()),
        "gaze_mae": float(np.abs(pred["gaze"] - t["gaze"]).mean()),
        "eyes_mae": float(np.abs(pred["eyes"] - t["eyes"]).mean()),
    }
    for j, name in enumerate(("opening", "width", "round")):
        rep[f"mouth_{name}_mae"] = metrics.mae(mouth[:, j], t["mouth"][:, j])
        rep[f"mouth_{name}_corr"] = metrics.pearson(mouth[:, j], t["mouth"][:, j])
    return rep


def emotion_clip_specs(split: str, per_cell: int, seed: int) -> list[clips.ClipSpec]:
    """Talk specs of ``split`` for every (emotion, level) cell (no motion), ``per_cell`` each."""
    talk = [s for s in (clips.spec_for_index(seed, i, split) for i in range(400)) if s.kind == "talk"]
    out, k = [], 0
    for emo in metrics.EMOTION_TYPICAL_AUS:
        for lvl in (1, 2, 3):
            for _ in range(per_cell):
                base = talk[k % len(talk)]
                k += 1
                out.append(dataclasses.replace(base, emotion=emo, intensity=lvl, motions=(), sequential=False,
                                               seed=base.seed + 7919 * k))
    return out


def intensity_scores(ev: Evaluators, specs: list[clips.ClipSpec], limit: int = 100,
                     step: int = 2) -> list[tuple[str, int, float]]:
    out = []
    for spec in specs:
        clip = clips.make_clip(spec, cache_dir=SPEECH_CACHE)
        frames = render_clip_frames(clip, 128, step, limit)
        pred = ev.predict(frames, speech_jaw=clip.controls[:limit:step, C.INDEX["speech_jaw"]], temporal=False)
        out.append((spec.emotion, spec.intensity, metrics.intensity_score(pred["au_intensity"], spec.emotion)))
    return out


def clip_report(ev: Evaluators, n_clips: int, seed: int) -> dict:
    """Whole held-out clips of the data generator, with context (speech track, temporal rule)."""
    preds, ctrls, results = [], [], []
    for clip in make_clips(n_clips, seed, "heldout"):
        frames = render_clip_frames(clip, 128)
        pred = ev.predict(frames, speech_jaw=clip.controls[:, C.INDEX["speech_jaw"]], temporal=True)
        preds.append(pred)
        ctrls.append(clip.controls)
        truth = metrics.ClipTruth(clip_id=str(clip.spec.seed), controls=clip.controls, emotion=clip.spec.emotion,
                                  intensity=clip.spec.intensity if clip.spec.kind == "talk" else None,
                                  motions=clip.spec.motions, speech=clip.speech)
        results.append(metrics.evaluate_clip(pred, truth, ev.intensity_thresholds))
    cat = {k: np.concatenate([p[k] for p in preds]) for k in preds[0]}
    rep = frame_report(cat, np.concatenate(ctrls))
    rep["clip_metrics"] = metrics.summarize(results)
    return rep


# --------------------------------------------------------------------------------------------------- readme
def _f(x, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def readme_text(info: dict, size_bytes: int, machine: str) -> str:
    """The checkpoint README: what the evaluators are, how they were trained, the held-out accuracies."""
    rep, t = info["report"], info["times"]
    iid, cl = rep["iid_heldout"], rep["clips_heldout"]
    cm = cl["clip_metrics"]
    per_au = "  ".join(f"{k}:{_f(v, 2)}" for k, v in iid["au_f1_per_au"].items())
    per_au_clip = "  ".join(f"{k}:{_f(v, 2)}" for k, v in cl["au_f1_per_au"].items())
    a = info["args"]
    vis = f'{_f(iid["au_f1_visible_micro"])} / {_f(iid["au_f1_visible_macro"])}'
    pose = f'{_f(iid["yaw_mae_deg"], 2)} / {_f(iid["pitch_mae_deg"], 2)} / {_f(iid["roll_mae_deg"], 2)}'
    inten = f'{_f(rep["intensity_heldout_acc"])} (train-identity calibration clips: {_f(rep["intensity_calib_acc"])})'
    return f"""# Evaluator checkpoints of the synthetic world

`{CHECKPOINT_NAME}` ({size_bytes / 1e6:.2f} MB, fp16 safetensors): the evaluators of `avatarworld/evaluators.py`
(one small CNN, 64x64 face crop in; AU activity + intensity for the {len(C.AU_IDS)} AUs of `controls.AU_IDS`,
yaw/pitch/roll, mouth opening/width/round, gaze, eye closures), trained **only on renderer output** of
train-split identities, with its calibration in the safetensors metadata: the intensity-level thresholds
(`intensity_thresholds`, per emotion) and the AU25/AU26 table (`mouth_au_table`). Load it with
`instructavatar.avatarworld.evaluators.load_evaluators()` (strict). `evaluators_report.json` holds every
number below.

## Training

    {info["command"]}

{a["frames"]} rendered frames (half random controls with balanced AUs, half frames of data-generator clips),
{a["steps"]} steps of batch {a["batch"]}, AdamW + one-cycle lr {a["lr"]}, seed {a["seed"]}, {a["threads"]} torch
thread(s), {a["workers"]} render processes. Time on {machine}: render {t["render_s"]:.0f} s, train
{t["train_s"]:.0f} s, calibrate {t["calibrate_s"]:.0f} s, held-out evaluation {t["evaluate_s"]:.0f} s, total
{t["total_s"] / 60:.1f} min (torch {info["torch"]}).

## Accuracy on held-out identities (never seen in training)

I.i.d. frames ({iid["frames"]}: half random controls, half data-generator frames; 128 px renders; no context):

| | value |
|---|---|
| AU F1, 12 single-frame-visible AUs, micro / macro | {vis} |
| AU F1, all {len(C.AU_IDS)} AUs without context, micro / macro | {_f(iid["au_f1_micro"])} / {_f(iid["au_f1_macro"])} |
| AU intensity MAE | {_f(iid["au_intensity_mae"])} |
| pose MAE yaw / pitch / roll (deg) | {pose} |
| mouth opening MAE / corr | {_f(iid["mouth_opening_mae"])} / {_f(iid["mouth_opening_corr"])} |
| speech_width MAE / corr | {_f(iid["mouth_width_mae"])} / {_f(iid["mouth_width_corr"])} |
| speech_round MAE / corr | {_f(iid["mouth_round_mae"])} / {_f(iid["mouth_round_corr"])} |
| gaze MAE, eye closure MAE | {_f(iid["gaze_mae"])}, {_f(iid["eyes_mae"])} |

Per-AU F1 (i.i.d., no context): {per_au}

Whole held-out data-generator clips ({cm["clips"]} clips, {cl["frames"]} frames, with context: the clip's
speech track for AU25/AU26 and the eye-closure duration rule for AU43/AU45), i.e. the renderer upper bound of
`instructavatar-eval`:

| | value |
|---|---|
| AU F1 per frame, all {len(C.AU_IDS)} AUs, micro / macro | {_f(cl["au_f1_micro"])} / {_f(cl["au_f1_macro"])} |
| AU_F1 (clip level, AU active in >= 3 frames) | {_f(cm["au_f1"])} |
| AU_Emo | {_f(cm["au_emo"])} |
| pose MAE (deg) | {_f(cl["pose_mae_deg"], 2)} |
| lip sync corr / MAE vs speech_jaw | {_f(cm["lipsync_corr"])} / {_f(cm["lipsync_mae"])} |
| instructed head motion detected | {_f(cm["motion_ok"])} |
| intensity level accuracy, held-out emotion clips | {inten} |

Per-AU F1 (clips, with context): {per_au_clip}

AU25 (lips part), AU26 (jaw drop) and the speech jaw are drawn identically by the renderer (they only open
the mouth), and AU43 / AU45 both close both eyes, so those four AUs are resolved from context (see
`evaluators.py`); without context their single-frame F1 is only the prior's.
"""


# --------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="avatarworld/checkpoints", help="checkpoint directory")
    ap.add_argument("--frames", type=int, default=90000, help="training frames rendered")
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    ap.add_argument("--workers", type=int, default=2, help="render processes")
    ap.add_argument("--calib-per-cell", type=int, default=4, help="train clips per (emotion, level)")
    ap.add_argument("--eval-frames", type=int, default=2000, help="held-out i.i.d. frames")
    ap.add_argument("--eval-clips", type=int, default=40, help="held-out generator clips")
    ap.add_argument("--eval-per-cell", type=int, default=2, help="held-out clips per (emotion, level)")
    ap.add_argument("--machine", default=f"{os.cpu_count()} CPU cores (shared)", help="for the README")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = EvaluatorConfig()
    t_start = time.time()
    times = {}

    inputs, ctrl = build_dataset(args.frames, args.seed, cfg, args.workers)
    times["render_s"] = time.time() - t_start
    print(f"rendered {len(inputs)} training frames in {times['render_s']:.0f}s", flush=True)

    t = time.time()
    net = train(inputs, ctrl, cfg, args.steps, args.batch, args.lr, args.seed)
    times["train_s"] = time.time() - t
    del inputs

    t = time.time()
    rng = np.random.default_rng([args.seed, 3])
    beh = np.concatenate([c.controls for c in make_clips(200, args.seed + 5, "train")])
    ev = Evaluators(net, mouth_au_table=fit_mouth_au_table(beh, rng=rng))
    calib = intensity_scores(ev, emotion_clip_specs("train", args.calib_per_cell, args.seed))
    ev.intensity_thresholds = metrics.calibrate_intensity_thresholds(calib)
    times["calibrate_s"] = time.time() - t

    t = time.time()
    report = {"iid_heldout": iid_report(ev, args.eval_frames, args.seed + 100, args.workers),
              "clips_heldout": clip_report(ev, args.eval_clips, args.seed + 200)}
    held = intensity_scores(ev, emotion_clip_specs("heldout", args.eval_per_cell, args.seed + 300))
    report["intensity_heldout_acc"] = float(np.mean(
        [metrics.intensity_level(s, e, ev.intensity_thresholds) == lvl for e, lvl, s in held]))
    report["intensity_calib_acc"] = float(np.mean(
        [metrics.intensity_level(s, e, ev.intensity_thresholds) == lvl for e, lvl, s in calib]))
    times["evaluate_s"] = time.time() - t
    times["total_s"] = time.time() - t_start
    ev.info = {"command": "python -m instructavatar.avatarworld.train_evaluators " + " ".join(
        argv if argv is not None else sys.argv[1:]), "args": vars(args), "times": times,
        "torch": torch.__version__, "report": report}
    path = ev.save(os.path.join(args.out, CHECKPOINT_NAME))
    with open(os.path.join(args.out, "evaluators_report.json"), "w") as f:
        json.dump(ev.info, f, indent=1, default=float)
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(readme_text(ev.info, os.path.getsize(path), args.machine))
    print(json.dumps({k: v for k, v in report.items()}, indent=1, default=float))
    print(f"times: {json.dumps({k: round(v, 1) for k, v in times.items()})}")
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
