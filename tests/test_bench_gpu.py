"""benchmarks/bench_gpu.py runs end to end on a CPU with --smoke (tiny sizes): every section produces its rows and
the JSON names the machine. The real run needs CUDA (docs/gpu.md); a GPU-marked test runs a short one."""

import json

import pytest
import torch

from instructavatar.benchmarks import bench_gpu


@pytest.mark.slow          # about a minute on a shared 2-core CPU
def test_smoke_runs_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    assert bench_gpu.main(["--smoke", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["errors"] == [] and report["skipped"] == []
    assert report["decoder"][0]["ms_per_frame"] > 0 and report["denoiser"][0]["ms_per_step"] > 0
    assert report["sessions"][0]["sessions"] == 1 and report["machine"]["device"] == "cpu"


def test_needs_cuda_unless_smoke(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert bench_gpu.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_short_gpu_run(tmp_path):
    out = tmp_path / "gpu.json"
    assert bench_gpu.main(["--config", "demo", "--modes", "eager,graphs", "--precisions", "bf16", "--sessions", "1,2",
                           "--reps", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["errors"] == [] and report["machine"]["gpu"]
    graphs = [r for r in report["decoder"] if r["mode"] == "graphs"]
    assert graphs and graphs[0]["ms_per_frame"] > 0
