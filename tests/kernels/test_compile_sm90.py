"""Both kernels compile for an H100/H200 (sm_90) without a GPU, every autotune config, fp16 and bf16 (`-m slow`).

Runs kernels/compile_check.py in a subprocess with TRITON_INTERPRET=0 (this folder's tests interpret the kernels in
process). Catches a kernel that interprets correctly but does not compile; numerical checks need a GPU (`-m gpu`).
"""

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("shape", ["demo", "paper"])
def test_every_config_compiles_for_sm90(shape):
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    run = subprocess.run([sys.executable, "-m", "instructavatar.kernels.compile_check", "--arch", "90",
                          "--shapes", shape], env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.stdout.count("\nok ") + run.stdout.startswith("ok ") == 16, run.stdout      # 2 dtypes x 8 configs
