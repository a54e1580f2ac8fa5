"""Metrics of the synthetic world: evaluator predictions on a generated clip against the clip's truth.

Everything here is numpy and works on two things:

- ``pred``: the dict ``Evaluators.predict(frames)`` returns (``au_prob`` (T, A), ``au_intensity`` (T, A),
  ``pose`` (T, 3) degrees yaw/pitch/roll, ``mouth`` (T, 3) opening/width/round), A = len(AU_IDS);
- ``truth``: a :class:`ClipTruth` (the ground-truth controls of the clip plus its instruction).

Definitions (one place; the data generator's labels use the same rule):

- Frame-level AU activity: ``controls.AU_ACTIVE_THRESHOLD`` on the truth's intensities; ``au_prob >= 0.5``
  on the detector's output.
- Clip-level AU set (:func:`clip_au_labels`): an AU is active in a clip when it is active in at least
  ``CLIP_MIN_FRAMES`` = 3 frames (not necessarily consecutive), as in the paper's annotation code.
- AU_F1: F1 between the clip-level AU set detected on the generated video and the truth's clip-level set;
  both sets empty counts as 1.0 (perfect agreement), one empty as 0.0. Averaged over clips.
- AU_Emo: recall of the emotion's typical AUs (``EMOTION_TYPICAL_AUS``, the authors' list, all rendered by the
  world) in the detected clip-level set. Neutral / unknown emotion: undefined (skipped).
- Intensity accuracy: the clip's score is the mean detected intensity of the emotion's typical AUs over its
  frames; two thresholds per emotion (calibrated on ground-truth renderer clips, shipped with the evaluator
  checkpoint) turn it into a level 1..3, compared to the instructed level.
- Lip sync: Pearson correlation and MAE between the detected mouth opening and the truth's speech_jaw
  trajectory (``speech.mouth_track`` of the audio). Correlation is undefined (skipped, counted) when either
  trajectory is constant (std < 1e-6), e.g. a silent clip.
- Pose: MAE in degrees of yaw/pitch/roll against the truth, and for motion instructions whether the instructed
  head motion happens (:func:`motion_happens`).
- Instruction-switch response (:func:`switch_latency`): for a clip whose instruction switches at frame k, the
  first frame j >= k from which, for 3 consecutive frames, every AU of the new behaviour is detected and no
  AU that only the old behaviour had is detected (blinks, AU45, ignored); latency = j - k frames. The same rule
  on the truth's controls gives the truth's own latency (the behaviour's ramp); ``switch_delay`` is the
  difference. Never reached: ``None`` (counted as a miss).
- Temporal jitter: mean absolute second difference per frame of the detected pose (degrees), AU intensities and
  mouth opening; reported next to the same quantity on the truth's controls, and as a ratio of the sums over
  clips (so a static truth does not divide by zero).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import controls as C

CLIP_MIN_FRAMES: int = 3
AU_PROB_THRESHOLD: float = 0.5
SWITCH_RUN: int = 3
_EPS = 1e-6

# Typical action units per emotion (authors' code, see shared/design/architecture.md); all rendered by the world.
EMOTION_TYPICAL_AUS: dict[str, tuple[int, ...]] = {
    "angry": (4, 26, 9, 7),
    "fear": (1, 26, 5, 2),
    "happy": (6, 12, 26, 7),
    "contempt": (1, 17, 12, 7),
    "disgusted": (4, 6, 15, 9),
    "sad": (4, 17, 1, 15),
    "surprised": (1, 26, 2, 7),
}
EMOTION_ALIASES: dict[str, str] = {"anger": "angry", "fearful": "fear", "afraid": "fear", "happiness": "happy",
                                   "disgust": "disgusted", "sadness": "sad", "surprise": "surprised"}

# "Does the instructed motion happen": a motion of behaviour.MOTION_POSE drives one channel; the check reads
# that channel of the prediction (pose: degrees, gaze: -1..1, eyes: closure 0..1):
# - "oscillation" (nod, shake): peak-to-peak (98th - 2nd percentile) >= the motion's apex magnitude (nod 11,
#   shake 16 degrees: the oscillation swings about twice that; idle motion stays well below);
# - "hold" (tilt, turn, look): the 95th percentile of sign * channel >= MOTION_HOLD_FRACTION of the apex;
# - "pulse" (wink): the maximum closure >= MOTION_PULSE_MIN.
MOTION_HOLD_FRACTION: float = 0.5
MOTION_PULSE_MIN: float = 0.5
_PRED_CHANNEL: dict[str, tuple[str, int]] = {"yaw": ("pose", 0), "pitch": ("pose", 1), "roll": ("pose", 2),
                                            "gaze_x": ("gaze", 0), "gaze_y": ("gaze", 1),
                                            "eye_close_l": ("eyes", 0), "eye_close_r": ("eyes", 1)}


def au_index(au: int) -> int:
    return C.AU_IDS.index(au)


def normalize_emotion(emotion: str | None) -> str | None:
    if emotion is None:
        return None
    e = str(emotion).strip().lower()
    return EMOTION_ALIASES.get(e, e) or None


def typical_aus(emotion: str | None) -> tuple[int, ...]:
    """The emotion's typical AUs restricted to the world's AUs; () for neutral / unknown."""
    return tuple(a for a in EMOTION_TYPICAL_AUS.get(normalize_emotion(emotion) or "", ()) if a in C.AU_IDS)


@dataclass
class ClipTruth:
    """What a generated clip is measured against. ``controls`` (T, NUM_CONTROLS) are the truth's controls."""

    clip_id: str
    controls: np.ndarray
    emotion: str | None = None
    intensity: int | None = None          # instructed level 1..3
    motions: tuple[str, ...] = ()         # instructed head / face motions, if any
    switch_frame: int | None = None       # frame where the instruction switches, if it does
    speech: np.ndarray | None = None      # (T, 3) speech_jaw / width / round from speech.mouth_track(audio)
    extra: dict = field(default_factory=dict)

    @property
    def speech_jaw(self) -> np.ndarray:
        if self.speech is not None:
            return np.asarray(self.speech, np.float32)[:, 0]
        return np.asarray(self.controls, np.float32)[:, C.INDEX["speech_jaw"]]


# --------------------------------------------------------------------------------------------------- AU sets
def clip_au_labels(frame_active: np.ndarray, min_frames: int = CLIP_MIN_FRAMES) -> np.ndarray:
    """Clip-level AU activity (A,) bool: AU active in at least ``min_frames`` frames of (T, A) bool activity.

    Shorter clips need the AU in every frame (min(min_frames, T)); an empty clip has no active AU."""
    fa = np.asarray(frame_active, bool)
    if fa.ndim != 2:
        raise ValueError(f"frame_active must be (T, A), got shape {fa.shape}")
    if fa.shape[0] == 0:
        return np.zeros(fa.shape[1], bool)
    return fa.sum(0) >= min(min_frames, fa.shape[0])


def truth_frame_active(controls: np.ndarray) -> np.ndarray:
    return C.active_aus(np.asarray(controls, np.float32))


def pred_frame_active(pred: Mapping[str, np.ndarray], threshold: float = AU_PROB_THRESHOLD) -> np.ndarray:
    return np.asarray(pred["au_prob"]) >= threshold


def set_f1(pred_set: np.ndarray, true_set: np.ndarray) -> float:
    """F1 of two boolean sets; both empty -> 1.0, one empty -> 0.0."""
    p, t = np.asarray(pred_set, bool), np.asarray(true_set, bool)
    tp = int((p & t).sum())
    denom = int(p.sum()) + int(t.sum())
    return 1.0 if denom == 0 else 2.0 * tp / denom


def au_f1(pred_active: np.ndarray, true_active: np.ndarray, min_frames: int = CLIP_MIN_FRAMES) -> float:
    """AU_F1 of one clip from (T, A) frame activities of the generated video and of the truth."""
    return set_f1(clip_au_labels(pred_active, min_frames), clip_au_labels(true_active, min_frames))


def au_emo(pred_active: np.ndarray, emotion: str | None, min_frames: int = CLIP_MIN_FRAMES) -> float | None:
    """Recall of the emotion's typical AUs in the clip-level detected set; None for neutral / unknown."""
    aus = typical_aus(emotion)
    if not aus:
        return None
    detected = clip_au_labels(pred_active, min_frames)
    return float(np.mean([detected[au_index(a)] for a in aus]))


def frame_f1(pred_active: np.ndarray, true_active: np.ndarray) -> dict[str, float]:
    """Frame-level micro and macro F1 over AUs (the detector's own accuracy). Macro skips AUs absent from both."""
    p, t = np.asarray(pred_active, bool).reshape(-1, len(C.AU_IDS)), np.asarray(true_active, bool).reshape(
        -1, len(C.AU_IDS))
    tp, fp, fn = (p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0)
    micro = 2 * tp.sum() / max(1, 2 * tp.sum() + fp.sum() + fn.sum())
    per = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(1, 2 * tp + fp + fn), np.nan)
    macro = float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")
    return {"micro": float(micro), "macro": macro,
            **{f"{C.AU_NAMES[i]}": float(per[i]) for i in range(len(C.AU_IDS))}}


# --------------------------------------------------------------------------------------------------- intensity
def intensity_score(au_intensity: np.ndarray, emotion: str | None) -> float | None:
    """Mean detected intensity of the emotion's typical AUs over the clip's frames; None for neutral."""
    aus = typical_aus(emotion)
    if not aus:
        return None
    x = np.asarray(au_intensity, np.float32)[:, [au_index(a) for a in aus]]
    return float(x.mean()) if x.size else None


def calibrate_intensity_thresholds(scores: Iterable[tuple[str, int, float]]) -> dict[str, list[float]]:
    """Two thresholds per emotion separating levels 1|2 and 2|3, chosen to maximise accuracy on
    (emotion, level, score) triples of ground-truth renderer clips; key "*" holds the pooled fallback."""
    by: dict[str, list[tuple[int, float]]] = {}
    for emo, lvl, s in scores:
        by.setdefault(normalize_emotion(emo) or "*", []).append((int(lvl), float(s)))
        by.setdefault("*", []).append((int(lvl), float(s)))
    out: dict[str, list[float]] = {}
    for emo, pairs in by.items():
        lv = np.array([p[0] for p in pairs])
        sc = np.array([p[1] for p in pairs])
        cand = np.unique(np.concatenate([sc, [sc.min() - 1, sc.max() + 1]]))
        mids = (cand[:-1] + cand[1:]) / 2 if len(cand) > 1 else cand
        best, best_acc = (float(np.median(sc)), float(np.median(sc))), -1.0
        for i, a in enumerate(mids):
            for b in mids[i:]:
                acc = float(np.mean(_level(sc, a, b) == lv))
                # ties: prefer the widest middle band (margins on both sides)
                if acc > best_acc + 1e-12:
                    best, best_acc = (float(a), float(b)), acc
        out[emo] = [round(best[0], 5), round(best[1], 5)]
    return out


def _level(score: np.ndarray | float, t12: float, t23: float) -> np.ndarray:
    s = np.asarray(score)
    return 1 + (s >= t12).astype(int) + (s >= t23).astype(int)


def intensity_level(score: float, emotion: str | None, thresholds: Mapping[str, Sequence[float]]) -> int:
    emo = normalize_emotion(emotion) or "*"
    t = thresholds.get(emo, thresholds.get("*"))
    if t is None:
        raise KeyError(f"no intensity thresholds for emotion {emotion!r} and no pooled fallback")
    return int(_level(score, float(t[0]), float(t[1])))


# --------------------------------------------------------------------------------------------------- lip sync
def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation of two 1-D sequences (truncated to the shorter); None if either is constant."""
    n = min(len(x), len(y))
    if n < 2:
        return None
    a, b = np.asarray(x, np.float64)[:n], np.asarray(y, np.float64)[:n]
    a, b = a - a.mean(), b - b.mean()
    sa, sb = math.sqrt(float((a * a).mean())), math.sqrt(float((b * b).mean()))
    if sa < _EPS or sb < _EPS:
        return None
    return float(np.clip((a * b).mean() / (sa * sb), -1.0, 1.0))


def mae(x: np.ndarray, y: np.ndarray) -> float:
    n = min(len(x), len(y))
    if n == 0:
        return float("nan")
    return float(np.mean(np.abs(np.asarray(x, np.float64)[:n] - np.asarray(y, np.float64)[:n])))


def lip_sync(mouth_opening: np.ndarray, speech_jaw: np.ndarray) -> dict[str, float | None]:
    return {"lipsync_corr": pearson(mouth_opening, speech_jaw), "lipsync_mae": mae(mouth_opening, speech_jaw)}


# --------------------------------------------------------------------------------------------------- pose
def motion_channel(motion: str) -> tuple[str, float, str, float] | None:
    """(channel, sign, kind, apex magnitude) of a head / eye motion, None for AU motions (checked by AU_F1)."""
    from . import behaviour

    spec = behaviour.MOTION_POSE.get(motion)
    if spec is None:
        return None
    channel, sign, kind = spec
    apex = abs(float(behaviour.MOTION_PROGRAMS[motion].apex.get(channel, 1.0)))
    return channel, float(sign), kind, apex


def motion_happens(pred: Mapping[str, np.ndarray], motion: str) -> bool | None:
    """Whether a head / eye motion shows in the predicted trajectories (see MOTION_* above); None if the
    motion is not a head / eye motion or the prediction lacks the channel."""
    spec = motion_channel(motion)
    if spec is None:
        return None
    channel, sign, kind, apex = spec
    key, col = _PRED_CHANNEL[channel]
    if key not in pred or len(pred[key]) == 0:
        return None
    x = np.asarray(pred[key], np.float64)[:, col]
    if kind == "oscillation":
        return bool(np.percentile(x, 98) - np.percentile(x, 2) >= apex)
    if kind == "hold":
        return bool(np.percentile(sign * x, 95) >= MOTION_HOLD_FRACTION * apex)
    return bool(x.max() >= MOTION_PULSE_MIN)


def truth_channels(controls: np.ndarray) -> dict[str, np.ndarray]:
    """The truth's controls laid out like a prediction's pose / gaze / eyes (for the same motion check)."""
    c = np.asarray(controls, np.float32)
    return {"pose": c[:, C.ROTATION_SLICE], "gaze": c[:, C.GAZE_SLICE], "eyes": np.stack(C.eye_closure(c), 1)}


def pose_errors(pred_pose: np.ndarray, true_controls: np.ndarray) -> dict[str, float]:
    n = min(len(pred_pose), len(true_controls))
    err = np.abs(np.asarray(pred_pose, np.float64)[:n, :3]
                 - np.asarray(true_controls, np.float64)[:n, C.ROTATION_SLICE])
    return {"pose_mae": float(err.mean()), "yaw_mae": float(err[:, 0].mean()),
            "pitch_mae": float(err[:, 1].mean()), "roll_mae": float(err[:, 2].mean())}


# --------------------------------------------------------------------------------------------------- switch
def switch_latency(frame_active: np.ndarray, true_active: np.ndarray, switch_frame: int,
                   run: int = SWITCH_RUN, min_frames: int = CLIP_MIN_FRAMES) -> int | None:
    """Frames from ``switch_frame`` until the new behaviour's AU set is shown (see module doc).

    ``frame_active`` (T, A) is the activity to test (detected, or the truth's own); ``true_active`` (T, A) the
    truth's, which defines the old set (frames before the switch) and the new set (frames from it on)."""
    fa, ta = np.asarray(frame_active, bool), np.asarray(true_active, bool)
    n = min(len(fa), len(ta))
    k = int(switch_frame)
    if not 0 < k < n:
        return None
    old, new = clip_au_labels(ta[:k], min_frames), clip_au_labels(ta[k:n], min_frames)
    ignore = np.zeros(len(C.AU_IDS), bool)
    if 45 in C.AU_IDS:
        ignore[au_index(45)] = True
    need, gone = new & ~ignore, old & ~new & ~ignore
    ok = np.all(fa[k:n][:, need], axis=1) & ~np.any(fa[k:n][:, gone], axis=1)
    for j in range(len(ok) - run + 1):
        if ok[j:j + run].all():
            return j
    return None


# --------------------------------------------------------------------------------------------------- jitter
def jitter(x: np.ndarray) -> float:
    """Mean absolute second difference per frame of a (T, ...) trajectory; 0 for T < 3."""
    a = np.asarray(x, np.float64)
    if len(a) < 3:
        return 0.0
    return float(np.mean(np.abs(a[2:] - 2 * a[1:-1] + a[:-2])))


# --------------------------------------------------------------------------------------------------- clips
def evaluate_clip(pred: Mapping[str, np.ndarray], truth: ClipTruth,
                  intensity_thresholds: Mapping[str, Sequence[float]] | None = None) -> dict:
    """All per-clip metrics of one generated clip. Values are floats, bools, ints or None (undefined)."""
    ctrl = np.asarray(truth.controls, np.float32)
    n = min(len(ctrl), len(pred["au_prob"]))
    p = {k: np.asarray(v)[:n] for k, v in pred.items()}
    ctrl = ctrl[:n]
    pa, ta = pred_frame_active(p), truth_frame_active(ctrl)
    out: dict = {"clip_id": truth.clip_id, "frames": int(n), "emotion": normalize_emotion(truth.emotion),
                 "intensity": truth.intensity}
    out["au_f1"] = au_f1(pa, ta)
    out["au_emo"] = au_emo(pa, truth.emotion)
    out["au_frame_f1"] = frame_f1(pa, ta)["micro"]
    score = intensity_score(p["au_intensity"], truth.emotion)
    out["intensity_score"] = score
    if score is not None and truth.intensity is not None and intensity_thresholds:
        lvl = intensity_level(score, truth.emotion, intensity_thresholds)
        out["intensity_pred"] = lvl
        out["intensity_acc"] = float(lvl == int(truth.intensity))
    else:
        out["intensity_pred"] = None
        out["intensity_acc"] = None
    out.update(lip_sync(p["mouth"][:, 0], truth.speech_jaw[:n]))
    out["mouth_mae"] = mae(p["mouth"][:, 0], C.mouth_opening(ctrl))
    out.update(pose_errors(p["pose"], ctrl))
    checks = [motion_happens(p, m) for m in truth.motions]
    checks = [c for c in checks if c is not None]
    out["motion_ok"] = float(np.mean(checks)) if checks else None
    if truth.switch_frame is not None:
        lat = switch_latency(pa, ta, truth.switch_frame)
        gt = switch_latency(ta, ta, truth.switch_frame)
        out["switch_latency"] = lat
        out["switch_latency_truth"] = gt
        out["switch_delay"] = None if lat is None or gt is None else lat - gt
        out["switch_hit"] = float(lat is not None)
    else:
        out["switch_latency"] = out["switch_latency_truth"] = out["switch_delay"] = out["switch_hit"] = None
    out["jitter_pose"] = jitter(p["pose"][:, :3])
    out["jitter_pose_truth"] = jitter(ctrl[:, C.ROTATION_SLICE])
    out["jitter_au"] = jitter(p["au_intensity"])
    out["jitter_au_truth"] = jitter(ctrl[:, C.AU_SLICE])
    out["jitter_mouth"] = jitter(p["mouth"][:, 0])
    out["jitter_mouth_truth"] = jitter(C.mouth_opening(ctrl))
    return out


SUMMARY_KEYS: tuple[str, ...] = (
    "au_f1", "au_emo", "au_frame_f1", "intensity_acc", "lipsync_corr", "lipsync_mae", "mouth_mae", "pose_mae",
    "yaw_mae", "pitch_mae", "roll_mae", "motion_ok", "switch_hit", "switch_latency", "switch_latency_truth",
    "switch_delay", "jitter_pose", "jitter_pose_truth", "jitter_au", "jitter_au_truth", "jitter_mouth",
    "jitter_mouth_truth")


def summarize(results: Sequence[Mapping]) -> dict:
    """Mean of each metric over the clips where it is defined, with ``n_<metric>`` the number of such clips,
    plus jitter ratios (sum over clips of detected jitter / sum of the truth's)."""
    out: dict = {"clips": len(results)}
    for key in SUMMARY_KEYS:
        vals = [float(r[key]) for r in results if r.get(key) is not None and np.isfinite(float(r[key]))]
        out[key] = float(np.mean(vals)) if vals else None
        out[f"n_{key}"] = len(vals)
    for what in ("pose", "au", "mouth"):
        num = sum(float(r.get(f"jitter_{what}") or 0.0) for r in results)
        den = sum(float(r.get(f"jitter_{what}_truth") or 0.0) for r in results)
        out[f"jitter_{what}_ratio"] = num / den if den > _EPS else None
    return out
