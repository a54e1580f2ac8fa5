"""Long renders (issue 22): frames go to the file as each chunk completes (memory flat in the input's length),
a stopped render leaves a playable file up to the last finished chunk and says so, the user's original audio
(rate, channels) is muxed, and the container follows the extension or the name is refused."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from instructavatar.engine.media.video_io import CONTAINERS, VideoFormatError, container_for, read_video
from instructavatar.engine.render import render_to_file

from .numpy_backend import numpy_pipeline

PORTRAIT = Path(__file__).resolve().parents[2] / "instructavatar" / "assets" / "demo_portrait.png"


@pytest.fixture(scope="module")
def pipe():
    return numpy_pipeline(steps=1)


def tone(seconds, rate=16000, channels=1):
    t = np.arange(int(round(seconds * rate))) / rate
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x, 0.5 * x], axis=1)


def audio_track(path):
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return s.codec_context.sample_rate, s.codec_context.channels


def test_stopped_render_leaves_a_playable_file_up_to_the_last_chunk(pipe, tmp_path):
    out = tmp_path / "long.mp4"
    C = pipe.cfg.stream.chunk_frames
    seen = []

    def stop_after_three_chunks(n):
        seen.append(n)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as e:
        render_to_file(pipe, out, PORTRAIT, audio=tone(4.0), progress=stop_after_three_chunks)
    assert e.value.partial.frames == 3 * C and not e.value.partial.complete
    frames, fps, audio, rate = read_video(out)
    assert len(frames) == 3 * C and fps == 25
    assert abs(len(audio) / rate - 3 * C / 25) < 0.05         # the sound ends with the last frame


def test_memory_stays_flat_in_the_input_length(pipe, tmp_path):
    def peak(seconds):
        tracemalloc.start()
        render_to_file(pipe, tmp_path / f"m{seconds}.mp4", PORTRAIT, audio=tone(seconds))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    short, long = peak(1.0), peak(9.0)
    frames_of_8_s = 8 * 25 * 128 * 128 * 3                       # what holding the frames would add: 9.8 MB
    assert long - short < frames_of_8_s / 3, (short, long)


def test_original_audio_rate_and_channels_are_muxed(pipe, tmp_path):
    stereo = tone(1.0, 44100, channels=2)
    result = render_to_file(pipe, tmp_path / "s.mp4", PORTRAIT, audio=stereo, sample_rate=44100)
    assert result.complete and result.frames == 25
    assert audio_track(result.path) == (44100, 2)


@pytest.mark.parametrize("ext", [".mkv", ".mov", ".avi", ".webm"])
def test_container_follows_the_extension(pipe, tmp_path, ext):
    result = render_to_file(pipe, tmp_path / f"v{ext}", PORTRAIT, audio=tone(0.4, 48000), sample_rate=48000)
    with av.open(str(result.path)) as c:
        assert CONTAINERS[ext].format.split(",")[0] in c.format.name
        assert c.streams.video and c.streams.audio
    assert len(read_video(result.path)[0]) == 10


@pytest.mark.parametrize("name", ["out", "out.gif", "out.mp3"])
def test_unknown_extensions_are_refused_with_the_list(name):
    with pytest.raises(VideoFormatError, match=r"use one of \.mp4, "):
        container_for(name)


@pytest.fixture
def fast_cli(monkeypatch, pipe):
    """The CLI with the numpy test pipeline in place of the model (the CLI's own code is what is tested)."""
    from instructavatar.engine import loader

    monkeypatch.setattr(loader, "load_pipeline", lambda *a, **k: pipe)


def test_cli_render_avi_and_refuses_no_extension(tmp_path, capsys, fast_cli):
    from instructavatar.cli import main

    wav = tmp_path / "s.wav"
    sf.write(wav, tone(0.5, 22050, channels=2), 22050)
    fast = ["--random-weights", "--steps", "1", "--threads", "1", "--quiet"]
    assert main(["render", "--image", str(PORTRAIT), "--audio", str(wav), "--out", str(tmp_path / "x"), *fast]) == 1
    assert "use one of .mp4" in capsys.readouterr().err
    assert main(["render", "--image", str(PORTRAIT), "--audio", str(wav), "--out", str(tmp_path / "x.avi"), *fast]) == 0
    with av.open(str(tmp_path / "x.avi")) as c:
        assert c.format.name == "avi"
    assert audio_track(tmp_path / "x.avi") == (22050, 2)


def test_cli_says_what_an_interrupted_render_kept(tmp_path, capsys, monkeypatch, fast_cli):
    from instructavatar.cli import main
    from instructavatar.engine.pipeline import Pipeline

    calls = []
    real = Pipeline.step

    def step(self, sessions, chunks):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, sessions, chunks)

    monkeypatch.setattr(Pipeline, "step", step)
    wav = tmp_path / "s.wav"
    sf.write(wav, tone(2.0), 16000)
    out = tmp_path / "cut.mp4"
    code = main(["render", "--image", str(PORTRAIT), "--audio", str(wav), "--out", str(out),
                 "--random-weights", "--steps", "1", "--threads", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 130
    assert f"{out} holds the first 10 of 50 frames" in err
    assert len(read_video(out)[0]) == 10


def test_cli_prints_portrait_warnings_and_what_the_instruction_was_taken_to_mean(tmp_path, capsys, fast_cli):
    from PIL import Image

    from instructavatar.cli import main

    grey = tmp_path / "grey.png"
    Image.open(PORTRAIT).convert("L").save(grey)
    code = main(["render", "--image", str(grey), "--seconds", "0.4", "--instruction", "笑着说话",
                 "--out", str(tmp_path / "g.mp4"), "--random-weights", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0
    assert "warning: portrait is grayscale" in err
    assert "instruction '笑着说话': understood as" in err
    assert "unknown to the text encoder" in err
