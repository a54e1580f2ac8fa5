"""Every bad input to `instructavatar render`: one line `error: ...` on stderr, exit 2 (usage) or 1 (input),
never a traceback. Most cases fail before the model loads, so they are fast."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from instructavatar.cli import main

torch.set_num_threads(1)

PORTRAIT = Path(__file__).resolve().parents[1] / "instructavatar" / "assets" / "demo_portrait.png"
FAST = ["--random-weights", "--steps", "1", "--threads", "1", "--quiet"]
USAGE, INPUT = 2, 1


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, expected_code, *fragments):
    assert code == expected_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f.lower() in lines[0].lower(), (f, lines[0])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    t = np.arange(16000) / 16000
    sf.write(d / "ok.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 16000, subtype="PCM_16")
    sf.write(d / "tiny.wav", np.zeros(200), 16000, subtype="PCM_16")                  # 12.5 ms
    sf.write(d / "low_rate.wav", np.zeros(4000), 4000, subtype="PCM_16")               # 4 kHz: unsupported
    sf.write(d / "long.wav", np.zeros(601 * 8000, np.int16), 8000, subtype="PCM_U8")  # 601 s > 600 s
    (d / "empty.wav").write_bytes(b"")
    (d / "garbage.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    # A RIFF/WAVE header with an unknown sample format (format tag 0x1234).
    fmt = struct.pack("<HHIIHH", 0x1234, 1, 16000, 32000, 2, 16)
    data = np.zeros(16000, np.int16).tobytes()
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    (d / "odd_format.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    (d / "not_image.png").write_text("this is not a picture")
    (d / "tiny.png").write_bytes(PORTRAIT.read_bytes()[:40])                           # truncated PNG
    (d / "bad.safetensors").write_bytes(b"\x00" * 64)
    (d / "a_file").write_text("x")
    return d


def render(files, *extra, image=PORTRAIT, out=None):
    args = ["render", "--image", image, "--instruction", "talk happily", "--out", out or files / "o.mp4"]
    if "--audio" not in extra and "--seconds" not in extra and "--no-source" not in extra:
        args += ["--audio", files / "ok.wav"]
    return args + [e for e in extra if e != "--no-source"]


INPUT_CASES = {
    "missing portrait": (dict(image="{d}/nope.png"), [], "not found"),
    "portrait is a directory": (dict(image="{d}"), [], "directory"),
    "portrait not an image": (dict(image="{d}/not_image.png"), [], "portrait"),
    "portrait truncated": (dict(image="{d}/tiny.png"), [], "portrait"),
    "audio missing": ({}, ["--audio", "{d}/nope.wav"], "not found"),
    "audio empty": ({}, ["--audio", "{d}/empty.wav"], "empty"),
    "audio corrupt": ({}, ["--audio", "{d}/garbage.wav"], "cannot decode"),
    "audio too short": ({}, ["--audio", "{d}/tiny.wav"], "one video frame"),
    "audio too long": ({}, ["--audio", "{d}/long.wav"], "limit is 600"),
    "audio sample rate": ({}, ["--audio", "{d}/low_rate.wav"], "not supported"),
    "audio sample format": ({}, ["--audio", "{d}/odd_format.wav"], "audio"),
    "weights missing": ({}, ["--weights", "{d}/nope.safetensors"], "not found"),
    "weights corrupt": ({}, ["--weights", "{d}/bad.safetensors"], "safetensors"),
    "clip weights missing": ({}, ["--clip-weights", "{d}/nope.pt"], "not found"),
    "output not writable": (dict(out="{d}/a_file/o.mp4"), [], "cannot write"),
    "output is a directory": (dict(out="{d}"), [], "directory"),
}


@pytest.mark.parametrize("case", list(INPUT_CASES))
def test_input_errors(files, capsys, case):
    kw, extra, fragment = INPUT_CASES[case]
    kw = {k: v.format(d=files) for k, v in kw.items()}
    extra = [e.format(d=files) for e in extra]
    fast = FAST if "--weights" not in extra else FAST[1:]
    code, _, err = run_cli(capsys, *render(files, *extra, *fast, **kw))
    assert_one_line_error(code, err, INPUT, fragment)


USAGE_CASES = {
    "unknown config": (["--config", "huge"], "unknown config"),
    "unknown backend": (["--backend", "tensorrt9"], "unknown backend"),
    "steps zero": (["--steps", "0"], "between 1 and 1000"),
    "steps too many": (["--steps", "5000"], "between 1 and 1000"),
    "steps not a number": (["--steps", "many"], "invalid int"),
    "eta out of range": (["--eta", "2"], "eta must be in [0, 1]"),
    "guidance negative": (["--guidance", "-1"], "guidance must be"),
    "guidance nan": (["--guidance", "nan"], "guidance must be"),
    "guidance infinite": (["--guidance", "inf"], "guidance must be"),
    "seconds zero": (["--no-source", "--seconds", "0"], "positive"),
    "seconds negative": (["--no-source", "--seconds", "-1"], "positive"),
    "seconds nan": (["--no-source", "--seconds", "nan"], "positive"),
    "seconds over the limit": (["--no-source", "--seconds", "601"], "limit"),
    "both audio and seconds": (["--seconds", "1", "--audio", "x.wav"], "not allowed"),
    "neither audio nor seconds": (["--no-source"], "required"),
    "threads zero": (["--threads", "0"], "threads"),
}


@pytest.mark.parametrize("case", list(USAGE_CASES))
def test_usage_errors(files, capsys, case):
    extra, fragment = USAGE_CASES[case]
    # `--steps`/`--threads` given twice: argparse keeps the last, so the case's own value wins.
    code, _, err = run_cli(capsys, *render(files, *FAST, *extra))
    assert_one_line_error(code, err, USAGE, fragment)


def test_unknown_command_and_missing_arguments(capsys):
    assert_one_line_error(*run_cli(capsys, "paint")[::2], USAGE, "invalid choice")
    assert_one_line_error(*run_cli(capsys, "render", "--seconds", "1")[::2], USAGE, "required")
    assert_one_line_error(*run_cli(capsys)[::2], USAGE, "required")
    assert_one_line_error(*run_cli(capsys, "info", "--config", "nope")[::2], USAGE, "unknown config")


@pytest.mark.parametrize("text", ["", "   \t "])
def test_empty_instruction(files, capsys, text):
    args = render(files, *FAST)
    args[args.index("--instruction") + 1] = text
    assert_one_line_error(*run_cli(capsys, *args)[::2], INPUT, "instruction is empty")


def test_missing_weights_without_random_weights(files, capsys, monkeypatch, tmp_path):
    import instructavatar.engine.loader as loader

    monkeypatch.setattr(loader, "DEMO_WEIGHTS", tmp_path / "absent.safetensors")   # even once it ships
    args = [a for a in render(files, *FAST) if a != "--random-weights"]
    assert_one_line_error(*run_cli(capsys, *args)[::2], INPUT, "--random-weights")


def test_overlong_instruction_is_truncated_with_a_warning(files, capsys, tmp_path):
    args = render(files, "--no-source", "--seconds", "0.2", *FAST, out=tmp_path / "long.mp4")
    args[args.index("--instruction") + 1] = "talk happily and nod " * 40           # ~200 tokens > 64
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "warning: instruction truncated to 64 tokens" in err
    assert "Traceback" not in err
    assert (tmp_path / "long.mp4").is_file()


def test_real_process_prints_one_line(files):
    """Through a fresh interpreter: the message is the whole of stderr and the exit code is 1."""
    r = subprocess.run([sys.executable, "-m", "instructavatar.cli", "render", "--image", str(files / "nope.png"),
                        "--seconds", "1", "--instruction", "hi", "--out", str(files / "o.mp4")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == INPUT
    assert r.stderr.strip().splitlines() == [f"error: portrait not found: {files / 'nope.png'}"]


def test_an_unexpected_bug_keeps_its_traceback(files, capsys, monkeypatch):
    """Only the engine's input exceptions are turned into `error:` lines; a plain bug propagates."""
    import instructavatar.engine.media.image_io as image_io

    def broken(*args, **kwargs):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(image_io, "load_portrait", broken)
    with pytest.raises(ValueError, match="a bug"):
        main([str(a) for a in render(files, *FAST)])
