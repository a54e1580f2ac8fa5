"""Identities of the synthetic world: who the face is, fixed for a whole clip.

An :class:`Identity` holds every appearance parameter the renderer (render.py) needs: face shape, skin
tone, hair style and colour, eyes, brows, nose, mouth, accessories and background. ``identity(index)``
is a pure function of ``index`` (a NumPy generator seeded from it), so index ``i`` is the same face on
every machine and in every run. ``split_of`` is a fixed hash rule that holds out ~8% of the indices for
evaluation on unseen faces.

All lengths are in head units: the face is about 2 units wide and 2.6 units tall (see render.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

NUM_IDENTITIES: int = 20000
HELDOUT_PERCENT: int = 8  # split_of() holds out this percentage of indices

RGB = tuple[int, int, int]

HAIR_STYLES: tuple[str, ...] = ("bald", "short", "bob", "long", "fringe", "bun", "afro", "spiky")
ACCESSORIES: tuple[str, ...] = ("none", "glasses", "earrings", "beard", "hat", "moustache")
# Accessory draw probabilities (same order as ACCESSORIES).
_ACCESSORY_P = (0.45, 0.15, 0.1, 0.12, 0.1, 0.08)

# Anchor skin tones, light -> dark; an identity interpolates between two neighbours.
_SKIN_RAMP = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 94), (160, 104, 70),
                       (116, 72, 48), (84, 54, 38)], np.float64)
_HAIR_COLOURS = np.array([(20, 16, 14), (52, 34, 24), (92, 60, 36), (140, 88, 48), (168, 72, 36),
                          (214, 180, 112), (230, 212, 160), (150, 150, 150), (225, 225, 225),
                          (60, 80, 170), (190, 70, 140), (60, 140, 90)], np.float64)
_HAIR_P = np.array([18, 18, 14, 10, 6, 8, 5, 6, 4, 3, 4, 4], np.float64)
_IRIS_COLOURS = np.array([(70, 42, 24), (110, 72, 36), (120, 110, 50), (60, 110, 170), (70, 130, 80),
                          (120, 130, 140)], np.float64)
_LIP_BASE = np.array([(190, 90, 90), (170, 80, 80), (150, 70, 80), (200, 110, 110), (130, 60, 60)],
                     np.float64)


@dataclass(frozen=True)
class Identity:
    """Appearance of one synthetic person. Immutable and hashable (the renderer caches on it)."""

    index: int
    # Face shape (head units / scale factors).
    face_width: float      # half-width of the face at cheek level, ~0.88..1.08
    face_height: float     # vertical scale of the face outline, ~0.92..1.08
    jaw_width: float       # half-width of the jaw at the jaw angle, fraction of face_width
    chin_width: float      # half-width of the chin, head units
    chin_drop: float       # how far the chin extends below the mouth, head units
    skin: RGB
    # Hair.
    hair_style: str        # one of HAIR_STYLES
    hair_colour: RGB
    # Eyes.
    eye_size: float        # scale of the eye opening, ~0.85..1.2
    eye_roundness: float   # upper lid height / half-width, ~0.45..0.75
    eye_spacing: float     # x of the eye centres, head units
    eye_height: float      # y of the eye centres
    eye_tilt: float        # outer corners up (+) / down (-), head units
    iris_colour: RGB
    # Brows.
    brow_arch: float       # 0 flat .. 1 strongly arched
    brow_thickness: float  # head units
    brow_colour: RGB
    # Nose.
    nose_length: float     # bridge top to tip, head units
    nose_width: float      # half-width of the nostril wings
    nose_bulb: float       # tip roundness 0..1
    # Mouth.
    mouth_width: float     # half-width, head units
    lip_thickness: float   # neutral lip thickness (upper ~ 0.8x, lower ~ 1x)
    lip_colour: RGB
    # Accessories and scene.
    accessory: str         # one of ACCESSORIES
    accessory_colour: RGB
    shirt_colour: RGB
    background_top: RGB
    background_bottom: RGB  # equal to background_top for a solid background


def _rgb(values: np.ndarray) -> RGB:
    v = np.clip(np.round(values), 0, 255).astype(int)
    return int(v[0]), int(v[1]), int(v[2])


def identity(index: int) -> Identity:
    """The identity with this index, 0 <= index < NUM_IDENTITIES; deterministic in ``index``."""
    index = int(index)
    if not 0 <= index < NUM_IDENTITIES:
        raise ValueError(f"identity index {index} out of range 0..{NUM_IDENTITIES - 1}")
    return _identity(index)


@lru_cache(maxsize=4096)
def _identity(index: int) -> Identity:
    rng = np.random.default_rng([0x1DE57, index])
    u = rng.uniform

    t = u(0, len(_SKIN_RAMP) - 1)
    lo = int(t)
    skin = _SKIN_RAMP[lo] * (1 - (t - lo)) + _SKIN_RAMP[min(lo + 1, len(_SKIN_RAMP) - 1)] * (t - lo)
    skin = skin + rng.normal(0, 6, 3)

    hair = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_P / _HAIR_P.sum())] + rng.normal(0, 8, 3)
    style = HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))]
    brow = hair * 0.75 if hair.mean() < 180 else hair * 0.55  # light hair still gets visible brows
    brow = np.minimum(brow, skin * 0.55)  # brows are always clearly darker than the skin

    iris = _IRIS_COLOURS[int(rng.integers(len(_IRIS_COLOURS)))] + rng.normal(0, 8, 3)
    lip = _LIP_BASE[int(rng.integers(len(_LIP_BASE)))] * 0.45 + skin * 0.55 * np.array([0.8, 0.55, 0.58])
    contrast = np.abs(lip - skin).sum()
    if contrast < 110:  # keep the lips readable against the skin (mouth AUs must show at 64x64)
        lip = skin + (lip - skin) * (110 / max(contrast, 1e-6))

    accessory = ACCESSORIES[rng.choice(len(ACCESSORIES), p=_ACCESSORY_P)]
    bg_top = u(20, 235, 3)
    bg_bottom = bg_top if u() < 0.5 else u(20, 235, 3)

    return Identity(
        index=index,
        face_width=float(u(0.88, 1.08)),
        face_height=float(u(0.92, 1.08)),
        jaw_width=float(u(0.62, 0.86)),
        chin_width=float(u(0.22, 0.38)),
        chin_drop=float(u(0.5, 0.64)),
        skin=_rgb(skin),
        hair_style=style,
        hair_colour=_rgb(hair),
        eye_size=float(u(0.88, 1.18)),
        eye_roundness=float(u(0.45, 0.72)),
        eye_spacing=float(u(0.36, 0.44)),
        eye_height=float(u(0.06, 0.14)),
        eye_tilt=float(u(-0.025, 0.035)),
        iris_colour=_rgb(iris),
        brow_arch=float(u(0.0, 1.0)),
        brow_thickness=float(u(0.055, 0.09)),
        brow_colour=_rgb(brow),
        nose_length=float(u(0.4, 0.54)),
        nose_width=float(u(0.13, 0.2)),
        nose_bulb=float(u(0.0, 1.0)),
        mouth_width=float(u(0.25, 0.33)),
        lip_thickness=float(u(0.06, 0.1)),
        lip_colour=_rgb(lip),
        accessory=accessory,
        accessory_colour=_rgb(u(10, 245, 3)),
        shirt_colour=_rgb(u(20, 235, 3)),
        background_top=_rgb(bg_top),
        background_bottom=_rgb(bg_bottom),
    )


def split_of(index: int) -> str:
    """``"train"`` or ``"heldout"``: a fixed multiplicative-hash rule holding out ~HELDOUT_PERCENT %."""
    h = (int(index) * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF
    h ^= h >> 16
    return "heldout" if (h * 0x85EBCA6B & 0xFFFFFFFF) % 100 < HELDOUT_PERCENT else "train"


def identity_ids(split: str, count: int | None = None) -> list[int]:
    """The first ``count`` (all if None) identity indices of ``split`` ("train" or "heldout"), ascending."""
    if split not in ("train", "heldout"):
        raise ValueError(f"unknown split {split!r}")
    out: list[int] = []
    for i in range(NUM_IDENTITIES):
        if split_of(i) == split:
            out.append(i)
            if count is not None and len(out) >= count:
                break
    if count is not None and len(out) < count:
        raise ValueError(f"only {len(out)} identities in split {split!r}, asked for {count}")
    return out
