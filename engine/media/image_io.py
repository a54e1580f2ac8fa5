"""Portrait input: any image file or array -> a square RGB float tensor in [-1, 1]. Numpy + PIL only."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_IMAGE_PIXELS = 64_000_000        # refuse decompression bombs before decoding
MIN_IMAGE_SIDE = 32


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


def to_rgb_array(source) -> np.ndarray:
    """Path, bytes, PIL image or (H,W,3|4) / (H,W) uint8 array -> (H,W,3) uint8."""
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
        img = Image.fromarray(a[..., :3])
    else:
        img = _open(source)
    if min(img.size) < MIN_IMAGE_SIDE:
        raise ImageInputError(f"portrait is {img.size[0]}x{img.size[1]}; at least {MIN_IMAGE_SIDE} px a side needed")
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


def load_portrait(source, size: int) -> np.ndarray:
    """Any portrait source -> (size,size,3) uint8 (centre square crop)."""
    return square_resize(to_rgb_array(source), size)
