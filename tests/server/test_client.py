"""The Python client library and `instructavatar client` / `serve` against a loopback server."""

from __future__ import annotations

import json
import subprocess
import sys
import types
import urllib.request

import pytest

from instructavatar.cli import main
from instructavatar.engine.media.audio_io import write_wav
from instructavatar.engine.media.video_io import read_video
from instructavatar.server.client import AvatarClient, ServerError, render

from .conftest import png, tone


def test_render_returns_every_frame_in_order(make_server):
    with make_server(default_chunk_frames=4) as srv:
        frames, ready, end = render(srv.url, png(1), tone(1.2), instruction="smile", speed=None)
    assert ready["type"] == "session.ready" and end["reason"] == "audio_end" and ready["chunk_frames"] == 4
    assert [f.index for f in frames] == list(range(30))
    assert frames[0].rgb().shape == (128, 128, 3)


def test_client_surfaces_server_errors(make_server):
    with make_server(token="t") as srv, AvatarClient(srv.url) as c:
        with pytest.raises(ServerError, match="unauthorized"):
            c.start(png(1), token="wrong")


def test_cli_client_writes_the_received_frames_with_audio(make_server, tmp_path):
    wav, out = tmp_path / "speech.wav", tmp_path / "out.mp4"
    write_wav(wav, tone(1.0, rate=22050), 22050)
    with make_server() as srv:
        rc = main(["client", "--url", srv.url, "--audio", str(wav), "--instruction", "smile", "--out", str(out),
                   "--speed", "0"])
    assert rc == 0
    frames, fps, audio, rate = read_video(out)
    assert len(frames) == 25 and fps == 25 and audio is not None and abs(len(audio) / rate - 1.0) < 0.1


def test_cli_client_mic_and_virtual_camera_paths(make_server, monkeypatch, tmp_path):
    """No microphone or v4l2loopback here: stand-in pyaudio / pyvirtualcam modules check the wiring."""
    shown = []

    class Camera:
        def __init__(self, width, height, fps):
            self.size = (width, height, fps)

        def send(self, rgb):
            shown.append(rgb.shape)

        def close(self):
            shown.append("closed")

    class Stream:
        def read(self, n, exception_on_overflow=True):
            return (tone(n / 16000) * 32767).astype("<i2").tobytes()

        def close(self):
            pass

    class PyAudio:
        def open(self, **kw):
            assert kw["rate"] == 16000 and kw["input"]
            return Stream()

        def terminate(self):
            pass

    monkeypatch.setitem(sys.modules, "pyvirtualcam", types.SimpleNamespace(Camera=Camera))
    monkeypatch.setitem(sys.modules, "pyaudio", types.SimpleNamespace(PyAudio=PyAudio, paInt16=8))
    with make_server() as srv:
        rc = main(["client", "--url", srv.url, "--mic", "--seconds", "0.8", "--virtual-camera"])
    assert rc == 0
    assert shown[-1] == "closed" and len(shown) >= 15 and shown[0] == (128, 128, 3)


def test_cli_client_needs_pyvirtualcam(make_server, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)
    with make_server() as srv:
        rc = main(["client", "--url", srv.url, "--audio", "x.wav", "--virtual-camera"])
    assert rc == 1                                    # x.wav missing or pyvirtualcam missing: one-line error
    assert "error:" in capsys.readouterr().err


def test_cli_client_refused_connection_is_one_line(capsys):
    rc = main(["client", "--url", "ws://127.0.0.1:9/ws", "--mic", "--seconds", "0.1"])
    assert rc == 1 and "cannot connect" in capsys.readouterr().err


def test_serve_command_starts_and_answers_health(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "instructavatar.cli", "serve", "--port", "0", "--steps", "1",
                             "--threads", "1"], stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "instructavatar serve" not in line:             # past any loader warnings
            line = proc.stderr.readline()
            assert line, "serve exited before listening"
        port = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read())
        assert health["status"] == "ok" and health["model"] == "demo"
    finally:
        proc.terminate()
        proc.wait(20)


def test_serve_usage_errors(capsys):
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["serve", "--chunk-frames", "1"]) == 2
    assert "--chunk-frames must be an integer from 2 to 10" in capsys.readouterr().err
