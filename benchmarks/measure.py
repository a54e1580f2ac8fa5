"""Timing primitives, fits and the machine description for `instructavatar bench` (torch optional).

Every figure the bench reports is a `stat`: min / median / max (and mean, n) over repeats, in one dict shape, so
reports compare key by key. `machine_info` names the CPU, cores, GPU, library versions, thread count and git
commit; `matmul_peak` measures this machine's dense matmul rate with torch (numpy without it) and
`matmul_peak_ort` with ONNX Runtime's own MatMul kernel (a one-node graph), in float32, at the bench's thread
count: each backend's efficiency is read against the peak of the library it computes with.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

SCHEMA = "instructavatar.bench/1"
LIBRARIES = ("numpy", "torch", "onnxruntime", "onnxruntime-gpu", "tensorrt", "matplotlib", "tqdm")


# ------------------------------------------------------------------------------------------------ stats
def stat(samples) -> dict:
    """min / median / p95 / max / mean / n of a list of numbers (ms unless a key says otherwise)."""
    a = np.asarray(list(samples), np.float64)
    if a.size == 0:
        raise ValueError("stat of no samples")
    return {"min": float(a.min()), "median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
            "max": float(a.max()), "mean": float(a.mean()), "n": int(a.size)}


def is_stat(value) -> bool:
    return isinstance(value, dict) and {"min", "median", "max", "n"} <= value.keys()


def scale_stat(s: dict, factor: float) -> dict:
    """The same stat with every value multiplied by `factor` (e.g. ms per call -> ms per frame)."""
    return {k: (v * factor if k != "n" else v) for k, v in s.items()}


def time_ms(fn, repeats: int, warmup: int = 1, per: float = 1.0) -> list[float]:
    """Wall-clock ms of fn() / per, for `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3 / per)
    return out


# ------------------------------------------------------------------------------------------------- fits
def fit_linear(x, y) -> dict:
    """Least-squares y = slope * x + intercept, with R^2."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2:
        return {"slope": float("nan"), "intercept": float("nan"), "r2": float("nan")}
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    total = float(((y - y.mean()) ** 2).sum())
    return {"slope": float(slope), "intercept": float(intercept),
            "r2": float(1 - (resid ** 2).sum() / total) if total > 0 else 1.0}


def fit_power(x, y) -> dict:
    """Least squares on log-log: y = coefficient * x ** exponent (exponent 1 = linear growth, 2 = quadratic)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or (x <= 0).any() or (y <= 0).any():
        return {"exponent": float("nan"), "coefficient": float("nan")}
    exponent, log_c = np.polyfit(np.log(x), np.log(y), 1)
    return {"exponent": float(exponent), "coefficient": float(math.exp(log_c))}


# ---------------------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def git_commit() -> str | None:
    """The checkout's commit (with `+dirty` when the work tree differs), or None outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def gpu_name() -> str | None:
    torch = _torch()
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return None


def machine_info(threads: int | None) -> dict:
    """CPU model and cores, load, GPU, library versions, threads in use, git commit, date (UTC)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    torch = _torch()
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "gpu": gpu_name(),
        "libraries": library_versions(),
        "threads": threads if threads else (torch.get_num_threads() if torch is not None else usable),
        "git_commit": git_commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
    }
    if torch is not None:
        try:
            info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        except AttributeError:
            pass
    return info


def set_threads(threads: int | None) -> None:
    """Use `threads` compute threads in torch (when installed) and in numpy's BLAS where it can be told."""
    if not threads:
        return
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):   # read by later-loaded libraries
        os.environ.setdefault(var, str(threads))


# ------------------------------------------------------------------------------------------ matmul peak
def matmul_peak(sizes=(256, 512, 1024), repeats: int = 3, device: str = "cpu") -> dict:
    """GFLOP/s of square float32 matmuls (2 n^3 FLOPs each) at each size; `peak` = the best median.

    torch when installed (the library the torch backend's convolutions and matmuls run in, at its thread
    count), numpy otherwise (the torch-free path). On a CUDA device also the device-to-device copy bandwidth."""
    torch = _torch()

    def run_of(n):
        if torch is not None:
            a = torch.randn(n, n, device=device)
            b = torch.randn(n, n, device=device)
            sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

            def run(a=a, b=b, sync=sync):
                a @ b
                sync()
            return run
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
        return lambda: a @ b

    out = {"library": "torch" if torch is not None else "numpy", "dtype": "float32", "device": device,
           **_square_matmul_sweep(run_of, sizes, repeats)}
    if torch is not None and device.startswith("cuda"):
        out["memory_bandwidth_gbs"] = _copy_bandwidth(torch, device)
    return out


def matmul_peak_ort(sizes=(256, 512, 1024), repeats: int = 3, threads: int | None = None) -> dict | None:
    """`matmul_peak` for ONNX Runtime (CPU): a one-node MatMul graph (float32, dynamic sizes) in a session with
    the ORT backend's options (engine/ort_backend.session_options, `threads` intra-op threads). None when the
    `onnx` package (needed to write the graph) or onnxruntime is missing."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    a_in = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["m", "k"])
    b_in = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["k", "n"])
    c_out = helper.make_tensor_value_info("c", TensorProto.FLOAT, ["m", "n"])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul_peak", [a_in, b_in], [c_out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    from ..engine.ort_backend import session_options

    sess = ort.InferenceSession(model.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)

    def run_of(n):
        feeds = {"a": rng.standard_normal((n, n), dtype=np.float32), "b": rng.standard_normal((n, n), dtype=np.float32)}
        return lambda: sess.run(None, feeds)

    return {"library": "onnxruntime", "dtype": "float32", "device": "cpu",
            **_square_matmul_sweep(run_of, sizes, repeats), "onnx": onnx.__version__}


def _square_matmul_sweep(run_of, sizes, repeats: int) -> dict:
    """GFLOP/s (2 n^3 FLOPs per call) of run_of(n)() at each size n; the peak = the best median."""
    by_size = {}
    for n in sizes:
        run = run_of(n)
        ms = time_ms(run, max(1, repeats if n <= 1024 else repeats - 1), warmup=1)
        by_size[str(n)] = stat([2 * n ** 3 / (m * 1e-3) / 1e9 for m in ms])       # GFLOP/s per repeat
    best = max(by_size, key=lambda k: by_size[k]["median"])
    return {"gflops_by_size": by_size, "peak_gflops": by_size[best]["median"], "peak_size": int(best)}


def _copy_bandwidth(torch, device: str, mib: int = 512) -> dict:
    """Device memory bandwidth from a large tensor copy (reads + writes both counted)."""
    src = torch.empty(mib * 2 ** 20 // 4, device=device)
    dst = torch.empty_like(src)

    def run():
        dst.copy_(src)
        torch.cuda.synchronize()

    ms = time_ms(run, 5, warmup=2)
    return stat([2 * src.numel() * 4 / (m * 1e-3) / 1e9 for m in ms])
