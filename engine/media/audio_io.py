"""Audio input handling for the runtime path: files, arrays, raw PCM and streams -> float32 mono 16 kHz.

numpy only (plus soundfile, soxr and PyAV): this module must import and run without torch.

Every public function returns float32 mono samples in [-1, 1] at `target_rate` and raises
`AudioInputError` (a ValueError) with a one-line, user-facing message for bad input:
missing or undecodable files, empty or too-short audio (less than one video frame, 40 ms), audio longer
than `max_seconds`, unsupported sample formats or rates, and NaN / infinite samples.

Conversions:
- integers: int16 / 32768, int32 / 2**31, uint8 (offset binary, 8-bit WAV) (x - 128) / 128;
- floats are taken as they are; a float signal whose peak exceeds 1 (say, int16-scaled floats) is scaled
  down by its peak rather than clipped;
- several channels are mixed to mono by their mean;
- any rate in 8000..192000 Hz is resampled with soxr ("HQ"); a tiny filter overshoot past +-1 is clipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

MIN_RATE = 8000
MAX_RATE = 192000
MAX_CHANNELS = 8
VIDEO_FPS = 25                      # the shortest accepted audio is one video frame (40 ms)
RESAMPLE_QUALITY = "HQ"

# Containers libsndfile reads natively; everything else goes through PyAV (FFmpeg).
_SOUNDFILE_EXTS = {".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".au", ".caf",
                   ".w64", ".rf64"}
_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}
_PCM_FORMATS = {"pcm16": np.dtype("<i2"), "s16le": np.dtype("<i2"),
                "float32": np.dtype("<f4"), "f32le": np.dtype("<f4")}


class AudioInputError(ValueError):
    """Bad audio input; the message is one line, meant for the user."""


# --------------------------------------------------------------------------------------------- helpers
def _check_rate(sample_rate) -> int:
    try:
        rate = int(sample_rate)
    except (TypeError, ValueError):
        raise AudioInputError(f"sample rate {sample_rate!r} is not a number") from None
    if rate != sample_rate or not MIN_RATE <= rate <= MAX_RATE:
        raise AudioInputError(f"sample rate {sample_rate} Hz is not supported; expected an integer in "
                              f"{MIN_RATE}..{MAX_RATE} Hz")
    return rate


def _check_duration(n_samples: int, rate: int, max_seconds: float | None) -> None:
    seconds = n_samples / rate
    if n_samples == 0:
        raise AudioInputError("audio is empty (0 samples)")
    if seconds < 1.0 / VIDEO_FPS:
        raise AudioInputError(f"audio is {seconds * 1000:.1f} ms; it must be at least "
                              f"{1000 // VIDEO_FPS} ms (one video frame)")
    if max_seconds is not None and seconds > max_seconds:
        raise AudioInputError(f"audio is {seconds:.1f} s; the limit is {max_seconds:g} s")


def _to_float(samples: np.ndarray) -> np.ndarray:
    """Any supported dtype -> float32 (same shape), integer formats scaled to [-1, 1)."""
    dt = samples.dtype
    if dt in _INT_SCALE:
        return (samples.astype(np.float32) / np.float32(_INT_SCALE[dt])).astype(np.float32)
    if dt == np.uint8:
        return ((samples.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if dt in (np.float32, np.float64):
        return samples.astype(np.float32, copy=False)
    raise AudioInputError(f"unsupported sample format {dt}; use int16, int32, uint8, float32 or float64")


def _to_mono(x: np.ndarray) -> np.ndarray:
    """(S,), (S, C) or (C, S) with C <= 8 -> (S,). Float input."""
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise AudioInputError(f"audio array has shape {tuple(x.shape)}; expected (samples,), "
                              f"(samples, channels) or (channels, samples)")
    rows, cols = x.shape
    if cols <= MAX_CHANNELS and rows >= cols:
        axis = 1                    # (S, C): the soundfile / interleaved layout, preferred when ambiguous
    elif rows <= MAX_CHANNELS:
        axis = 0                    # (C, S): the torch / PyAV planar layout
    else:
        raise AudioInputError(f"audio array has shape {tuple(x.shape)}: cannot tell channels from samples "
                              f"(at most {MAX_CHANNELS} channels)")
    return _mix(x, axis)


def _mix(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the channel axis of a 2-D float array."""
    if x.shape[axis] == 1:
        return np.ascontiguousarray(x.reshape(-1))
    return x.mean(axis=axis, dtype=np.float64).astype(np.float32)


def _check_finite(x: np.ndarray) -> None:
    if not np.isfinite(x).all():
        raise AudioInputError("audio contains NaN or infinite samples")


def _finish(mono: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Finite float32 mono at `rate` -> float32 mono in [-1, 1] at `target_rate`."""
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if peak > 1.0:
        mono = mono / np.float32(peak)
    if rate != target_rate:
        mono = soxr.resample(mono, rate, target_rate, quality=RESAMPLE_QUALITY)
    out = np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)
    if out.size < target_rate // VIDEO_FPS:           # resampling rounding on a borderline length
        _check_duration(out.size, target_rate, None)
    return np.ascontiguousarray(out)


# ------------------------------------------------------------------------------------------ public API
def from_array(samples: np.ndarray, sample_rate: int, target_rate: int = 16000,
               max_seconds: float | None = None) -> np.ndarray:
    """An in-memory signal -> float32 mono in [-1, 1] at `target_rate`.

    samples: int16 / int32 / uint8 / float32 / float64, shaped (S,), (S, C) or (C, S) with C <= 8.
    """
    rate = _check_rate(sample_rate)
    target_rate = _check_rate(target_rate)
    arr = np.asarray(samples)
    x = _to_mono(_to_float(arr))
    _check_duration(x.shape[0], rate, max_seconds)
    _check_finite(x)
    return _finish(x, rate, target_rate)


def load_audio(path, target_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray:
    """An audio file -> float32 mono in [-1, 1] at `target_rate`.

    WAV / FLAC / OGG (and other libsndfile formats) are read with soundfile; anything else (mp3, m4a, aac,
    webm, opus, video files with an audio track ...) with PyAV. If the first reader fails the other one is
    tried before giving up.
    """
    target_rate = _check_rate(target_rate)
    x, rate = _read_checked(path, max_seconds)
    return _finish(x, rate, target_rate)


def load_audio_original(path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """An audio file as it is: (float32 (S, C) in [-1, 1] with the file's channels, the file's rate), checked
    as `load_audio` checks (missing, undecodable, empty, too short or long, NaN). For muxing the user's own
    sound into the output video; `model_audio` turns it into the model's input."""
    x, rate = _read_checked(path, max_seconds, keep_channels=True)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return (x / np.float32(peak) if peak > 1.0 else x).astype(np.float32), rate


def _read_checked(path, max_seconds: float | None, keep_channels: bool = False) -> tuple[np.ndarray, int]:
    """An audio file -> (samples, rate), checked (missing, empty, undecodable by both readers, rate, duration,
    NaN); one reader path for `load_audio` and `load_audio_original`."""
    p = Path(os.fspath(path))
    if not p.exists():
        raise AudioInputError(f"audio file not found: {p}")
    if not p.is_file():
        raise AudioInputError(f"not a file: {p}")
    if p.stat().st_size == 0:
        raise AudioInputError(f"audio file is empty (0 bytes): {p}")
    readers = [_read_soundfile, _read_pyav]
    if p.suffix.lower() not in _SOUNDFILE_EXTS:
        readers.reverse()
    first_error: Exception | None = None
    for reader in readers:
        try:
            x, rate = reader(p, max_seconds, keep_channels=keep_channels)
            break
        except AudioInputError:
            raise
        except Exception as e:  # noqa: BLE001 - any decoder failure becomes one user-facing message
            first_error = first_error or e
    else:
        msg = " ".join(str(first_error).split()) or type(first_error).__name__
        raise AudioInputError(f"cannot decode audio file {p}: {msg}")
    rate = _check_rate(rate)
    _check_duration(x.shape[0], rate, max_seconds)
    _check_finite(x)
    return x, rate


def model_audio(original: np.ndarray, rate: int, target_rate: int = 16000) -> np.ndarray:
    """`load_audio_original`'s (S, C) at `rate` -> what `load_audio` gives: float32 mono at `target_rate`."""
    return _finish(_mix(original, axis=1), _check_rate(rate), _check_rate(target_rate))


def _read_soundfile(p: Path, max_seconds: float | None, keep_channels: bool = False) -> tuple[np.ndarray, int]:
    with sf.SoundFile(str(p)) as f:
        rate = f.samplerate
        if f.frames > 0 and max_seconds is not None:   # reject long files before reading them
            _check_rate(rate)
            _check_duration(f.frames, rate, max_seconds)
        data = f.read(dtype="float32", always_2d=True)
    return (data if keep_channels else _mix(data, axis=1)), rate


def _read_pyav(p: Path, max_seconds: float | None, keep_channels: bool = False) -> tuple[np.ndarray, int]:
    import av  # noqa: PLC0415 - imported lazily: only needed for non-libsndfile formats

    chunks: list[np.ndarray] = []
    total = 0
    with av.open(str(p)) as container:
        streams = container.streams.audio
        if not streams:
            raise ValueError("no audio stream")
        stream = streams[0]
        rate = stream.codec_context.sample_rate or stream.rate
        if not rate:
            raise ValueError("unknown sample rate")
        _check_rate(rate)
        # Planar float keeps the file's rate and channel layout: resampling is soxr's job, mixing ours.
        resampler = av.AudioResampler(format="fltp", rate=rate)
        limit = None if max_seconds is None else int(max_seconds * rate) + 1
        def take(out) -> int:
            a = out.to_ndarray().reshape(-1, out.samples)       # (C, S)
            if keep_channels:
                chunks.append(np.ascontiguousarray(a.T, np.float32))
            else:
                chunks.append((a[0] if a.shape[0] == 1 else a.mean(axis=0)).astype(np.float32, copy=False))
            return a.shape[1]

        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                total += take(out)
            if limit is not None and total > limit:           # stop decoding a file that is too long
                _check_duration(total, rate, max_seconds)
        for out in resampler.resample(None):
            take(out)
    if keep_channels:
        x = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)
    else:
        x = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return x, rate


def decode_pcm(data: bytes, fmt: str, channels: int) -> np.ndarray:
    """Raw interleaved little-endian PCM ("pcm16" or "float32") -> float32 (S,) mono.

    No rate conversion (see `StreamResampler`) and no length minimum: a streaming chunk may be short or empty.
    """
    dt = _PCM_FORMATS.get(str(fmt).lower())
    if dt is None:
        raise AudioInputError(f"unsupported PCM format {fmt!r}; use 'pcm16' or 'float32'")
    if not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
        raise AudioInputError(f"channels must be 1..{MAX_CHANNELS}, got {channels!r}")
    buf = memoryview(data).cast("B")
    frame_bytes = dt.itemsize * channels
    if len(buf) % frame_bytes:
        raise AudioInputError(f"PCM data is {len(buf)} bytes, not a multiple of {frame_bytes} "
                              f"({fmt}, {channels} channel{'s' if channels > 1 else ''})")
    x = np.frombuffer(buf, dtype=dt).reshape(-1, channels)
    x = _to_float(x.astype(dt.newbyteorder("="), copy=False))
    mono = x[:, 0].copy() if channels == 1 else x.mean(axis=1, dtype=np.float64).astype(np.float32)
    _check_finite(mono)
    return mono


def normalize_loudness(x: np.ndarray, target_rms_db: float = -20.0, peak_limit: float = 0.99) -> np.ndarray:
    """Scale to an RMS of `target_rms_db` dBFS, then down (never up) so that the peak is <= `peak_limit`.

    The RMS is taken over the whole signal. Silence (RMS below -80 dBFS) is returned unchanged, so digital
    silence never turns into amplified noise or NaNs.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        return x.copy()
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    if not np.isfinite(rms):
        raise AudioInputError("audio contains NaN or infinite samples")
    if rms < 1e-4:
        return x.copy()
    gain = 10.0 ** (target_rms_db / 20.0) / rms
    peak = float(np.max(np.abs(x))) * gain
    if peak > peak_limit:
        gain *= peak_limit / peak
    return (x * np.float32(gain)).astype(np.float32)


class StreamResampler:
    """Chunked input at any rate -> float32 mono at `target_rate`, continuous across chunks.

    push(chunk) takes (S,) or (S, channels) samples of any `from_array` dtype and returns what is ready;
    flush() returns the tail (the filter delay) and ends the stream. The concatenated output equals
    `soxr.resample` of the whole (mono-mixed) signal. Chunks are mixed to mono before resampling.
    """

    def __init__(self, in_rate: int, target_rate: int = 16000, channels: int = 1):
        self.in_rate = _check_rate(in_rate)
        self.target_rate = _check_rate(target_rate)
        if not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
            raise AudioInputError(f"channels must be 1..{MAX_CHANNELS}, got {channels!r}")
        self.channels = channels
        self._stream = (None if self.in_rate == self.target_rate else
                        soxr.ResampleStream(self.in_rate, self.target_rate, 1, dtype="float32",
                                            quality=RESAMPLE_QUALITY))
        self._closed = False

    def _mono(self, chunk: np.ndarray) -> np.ndarray:
        x = _to_float(np.asarray(chunk))
        if self.channels == 1:
            if x.ndim == 2 and x.shape[1] == 1:
                x = x[:, 0]
            if x.ndim != 1:
                raise AudioInputError(f"chunk has shape {tuple(x.shape)}; expected (samples,) for mono")
        else:
            if x.ndim != 2 or x.shape[1] != self.channels:
                raise AudioInputError(f"chunk has shape {tuple(x.shape)}; "
                                      f"expected (samples, {self.channels})")
            x = x.mean(axis=1, dtype=np.float64).astype(np.float32)
        _check_finite(x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def push(self, chunk: np.ndarray) -> np.ndarray:
        if self._closed:
            raise AudioInputError("stream already flushed")
        x = self._mono(chunk)
        if self._stream is None:
            return x.copy()
        return self._stream.resample_chunk(x, last=False)

    def flush(self) -> np.ndarray:
        if self._closed:
            return np.zeros(0, np.float32)
        self._closed = True
        if self._stream is None:
            return np.zeros(0, np.float32)
        return self._stream.resample_chunk(np.zeros(0, np.float32), last=True)


def write_wav(path, samples: np.ndarray, rate: int) -> None:
    """Write 16-bit PCM WAV; float input is clipped to [-1, 1], (S,) or (S, C)."""
    x = np.asarray(samples)
    if x.dtype.kind == "f":
        x = np.clip(np.nan_to_num(x.astype(np.float32), nan=0.0), -1.0, 1.0)
    else:
        x = _to_float(x)
    sf.write(os.fspath(path), x, int(rate), subtype="PCM_16", format="WAV")
