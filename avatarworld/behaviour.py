"""Behaviour of the synthetic world: how a face moves over time for an emotion, a motion instruction or
nothing in particular. Everything here produces (T, NUM_CONTROLS) float32 arrays (see controls.py) at
``FPS`` frames per second; the speech mouth channels are never touched (they come from the audio only,
see speech.mouth_track and clips.make_clip).

- Emotions: a pattern of action units (and a small head-pose / gaze offset) per emotion, scaled by the
  intensity level (1..3, ``LEVEL_SCALE``), with per-clip jitter of the magnitudes and an onset / apex
  (slowly modulated) / optional partial offset envelope.
- Motions: each motion instruction is a program of AU, eye, pose and gaze trajectories inside a time
  window; several motions run one after another ("then") or together ("and").
- Idle: blinks (AU45 every 2-6 s, 160-240 ms), slow smooth head motion of a few degrees, small head
  translation, gaze micro-motion with occasional small saccades.

Left/right always mean the subject's own left/right, as in controls.py: "look left" turns the eyes and
the head to the subject's left, i.e. to the image right (gaze_x > 0, yaw > 0); "tilt head left" rolls
the head top toward the subject's left (image right: clockwise, roll > 0); "wink left" closes the
subject's left eye (eye_close_l).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .controls import AU_ACTIVE_THRESHOLD, AU_IDS, INDEX, NUM_CONTROLS, clip_controls
from .instructions import EMOTIONS, INTENSITIES

FPS = 25

# Nominal scale of an emotion's AU magnitudes per intensity level (before per-clip jitter of about +-6%):
# the strongest AU of an emotion sits near 0.42 / 0.66 / 0.95, so the level is recoverable from a frame.
LEVEL_SCALE: dict[int, float] = {1: 0.42, 2: 0.66, 3: 0.95}

# Emotion -> AU pattern at full strength (multiplied by LEVEL_SCALE[intensity]). Starts from the typical
# AUs of the authors' code (architecture.md, metrics.EMOTION_TYPICAL_AUS): at level 3 every typical AU is
# active (>= AU_ACTIVE_THRESHOLD even after jitter), and extra AUs keep every emotion distinct. Jaw drop
# (AU26, weight <= 0.5) stays moderate so that speech still drives the mouth.
EMOTION_AUS: dict[str, dict[int, float]] = {
    "angry": {4: 1.0, 7: 0.85, 9: 0.55, 23: 0.7, 17: 0.35, 26: 0.4},
    "contempt": {17: 0.9, 12: 0.55, 7: 0.65, 1: 0.42, 23: 0.35},
    "disgusted": {9: 1.0, 4: 0.6, 6: 0.55, 15: 0.75, 17: 0.5, 25: 0.3},
    "fear": {1: 1.0, 2: 0.8, 5: 1.0, 4: 0.45, 20: 0.85, 25: 0.5, 26: 0.4},
    "happy": {12: 1.0, 6: 0.9, 25: 0.55, 7: 0.42, 26: 0.4},
    "sad": {1: 1.0, 15: 0.9, 4: 0.65, 17: 0.6},
    "surprised": {1: 1.0, 2: 1.0, 5: 0.9, 25: 0.6, 26: 0.5, 7: 0.4},
    "neutral": {},
}

# Emotion -> head pose / gaze offset at full strength (degrees, gaze units), scaled like the AUs.
EMOTION_POSE: dict[str, dict[str, float]] = {
    "angry": {"pitch": -3.0},
    "contempt": {"pitch": 4.0, "yaw": 5.0, "roll": 3.0, "gaze_x": -0.2},
    "disgusted": {"pitch": -1.5, "yaw": -4.0},
    "fear": {"pitch": -2.0, "ty": 0.01},
    "happy": {"pitch": 2.0},
    "sad": {"pitch": -6.0, "gaze_y": -0.35},
    "surprised": {"pitch": 3.0},
    "neutral": {},
}

_AU_COLUMN = {a: INDEX[f"au{a:02d}"] for a in AU_IDS}


def _au(a: int) -> int:
    return _AU_COLUMN[a]


# --------------------------------------------------------------------------------------------------
# small signal helpers


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _ramp_hold(n: int, start: float, end: float, ramp_in: float, ramp_out: float | None) -> np.ndarray:
    """0 before ``start``, smooth rise over ``ramp_in`` frames, 1 until ``end``, then a smooth fall over
    ``ramp_out`` frames (no fall when ramp_out is None: hold to the end of the clip)."""
    t = np.arange(n, dtype=np.float64)
    env = _smoothstep((t - start) / max(ramp_in, 1.0))
    if ramp_out is not None:
        env = env * (1.0 - _smoothstep((t - (end - ramp_out)) / max(ramp_out, 1.0)))
    return env


def _pulse(n: int, center: float, width: float) -> np.ndarray:
    """A raised-cosine pulse of total ``width`` frames with peak 1 at ``center``."""
    t = np.arange(n, dtype=np.float64)
    x = (t - center) / (width / 2.0)
    return np.where(np.abs(x) < 1.0, 0.5 * (1.0 + np.cos(np.pi * x)), 0.0)


def smooth_noise(n: int, rng: np.random.Generator, fmin: float = 0.05, fmax: float = 0.45,
                 components: int = 3) -> np.ndarray:
    """Slow smooth zero-mean noise with unit-ish amplitude: a sum of a few random sinusoids (Hz at FPS)."""
    t = np.arange(n, dtype=np.float64) / FPS
    freqs = rng.uniform(fmin, fmax, components)
    phases = rng.uniform(0.0, 2 * np.pi, components)
    weights = rng.uniform(0.5, 1.0, components)
    out = (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])).sum(0)
    return out / weights.sum() * 1.4


def blink_track(n: int, rng: np.random.Generator, interval: tuple[float, float] = (2.0, 6.0)) -> np.ndarray:
    """AU45 over time: blinks every 2-6 s, each 160-240 ms long with a peak of 0.9-1.0."""
    track = np.zeros(n)
    t = rng.uniform(0.3, min(interval[1], 3.5)) * FPS
    while t < n:
        width = rng.uniform(0.16, 0.24) * FPS
        track = np.maximum(track, rng.uniform(0.9, 1.0) * _pulse(n, t, width))
        t += rng.uniform(*interval) * FPS
    return track


# --------------------------------------------------------------------------------------------------
# idle behaviour


def idle_controls(n_frames: int, rng: np.random.Generator, blinks: bool = True) -> np.ndarray:
    """A neutral face at rest: blinks, slow head motion (a few degrees), gaze micro-motion."""
    c = np.zeros((n_frames, NUM_CONTROLS), np.float64)
    if blinks:
        c[:, INDEX["au45"]] = blink_track(n_frames, rng)
    for name, lo, hi in (("yaw", 1.5, 3.5), ("pitch", 1.0, 2.5), ("roll", 0.7, 2.0), ("tx", 0.003, 0.008),
                         ("ty", 0.002, 0.006)):
        c[:, INDEX[name]] = rng.uniform(lo, hi) * smooth_noise(n_frames, rng)
    # gaze: fixations held 0.6-2.5 s with quick saccades between them, plus tiny drift
    for name, spread in (("gaze_x", 0.12), ("gaze_y", 0.08)):
        target = np.zeros(n_frames)
        t, value = 0, rng.normal(0.0, spread)
        while t < n_frames:
            hold = int(rng.uniform(0.6, 2.5) * FPS)
            target[t:t + hold] = value
            t += hold
            value = rng.normal(0.0, spread)
        kernel = np.ones(3) / 3.0
        target = np.convolve(np.pad(target, 1, mode="edge"), kernel, mode="valid")
        c[:, INDEX[name]] = target + 0.02 * smooth_noise(n_frames, rng, 0.3, 1.5)
    return c.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# emotions


def emotion_magnitudes(emotion: str, intensity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """The apex AU magnitudes (len(AU_IDS),) of an emotion at a level; jittered per clip when rng given."""
    if emotion not in EMOTION_AUS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
    if intensity not in LEVEL_SCALE:
        raise ValueError(f"intensity must be one of {INTENSITIES}, got {intensity!r}")
    mags = np.zeros(len(AU_IDS))
    scale = LEVEL_SCALE[intensity]
    if rng is not None:
        scale *= float(np.clip(rng.normal(1.0, 0.04), 0.92, 1.08))
    for a, w in EMOTION_AUS[emotion].items():
        j = float(np.clip(rng.normal(1.0, 0.05), 0.9, 1.1)) if rng is not None else 1.0
        mags[AU_IDS.index(a)] = min(1.0, w * scale * j)
    return mags


def emotion_target_aus(emotion: str, intensity: int) -> tuple[int, ...]:
    """AUs an emotion instruction asks for: those whose nominal apex magnitude is >= the active threshold."""
    mags = emotion_magnitudes(emotion, intensity)
    return tuple(a for a, m in zip(AU_IDS, mags) if m >= AU_ACTIVE_THRESHOLD)


def emotion_envelope(n: int, rng: np.random.Generator) -> np.ndarray:
    """Onset (from a partial level to the apex in 0.2-0.8 s), an apex slowly modulated by +-6%, and with
    probability 0.3 a partial offset over the last 0.3-0.8 s (down to 60-90% of the apex)."""
    start_level = rng.uniform(0.35, 0.9)
    onset = rng.uniform(0.2, 0.8) * FPS
    env = start_level + (1.0 - start_level) * _ramp_hold(n, 0.0, n, onset, None)
    env = env * (1.0 + 0.06 * smooth_noise(n, rng, 0.1, 0.6))
    if rng.random() < 0.3:
        off = rng.uniform(0.3, 0.8) * FPS
        floor = rng.uniform(0.6, 0.9)
        t = np.arange(n)
        env = env * (1.0 - (1.0 - floor) * _smoothstep((t - (n - off)) / off))
    return np.clip(env, 0.0, 1.05)


def emotion_controls(emotion: str, intensity: int, n_frames: int, rng: np.random.Generator,
                     idle: bool = True) -> np.ndarray:
    """(T, NUM_CONTROLS) controls of a face showing ``emotion`` at ``intensity`` (1..3) for the whole clip,
    with idle blinks / head motion / gaze when ``idle``. Speech channels stay 0."""
    c = idle_controls(n_frames, rng).astype(np.float64) if idle else np.zeros((n_frames, NUM_CONTROLS))
    if emotion == "neutral":
        emotion_magnitudes(emotion, intensity)  # validates the arguments
        return clip_controls(c)
    mags = emotion_magnitudes(emotion, intensity, rng)
    env = emotion_envelope(n_frames, rng)
    for k, a in enumerate(AU_IDS):
        if mags[k] <= 0.0:
            continue
        lag = int(rng.integers(0, 4))  # AUs do not all move in lockstep
        e = np.concatenate([np.full(lag, env[0]), env[:n_frames - lag]]) if lag else env
        c[:, _au(a)] = np.maximum(c[:, _au(a)], mags[k] * e)
    scale = LEVEL_SCALE[intensity]
    for name, value in EMOTION_POSE[emotion].items():
        c[:, INDEX[name]] += value * scale * rng.uniform(0.8, 1.2) * env
    return clip_controls(c)


# --------------------------------------------------------------------------------------------------
# motion instructions

# A program writes its trajectories into a float64 (T, NUM_CONTROLS) "max" array (AUs, eye closure) and
# an "add" array (pose, gaze) for the window [t0, t1) (frames); ``apex`` says the trajectories' peak.


@dataclass(frozen=True)
class MotionProgram:
    name: str
    aus: tuple[int, ...]  # AUs the instruction asks for (the AU label target)
    run: Callable[[np.ndarray, np.ndarray, float, float, np.random.Generator, bool], None]
    apex: dict[str, float]  # the controls at the peak of the motion (AUs/eyes: max, pose/gaze: added)


def _hold_env(n: int, t0: float, t1: float, rng: np.random.Generator, last: bool) -> np.ndarray:
    ramp_in = rng.uniform(0.25, 0.5) * FPS
    # the last motion of a clip releases near the end with probability 0.5, earlier ones always release
    ramp_out = rng.uniform(0.25, 0.45) * FPS if (not last or rng.random() < 0.5) else None
    start = t0 + rng.uniform(0.0, 0.15) * FPS
    return _ramp_hold(n, start, t1, ramp_in, ramp_out)


def _au_program(weights: dict[int, float], extra_max: dict[str, float] | None = None):
    def run(mx, add, t0, t1, rng, last):
        env = _hold_env(len(mx), t0, t1, rng, last)
        m = rng.uniform(0.85, 1.0)
        for a, w in weights.items():
            mx[:, _au(a)] = np.maximum(mx[:, _au(a)], min(1.0, w * m) * env)
        for name, w in (extra_max or {}).items():
            mx[:, INDEX[name]] = np.maximum(mx[:, INDEX[name]], w * m * env)
    return run


def _pose_hold_program(values: dict[str, tuple[float, float]]):
    def run(mx, add, t0, t1, rng, last):
        env = _hold_env(len(add), t0, t1, rng, last)
        for name, (lo, hi) in values.items():
            add[:, INDEX[name]] += rng.uniform(lo, hi) * env
    return run


def _oscillation_program(name: str, amp: tuple[float, float], freq: tuple[float, float], sign: float):
    def run(mx, add, t0, t1, rng, last):
        n = len(add)
        f = rng.uniform(*freq)
        a = rng.uniform(*amp)
        start = t0 + rng.uniform(0.0, 0.15) * FPS
        dur = min(t1 - start, rng.uniform(2.0, 3.0) / f * FPS)  # 2-3 cycles, within the window
        t = np.arange(n, dtype=np.float64)
        taper = _ramp_hold(n, start, start + dur, 0.12 * FPS, 0.2 * FPS)
        wave = np.sin(2 * np.pi * f * (t - start) / FPS)
        add[:, INDEX[name]] += sign * a * wave * taper * (t >= start)
    return run


def _wink_program(eye: str):
    def run(mx, add, t0, t1, rng, last):
        n = len(mx)
        width = rng.uniform(0.35, 0.7) * FPS
        center = t0 + rng.uniform(0.1, 0.3) * FPS + width / 2
        center = min(center, max(t0, t1 - width / 2))
        p = np.clip(1.15 * _pulse(n, center, width), 0.0, 1.0)  # a flat top: fully closed for a moment
        mx[:, INDEX[eye]] = np.maximum(mx[:, INDEX[eye]], p)
        mx[:, _au(6)] = np.maximum(mx[:, _au(6)], 0.2 * p)
    return run


def _blink_program(mx, add, t0, t1, rng, last):
    n = len(mx)
    count = int(rng.integers(1, 4))
    t = t0 + rng.uniform(0.1, 0.3) * FPS
    for _ in range(count):
        width = rng.uniform(0.18, 0.26) * FPS
        if t + width / 2 > t1:
            break
        mx[:, _au(45)] = np.maximum(mx[:, _au(45)], _pulse(n, t + width / 2, width))
        t += width + rng.uniform(0.25, 0.6) * FPS


def _au_motion(name: str, weights: dict[int, float]) -> MotionProgram:
    aus = tuple(sorted(a for a, w in weights.items() if w * 0.85 >= AU_ACTIVE_THRESHOLD))
    apex = {f"au{a:02d}": round(w * 0.925, 4) for a, w in weights.items()}
    return MotionProgram(name, aus, _au_program(weights), apex)


MOTION_PROGRAMS: dict[str, MotionProgram] = {p.name: p for p in (
    _au_motion("raise_eyebrows", {1: 1.0, 2: 0.95}),
    _au_motion("frown", {4: 1.0, 7: 0.25}),
    _au_motion("close_eyes", {43: 1.0}),
    MotionProgram("wink_left", (), _wink_program("eye_close_l"), {"eye_close_l": 1.0, "au06": 0.2}),
    MotionProgram("wink_right", (), _wink_program("eye_close_r"), {"eye_close_r": 1.0, "au06": 0.2}),
    _au_motion("smile", {12: 1.0, 6: 0.75}),
    _au_motion("open_mouth_wide", {25: 1.0, 26: 0.95}),
    MotionProgram("nod", (), _oscillation_program("pitch", (8.0, 14.0), (1.2, 2.0), -1.0), {"pitch": -11.0}),
    MotionProgram("shake_head", (), _oscillation_program("yaw", (12.0, 20.0), (1.0, 1.6), 1.0),
                  {"yaw": 16.0}),
    MotionProgram("tilt_head_left", (), _pose_hold_program({"roll": (12.0, 18.0)}), {"roll": 15.0}),
    MotionProgram("tilt_head_right", (), _pose_hold_program({"roll": (-18.0, -12.0)}), {"roll": -15.0}),
    MotionProgram("turn_head_left", (), _pose_hold_program({"yaw": (15.0, 24.0)}), {"yaw": 19.5}),
    MotionProgram("turn_head_right", (), _pose_hold_program({"yaw": (-24.0, -15.0)}), {"yaw": -19.5}),
    MotionProgram("look_left", (), _pose_hold_program({"gaze_x": (0.7, 0.95), "yaw": (5.0, 10.0)}),
                  {"gaze_x": 0.85, "yaw": 7.5}),
    MotionProgram("look_right", (), _pose_hold_program({"gaze_x": (-0.95, -0.7), "yaw": (-10.0, -5.0)}),
                  {"gaze_x": -0.85, "yaw": -7.5}),
    MotionProgram("look_up", (), _pose_hold_program({"gaze_y": (0.6, 0.9), "pitch": (5.0, 9.0)}),
                  {"gaze_y": 0.75, "pitch": 7.0}),
    MotionProgram("look_down", (), _pose_hold_program({"gaze_y": (-0.9, -0.6), "pitch": (-9.0, -5.0)}),
                  {"gaze_y": -0.75, "pitch": -7.0}),
    MotionProgram("blink", (45,), _blink_program, {"au45": 1.0}),
    # single-AU motions (used when the instruction vocabulary names them)
    _au_motion("raise_inner_brows", {1: 1.0}),
    _au_motion("widen_eyes", {5: 1.0}),
    _au_motion("squint", {7: 1.0}),
    _au_motion("wrinkle_nose", {9: 1.0}),
    _au_motion("lip_corners_down", {15: 1.0}),
    _au_motion("raise_chin", {17: 1.0}),
    _au_motion("stretch_lips", {20: 1.0}),
    _au_motion("press_lips", {23: 1.0, 17: 0.5}),
    _au_motion("part_lips", {25: 1.0}),
    _au_motion("drop_jaw", {26: 0.9, 25: 0.6}),
    _au_motion("raise_cheeks", {6: 1.0}),
)}

MOTIONS: tuple[str, ...] = tuple(MOTION_PROGRAMS)

# The channel a pose motion moves, for tests and evaluators: (channel, sign of the apex, kind).
MOTION_POSE: dict[str, tuple[str, float, str]] = {
    "nod": ("pitch", -1.0, "oscillation"), "shake_head": ("yaw", 1.0, "oscillation"),
    "tilt_head_left": ("roll", 1.0, "hold"), "tilt_head_right": ("roll", -1.0, "hold"),
    "turn_head_left": ("yaw", 1.0, "hold"), "turn_head_right": ("yaw", -1.0, "hold"),
    "look_left": ("gaze_x", 1.0, "hold"), "look_right": ("gaze_x", -1.0, "hold"),
    "look_up": ("gaze_y", 1.0, "hold"), "look_down": ("gaze_y", -1.0, "hold"),
    "wink_left": ("eye_close_l", 1.0, "pulse"), "wink_right": ("eye_close_r", 1.0, "pulse"),
}


def motion_target_aus(motions: Sequence[str]) -> tuple[int, ...]:
    """AUs a motion instruction asks for (sorted, FACS numbers)."""
    out: set[int] = set()
    for m in motions:
        out.update(_program(m).aus)
    return tuple(sorted(out))


def _program(name: str) -> MotionProgram:
    try:
        return MOTION_PROGRAMS[name]
    except KeyError:
        raise ValueError(f"unknown motion {name!r}; expected one of {MOTIONS}") from None


def motion_windows(count: int, n_frames: int, rng: np.random.Generator,
                   sequential: bool) -> list[tuple[float, float]]:
    """Frame windows [t0, t1) for ``count`` motions: consecutive slices of the clip ("then"), or one
    shared window with small per-motion offsets ("and"). A 0.1-0.5 s lead-in and 0.2-0.4 s tail stay idle."""
    lead = rng.uniform(0.1, 0.5) * FPS
    tail = rng.uniform(0.2, 0.4) * FPS
    span = max(n_frames - lead - tail, 1.0)
    if sequential and count > 1:
        cuts = np.linspace(0.0, 1.0, count + 1)
        cuts[1:-1] += rng.uniform(-0.08, 0.08, count - 1) / count
        return [(lead + span * cuts[i], lead + span * cuts[i + 1]) for i in range(count)]
    return [(lead + rng.uniform(0.0, 0.1) * FPS, lead + span) for _ in range(count)]


def apply_motions(base: np.ndarray, motions: Sequence[str], rng: np.random.Generator,
                  sequential: bool = False) -> np.ndarray:
    """Add motion instructions on top of ``base`` controls (T, NUM_CONTROLS): AUs and eye closure take the
    maximum, pose and gaze add. Returns clipped float32 controls."""
    n = len(base)
    mx = np.zeros((n, NUM_CONTROLS))
    add = np.zeros((n, NUM_CONTROLS))
    windows = motion_windows(len(motions), n, rng, sequential)
    for k, (m, (t0, t1)) in enumerate(zip(motions, windows)):
        _program(m).run(mx, add, t0, t1, rng, k == len(motions) - 1)
    out = np.maximum(base.astype(np.float64), mx) + add
    return clip_controls(out)


def motion_controls(motions: Sequence[str] | str, n_frames: int, rng: np.random.Generator,
                    sequential: bool = False, idle: bool = True) -> np.ndarray:
    """(T, NUM_CONTROLS) controls of a neutral face performing ``motions`` one after another
    (``sequential``, "then") or together ("and"), over idle behaviour. Speech channels stay 0."""
    motions = (motions,) if isinstance(motions, str) else tuple(motions)
    for m in motions:
        _program(m)
    base = idle_controls(n_frames, rng) if idle else np.zeros((n_frames, NUM_CONTROLS), np.float32)
    return apply_motions(base, motions, rng, sequential)


# --------------------------------------------------------------------------------------------------
# single representative frames

def apex_controls(emotion: str | None = None, intensity: int | None = None,
                  motions: Sequence[str] = ()) -> np.ndarray:
    """One deterministic (NUM_CONTROLS,) frame: the emotion at its apex (nominal magnitudes, pose offset) and
    each motion at its peak (nod: head down, shake: turned, ...). For contact sheets and tests."""
    c = np.zeros(NUM_CONTROLS, np.float64)
    if emotion is not None:
        level = 3 if intensity is None else intensity
        c[[_au(a) for a in AU_IDS]] = emotion_magnitudes(emotion, level)
        for name, value in EMOTION_POSE[emotion].items():
            c[INDEX[name]] += value * LEVEL_SCALE[level]
    for m in (motions,) if isinstance(motions, str) else motions:
        for name, value in _program(m).apex.items():
            if name.startswith(("au", "eye_close")):
                c[INDEX[name]] = max(c[INDEX[name]], value)
            else:
                c[INDEX[name]] += value
    return clip_controls(c)
