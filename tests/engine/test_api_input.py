"""The Python API checks audio as the CLI does (issue 22): sample_rate, stereo, int16, empty, seconds <= 0,
NaN refused before any state changes (the session stays usable and unharmed), the CLI's exception class."""

import numpy as np
import pytest
import soxr

from instructavatar.engine.media.audio_io import AudioInputError

from .numpy_backend import numpy_pipeline


@pytest.fixture(scope="module")
def pipe():
    return numpy_pipeline(steps=2)


@pytest.fixture(scope="module")
def portrait():
    return (np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8)


def speech(seconds, rate=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 180 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def test_nan_push_is_refused_and_leaves_the_session_unharmed(pipe, portrait):
    audio = speech(0.8)
    clean, _ = pipe.new_session(portrait, "talk happily", seed=4)
    want = np.concatenate([clean.push_audio(audio), clean.flush()])
    s, _ = pipe.new_session(portrait, "talk happily", seed=4)
    first = s.push_audio(audio[:3000])
    bad = audio[3000:5000].copy()
    bad[17] = np.nan
    with pytest.raises(AudioInputError, match="NaN"):
        s.push_audio(bad)
    with pytest.raises(AudioInputError, match="NaN"):
        s.push_audio(np.full(700, np.inf, np.float32))
    got = np.concatenate([first, s.push_audio(audio[3000:]), s.flush()])
    np.testing.assert_array_equal(got, want)
    assert got.min(axis=(1, 2, 3)).max() > 0 or got.mean() > 10     # frames, not black


def test_generate_refuses_nan_before_any_compute(pipe, portrait):
    audio = speech(0.4)
    audio[-1] = np.nan
    before = pipe.timings.summary().get("audio", {}).get("count", 0)
    with pytest.raises(AudioInputError, match="NaN"):
        pipe.generate(portrait, audio=audio)
    assert pipe.timings.summary().get("audio", {}).get("count", 0) == before


def test_stereo_is_mixed_not_interleaved(pipe, portrait):
    mono = speech(0.4)
    stereo = np.stack([mono, mono], axis=1)                                   # (S, 2)
    a = pipe.generate(portrait, audio=mono, seed=1)
    b = pipe.generate(portrait, audio=stereo, seed=1)
    assert len(b) == len(a) == 10
    np.testing.assert_array_equal(a, b)
    with pytest.raises(AudioInputError, match=r"transpose"):
        pipe.generate(portrait, audio=stereo.T, seed=1)                      # (2, S): refused, not guessed


def test_int16_is_scaled(pipe, portrait):
    mono = speech(0.4)
    as_int = np.round(mono * 32767).astype(np.int16)
    a = pipe.generate(portrait, audio=as_int.astype(np.float32) / 32768.0, seed=1)
    b = pipe.generate(portrait, audio=as_int, seed=1)
    np.testing.assert_array_equal(a, b)


def test_other_sample_rates_are_resampled(pipe, portrait):
    audio44 = speech(1.0, rate=44100)
    frames = pipe.generate(portrait, audio=audio44, sample_rate=44100, seed=2)
    assert len(frames) == 25                                                  # one second, not 69 frames
    want = pipe.generate(portrait, audio=soxr.resample(audio44, 44100, 16000, quality="HQ"), seed=2)
    np.testing.assert_array_equal(frames, want)
    s, _ = pipe.new_session(portrait, seed=2)
    pieces = [s.push_audio(audio44[i:i + 3001], sample_rate=44100) for i in range(0, len(audio44), 3001)]
    np.testing.assert_array_equal(np.concatenate(pieces + [s.flush()]), want)
    with pytest.raises(AudioInputError, match="44100 Hz"):
        s2, _ = pipe.new_session(portrait, seed=2)
        s2.push_audio(audio44[:4410], sample_rate=44100)
        s2.push_audio(audio44[:1600])                                         # another rate mid-session


@pytest.mark.parametrize("kwargs, match", [
    (dict(audio=np.zeros(0, np.float32)), "empty"),
    (dict(audio=np.zeros(100, np.float32)), "one video frame"),
    (dict(seconds=-1), "positive"),
    (dict(seconds=0), "positive"),
    (dict(seconds=float("nan")), "positive"),
    (dict(audio=np.zeros(1600, np.complex64)), "dtype"),
    (dict(audio=np.zeros((4, 4, 4), np.float32)), "shape"),
    (dict(audio=np.zeros(1600, np.float32), sample_rate=1000), "sample rate"),
])
def test_bad_whole_inputs_are_one_line_audio_errors(pipe, portrait, kwargs, match):
    with pytest.raises(AudioInputError, match=match) as e:
        pipe.generate(portrait, **kwargs)
    assert "\n" not in str(e.value)


def test_empty_push_is_a_no_op(pipe, portrait):
    s, _ = pipe.new_session(portrait, seed=0)
    assert len(s.push_audio(np.zeros(0, np.float32))) == 0 and len(s.pending) == 0
