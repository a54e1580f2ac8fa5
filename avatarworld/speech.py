"""Speech for the synthetic world: espeak-ng audio and the mouth ground truth derived from it.

Audio
-----
``synthesize(SpeechSpec(...))`` runs espeak-ng (a subprocess with a list of arguments, no shell) on one
sentence of ``corpus.SENTENCES`` with one of ``VOICES`` at a speed (words per minute) and pitch (0-99),
resamples espeak's 22.05 kHz output to 16 kHz with soxr (``"HQ"``), and normalises the amplitude:

    gain = 0.1 / RMS of the *active* 20 ms frames (those within 40 dB of the loudest frame), then, if the
    peak would exceed 0.95, the gain is lowered so that the peak is 0.95.

i.e. speech sits at about -20 dBFS RMS, never clips, and is float32 in [-1, 1]. Results are cached as
``.npy`` under ``cache_dir`` (default ``~/.cache/instructavatar/speech``), keyed by a hash of the spec, the
sentence text, the espeak-ng version string and ``CACHE_VERSION``; writes are atomic, so parallel data
workers can share one cache. espeak-ng is deterministic, so is everything here.

Mouth ground truth (``mouth_track``)
------------------------------------
The mouth is a deterministic function of the audio signal only, so the audio determines the mouth:

1. Amplitude normalisation: the clip's reference level ``ref`` is the 95th percentile of the
   short-time level (dB) of the voiced band, floored at -60 dB; every level is taken relative to it
   (so scaling the waveform by any gain leaves the track unchanged, and digital silence stays silent).
   This clip-level reference is the only non-causal step.
2. Analysis on 32 ms Hann windows every 5 ms. ``level`` = energy in 100-3000 Hz (the band of voiced
   speech; fricative hiss above 3 kHz does not open the jaw). ``tilt`` = dB ratio of the energy in
   1.7-3 kHz to that in 0.7-1.7 kHz, a proxy for the second formant F2 (on espeak-ng vowels: /i:/ about
   +30..+45, /E/ about 0, /u:/ about -3, /A: O: oU/ about -10..-22).
3. ``jaw = 0.85 * clip((rel_level + 30) / 30, 0, 1) ** 1.5`` (0 at 30 dB below the reference, 0.85 at
   and above it): 0 in silence, about 0.8 on loud (open) vowels, 0.2-0.5 on weak syllables/consonants;
   ``activity = smoothstep((rel_level + 35) / 25)`` gates the lip shape (0 in silence):
   ``width = activity * tanh((tilt - TILT_CENTER) / TILT_SCALE)`` (high F2 -> spread, +; -6 dB, 10 dB);
   ``round = activity * clip((TILT_CENTER - tilt) / TILT_SCALE, 0, 1)`` (low F2 -> rounded).
4. Causal smoothing with one-pole filters: jaw attack 12 ms / release 35 ms, width and round 30 ms.
5. Video frame ``t`` (at ``fps``) takes the mean of the analysis frames whose centres fall in
   ``[t / fps + LEAD_S, (t + 1) / fps + LEAD_S)``, where ``LEAD_S = 0.02``: the mouth leads the sound by
   20 ms, i.e. the track is causal up to a 20 ms + half-window look-ahead.

Run ``python -m instructavatar.avatarworld.speech [path]`` to (re)write the bundled demo audio.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .corpus import SENTENCES, sentence_ids

SAMPLE_RATE = 16000
CACHE_VERSION = 1
DEFAULT_CACHE_DIR = Path("~/.cache/instructavatar/speech")

# espeak-ng voices ("language[+variant]"); all exist in espeak-ng 1.51 (Debian). Held out: i % 5 == 4.
# Append only; never reorder (splits and the cache depend on the names, not the order, but the split
# rule depends on the order).
VOICES: tuple[str, ...] = (
    "en-us", "en-gb", "en-us+f2", "en-gb+m3", "en-gb-x-rp+f3",
    "en-us+m1", "en-gb-scotland", "en-029+f1", "en-us-nyc+m2", "en-gb-x-rp+m7",
    "en-gb-x-gbclan+f4", "en-us+m4", "en-gb+f1", "en-gb-x-gbcwmd+m5", "en-029+m6",
    "en-us+f5", "en-gb-scotland+f2", "en-us-nyc+f4", "en-gb+m6", "en-us+f3",
)
SPEED_RANGE_WPM: tuple[int, int] = (125, 165)  # every sentence lasts about 3-7 s in this range
PITCH_RANGE: tuple[int, int] = (35, 65)  # espeak-ng -p, default 50

# mouth_track constants (see the module docstring)
LEAD_S = 0.02
JAW_MAX = 0.85
TILT_CENTER = -6.0
TILT_SCALE = 10.0
_WIN = 512
_HOP = 80


def voice_ids(split: str) -> list[int]:
    """Indices into ``VOICES`` of one split: ``"heldout"`` (``i % 5 == 4``) or ``"train"`` (the rest)."""
    if split == "heldout":
        return [i for i in range(len(VOICES)) if i % 5 == 4]
    if split == "train":
        return [i for i in range(len(VOICES)) if i % 5 != 4]
    raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")


@dataclass(frozen=True)
class SpeechSpec:
    """One utterance: a sentence (index into ``SENTENCES``), an espeak-ng voice name, speed and pitch."""

    sentence_id: int
    voice: str
    speed_wpm: int = 145
    pitch: int = 50

    def __post_init__(self) -> None:
        if not 0 <= self.sentence_id < len(SENTENCES):
            raise ValueError(f"sentence_id {self.sentence_id} out of range 0..{len(SENTENCES) - 1}")
        if not 80 <= self.speed_wpm <= 450:
            raise ValueError(f"speed_wpm {self.speed_wpm} out of range 80..450")
        if not 0 <= self.pitch <= 99:
            raise ValueError(f"pitch {self.pitch} out of range 0..99")

    @property
    def text(self) -> str:
        return SENTENCES[self.sentence_id]


def sample_spec(rng: np.random.Generator, split: str = "train") -> SpeechSpec:
    """A random utterance of one split: sentence AND voice both from ``split``; speed and pitch uniform."""
    sid = sentence_ids(split)[int(rng.integers(len(sentence_ids(split))))]
    voice = VOICES[voice_ids(split)[int(rng.integers(len(voice_ids(split))))]]
    speed = int(rng.integers(SPEED_RANGE_WPM[0], SPEED_RANGE_WPM[1] + 1))
    pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
    return SpeechSpec(sid, voice, speed, pitch)


def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError("espeak-ng not found: apt-get install espeak-ng")
    return path


@functools.lru_cache(maxsize=4)
def _espeak_version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _run_espeak(path: str, spec: SpeechSpec) -> tuple[np.ndarray, int]:
    """Raw espeak-ng output for ``spec``: (float32 mono samples, sample rate)."""
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="ia_espeak_") as tmp:
        wav = os.path.join(tmp, "out.wav")
        cmd = [path, "-v", spec.voice, "-s", str(spec.speed_wpm), "-p", str(spec.pitch), "-w", wav, "--",
               spec.text]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(wav):
            raise RuntimeError(f"espeak-ng failed ({proc.returncode}) for {spec}: {proc.stderr.strip()}")
        audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(sr)


def normalize_amplitude(audio: np.ndarray, sr: int = SAMPLE_RATE, target_rms: float = 0.1,
                        max_peak: float = 0.95) -> np.ndarray:
    """Scale to ``target_rms`` over active 20 ms frames (within 40 dB of the loudest), peak <= max_peak."""
    x = np.asarray(audio, np.float64)
    n = max(1, int(0.02 * sr))
    frames = x[: len(x) // n * n].reshape(-1, n) if len(x) >= n else x.reshape(1, -1)
    power = (frames**2).mean(axis=1)
    if power.size == 0 or power.max() <= 0:
        return x.astype(np.float32)
    active = power[power >= power.max() * 1e-4]
    gain = target_rms / np.sqrt(active.mean())
    peak = np.abs(x).max()
    gain = min(gain, max_peak / peak)
    return np.clip(x * gain, -1.0, 1.0).astype(np.float32)


def cache_key(spec: SpeechSpec, version: str) -> str:
    blob = repr((sorted(asdict(spec).items()), spec.text, version, CACHE_VERSION, SAMPLE_RATE))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def synthesize(spec: SpeechSpec, cache_dir: Path | str | None = None) -> np.ndarray:
    """float32 mono 16 kHz audio in [-1, 1] of ``spec`` (normalised, see the module docstring); cached."""
    import soxr

    path = _espeak()
    cache = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    file = cache / f"{cache_key(spec, _espeak_version(path))}.npy"
    if file.exists():
        try:
            return np.load(file)
        except (OSError, ValueError):
            pass  # a corrupt cache file: regenerate it
    raw, sr = _run_espeak(path, spec)
    audio = soxr.resample(raw, sr, SAMPLE_RATE, quality="HQ") if sr != SAMPLE_RATE else raw
    audio = normalize_amplitude(audio)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".npy.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, audio)
        os.replace(tmp, file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return audio


def _one_pole(x: np.ndarray, tau_up: float, tau_down: float, dt: float) -> np.ndarray:
    """Causal first-order smoothing with separate rise/fall time constants (seconds)."""
    a_up, a_down = 1.0 - np.exp(-dt / tau_up), 1.0 - np.exp(-dt / tau_down)
    y = np.empty_like(x)
    prev = 0.0
    for i, v in enumerate(x):
        prev += (a_up if v > prev else a_down) * (v - prev)
        y[i] = prev
    return y


def _analysis(audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(level dB of 100-3000 Hz, F2 tilt dB, hop seconds) per 5 ms analysis frame (resampled to 16 kHz)."""
    x = np.asarray(audio, np.float64).reshape(-1)
    if sr != SAMPLE_RATE:
        import soxr

        x = soxr.resample(x, sr, SAMPLE_RATE)
    hop_s = _HOP / SAMPLE_RATE
    n_frames = int(np.ceil(len(x) / _HOP)) if len(x) else 0
    # frame k is centred at k * hop (causal-ish: half a window of look-ahead)
    pad = np.concatenate([np.zeros(_WIN // 2), x, np.zeros(_WIN)])
    idx = np.arange(n_frames)[:, None] * _HOP + np.arange(_WIN)[None, :]
    win = np.hanning(_WIN)
    spec = np.abs(np.fft.rfft(pad[idx] * win, axis=1)) ** 2 / (win**2).sum() / _WIN
    freqs = np.fft.rfftfreq(_WIN, 1.0 / SAMPLE_RATE)
    band = spec[:, (freqs >= 100) & (freqs < 3000)].sum(axis=1)
    f2_low = spec[:, (freqs >= 700) & (freqs < 1700)].sum(axis=1)
    f2_high = spec[:, (freqs >= 1700) & (freqs < 3000)].sum(axis=1)
    eps = 1e-12
    level = 10 * np.log10(band + eps)
    tilt = 10 * np.log10((f2_high + eps) / (f2_low + eps))
    return level, tilt, hop_s


def mouth_track(audio: np.ndarray, sr: int = SAMPLE_RATE, fps: int = 25, n_frames: int | None = None
                ) -> np.ndarray:
    """Per-video-frame mouth controls (T, 3) = (speech_jaw 0..1, speech_width -1..1, speech_round 0..1).

    ``T = n_frames`` or ``ceil(len(audio) / sr * fps)``; frames past the end of the audio are closed (0).
    The rule is in the module docstring; it is deterministic and invariant to the audio's gain.
    """
    audio = np.asarray(audio, np.float32).reshape(-1)
    T = int(np.ceil(len(audio) / sr * fps)) if n_frames is None else int(n_frames)
    out = np.zeros((max(T, 0), 3), np.float32)
    if T <= 0 or len(audio) == 0:
        return out
    level, tilt, hop = _analysis(audio, sr)
    ref = max(float(np.percentile(level, 95)), -60.0)
    rel = level - ref
    x = np.clip((rel + 35.0) / 25.0, 0.0, 1.0)
    activity = x * x * (3.0 - 2.0 * x)
    jaw = JAW_MAX * np.clip((rel + 30.0) / 30.0, 0.0, 1.0) ** 1.5
    width = activity * np.tanh((tilt - TILT_CENTER) / TILT_SCALE)
    rnd = activity * np.clip((TILT_CENTER - tilt) / TILT_SCALE, 0.0, 1.0)
    jaw = _one_pole(jaw, 0.012, 0.035, hop)
    width = _one_pole(width, 0.03, 0.03, hop)
    rnd = _one_pole(rnd, 0.03, 0.03, hop)
    centres = np.arange(len(level)) * hop
    bins = np.floor((centres - LEAD_S) * fps).astype(np.int64)  # frame t gets [t/fps+lead, (t+1)/fps+lead)
    ok = (bins >= 0) & (bins < T)
    counts = np.bincount(bins[ok], minlength=T)[:T].astype(np.float64)
    for j, track in enumerate((jaw, width, rnd)):
        sums = np.bincount(bins[ok], weights=track[ok], minlength=T)[:T]
        out[:, j] = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    out[:, 0] = np.clip(out[:, 0], 0.0, 1.0)
    out[:, 1] = np.clip(out[:, 1], -1.0, 1.0)
    out[:, 2] = np.clip(out[:, 2], 0.0, 1.0)
    return out


DEMO_SPEC = SpeechSpec(sentence_id=39, voice="en-gb-x-rp+f3", speed_wpm=140, pitch=50)


def write_demo_speech(path: Path | str, cache_dir: Path | str | None = None) -> Path:
    """Write the bundled demo audio (``DEMO_SPEC``: a held-out sentence, a held-out voice), 16 kHz PCM16."""
    import soundfile as sf

    assert DEMO_SPEC.sentence_id in sentence_ids("heldout")
    assert VOICES.index(DEMO_SPEC.voice) in voice_ids("heldout")
    audio = synthesize(DEMO_SPEC, cache_dir)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
    return path


if __name__ == "__main__":
    import sys

    import instructavatar

    default = Path(instructavatar.__file__).resolve().parent / "assets" / "demo_speech.wav"
    target = write_demo_speech(sys.argv[1] if len(sys.argv) > 1 else default)
    print(f"wrote {target}: {SENTENCES[DEMO_SPEC.sentence_id]!r} by {DEMO_SPEC.voice}")
