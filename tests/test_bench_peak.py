"""The bench's matmul peaks: ONNX Runtime's own MatMul rate, and the efficiency denominator = the best peak."""

import math

import pytest

from instructavatar.benchmarks.harness import machine_peak
from instructavatar.benchmarks.measure import matmul_peak_ort


def test_ort_matmul_peak_runs_its_own_kernel():
    pytest.importorskip("onnx")
    pk = matmul_peak_ort(sizes=(64, 128), repeats=2, threads=1)
    assert pk["library"] == "onnxruntime" and pk["dtype"] == "float32"
    assert set(pk["gflops_by_size"]) == {"64", "128"} and pk["peak_size"] in (64, 128)
    assert math.isfinite(pk["peak_gflops"]) and pk["peak_gflops"] > 0
    assert pk["peak_gflops"] == max(v["median"] for v in pk["gflops_by_size"].values())


def test_efficiency_denominator_is_the_best_library_peak():
    torch_pk = {"library": "torch", "peak_gflops": 50.0, "peak_size": 1024}
    ort_pk = {"library": "onnxruntime", "peak_gflops": 70.0, "peak_size": 256}
    for order in ((torch_pk, ort_pk), (ort_pk, torch_pk)):
        best = machine_peak(*order)
        assert best["library"] == "onnxruntime" and best["peak_gflops"] == 70.0 and best["peak_size"] == 256
        assert best["libraries"] == {"torch": 50.0, "onnxruntime": 70.0}
