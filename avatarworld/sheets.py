"""Contact sheets of the synthetic world (PNG, laid out and labelled with PIL).

- :func:`identities_sheet`: rows = held-out identities, columns = the 8 emotions at one intensity
  (behaviour.apex_controls: the nominal apex frame, no jitter).
- :func:`motions_sheet`: rows = motion instructions, columns = a few time points of the motion as the
  behaviour performs it (a fixed seed), so that nods and shakes read as a strip.
- :func:`intensities_sheet`: rows = emotions, columns = intensity 1, 2, 3 for one identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import behaviour
from .identity import identity, identity_ids
from .render import FaceRenderer

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
PAD = 4


def _font(px: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def grid(cells: list[list[np.ndarray]], col_labels: Sequence[str], row_labels: Sequence[str],
         title: str | None = None, font_px: int = 13, groups: int = 1) -> Image.Image:
    """Lay out equally sized (H, W, 3) uint8 cells as a labelled grid; ``groups`` > 1 splits the rows into
    that many blocks placed side by side (for long lists of rows)."""
    font = _font(font_px)
    h, w = cells[0][0].shape[:2]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(int(probe.textlength(r, font=font)) for r in row_labels) + 2 * PAD
    head_h = font_px + 2 * PAD
    title_h = font_px + 3 * PAD if title else 0
    ncols = max(len(r) for r in cells)
    per_group = -(-len(cells) // groups)
    block_w = label_w + ncols * (w + PAD) + 3 * PAD
    width = groups * block_w
    height = title_h + head_h + per_group * (h + PAD) + PAD
    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((PAD, PAD), title, fill=TEXT, font=font)
    for g in range(groups):
        x0 = g * block_w
        for j, label in enumerate(col_labels):
            x = x0 + label_w + j * (w + PAD) + (w - draw.textlength(label, font=font)) / 2
            draw.text((x, title_h + PAD), label, fill=TEXT, font=font)
        for i, row in enumerate(cells[g * per_group:(g + 1) * per_group]):
            y = title_h + head_h + i * (h + PAD)
            draw.text((x0 + PAD, y + (h - font_px) / 2), row_labels[g * per_group + i], fill=TEXT, font=font)
            for j, cell in enumerate(row):
                img.paste(Image.fromarray(np.asarray(cell, np.uint8)), (x0 + label_w + j * (w + PAD), y))
    return img


def identities_sheet(out: str | Path, n_identities: int = 6, intensity: int = 3, size: int = 128,
                     split: str = "heldout") -> Path:
    """Rows: the first ``n_identities`` identities of ``split``; columns: the 8 emotions at ``intensity``."""
    renderer = FaceRenderer(size)
    ids = identity_ids(split, n_identities)
    cells = [[renderer.render(identity(i), behaviour.apex_controls(e, intensity)) for e in behaviour.EMOTIONS]
             for i in ids]
    img = grid(cells, list(behaviour.EMOTIONS), [f"id {i}" for i in ids],
               title=f"{split} identities x emotions, intensity {intensity}")
    return _save(img, out)


def intensities_sheet(out: str | Path, ident: int | None = None, size: int = 128) -> Path:
    """Rows: emotions; columns: intensity 1, 2, 3 (one identity)."""
    renderer = FaceRenderer(size)
    i = identity_ids("heldout", 1)[0] if ident is None else ident
    emotions = [e for e in behaviour.EMOTIONS if e != "neutral"]
    cells = [[renderer.render(identity(i), behaviour.apex_controls(e, k)) for k in behaviour.INTENSITIES]
             for e in emotions]
    img = grid(cells, [f"level {k}" for k in behaviour.INTENSITIES], emotions, title=f"identity {i}")
    return _save(img, out)


DEFAULT_SHEET_MOTIONS: tuple[str, ...] = (
    "raise_eyebrows", "frown", "close_eyes", "wink_left", "wink_right", "smile", "open_mouth_wide", "nod",
    "shake_head", "tilt_head_left", "tilt_head_right", "look_left", "look_right", "look_up", "look_down",
    "blink",
)


def motion_strip(motion: str, ident: int, renderer: FaceRenderer, points: int = 4, seconds: float = 3.0,
                 seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """``points`` frames of one motion as performed over ``seconds`` (no idle motion, so only the
    instruction moves). The time points are spread around the motion's most active stretch."""
    n = int(seconds * behaviour.FPS)
    c = behaviour.motion_controls([motion], n, np.random.default_rng(seed), idle=False)
    activity = np.abs(c).sum(1)
    active = np.flatnonzero(activity > 0.25 * activity.max()) if activity.max() > 0 else np.arange(n)
    lo, hi = int(active[0]), int(active[-1])
    if motion in ("nod", "shake_head"):  # an oscillation: show its extremes
        channel = c[:, behaviour.INDEX["pitch" if motion == "nod" else "yaw"]]
        t = sorted({lo, int(np.argmin(channel)), int(np.argmax(channel)), hi})
    elif motion in ("blink", "wink_left", "wink_right"):  # a pulse: before, peak, after
        peak = int(np.argmax(activity))
        t = [max(peak - 8, 0), max(peak - 2, 0), peak, min(peak + 8, n - 1)]
    else:
        t = [max(lo - 6, 0), lo + (hi - lo) // 6, (lo + hi) // 2, min(hi + 6, n - 1)]
    t = sorted(t)[:points]
    frames = [renderer.render(identity(ident), c[k]) for k in t]
    return frames, t


def motions_sheet(out: str | Path, motions: Sequence[str] = DEFAULT_SHEET_MOTIONS, ident: int | None = None,
                  size: int = 112, points: int = 4) -> Path:
    """Rows: motion instructions; columns: ``points`` time points of each (frame numbers in the label)."""
    renderer = FaceRenderer(size)
    i = identity_ids("heldout", 3)[2] if ident is None else ident
    cells, labels = [], []
    for m in motions:
        frames, t = motion_strip(m, i, renderer, points)
        while len(frames) < points:
            frames.append(frames[-1])
            t.append(t[-1])
        cells.append(frames)
        labels.append(f"{m.replace('_', ' ')}  t={','.join(str(k) for k in t)}")
    img = grid(cells, [f"t{k + 1}" for k in range(points)], labels, groups=2 if len(cells) > 8 else 1,
               title=f"motion instructions (identity {i}; t = frame at 25 fps, no idle motion)")
    return _save(img, out)


def _save(img: Image.Image, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out
