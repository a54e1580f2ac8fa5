"""Portrait input: any image file or array -> a square RGB float tensor in [-1, 1]. Numpy + PIL only.

What the model cannot use as given is said, not hidden (`load_portrait(..., warnings=list)` appends one line
each): a transparent background is composited over a neutral grey (`NEUTRAL_BACKGROUND`) instead of turning
black with a halo; a grayscale portrait is reported (`is_grayscale`) so the pipeline keeps its frames grey
rather than inventing colour; `world_face_score` is a cheap test whether a portrait looks like a face of the
demo's synthetic world (flat-shaded: most pixels have a flat neighbourhood; photographs have texture and noise).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_IMAGE_PIXELS = 64_000_000        # refuse decompression bombs before decoding
MIN_IMAGE_SIDE = 32
NEUTRAL_BACKGROUND = (128, 128, 128)   # what transparent pixels are composited over
GRAY_TOLERANCE = 2                     # max channel difference (uint8 levels) of a grayscale RGB image
WORLD_FLAT_LEVELS = 2.0                # |Laplacian| below this (uint8 levels) = a flat neighbourhood
WORLD_FACE_MIN_FLAT = 0.45             # world faces score 0.83-0.89 (0.50-0.71 as JPEG q75), photos 0.05-0.35


class ImageInputError(ValueError):
    pass


def _open(source) -> Image.Image:
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        if isinstance(source, (bytes, bytearray)):
            img = Image.open(io.BytesIO(source))
        else:
            path = Path(source)
            if not path.exists():
                raise ImageInputError(f"portrait not found: {path}")
            if path.is_dir():
                raise ImageInputError(f"portrait is a directory, not an image: {path}")
            img = Image.open(path)
        img.load()
        return img
    except ImageInputError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageInputError(f"portrait is too large: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        name = "image bytes" if isinstance(source, (bytes, bytearray)) else str(source)
        raise ImageInputError(f"cannot read portrait {name}: not a readable image ({type(e).__name__})") from None


def _composite(rgba: np.ndarray) -> np.ndarray:
    """(H,W,4) uint8 -> (H,W,3) uint8 over NEUTRAL_BACKGROUND."""
    a = rgba[..., 3:].astype(np.float32) / 255.0
    bg = np.asarray(NEUTRAL_BACKGROUND, np.float32)
    return np.clip(rgba[..., :3].astype(np.float32) * a + bg * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


def is_grayscale(rgb: np.ndarray) -> bool:
    """Whether an (H,W,3) uint8 image carries no colour (channels equal within GRAY_TOLERANCE)."""
    x = rgb.astype(np.int16)
    return bool(np.abs(x[..., 0] - x[..., 1]).max() <= GRAY_TOLERANCE
                and np.abs(x[..., 1] - x[..., 2]).max() <= GRAY_TOLERANCE)


def world_face_score(rgb: np.ndarray) -> float:
    """Fraction of pixels with a flat neighbourhood (|4-neighbour Laplacian| of the grey image below
    WORLD_FLAT_LEVELS), on the model-sized image: high for the synthetic world's faces, low for photographs."""
    g = rgb.astype(np.float32).mean(-1)
    lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
    return float((lap < WORLD_FLAT_LEVELS).mean())


def looks_like_world_face(rgb: np.ndarray) -> bool:
    """A cheap test (no model) whether a portrait is a face of the demo's synthetic world."""
    return world_face_score(rgb) >= WORLD_FACE_MIN_FLAT


def to_rgb_array(source, warnings: list[str] | None = None) -> np.ndarray:
    """Path, bytes, PIL image or (H,W,3|4) / (H,W) uint8 array -> (H,W,3) uint8; alpha composited over
    NEUTRAL_BACKGROUND (said in `warnings` when any pixel is transparent)."""
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        a = source
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=-1)
        if a.ndim != 3 or a.shape[-1] not in (3, 4):
            raise ImageInputError(f"portrait array must be (H,W,3) or (H,W,4), got shape {a.shape}")
        if a.dtype != np.uint8:
            if np.issubdtype(a.dtype, np.floating) and np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1:
                a = (a * 255 + 0.5).astype(np.uint8)
            else:
                raise ImageInputError(f"portrait array must be uint8 (or float in [0,1]), got {a.dtype}")
        img = Image.fromarray(a)
    else:
        img = _open(source)
    if min(img.size) < MIN_IMAGE_SIDE:
        raise ImageInputError(f"portrait is {img.size[0]}x{img.size[1]}; at least {MIN_IMAGE_SIDE} px a side needed")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"))
        if int(rgba[..., 3].min()) < 255:
            if warnings is not None:
                clear = float((rgba[..., 3] < 255).mean())
                warnings.append(f"portrait has a transparent background ({100 * clear:.0f}% of pixels): composited "
                                f"over neutral grey {NEUTRAL_BACKGROUND}")
            return _composite(rgba)
    return np.asarray(img.convert("RGB"))


def square_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to (size, size, 3) uint8."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = Image.fromarray(rgb[top:top + s, left:left + s])
    if s != size:
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img)


def to_model_input(rgb: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 -> (1,3,H,W) float32 in [-1,1]."""
    return (rgb.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0).astype(np.float32)


def to_frames(images: np.ndarray) -> np.ndarray:
    """(N,3,H,W) float in [-1,1] -> (N,H,W,3) uint8."""
    return np.clip((images.transpose(0, 2, 3, 1) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def to_grey_frames(frames: np.ndarray) -> np.ndarray:
    """(N,H,W,3) uint8 -> the same frames in grey (Rec. 601 luma in every channel)."""
    luma = frames.astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], np.float32)
    return np.repeat(np.clip(luma + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def load_portrait(source, size: int, warnings: list[str] | None = None) -> np.ndarray:
    """Any portrait source -> (size,size,3) uint8 (centre square crop). What the model cannot use as given
    (transparency, no colour) is appended to `warnings` as one line each when a list is given."""
    rgb = square_resize(to_rgb_array(source, warnings), size)
    if warnings is not None and is_grayscale(rgb):
        warnings.append("portrait is grayscale: the frames are kept grey (the model would invent colours)")
    return rgb
