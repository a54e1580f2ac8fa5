"""Speech: espeak-ng synthesis and caching, the mouth ground truth, the fixed splits, the demo asset."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from instructavatar.avatarworld import corpus, speech

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
SPEC = speech.SpeechSpec(sentence_id=3, voice="en-us", speed_wpm=150, pitch=50)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech_cache")


@pytest.fixture(scope="module")
def audio(cache) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    return speech.synthesize(SPEC, cache)


def _envelope(x: np.ndarray, n: int, sr: int = 16000, fps: int = 25) -> np.ndarray:
    hop = sr // fps
    return np.array([np.sqrt(np.mean(x[i * hop:(i + 1) * hop] ** 2)) if i * hop < len(x) else 0.0
                     for i in range(n)])


# ------------------------------------------------------------------------------------------ corpus/splits
def test_corpus_and_sentence_splits():
    assert len(corpus.SENTENCES) >= 240
    assert len(set(corpus.SENTENCES)) == len(corpus.SENTENCES)
    assert all(s.isascii() and 8 <= len(s.split()) <= 25 for s in corpus.SENTENCES)
    train, held = corpus.sentence_ids("train"), corpus.sentence_ids("heldout")
    assert not set(train) & set(held)
    assert sorted(train + held) == list(range(len(corpus.SENTENCES)))
    assert held[:3] == [9, 19, 29]  # fixed rule: every 10th sentence
    assert len(held) >= 24
    with pytest.raises(ValueError):
        corpus.sentence_ids("val")


def test_voice_splits():
    train, held = speech.voice_ids("train"), speech.voice_ids("heldout")
    assert not set(train) & set(held)
    assert sorted(train + held) == list(range(len(speech.VOICES)))
    assert len(held) >= 3 and len(train) >= 12
    assert [speech.VOICES[i] for i in held][:2] == ["en-gb-x-rp+f3", "en-gb-x-rp+m7"]
    assert len(set(speech.VOICES)) == len(speech.VOICES)


def test_sample_spec_respects_split():
    rng = np.random.default_rng(0)
    for split in ("train", "heldout"):
        for _ in range(50):
            s = speech.sample_spec(rng, split)
            assert s.sentence_id in corpus.sentence_ids(split)
            assert speech.VOICES.index(s.voice) in speech.voice_ids(split)
            assert speech.SPEED_RANGE_WPM[0] <= s.speed_wpm <= speech.SPEED_RANGE_WPM[1]
            assert speech.PITCH_RANGE[0] <= s.pitch <= speech.PITCH_RANGE[1]
    a = [speech.sample_spec(np.random.default_rng(5)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_spec_is_frozen_and_validated():
    with pytest.raises(AttributeError):
        SPEC.pitch = 10  # type: ignore[misc]
    with pytest.raises(ValueError):
        speech.SpeechSpec(len(corpus.SENTENCES), "en-us")
    with pytest.raises(ValueError):
        speech.SpeechSpec(0, "en-us", pitch=120)


# --------------------------------------------------------------------------------------------- synthesis
@needs_espeak
def test_synthesize_format(audio):
    assert audio.dtype == np.float32 and audio.ndim == 1
    dur = len(audio) / speech.SAMPLE_RATE
    assert 2.5 < dur < 10.0
    assert np.abs(audio).max() <= 0.95 + 1e-6
    assert np.abs(audio).max() > 0.3


@needs_espeak
def test_synthesize_deterministic_and_cached(audio, cache, monkeypatch, tmp_path):
    files = list(cache.glob("*.npy"))
    assert len(files) == 1
    calls = []

    def boom(*a, **k):
        calls.append(a)
        raise AssertionError("espeak-ng must not run on a cache hit")

    monkeypatch.setattr(speech, "_run_espeak", boom)
    again = speech.synthesize(SPEC, cache)
    np.testing.assert_array_equal(again, audio)
    assert not calls
    monkeypatch.undo()
    fresh = speech.synthesize(SPEC, tmp_path)  # a cold cache regenerates the same samples
    np.testing.assert_array_equal(fresh, audio)
    other = speech.synthesize(speech.SpeechSpec(3, "en-us", 150, 60), tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2
    assert other.shape != audio.shape or not np.array_equal(other, audio)


@needs_espeak
def test_sentence_durations_in_range(tmp_path):
    """The shortest sentence at the fastest speed and the longest at the slowest stay within 3-10 s."""
    lo, hi = speech.SPEED_RANGE_WPM
    short = min(range(len(corpus.SENTENCES)), key=lambda i: len(corpus.SENTENCES[i]))
    long_ = max(range(len(corpus.SENTENCES)), key=lambda i: len(corpus.SENTENCES[i]))
    d_short = len(speech.synthesize(speech.SpeechSpec(short, "en-us", hi, 50), tmp_path)) / 16000
    d_long = len(speech.synthesize(speech.SpeechSpec(long_, "en-gb-scotland", lo, 50), tmp_path)) / 16000
    assert 2.8 < d_short and d_long < 10.0


@needs_espeak
def test_every_voice_exists(tmp_path):
    """Each voice is accepted by espeak-ng (an unknown language fails) and each variant file exists
    (espeak-ng silently ignores an unknown variant)."""
    import subprocess

    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    data = Path(version.split("Data at:")[1].strip())
    for v in speech.VOICES:
        x = speech.synthesize(speech.SpeechSpec(0, v, 165, 50), tmp_path)
        assert len(x) > 16000
        if "+" in v:
            assert (data / "voices" / "!v" / v.split("+")[1]).exists(), v


def test_missing_espeak_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="espeak-ng not found: apt-get install espeak-ng"):
        speech.synthesize(SPEC, tmp_path)


# ------------------------------------------------------------------------------------------- mouth track
def test_mouth_track_silence_is_closed():
    m = speech.mouth_track(np.zeros(16000 * 2, np.float32))
    assert m.shape == (50, 3)
    assert np.abs(m).max() == 0.0
    rng = np.random.default_rng(0)
    quiet = speech.mouth_track((rng.standard_normal(32000) * 1e-5).astype(np.float32))
    assert quiet[:, 0].max() < 0.05


@needs_espeak
def test_mouth_track_shape_ranges(audio):
    m = speech.mouth_track(audio)
    assert m.dtype == np.float32
    assert m.shape == (int(np.ceil(len(audio) / 16000 * 25)), 3)
    assert speech.mouth_track(audio, fps=30).shape[0] == int(np.ceil(len(audio) / 16000 * 30))
    assert speech.mouth_track(audio, n_frames=10).shape == (10, 3)
    padded = speech.mouth_track(audio, n_frames=m.shape[0] + 20)
    np.testing.assert_allclose(padded[: m.shape[0]], m)
    assert np.all(padded[m.shape[0]:] == 0)
    jaw, width, rnd = m.T
    assert jaw.min() >= 0 and jaw.max() <= 1 and width.min() >= -1 and width.max() <= 1
    assert rnd.min() >= 0 and rnd.max() <= 1
    assert 0.7 <= jaw.max() <= 0.9  # loud open vowels ~0.8
    assert width.max() > 0.3 and width.min() < -0.1 and rnd.max() > 0.3  # the lip shape varies


@needs_espeak
def test_mouth_track_speech_vs_silence(audio):
    pad = np.zeros(16000, np.float32)
    m = speech.mouth_track(np.concatenate([pad, audio, pad]))
    assert np.abs(m[:20]).max() < 0.02 and np.abs(m[-20:]).max() < 0.02
    assert m[25:-25, 0].mean() > 0.25


@needs_espeak
def test_jaw_follows_envelope(audio):
    m = speech.mouth_track(audio)
    env = _envelope(audio, m.shape[0])
    assert np.corrcoef(env, m[:, 0])[0, 1] > 0.7


@needs_espeak
def test_mouth_track_deterministic_and_gain_invariant(audio):
    m = speech.mouth_track(audio)
    np.testing.assert_array_equal(m, speech.mouth_track(audio.copy()))
    for gain in (0.05, 0.5):
        np.testing.assert_allclose(speech.mouth_track(audio * gain), m, atol=2e-3)


@needs_espeak
def test_mouth_track_other_sample_rate(audio):
    import soxr

    up = soxr.resample(audio, 16000, 22050).astype(np.float32)
    m16, m22 = speech.mouth_track(audio), speech.mouth_track(up, sr=22050)
    n = min(len(m16), len(m22))
    assert np.abs(m16[:n] - m22[:n]).mean() < 0.03


@needs_espeak
def test_mouth_track_front_vs_back_vowels(tmp_path):
    """/i:/ spreads the lips (width > 0), /O:/ rounds them (round > width)."""
    import subprocess

    import soundfile as sf
    import soxr

    def vowel(ph: str) -> np.ndarray:
        wav = tmp_path / "v.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), f"[[{ph}]]"], check=True)
        x, sr = sf.read(str(wav), dtype="float32")
        m = speech.mouth_track(soxr.resample(x, sr, 16000))
        return m[m[:, 0] > 0.4].mean(axis=0)

    ee, aw = vowel("i:i:i:i:"), vowel("O:O:O:O:")
    assert ee[1] > 0.5 and ee[2] < 0.1
    assert aw[2] > 0.5 and aw[1] < 0


# ------------------------------------------------------------------------------------------------- demo
def test_demo_asset_bundled():
    import soundfile as sf

    import instructavatar

    path = Path(instructavatar.__file__).resolve().parent / "assets" / "demo_speech.wav"
    assert path.exists(), "run: python -m instructavatar.avatarworld.speech"
    info = sf.info(str(path))
    assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    assert 4.0 <= info.duration <= 6.0
    assert speech.DEMO_SPEC.sentence_id in corpus.sentence_ids("heldout")
    assert speech.VOICES.index(speech.DEMO_SPEC.voice) in speech.voice_ids("heldout")


@needs_espeak
def test_write_demo_speech_matches_bundle(tmp_path):
    import soundfile as sf

    import instructavatar

    out = speech.write_demo_speech(tmp_path / "demo.wav", cache_dir=tmp_path)
    bundled = Path(instructavatar.__file__).resolve().parent / "assets" / "demo_speech.wav"
    a, _ = sf.read(str(out), dtype="int16")
    b, _ = sf.read(str(bundled), dtype="int16")
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1
