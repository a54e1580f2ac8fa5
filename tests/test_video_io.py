"""engine.media.video_io: H.264 + AAC round trip, odd sizes, PNG grids. No torch."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from instructavatar.engine.media.video_io import read_video, write_png_grid, write_video

SR = 16000


def _frames(n: int, h: int, w: int) -> np.ndarray:
    """Smooth colour gradients that drift frame to frame (yuv420p keeps them; per-pixel noise it would not)."""
    y, x = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        out[i, ..., 0] = (x * 255 // max(w - 1, 1) + 3 * i) % 256
        out[i, ..., 1] = y * 255 // max(h - 1, 1)
        out[i, ..., 2] = 128
    return out


def test_round_trip_frames_fps_and_audio_duration(tmp_path):
    n_samples = int(1.3 * SR)
    t = np.arange(n_samples) / SR
    audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    frames = _frames(33, 64, 48)
    path = write_video(tmp_path / "a.mp4", frames, fps=25, audio=audio, sample_rate=SR)
    got, fps, got_audio, rate = read_video(path)
    assert got.shape == (33, 64, 48, 3) and got.dtype == np.uint8
    assert fps == 25
    assert rate == SR
    assert abs(len(got_audio) - n_samples) <= SR // 25               # within one video frame
    m = min(len(got_audio), n_samples)
    assert np.corrcoef(got_audio[:m], audio[:m])[0, 1] > 0.99        # aligned: priming samples trimmed
    assert np.abs(got.astype(int) - frames.astype(int)).mean() < 8   # H.264 at crf 18: close to the input


def test_odd_sizes_are_padded_even_and_no_audio_track(tmp_path):
    path = write_video(tmp_path / "b.mp4", _frames(5, 63, 65), fps=25)
    got, fps, audio, _ = read_video(path)
    assert got.shape == (5, 64, 66, 3)
    assert audio is None


def test_int16_audio_and_bad_frames(tmp_path):
    audio = (np.sin(np.arange(SR // 2) / 10) * 10000).astype(np.int16)
    _, _, got, rate = read_video(write_video(tmp_path / "c.mp4", _frames(13, 32, 32), audio=audio))
    assert abs(len(got) / rate - 0.5) <= 1 / 25
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "d.mp4", np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        write_video(tmp_path / "d.mp4", np.zeros((8, 8, 3), np.uint8))


def test_png_grid_layout(tmp_path):
    tile = np.full((20, 30, 3), 100, np.uint8)
    path = write_png_grid(tmp_path / "g.png", [[tile] * 3, [tile] * 3], ["row one", "row two"], ["a", "b", "c"])
    img = Image.open(path)
    assert img.mode == "RGB"
    assert img.size[0] > 3 * 30 and img.size[1] > 2 * 20
    with pytest.raises(ValueError, match="row labels"):
        write_png_grid(tmp_path / "h.png", [[tile]], ["x", "y"], ["a"])
