"""Video output: H.264 mp4 with an optional AAC audio track, a reader for tests, and labelled PNG grids.

numpy, PIL and PyAV only (no torch): the runtime path and the evaluators import this without the model.

- `write_video` encodes (N,H,W,3) uint8 frames with libx264 (yuv420p, constant frame rate `fps`); odd
  sizes are padded by one replicated row / column to even ones, as yuv420p needs. When `audio` is given
  (mono float in [-1, 1], or int16) it is encoded as AAC at `sample_rate` and muxed; the mp4 edit list
  trims the encoder's priming and padding, so the track lasts exactly as long as the audio.
- `read_video` decodes such a file back: frames, fps, mono float32 audio (or None) and its sample rate.
- `write_png_grid` lays out equal-sized images in rows and columns with text labels (PIL default font).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

VIDEO_CODEC = "libx264"
PIX_FMT = "yuv420p"
CRF = "18"                      # visually lossless for these small frames; files stay small
PRESET = "fast"
AUDIO_CODEC = "aac"
AUDIO_BITRATE = 96_000


def _check_frames(frames: np.ndarray) -> np.ndarray:
    a = np.asarray(frames)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"frames must be (N,H,W,3), got shape {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {a.dtype}")
    if a.shape[0] == 0:
        raise ValueError("no frames to write")
    return a


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad to even height and width (yuv420p) by replicating the last row / column."""
    _, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    return np.ascontiguousarray(frames)


def _mono_float(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim == 2:                                     # (S, C) -> mono
        a = a.mean(axis=1)
    if a.ndim != 1:
        raise ValueError(f"audio must be (samples,) or (samples, channels), got shape {a.shape}")
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    return np.clip(np.nan_to_num(a.astype(np.float32)), -1.0, 1.0)


def write_video(path, frames: np.ndarray, fps: int = 25, audio: np.ndarray | None = None,
                sample_rate: int = 16000) -> Path:
    """Write `frames` (N,H,W,3) uint8 as H.264 mp4 at `fps`, with `audio` muxed as AAC when given."""
    frames = _even(_check_frames(frames))
    path = Path(os.fspath(path))
    n, h, w, _ = frames.shape
    with av.open(str(path), mode="w", format="mp4") as container:
        vstream = container.add_stream(VIDEO_CODEC, rate=Fraction(int(fps), 1))
        vstream.width, vstream.height, vstream.pix_fmt = w, h, PIX_FMT
        vstream.codec_context.time_base = Fraction(1, int(fps))
        vstream.options = {"crf": CRF, "preset": PRESET}
        astream = None
        if audio is not None:
            samples = _mono_float(audio)
            astream = container.add_stream(AUDIO_CODEC, rate=int(sample_rate), layout="mono")
            astream.bit_rate = AUDIO_BITRATE
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            frame.pts = i
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
        if astream is not None:
            step = 1024                                 # one AAC frame; the encoder re-buffers anyway
            for start in range(0, len(samples), step):
                chunk = samples[start:start + step]
                aframe = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                aframe.sample_rate = int(sample_rate)
                aframe.pts = start
                aframe.time_base = Fraction(1, int(sample_rate))
                container.mux(astream.encode(aframe))
            container.mux(astream.encode(None))
    return path


def read_video(path) -> tuple[np.ndarray, float, np.ndarray | None, int]:
    """Decode an mp4: (frames (N,H,W,3) uint8, fps, mono float32 audio or None, audio sample rate).

    Audio is trimmed to the duration the container declares for its track (the edit list), so a file
    written by `write_video` gives back as many samples as were written.
    """
    path = os.fspath(path)
    with av.open(path) as container:
        vstream = container.streams.video[0]
        fps = float(vstream.average_rate or vstream.base_rate or 0)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(vstream)])
    audio, rate = None, 0
    with av.open(path) as container:
        if container.streams.audio:
            astream = container.streams.audio[0]
            rate = int(astream.codec_context.sample_rate or astream.rate)
            chunks = []
            for f in container.decode(astream):
                a = f.to_ndarray().astype(np.float32)
                a = a.reshape(-1, f.samples) if f.format.is_planar else a.reshape(f.samples, -1).T
                chunks.append(a.mean(axis=0))
            audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
            if astream.duration is not None and astream.time_base is not None:
                declared = int(round(float(astream.duration * astream.time_base) * rate))
                if 0 < declared < len(audio):
                    audio = audio[:declared]
    return frames, fps, audio, rate


def _font():
    try:
        return ImageFont.load_default(size=12)
    except TypeError:                                   # Pillow < 10.1: the bitmap font, no size
        return ImageFont.load_default()


def write_png_grid(path, rows: list[list[np.ndarray]], row_labels: list[str] | None = None,
                   col_labels: list[str] | None = None, pad: int = 4) -> Path:
    """Save a grid of equal-sized (H,W,3) uint8 images: one row per `rows` entry, labels left and on top."""
    if not rows or not rows[0]:
        raise ValueError("an image grid needs at least one row and one column")
    ncols = len(rows[0])
    if any(len(r) != ncols for r in rows):
        raise ValueError("every grid row must have the same number of images")
    h, w = np.asarray(rows[0][0]).shape[:2]
    row_labels = list(row_labels or [])
    col_labels = list(col_labels or [])
    if row_labels and len(row_labels) != len(rows):
        raise ValueError(f"{len(row_labels)} row labels for {len(rows)} rows")
    if col_labels and len(col_labels) != ncols:
        raise ValueError(f"{len(col_labels)} column labels for {ncols} columns")
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text: str) -> tuple[int, int]:
        left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    line_h = max(text_size("Ag")[1], 1)
    left = (max(text_size(t)[0] for t in row_labels) + 2 * pad) if row_labels else pad
    top = (line_h + 2 * pad) if col_labels else pad
    width = left + ncols * (w + pad)
    height = top + len(rows) * (h + pad)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(col_labels):
        tw, _ = text_size(label)
        draw.text((left + c * (w + pad) + max((w - tw) // 2, 0), pad), label, fill=(0, 0, 0), font=font)
    for r, images in enumerate(rows):
        y = top + r * (h + pad)
        if row_labels:
            draw.text((pad, y + (h - line_h) // 2), row_labels[r], fill=(0, 0, 0), font=font)
        for c, img in enumerate(images):
            a = np.asarray(img)
            if a.shape[:2] != (h, w) or a.dtype != np.uint8:
                raise ValueError(f"grid image ({r},{c}) is {a.shape} {a.dtype}; expected ({h},{w},3) uint8")
            canvas.paste(Image.fromarray(a[..., :3]), (left + c * (w + pad), y))
    path = Path(os.fspath(path))
    canvas.save(path, format="PNG")
    return path
