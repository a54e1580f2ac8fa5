"""``instructavatar-eval``: measure generated videos against the synthetic world's ground truth.

    instructavatar-eval --videos DIR --truth DIR [--json out.json] [--renderer-upper-bound]

``--videos``: generated videos named by clip id: ``<id>.mp4`` (read with PyAV) or ``<id>.npy`` ((T, H, W, 3)
uint8). ``--truth``: either a data set written by ``instructavatar-data`` (``manifest.json`` + shards; the clip
id is the clip's index, e.g. ``12``, ``000012`` or ``clip_000012``) or a folder of ``<id>.npz`` files with
``controls`` (T, NUM_CONTROLS) and optionally ``audio`` (16 kHz), ``emotion`` (name or index in
behaviour.EMOTIONS), ``intensity`` (1..3), ``motions`` (names), ``switch_frame``, ``identity`` and ``frames``
(T, H, W, 3) uint8. ``--renderer-upper-bound`` adds a row for the ground-truth renderer frames themselves (stored
frames, else rendered from the identity); with it ``--videos`` may be left out.

The evaluators (evaluators.load_evaluators) read every frame; metrics.py defines the metrics. Prints an aligned
plain-text table, writes every per-clip number to ``--json``. Errors (missing directory, unreadable video, no
matching clip) are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import controls as C
from . import metrics

PROG = "instructavatar-eval"
VIDEO_EXTS = (".npy", ".mp4")

# (column header, summary key, format)
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("clips", "clips", "{:d}"),
    ("AU_F1", "au_f1", "{:.3f}"),
    ("AU_Emo", "au_emo", "{:.3f}"),
    ("Int.acc", "intensity_acc", "{:.3f}"),
    ("Lip.corr", "lipsync_corr", "{:.3f}"),
    ("Lip.MAE", "lipsync_mae", "{:.3f}"),
    ("Pose.MAE", "pose_mae", "{:.2f}"),
    ("Motion", "motion_ok", "{:.3f}"),
    ("Switch", "switch_latency", "{:.1f}"),
    ("Jit.pose", "jitter_pose_ratio", "{:.2f}"),
    ("Jit.AU", "jitter_au_ratio", "{:.2f}"),
)


class EvalError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# --------------------------------------------------------------------------------------------------- truth
class Truth:
    """A clip's ground truth plus a way to get its renderer frames (for the upper-bound row)."""

    def __init__(self, truth: metrics.ClipTruth, frames: Callable[[], np.ndarray]):
        self.truth = truth
        self.frames = frames


def _emotion_name(value) -> str | None:
    from . import behaviour

    if value is None:
        return None
    v = np.asarray(value)
    if v.dtype.kind in "iu":
        return behaviour.EMOTIONS[int(v)]
    return str(v.item() if v.ndim == 0 else v)


def _render(identity_index: int, controls: np.ndarray, size: int) -> np.ndarray:
    from .identity import identity
    from .render import FaceRenderer

    return FaceRenderer(size).render_clip(identity(int(identity_index)), controls)


def load_truth_dataset(directory: Path, size: int) -> dict[str, Truth]:
    from .dataset import ClipDataset

    try:
        ds = ClipDataset(directory, load_frames=False)
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as e:
        raise EvalError(f"cannot read data set {directory}: {e}") from None
    out: dict[str, Truth] = {}
    with_frames: list = []

    def frames_of(i: int) -> np.ndarray:
        if not with_frames:
            with_frames.append(ClipDataset(directory, load_frames=True))
        full = with_frames[0][i]
        return full.frames if full.frames is not None else _render(full.identity, full.controls, size)

    for i in range(len(ds)):
        clip = ds[i]
        spec = clip.spec
        cid = str(int(ds._index[i])) if hasattr(ds, "_index") else str(i)  # clip index in the data set
        truth = metrics.ClipTruth(
            clip_id=cid, controls=clip.controls, emotion=spec.emotion,
            intensity=spec.intensity if spec.kind == "talk" and spec.intensity > 0 else None,
            motions=tuple(spec.motions), speech=clip.controls[:, C.SPEECH_SLICE])
        out[cid] = Truth(truth, lambda i=i: frames_of(i))
    return out


def load_truth_npz(path: Path, size: int) -> Truth:
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file is one clear error
        raise EvalError(f"cannot read truth file {path}: {e}") from None
    if "controls" not in d:
        raise EvalError(f"truth file {path} has no 'controls' array")
    ctrl = np.asarray(d["controls"], np.float32)
    if ctrl.ndim != 2 or ctrl.shape[1] != C.NUM_CONTROLS:
        raise EvalError(f"truth file {path}: controls must be (T, {C.NUM_CONTROLS}), got {ctrl.shape}")
    speech_track = ctrl[:, C.SPEECH_SLICE]
    if "audio" in d and np.abs(d["audio"]).max(initial=0.0) > 0:
        from instructavatar.avatarworld import speech

        speech_track = speech.mouth_track(np.asarray(d["audio"], np.float32), n_frames=len(ctrl))
    intensity = int(d["intensity"]) if "intensity" in d and int(d["intensity"]) > 0 else None
    truth = metrics.ClipTruth(
        clip_id=path.stem, controls=ctrl, emotion=_emotion_name(d.get("emotion")), intensity=intensity,
        motions=tuple(str(m) for m in np.atleast_1d(d["motions"])) if "motions" in d else (),
        switch_frame=int(d["switch_frame"]) if "switch_frame" in d and int(d["switch_frame"]) >= 0 else None,
        speech=speech_track)

    def frames() -> np.ndarray:
        if "frames" in d:
            return np.asarray(d["frames"], np.uint8)
        if "identity" not in d:
            raise EvalError(f"truth file {path} has neither 'frames' nor 'identity' to render")
        return _render(int(d["identity"]), ctrl, size)

    return Truth(truth, frames)


def load_truth(directory: Path, size: int = 128) -> dict[str, Truth]:
    if (directory / "manifest.json").is_file():
        return load_truth_dataset(directory, size)
    files = sorted(directory.glob("*.npz"))
    if not files:
        raise EvalError(f"no data set (manifest.json) and no .npz clips in truth directory {directory}")
    return {p.stem: load_truth_npz(p, size) for p in files}


def match_truth(video_id: str, truths: dict[str, Truth]) -> Truth | None:
    if video_id in truths:
        return truths[video_id]
    m = re.fullmatch(r"(?:clip[_-]?)?0*(\d+)", video_id)
    if m:
        return truths.get(str(int(m.group(1))))
    return None


# --------------------------------------------------------------------------------------------------- videos
def read_video(path: Path) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of an .npy array or an .mp4 (PyAV); EvalError if unreadable."""
    try:
        if path.suffix == ".npy":
            frames = np.load(path, allow_pickle=False)
        else:
            import av

            with av.open(str(path)) as container:
                frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    except Exception as e:  # noqa: BLE001 - any decoder failure is one clear error
        raise EvalError(f"cannot read video {path}: {type(e).__name__}: {e}") from None
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise EvalError(f"video {path}: expected (T, H, W, 3) frames, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        if frames.dtype.kind == "f" and frames.max(initial=0) <= 1.0:
            frames = frames * 255.0
        frames = np.clip(frames, 0, 255).astype(np.uint8)
    return frames


def list_videos(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(directory.iterdir()):
        if p.suffix in VIDEO_EXTS and p.is_file():
            if p.stem in found:
                raise EvalError(f"two videos for clip {p.stem!r} in {directory}")
            found[p.stem] = p
    return found


# --------------------------------------------------------------------------------------------------- evaluation
def evaluate_frames(ev, frames: np.ndarray, truth: metrics.ClipTruth) -> dict:
    pred = ev.predict(frames, speech_jaw=truth.speech_jaw, temporal=True)
    return metrics.evaluate_clip(pred, truth, ev.intensity_thresholds)


def _fmt(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return fmt.format(int(value) if fmt == "{:d}" else float(value))


def format_table(rows: dict[str, dict]) -> str:
    """Plain aligned table: one row per system, TABLE_COLUMNS columns."""
    header = ["system"] + [c[0] for c in TABLE_COLUMNS]
    body = [[name] + [_fmt(summ.get(key), fmt) for _, key, fmt in TABLE_COLUMNS] for name, summ in rows.items()]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep] + [line(r) for r in body])


def run(args: argparse.Namespace) -> dict:
    from .evaluators import load_evaluators

    truth_dir = Path(args.truth)
    if not truth_dir.is_dir():
        raise EvalError(f"truth directory not found: {truth_dir}")
    if args.videos is None and not args.renderer_upper_bound:
        raise EvalError("give --videos DIR (and/or --renderer-upper-bound)")
    videos: dict[str, Path] = {}
    if args.videos is not None:
        vdir = Path(args.videos)
        if not vdir.is_dir():
            raise EvalError(f"videos directory not found: {vdir}")
        videos = list_videos(vdir)
        if not videos:
            raise EvalError(f"no .mp4 or .npy videos in {vdir}")
    truths = load_truth(truth_dir, args.size)
    try:
        ev = load_evaluators(args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise EvalError(str(e)) from None

    report: dict = {"evaluator": {"checkpoint": str(args.checkpoint or "shipped"),
                                  "report": ev.info.get("report", {}).get("clips_heldout", {}).get("clip_metrics")}}
    rows: dict[str, dict] = {}
    if videos:
        results, skipped = [], []
        for vid, path in videos.items():
            t = match_truth(vid, truths)
            if t is None:
                skipped.append(vid)
                continue
            r = evaluate_frames(ev, read_video(path), t.truth)
            r["video"] = str(path)
            results.append(r)
        if skipped:
            print(f"{PROG}: warning: no truth for {len(skipped)} video(s): {', '.join(skipped[:5])}"
                  + (" ..." if len(skipped) > 5 else ""), file=sys.stderr)
        if not results:
            raise EvalError(f"none of the {len(videos)} videos matches a clip in {truth_dir}")
        rows["generated"] = metrics.summarize(results)
        report["generated"] = {"summary": rows["generated"], "clips": results, "unmatched": skipped}
    if args.renderer_upper_bound:
        ids = [match_truth(v, truths).truth.clip_id for v in videos if match_truth(v, truths)] if videos \
            else list(truths)
        results = []
        for cid in ids:
            t = truths[cid]
            results.append(evaluate_frames(ev, t.frames(), t.truth))
        rows["renderer (upper bound)"] = metrics.summarize(results)
        report["renderer_upper_bound"] = {"summary": rows["renderer (upper bound)"], "clips": results}
    report["table"] = format_table(rows)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description="Evaluate generated videos against the synthetic world's "
                                 "ground truth with the shipped evaluators (AU_F1, AU_Emo, intensity, lip sync, "
                                 "pose, motion, instruction switch, jitter).")
    ap.add_argument("--videos", help="directory of generated videos <clip id>.mp4 / .npy")
    ap.add_argument("--truth", required=True, help="data set directory (instructavatar-data) or folder of .npz")
    ap.add_argument("--json", help="write all per-clip and summary numbers to this file")
    ap.add_argument("--renderer-upper-bound", action="store_true",
                    help="also evaluate the ground-truth renderer frames (the upper-bound row)")
    ap.add_argument("--checkpoint", help="evaluator checkpoint (default: the shipped one)")
    ap.add_argument("--size", type=int, default=128, help="render size when truth frames are not stored")
    args = ap.parse_args(argv)
    try:
        report = run(args)
        print(report["table"])
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=1, default=_json_default))
    except EvalError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


if __name__ == "__main__":
    sys.exit(main())
