"""engine/media/audio_io.py: files, arrays, raw PCM, streams, loudness; every bad input -> AudioInputError."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from instructavatar.engine.media.audio_io import (
    AudioInputError,
    StreamResampler,
    decode_pcm,
    from_array,
    load_audio,
    normalize_loudness,
    write_wav,
)


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


# ------------------------------------------------------------------------------------------------ files
@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_load_wav_rates_channels_formats(tmp_path, rate, channels, subtype):
    x = sine(1000.0, rate, 1.5)
    data = x if channels == 1 else np.stack([x, x], axis=1)
    path = tmp_path / f"a_{rate}_{channels}.wav"
    sf.write(path, data, rate, subtype=subtype)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 1.5 * 16000) <= 1
    assert np.abs(y).max() <= 1.0
    assert abs(peak_hz(y, 16000) - 1000.0) < 2.0
    assert abs(np.abs(y[2000:-2000]).max() - 0.5) < 0.01


def test_stereo_is_mean_of_channels(tmp_path):
    left, right = sine(440.0, 16000, 0.5, 0.8), np.zeros(8000, np.float32)
    path = tmp_path / "s.wav"
    sf.write(path, np.stack([left, right], 1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), left / 2, atol=1e-6)


@pytest.mark.parametrize("fmt,subtype,ext", [("OGG", "VORBIS", "ogg"), ("FLAC", "PCM_16", "flac"),
                                             ("MP3", "MPEG_LAYER_III", "mp3")])
def test_load_compressed(tmp_path, fmt, subtype, ext):
    path = tmp_path / f"c.{ext}"
    try:
        sf.write(path, sine(1000.0, 44100, 1.0), 44100, format=fmt, subtype=subtype)
    except Exception as e:  # libsndfile built without this codec
        pytest.skip(f"cannot write {ext}: {e}")
    y = load_audio(path)                         # mp3 goes through PyAV, the others through soundfile
    assert abs(len(y) - 16000) < 16000 * 0.1     # codec priming/padding may add a few ms
    assert abs(peak_hz(y, 16000) - 1000.0) < 3.0


def test_too_long_compressed_file_via_pyav(tmp_path):
    path = tmp_path / "long.mp3"
    try:
        sf.write(path, sine(440.0, 16000, 3.0), 16000, format="MP3", subtype="MPEG_LAYER_III")
    except Exception as e:
        pytest.skip(f"cannot write mp3: {e}")
    with pytest.raises(AudioInputError, match=r"the limit is 1.5 s"):
        load_audio(path, max_seconds=1.5)


def test_pyav_path_for_m4a(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "a.m4a"
    x = sine(1000.0, 48000, 1.0)
    try:
        with av.open(str(path), "w") as out:
            stream = out.add_stream("aac", rate=48000, layout="mono")
            frame = av.AudioFrame.from_ndarray(x[None], format="fltp", layout="mono")
            frame.sample_rate = 48000
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    except Exception as e:
        pytest.skip(f"no aac encoder: {e}")
    y = load_audio(path)
    assert abs(len(y) - 16000) < 1600
    assert abs(peak_hz(y, 16000) - 1000.0) < 3.0


def test_write_wav_round_trip(tmp_path):
    x = sine(300.0, 16000, 0.5)
    write_wav(tmp_path / "w.wav", x, 16000)
    info = sf.info(tmp_path / "w.wav")
    assert info.subtype == "PCM_16" and info.samplerate == 16000
    np.testing.assert_allclose(load_audio(tmp_path / "w.wav"), x, atol=1 / 32768 + 1e-6)


# ----------------------------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    with pytest.raises(AudioInputError, match="not found"):
        load_audio(tmp_path / "nope.wav")


@pytest.mark.parametrize("name", ["bad.wav", "bad.mp3", "bad.bin"])
def test_corrupt_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioInputError, match="cannot decode audio file"):
        load_audio(path)


def test_zero_byte_file(tmp_path):
    (tmp_path / "z.wav").write_bytes(b"")
    with pytest.raises(AudioInputError, match="empty"):
        load_audio(tmp_path / "z.wav")


def test_empty_and_too_short_files(tmp_path):
    sf.write(tmp_path / "e.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioInputError, match="empty"):
        load_audio(tmp_path / "e.wav")
    sf.write(tmp_path / "s.wav", np.zeros(300, np.float32), 16000)
    with pytest.raises(AudioInputError, match="at least 40 ms"):
        load_audio(tmp_path / "s.wav")


def test_too_long_file(tmp_path):
    sf.write(tmp_path / "l.wav", np.zeros(8000 * 5, np.int16), 8000)
    with pytest.raises(AudioInputError, match=r"audio is 5.0 s; the limit is 4 s"):
        load_audio(tmp_path / "l.wav", max_seconds=4)
    assert len(load_audio(tmp_path / "l.wav", max_seconds=5)) == 80000


def test_nan_in_float_file(tmp_path):
    x = sine(100.0, 16000, 0.2)
    x[100] = np.nan
    sf.write(tmp_path / "n.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioInputError, match="NaN"):
        load_audio(tmp_path / "n.wav")


def test_unsupported_file_rate(tmp_path):
    sf.write(tmp_path / "r.wav", np.zeros(4000, np.int16), 4000)
    with pytest.raises(AudioInputError, match="sample rate 4000 Hz is not supported"):
        load_audio(tmp_path / "r.wav")


# ---------------------------------------------------------------------------------------------- arrays
@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint8, np.float32, np.float64])
def test_from_array_dtypes(dtype):
    x = sine(1000.0, 16000, 0.5, amp=0.5)
    if dtype == np.int16:
        a = (x * 32767).astype(np.int16)
    elif dtype == np.int32:
        a = (x * 2**31).astype(np.int32)
    elif dtype == np.uint8:
        a = np.round(x * 127 + 128).astype(np.uint8)
    else:
        a = x.astype(dtype)
    y = from_array(a, 16000)
    assert y.dtype == np.float32 and y.shape == (8000,)
    np.testing.assert_allclose(y, x, atol=1.0 / 127 if dtype == np.uint8 else 1e-4)


def test_from_array_layouts_and_resampling():
    x = sine(1000.0, 48000, 1.0)
    sc = np.stack([x, x, x], axis=1)             # (S, C)
    cs = sc.T.copy()                             # (C, S)
    a, b, c = from_array(x, 48000), from_array(sc, 48000), from_array(cs, 48000)
    assert a.shape == (16000,)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)
    np.testing.assert_allclose(a, soxr.resample(x, 48000, 16000, quality="HQ"), atol=1e-6)
    assert abs(peak_hz(a, 16000) - 1000.0) < 2.0


def test_from_array_float_over_range_is_scaled_not_clipped():
    x = sine(200.0, 16000, 0.5, amp=1.0) * 20000.0     # int16-scaled floats
    y = from_array(x, 16000)
    assert abs(np.abs(y).max() - 1.0) < 1e-3
    assert abs(peak_hz(y, 16000) - 200.0) < 3.0


@pytest.mark.parametrize("samples,rate,kwargs,match", [
    (np.zeros(0, np.float32), 16000, {}, "empty"),
    (np.zeros(100, np.float32), 16000, {}, "at least 40 ms"),
    (np.zeros(16000 * 3, np.float32), 16000, {"max_seconds": 2.5}, r"audio is 3.0 s; the limit is 2.5 s"),
    (np.array([0.0, np.inf] * 1000, np.float32), 16000, {}, "NaN or infinite"),
    (np.zeros(16000, np.float32), 7999, {}, "sample rate 7999 Hz is not supported"),
    (np.zeros(16000, np.float32), 192001, {}, "not supported"),
    (np.zeros(16000, np.float32), 16000.5, {}, "not supported"),
    (np.zeros(16000, np.complex64), 16000, {}, "unsupported sample format complex64"),
    (np.zeros(16000, np.int64), 16000, {}, "unsupported sample format int64"),
    (np.zeros(16000, bool), 16000, {}, "unsupported sample format bool"),
    (np.zeros((20, 20), np.float32), 16000, {}, "cannot tell channels"),
    (np.zeros((2, 2, 4000), np.float32), 16000, {}, "expected"),
])
def test_from_array_errors(samples, rate, kwargs, match):
    with pytest.raises(AudioInputError, match=match):
        from_array(samples, rate, **kwargs)


def test_error_messages_are_one_line(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"RIFF" + b"\x00" * 200)
    with pytest.raises(AudioInputError) as info:
        load_audio(tmp_path / "x.wav")
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


# ------------------------------------------------------------------------------------------------- PCM
def test_decode_pcm16_round_trip():
    x = (sine(500.0, 16000, 0.1) * 32767).astype("<i2")
    np.testing.assert_allclose(decode_pcm(x.tobytes(), "pcm16", 1), x / 32768.0, atol=1e-7)
    st = np.stack([x, np.zeros_like(x)], 1)
    np.testing.assert_allclose(decode_pcm(st.tobytes(), "pcm16", 2), x / 65536.0, atol=1e-7)


def test_decode_float32_round_trip():
    x = sine(500.0, 16000, 0.1)
    y = decode_pcm(x.astype("<f4").tobytes(), "float32", 1)
    np.testing.assert_array_equal(y, x)
    y2 = decode_pcm(bytearray(np.stack([x, x], 1).astype("<f4").tobytes()), "float32", 2)
    np.testing.assert_allclose(y2, x, atol=1e-7)
    assert decode_pcm(b"", "pcm16", 1).shape == (0,)


@pytest.mark.parametrize("data,fmt,ch,match", [
    (b"\x00" * 3, "pcm16", 1, "not a multiple of 2"),
    (b"\x00" * 6, "pcm16", 2, "not a multiple of 4"),
    (b"\x00" * 10, "float32", 1, "not a multiple of 4"),
    (b"\x00" * 8, "mulaw", 1, "unsupported PCM format"),
    (b"\x00" * 8, "pcm16", 0, "channels"),
    (np.array([np.nan], "<f4").tobytes(), "float32", 1, "NaN"),
])
def test_decode_pcm_errors(data, fmt, ch, match):
    with pytest.raises(AudioInputError, match=match):
        decode_pcm(data, fmt, ch)


# --------------------------------------------------------------------------------------------- stream
@pytest.mark.parametrize("rate,channels", [(44100, 1), (48000, 2), (8000, 1), (16000, 2)])
def test_stream_resampler_matches_one_shot(rate, channels):
    rng = np.random.default_rng(rate)
    mono = (rng.standard_normal(rate * 2) * 0.1).astype(np.float32)
    data = mono if channels == 1 else np.stack([mono, mono * 0.5], 1)
    mixed = mono if channels == 1 else (mono * 0.75).astype(np.float32)
    ref = soxr.resample(mixed, rate, 16000, quality="HQ") if rate != 16000 else mixed
    rs = StreamResampler(rate, 16000, channels=channels)
    outs, i = [], 0
    while i < len(mono):
        n = int(rng.integers(1, 4000))
        outs.append(rs.push(data[i:i + n]))
        i += n
    outs.append(rs.flush())
    y = np.concatenate(outs)
    assert y.dtype == np.float32
    assert len(y) == len(ref) == 32000
    np.testing.assert_allclose(y, ref, atol=1e-4)


def test_stream_resampler_int16_and_errors():
    rs = StreamResampler(48000)
    out = rs.push((sine(1000.0, 48000, 0.5) * 32767).astype(np.int16))
    out = np.concatenate([out, rs.flush()])
    assert len(out) == 8000 and abs(np.abs(out[1000:-1000]).max() - 0.5) < 0.01
    with pytest.raises(AudioInputError, match="flushed"):
        rs.push(np.zeros(10, np.float32))
    with pytest.raises(AudioInputError, match="expected"):
        StreamResampler(48000, channels=2).push(np.zeros(10, np.float32))
    with pytest.raises(AudioInputError, match="NaN"):
        StreamResampler(48000).push(np.array([np.nan], np.float32))
    with pytest.raises(AudioInputError, match="not supported"):
        StreamResampler(1000)


# ------------------------------------------------------------------------------------------- loudness
def test_normalize_loudness():
    x = sine(200.0, 16000, 1.0, amp=0.01)
    y = normalize_loudness(x, target_rms_db=-20.0)
    rms_db = 20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    assert abs(rms_db - -20.0) < 0.01
    loud = np.zeros(16000, np.float32)
    loud[:10] = 1.0                              # one click: peak-limited, not clipped
    z = normalize_loudness(loud, target_rms_db=-3.0, peak_limit=0.99)
    assert abs(np.abs(z).max() - 0.99) < 1e-6
    silence = np.zeros(16000, np.float32)
    s = normalize_loudness(silence)
    assert np.array_equal(s, silence) and np.isfinite(s).all()
    tiny = np.full(16000, 1e-7, np.float32)
    np.testing.assert_array_equal(normalize_loudness(tiny), tiny)
    assert normalize_loudness(np.zeros(0, np.float32)).shape == (0,)


# ------------------------------------------------------------------------------------------ no torch
def test_audio_io_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from instructavatar.engine.media import audio_io\n"
            "import numpy as np\n"
            "y = audio_io.from_array(np.zeros(48000, np.float32), 48000)\n"
            "assert y.shape == (16000,)\n"
            "assert sys.modules['torch'] is None\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
