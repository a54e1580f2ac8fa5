"""The `instructavatar` command end to end: render (audio and motion only), info, demo, --version.

Tiny settings throughout: demo config, random weights, 1 DDIM step, 1 thread, 1-1.3 s of audio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from instructavatar import __version__
from instructavatar.cli import main
from instructavatar.engine.media.video_io import read_video

torch.set_num_threads(1)

PORTRAIT = Path(__file__).resolve().parents[1] / "instructavatar" / "assets" / "demo_portrait.png"
FAST = ["--config", "demo", "--random-weights", "--steps", "1", "--threads", "1", "--quiet"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """main() in process (no interpreter start-up per call); argparse exits become return codes."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def tone(path: Path, seconds: float, rate: int = 16000, channels: int = 1) -> Path:
    t = np.arange(int(round(seconds * rate))) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, np.stack([x] * channels, axis=1) if channels > 1 else x, rate, subtype="PCM_16")
    return path


@pytest.mark.parametrize("seconds, rate, channels, frames", [(1.3, 16000, 1, 33), (1.0, 44100, 2, 25)])
def test_render_audio(tmp_path, capsys, seconds, rate, channels, frames):
    wav = tone(tmp_path / "speech.wav", seconds, rate, channels)
    out = tmp_path / "out" / "talk.mp4"                    # the output folder is created
    code, stdout, stderr = run_cli(capsys, "render", "--image", PORTRAIT, "--audio", wav,
                                   "--instruction", "talk happily", "--out", out, *FAST)
    assert code == 0, stderr
    assert "RANDOM WEIGHTS" in stderr
    video, fps, audio, sr = read_video(out)
    assert fps == 25 and sr == rate                        # the user's own audio is muxed, at its own rate
    assert video.shape == (frames, 128, 128, 3)            # ceil(samples / 640) at 16 kHz
    assert abs(len(audio) / sr - seconds) <= 1 / 25        # the input's duration, within one frame
    assert f"{frames} frames" in stdout and "real-time factor" in stdout
    for stage in ("portrait", "text", "audio", "denoise_step", "decode"):
        assert stage in stdout


def test_render_motion_only(tmp_path, capsys):
    out = tmp_path / "nod.mp4"
    code, stdout, stderr = run_cli(capsys, "render", "--image", PORTRAIT, "--seconds", "1",
                                   "--instruction", "nod slowly", "--out", out, *FAST)
    assert code == 0, stderr
    video, fps, audio, _ = read_video(out)
    assert video.shape == (25, 128, 128, 3) and fps == 25
    assert audio is None


def test_render_without_idle_blinks_reaches_the_session(tmp_path, capsys, monkeypatch):
    from instructavatar.engine.pipeline import Pipeline

    seen = []
    original = Pipeline.new_session

    def spy(self, *a, **k):
        session, warnings = original(self, *a, **k)
        seen.append(session.blinks)
        return session, warnings

    monkeypatch.setattr(Pipeline, "new_session", spy)
    for flag in ([], ["--no-idle-blinks"]):
        code, _, stderr = run_cli(capsys, "render", "--image", PORTRAIT, "--seconds", "0.4", "--out",
                                  tmp_path / "x.mp4", *flag, *FAST)
        assert code == 0, stderr
    assert [s.enabled for s in seen] == [True, False]


def test_info_paper_matches_architecture_estimates(capsys):
    code, stdout, _ = run_cli(capsys, "info", "--config", "paper", "--json")
    assert code == 0
    info = json.loads(stdout)
    params = {c["name"]: c["params"] for c in info["components"]}
    vae = params["vae.appearance_encoder"] + params["vae.motion_encoder"] + params["vae.decoder"]
    assert vae == info["totals"]["vae_params"]
    for ours, estimate in ((vae, 756e6), (params["denoiser"], 259e6), (params["text_encoder"], 123e6)):
        assert abs(ours / estimate - 1) < 0.15, (ours, estimate)
    assert all(c["gflop"] > 0 for c in info["components"])
    assert info["per_frame_gflop"] > 0
    assert {e["name"] for e in info["estimates"]} >= {"vae", "denoiser", "text_encoder", "vae.decoder"}
    assert info["sizes"]["image"] == 256 and info["sizes"]["motion_dim"] == 768
    assert info["sizes"]["appearance_state"] == info["sizes"]["appearance_latent"] == [3, 64, 64]   # no warp


def test_info_demo_table(capsys):
    code, stdout, _ = run_cli(capsys, "info", "--config", "demo")
    assert code == 0
    assert "vae.decoder" in stdout and "GFLOP per output frame" in stdout
    assert "window 20 frames" in stdout
    assert "appearance latent 8x32x32 (cached portrait state 64x32x32, with the warp)" in stdout


def test_version_through_the_entry_point():
    r = subprocess.run([sys.executable, "-m", "instructavatar.cli", "--version"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"instructavatar {__version__}"


def test_demo_in_process_short(tmp_path, monkeypatch):
    """run_demo on a short sentence (the bundled one is 4.9 s: see the slow test for the real thing)."""
    import instructavatar.demo as demo

    monkeypatch.setattr(demo, "DEMO_SPEECH", tone(tmp_path / "short.wav", 0.5))
    messages = []
    paths = demo.run_demo(tmp_path / "d", steps=1, random_weights=True, progress=False, threads=1,
                          log=messages.append)
    video, fps, audio, sr = read_video(paths["video"])
    assert video.shape[0] == 13 and video.shape[2] == 256          # 2x2 mosaic of 128 px tiles
    assert abs(len(audio) / sr - 0.5) <= 1 / 25
    assert paths["grid"].is_file() and paths["grid"].stat().st_size > 0
    assert any("RANDOM" in m for m in messages)


def test_demo_falls_back_to_silence(tmp_path, monkeypatch):
    import instructavatar.demo as demo

    monkeypatch.setattr(demo, "DEMO_SPEECH", tmp_path / "absent.wav")
    monkeypatch.setattr(demo, "FALLBACK_SECONDS", 0.4)
    messages = []
    paths = demo.run_demo(tmp_path / "d", steps=1, random_weights=True, progress=False, threads=1,
                          log=messages.append)
    assert read_video(paths["video"])[0].shape[0] == 10
    assert any("silence" in m for m in messages)


@pytest.mark.slow
def test_demo_command(tmp_path, capsys):
    code, stdout, stderr = run_cli(capsys, "demo", "--out", tmp_path, "--random-weights", "--steps", "1",
                                   "--threads", "1", "--quiet")
    assert code == 0, stderr
    assert (tmp_path / "demo.mp4").is_file() and (tmp_path / "demo_grid.png").is_file()
    video, fps, audio, sr = read_video(tmp_path / "demo.mp4")
    assert fps == 25 and audio is not None and video.shape[0] == -(-len(audio) // 640)
