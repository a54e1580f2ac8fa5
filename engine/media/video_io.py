"""Video output: H.264 mp4 (or mov, mkv, avi; VP9 webm) with an optional audio track, a reader for tests,
and labelled PNG grids.

numpy, PIL and PyAV only (no torch): the runtime path and the evaluators import this without the model.

- `VideoWriter` writes frames as they come (a long render keeps only the encoder's lookahead in memory):
  `with VideoWriter(path, fps, audio, sample_rate) as w: w.write(chunk)`. The container follows the file's
  extension (`CONTAINERS`; anything else is refused with the list). The audio (float in [-1, 1] or int16,
  (S,) or (S, C) with 1 or 2 channels kept, more mixed to mono) is the user's original, at its own rate where
  the audio codec takes it (else resampled to 48 kHz); it is muxed up to the video written so far, so a render
  that stops early (Ctrl-C, an error) closes into a playable file whose sound ends with its last frame.
- `write_video` encodes (N,H,W,3) uint8 frames in one call through the same writer (libx264, yuv420p,
  constant frame rate `fps`); odd sizes are padded by one replicated row / column to even ones, as yuv420p
  needs; the mp4 edit list trims the AAC encoder's priming and padding, so the track lasts exactly as long
  as the audio.
- `read_video` decodes such a file back: frames, fps, mono float32 audio (or None) and its sample rate.
- `write_png_grid` lays out equal-sized images in rows and columns with text labels (PIL default font).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Container:
    format: str                 # FFmpeg muxer
    video_codec: str
    audio_codec: str
    audio_rates: tuple[int, ...] | None     # rates the audio codec takes (None = any); others -> 48 kHz


_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
CONTAINERS = {
    ".mp4": Container("mp4", VIDEO_CODEC, AUDIO_CODEC, _AAC_RATES),
    ".m4v": Container("mp4", VIDEO_CODEC, AUDIO_CODEC, _AAC_RATES),
    ".mov": Container("mov", VIDEO_CODEC, AUDIO_CODEC, _AAC_RATES),
    ".mkv": Container("matroska", VIDEO_CODEC, AUDIO_CODEC, _AAC_RATES),
    ".avi": Container("avi", VIDEO_CODEC, "libmp3lame", (8000, 11025, 12000, 16000, 22050, 24000, 32000,
                                                        44100, 48000)),
    ".webm": Container("webm", "libvpx-vp9", "libopus", (48000,)),
}
FALLBACK_AUDIO_RATE = 48000


class VideoFormatError(ValueError):
    """An output name whose extension names no supported container."""


def container_for(path) -> Container:
    """The container for `path`'s extension, or VideoFormatError listing the supported ones."""
    ext = Path(os.fspath(path)).suffix.lower()
    if ext not in CONTAINERS:
        what = f"extension {ext!r}" if ext else "no extension"
        raise VideoFormatError(f"cannot tell the video format of {os.fspath(path)} ({what}); "
                               f"use one of {', '.join(CONTAINERS)}")
    return CONTAINERS[ext]


def _audio_float(audio: np.ndarray) -> np.ndarray:
    """(S,) or (S, C) float / int16 -> float32 (S, C) in [-1, 1], C in (1, 2) (more channels mixed to mono)."""
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"audio must be (samples,) or (samples, channels), got shape {a.shape}")
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    a = a.astype(np.float32)
    if a.shape[1] > 2:
        a = a.mean(axis=1, keepdims=True)
    return np.clip(np.nan_to_num(a), -1.0, 1.0)


class VideoWriter:
    """Frames in, a video file out, chunk by chunk (see the module docstring). Use as a context manager:
    leaving the block normally or by an exception (KeyboardInterrupt included) closes a playable file."""

    def __init__(self, path, fps: int = 25, audio: np.ndarray | None = None, sample_rate: int = 16000):
        self.path = Path(os.fspath(path))
        self.spec = container_for(self.path)
        self.fps = int(fps)
        self.frames_written = 0
        self._samples = None if audio is None else _audio_float(audio)          # (S, C)
        self._rate = int(sample_rate)
        if self._samples is not None and self.spec.audio_rates and self._rate not in self.spec.audio_rates:
            import soxr

            self._samples = soxr.resample(self._samples, self._rate, FALLBACK_AUDIO_RATE).astype(np.float32)
            self._rate = FALLBACK_AUDIO_RATE
        self._audio_done = 0                    # samples muxed so far
        self._container = av.open(str(self.path), mode="w", format=self.spec.format)
        self._vstream = None
        self._astream = None

    @property
    def audio_rate(self) -> int | None:
        return None if self._samples is None else self._rate

    def _open_streams(self, h: int, w: int) -> None:
        c = self._container
        v = c.add_stream(self.spec.video_codec, rate=Fraction(self.fps, 1))
        v.width, v.height, v.pix_fmt = w, h, PIX_FMT
        v.codec_context.time_base = Fraction(1, self.fps)
        v.options = {"crf": CRF, "preset": PRESET} if self.spec.video_codec == VIDEO_CODEC else {"crf": "30", "b": "0"}
        self._vstream = v
        if self._samples is not None:
            layout = "mono" if self._samples.shape[1] == 1 else "stereo"
            a = c.add_stream(self.spec.audio_codec, rate=self._rate, layout=layout)
            a.bit_rate = AUDIO_BITRATE * self._samples.shape[1]
            self._astream = a

    def write(self, frames: np.ndarray) -> None:
        """Append (N,H,W,3) uint8 frames (every call the same H, W) and the audio they cover."""
        frames = _even(_check_frames(frames))
        if self._vstream is None:
            self._open_streams(*frames.shape[1:3])
        elif frames.shape[1:3] != (self._vstream.height, self._vstream.width):
            raise ValueError(f"frames are {frames.shape[1:3]}, the video is "
                             f"{(self._vstream.height, self._vstream.width)}")
        for f in frames:
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = self.frames_written
            self._container.mux(self._vstream.encode(vf))
            self.frames_written += 1
        self._mux_audio(self.frames_written * self._rate // self.fps)

    def _mux_audio(self, until: int) -> None:
        if self._astream is None:
            return
        until = min(until, len(self._samples))
        step = 1024                                 # one AAC frame; the encoder re-buffers anyway
        layout = "mono" if self._samples.shape[1] == 1 else "stereo"
        while self._audio_done < until:
            chunk = self._samples[self._audio_done:min(self._audio_done + step, until)]
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk.reshape(1, -1)), format="flt", layout=layout)
            af.sample_rate = self._rate
            af.pts = self._audio_done
            af.time_base = Fraction(1, self._rate)
            self._container.mux(self._astream.encode(af))
            self._audio_done += len(chunk)

    def close(self, complete: bool = True) -> Path:
        """Flush the encoders and finish the file. complete=False (an interrupted render): the audio stops
        where the video does; otherwise the rest of the audio is muxed too."""
        if self._container is None:
            return self.path
        try:
            if self._vstream is not None:
                self._container.mux(self._vstream.encode(None))
                if complete:
                    self._mux_audio(len(self._samples) if self._samples is not None else 0)
                if self._astream is not None:
                    self._container.mux(self._astream.encode(None))
        finally:
            self._container.close()
            self._container = None
        if self._vstream is None:                   # nothing was written: no file rather than a broken one
            self.path.unlink(missing_ok=True)
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)


def write_video(path, frames: np.ndarray, fps: int = 25, audio: np.ndarray | None = None,
                sample_rate: int = 16000) -> Path:
    """Write `frames` (N,H,W,3) uint8 at `fps` (H.264 mp4 for .mp4; see CONTAINERS), `audio` muxed when given."""
    frames = _check_frames(frames)
    with VideoWriter(path, fps, audio, sample_rate) as writer:
        writer.write(frames)
    return writer.path


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
