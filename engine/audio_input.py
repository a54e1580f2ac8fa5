"""Audio handed to the Python API (`Session.push_audio`, `Pipeline.generate`): checked, then made model audio.

The CLI reads files through engine/media/audio_io.py; the API takes arrays, and each session owns one
`SessionAudio` that turns whatever a caller pushes into the model's float32 mono at the config's rate, with the
CLI's exception class (`AudioInputError`, a ValueError) and one-line messages:

- shape: (S,) mono or (S, C) with C <= 8 channels (mixed to mono by their mean); (C, S) is refused with the
  transpose named (a streaming chunk's layout must not be guessed chunk by chunk);
- dtype: int16 / int32 (scaled by 2**15 / 2**31), uint8 (offset binary), float32 / float64 as they are;
  anything else (bool, complex, object, strings) is refused;
- NaN or infinite samples are refused BEFORE any state changes, so the session stays usable and a later
  valid push gives the frames a session that never saw the bad one would give;
- `sample_rate` (default: the model's) other than the model's is resampled by a per-session
  `StreamResampler` (continuous across pushes; its filter tail is emitted by `flush`); a session keeps the
  rate and channel count of its first push, and a push with another is refused;
- empty pushes are fine for streams (nothing happens); the whole-input checks of `generate` (empty, shorter
  than one video frame, longer than the config's limit, `seconds` <= 0) are `check_whole_input`/`check_seconds`.
"""

from __future__ import annotations

import math

import numpy as np

from .media.audio_io import MAX_CHANNELS, AudioInputError, StreamResampler, _check_rate, _to_float

_ACCEPTED = "int16, int32, uint8, float32 or float64"


def as_float_frames(samples, what: str = "audio") -> np.ndarray:
    """Any accepted array -> float32 (S, C) (C = 1 for mono), finite; raises AudioInputError otherwise."""
    x = np.asarray(samples)
    if x.dtype.kind not in "iuf" or x.dtype.kind == "f" and x.dtype.itemsize < 4:
        raise AudioInputError(f"{what} has dtype {x.dtype}; expected {_ACCEPTED}")
    if x.ndim == 1:
        x = x[:, None]
    elif x.ndim != 2:
        raise AudioInputError(f"{what} has shape {tuple(x.shape)}; expected (samples,) or (samples, channels)")
    elif x.shape[1] > MAX_CHANNELS:
        hint = " (it looks like (channels, samples): pass its transpose, .T)" if x.shape[0] <= MAX_CHANNELS else ""
        raise AudioInputError(f"{what} has shape {tuple(x.shape)}; expected (samples,) or (samples, channels) "
                              f"with at most {MAX_CHANNELS} channels{hint}")
    f = _to_float(x)                                    # AudioInputError for other integer widths
    if f.size and not np.isfinite(f).all():
        bad = int(np.count_nonzero(~np.isfinite(f)))
        raise AudioInputError(f"{what} contains {bad} NaN or infinite sample{'s' if bad > 1 else ''}; "
                              "nothing was taken (the session is unchanged)")
    return f


def check_seconds(seconds, max_seconds: float | None, min_seconds: float = 0.0) -> float:
    """A motion-only duration: finite, > 0, at least `min_seconds` (one video frame) and within the limit."""
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        raise AudioInputError(f"seconds must be a positive number, got {seconds!r}") from None
    if not (math.isfinite(s) and s > 0):
        raise AudioInputError(f"seconds must be a positive number, got {seconds!r}")
    if s < min_seconds:
        raise AudioInputError(f"seconds {s:g} is shorter than one video frame ({min_seconds:g} s)")
    if max_seconds is not None and s > max_seconds:
        raise AudioInputError(f"seconds {s:g} is over the limit of {max_seconds:g} s")
    return s


def check_whole_input(frames: np.ndarray, rate: int, fps: int, max_seconds: float | None) -> None:
    """An offline input (S, C) at `rate`: not empty, at least one video frame long, within the limit."""
    n = frames.shape[0]
    if n == 0:
        raise AudioInputError("audio is empty (0 samples); give speech, or seconds=N for motion only")
    if n * fps < rate:
        raise AudioInputError(f"audio is {1000 * n / rate:.1f} ms; it must be at least {1000 // fps} ms "
                              "(one video frame)")
    if max_seconds is not None and n > max_seconds * rate:
        raise AudioInputError(f"audio is {n / rate:.1f} s; the limit is {max_seconds:g} s")


class SessionAudio:
    """One session's audio input: validation, mono mix and resampling to `model_rate`, continuous over pushes."""

    def __init__(self, model_rate: int):
        self.model_rate = int(model_rate)
        self.rate: int | None = None            # fixed by the first non-empty push
        self.channels: int | None = None
        self._resampler: StreamResampler | None = None

    def checked_rate(self, sample_rate: int | None) -> int:
        """`sample_rate` as an int (None = the model's), or AudioInputError naming the accepted range."""
        return self.model_rate if sample_rate is None else _check_rate(sample_rate)

    def convert(self, samples, sample_rate: int | None = None) -> np.ndarray:
        """A pushed array -> float32 mono at the model rate (maybe empty while the resampler fills).
        Raises AudioInputError with nothing changed for bad input."""
        rate = self.checked_rate(sample_rate)
        x = as_float_frames(samples)
        if x.shape[0] == 0:
            return np.zeros(0, np.float32)
        if self.rate is not None and rate != self.rate:
            raise AudioInputError(f"this session's audio is at {self.rate} Hz; got a push at {rate} Hz "
                                  "(one rate per session: start a new session for another)")
        if self.channels is not None and x.shape[1] != self.channels:
            raise AudioInputError(f"this session's audio has {self.channels} channel(s); got {x.shape[1]}")
        self.rate, self.channels = rate, x.shape[1]
        mono = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float64).astype(np.float32)
        if rate == self.model_rate:
            return np.ascontiguousarray(mono, np.float32)
        if self._resampler is None:
            self._resampler = StreamResampler(rate, self.model_rate)
        return self._resampler.push(mono)

    def flush(self) -> np.ndarray:
        """The resampler's tail (its filter delay), once; empty when no resampling happened."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        tail, self._resampler = self._resampler.flush(), None
        self.rate = self.channels = None
        return tail
