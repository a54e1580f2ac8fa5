"""Idle blinks: the engine decides when the avatar blinks, the model renders the blink.

Idle blinks are not caused by anything the model sees (speech, instruction, portrait), so a diffusion model
trained to predict them from those inputs regresses towards "a little, sometimes" and most generated clips
never close the eyes. Talking-head systems therefore drive blinks from outside (SadTalker's eye-blink input,
procedural blinks in game avatars). Here a `BlinkSchedule` per session draws blink times from `BlinkConfig`
(a blink every 2-6 s, 160-240 ms long) and gives the denoiser a per-frame cue (a raised-cosine pulse, peak
0.9-1.0, the shape of the synthetic world's AU45 track) through the audio features (engine/modules/audio_encoder.py).
Instructed blinks ("blink twice") still come from the instruction: training feeds no cue on clips whose
instruction asks for a blink (training/train_motion.py).

The cue of a frame depends only on the session's seed and the frame's index, so streamed and offline
generation see the same cue however the audio is split.
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np

from .config import BlinkConfig


def raised_cosine(n: int, center: float, width: float, start: int = 0) -> np.ndarray:
    """(n,) pulse of total length `width` frames with peak 1 at `center`, for frames start .. start + n - 1."""
    t = np.arange(start, start + n, dtype=np.float64)
    x = (t - center) / (width / 2.0)
    return np.where(np.abs(x) < 1.0, 0.5 * (1.0 + np.cos(np.pi * x)), 0.0)


class BlinkSchedule:
    """Blink events (centre frame, length in frames, peak) drawn lazily from one seeded generator."""

    def __init__(self, cfg: BlinkConfig, fps: int, seed: int = 0, enabled: bool = True):
        for name in ("interval_s", "first_s", "duration_s", "peak"):
            lo, hi = getattr(cfg, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"BlinkConfig.{name} must be 0 <= low <= high, got {(lo, hi)}")
        if cfg.interval_s[0] <= 0:
            raise ValueError("BlinkConfig.interval_s must be positive")
        self.cfg, self.fps, self.enabled = cfg, fps, enabled
        self._rng = np.random.default_rng([int(seed) % 2**32, 45])     # apart from the session's noise stream
        self._events: list[tuple[float, float, float]] = []
        self._centres: list[float] = []                                  # sorted: events are drawn in time order
        self._next = self._rng.uniform(*cfg.first_s) * fps

    def _extend(self, until: float) -> None:
        while self._next - 0.5 * self.cfg.duration_s[1] * self.fps < until:
            width = self._rng.uniform(*self.cfg.duration_s) * self.fps
            self._events.append((self._next, width, self._rng.uniform(*self.cfg.peak)))
            self._centres.append(self._next)
            self._next += self._rng.uniform(*self.cfg.interval_s) * self.fps

    def events(self, until_frame: int) -> list[tuple[float, float, float]]:
        """Every blink (centre, width, peak) that starts before `until_frame`."""
        self._extend(until_frame)
        return [e for e in self._events if e[0] - e[1] / 2 < until_frame]

    def cue(self, start: int, n: int) -> np.ndarray:
        """(n,) float32 cue of frames start .. start + n - 1 (zeros when disabled)."""
        out = np.zeros(n, np.float64)
        if not self.enabled or n <= 0:
            return out.astype(np.float32)
        self._extend(start + n)
        half = 0.5 * self.cfg.duration_s[1] * self.fps                  # the longest pulse's half length
        for i in range(bisect_left(self._centres, start - half), len(self._events)):   # O(blinks in the span)
            center, width, peak = self._events[i]
            if center - half >= start + n:
                break
            if center + width / 2 > start and center - width / 2 < start + n:
                out = np.maximum(out, peak * raised_cosine(n, center, width, start))
        return out.astype(np.float32)
