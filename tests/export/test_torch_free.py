"""The runtime path without torch: a render on ONNX Runtime in a subprocess where `import torch` fails."""

from __future__ import annotations

import subprocess
import sys

BLOCK_TORCH = ("import sys; sys.modules['torch'] = None; "      # any `import torch` now raises ImportError
               "from instructavatar.cli import main; sys.exit(main(sys.argv[1:]))")


def _render(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    from instructavatar.demo import DEMO_PORTRAIT

    out = tmp_path / "clip.mp4"
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH, "render", "--image", str(DEMO_PORTRAIT),
                           "--seconds", "0.6", "--threads", "1",
                           "--instruction", "Smile.", "--out", str(out), "--quiet", *extra],
                          capture_output=True, text=True, timeout=300)


def test_render_on_ort_without_torch(demo_export, tmp_path):
    r = _render(tmp_path, "--backend", "auto")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "backend: ort" in r.stderr                     # auto announced its choice
    assert (tmp_path / "clip.mp4").stat().st_size > 1000


def test_blocking_works(demo_export, tmp_path):
    """The wrapper really blocks torch: the torch path fails under it (so the test above would catch a torch
    import on the ORT path), and importing the torch modules raises ImportError."""
    r = _render(tmp_path, "--backend", "torch")
    assert r.returncode != 0 and not (tmp_path / "clip.mp4").exists()
    probe = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None; "
                            "import instructavatar.engine.modules.torch_backend as t; t.TorchBackend(None)"],
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode != 0 and "import of torch halted" in probe.stderr
