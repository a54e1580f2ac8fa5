"""The per-frame control vector of the synthetic world: the one contract between behaviour, speech,
the renderer, the data generator and the evaluators.

A frame of the world is fully described by an identity (fixed per clip, see identity.py) and one
float32 vector of ``NUM_CONTROLS`` numbers laid out as ``CONTROL_NAMES``. Clips store a (T, NUM_CONTROLS)
array; the renderer draws any row of it.

Ranges (the renderer clips to them):
- AU intensities ``au01`` .. ``au45``: 0 (absent) .. 1 (maximal). AU43 is a sustained eye closure,
  AU45 a blink (brief closure); both close both eyes.
- ``eye_close_l`` / ``eye_close_r``: 0..1, one eye only (a wink). The subject's left/right.
- Speech mouth (set from the audio only, never by emotion): ``speech_jaw`` 0..1 (jaw opening),
  ``speech_width`` -1..1 (lip spreading, + wide / - narrow), ``speech_round`` 0..1 (lip rounding).
- Head pose, degrees: ``yaw`` -30..30 (+ = subject turns to their left, i.e. to image right),
  ``pitch`` -25..25 (+ = looks up), ``roll`` -25..25 (+ = tilts clockwise in the image).
- ``tx``, ``ty``: head translation as a fraction of the image size, -0.1..0.1 (+x right, +y down).
- ``gaze_x``, ``gaze_y``: -1..1 (+x = image right, +y = up).
"""

from __future__ import annotations

import numpy as np

# Action units the world renders, FACS numbering. 43 = eyes closed, 45 = blink.
AU_IDS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 12, 15, 17, 20, 23, 25, 26, 43, 45)
AU_NAMES: tuple[str, ...] = tuple(f"au{a:02d}" for a in AU_IDS)
AU_DESCRIPTIONS: dict[int, str] = {
    1: "inner brow raiser",
    2: "outer brow raiser",
    4: "brow lowerer",
    5: "upper lid raiser",
    6: "cheek raiser",
    7: "lid tightener",
    9: "nose wrinkler",
    12: "lip corner puller",
    15: "lip corner depressor",
    17: "chin raiser",
    20: "lip stretcher",
    23: "lip tightener",
    25: "lips part",
    26: "jaw drop",
    43: "eyes closed",
    45: "blink",
}

EYE_NAMES: tuple[str, ...] = ("eye_close_l", "eye_close_r")
SPEECH_NAMES: tuple[str, ...] = ("speech_jaw", "speech_width", "speech_round")
POSE_NAMES: tuple[str, ...] = ("yaw", "pitch", "roll", "tx", "ty")
GAZE_NAMES: tuple[str, ...] = ("gaze_x", "gaze_y")

CONTROL_NAMES: tuple[str, ...] = AU_NAMES + EYE_NAMES + SPEECH_NAMES + POSE_NAMES + GAZE_NAMES
NUM_CONTROLS: int = len(CONTROL_NAMES)
INDEX: dict[str, int] = {name: i for i, name in enumerate(CONTROL_NAMES)}

AU_SLICE = slice(0, len(AU_NAMES))
SPEECH_SLICE = slice(INDEX["speech_jaw"], INDEX["speech_round"] + 1)
POSE_SLICE = slice(INDEX["yaw"], INDEX["ty"] + 1)
ROTATION_SLICE = slice(INDEX["yaw"], INDEX["roll"] + 1)
GAZE_SLICE = slice(INDEX["gaze_x"], INDEX["gaze_y"] + 1)

LOW = np.zeros(NUM_CONTROLS, np.float32)
HIGH = np.ones(NUM_CONTROLS, np.float32)
LOW[INDEX["speech_width"]] = -1.0
for _name, _lim in (("yaw", 30.0), ("pitch", 25.0), ("roll", 25.0), ("tx", 0.1), ("ty", 0.1), ("gaze_x", 1.0),
                    ("gaze_y", 1.0)):
    LOW[INDEX[_name]], HIGH[INDEX[_name]] = -_lim, _lim

# An AU counts as "active" in a frame at or above this intensity (labels, AU_F1).
AU_ACTIVE_THRESHOLD: float = 0.3


def neutral(frames: int | None = None) -> np.ndarray:
    """A neutral face looking at the camera: all zeros. Shape (NUM_CONTROLS,) or (frames, NUM_CONTROLS)."""
    shape = (NUM_CONTROLS,) if frames is None else (frames, NUM_CONTROLS)
    return np.zeros(shape, np.float32)


def clip_controls(controls: np.ndarray) -> np.ndarray:
    """Clip any (..., NUM_CONTROLS) array to the documented ranges."""
    return np.clip(controls, LOW, HIGH).astype(np.float32)


def eye_closure(controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Effective closure of the subject's left and right eye, 0..1, from AU43/AU45 and the wink controls."""
    both = np.maximum(controls[..., INDEX["au43"]], controls[..., INDEX["au45"]])
    return (np.maximum(both, controls[..., INDEX["eye_close_l"]]),
            np.maximum(both, controls[..., INDEX["eye_close_r"]]))


def mouth_opening(controls: np.ndarray) -> np.ndarray:
    """Effective jaw/lip opening 0..1 the renderer draws: speech, AU25 (lips part) and AU26 (jaw drop)."""
    c = controls
    return np.clip(np.maximum(c[..., INDEX["speech_jaw"]], 0.0) + 0.25 * c[..., INDEX["au25"]]
                   + 0.75 * c[..., INDEX["au26"]], 0.0, 1.0)


def active_aus(controls: np.ndarray, threshold: float = AU_ACTIVE_THRESHOLD) -> np.ndarray:
    """Boolean (..., len(AU_IDS)) activity of each AU."""
    return controls[..., AU_SLICE] >= threshold
