"""The `instructavatar bench` harness: what to measure (a plan), loading each backend, running the sections
(benchmarks/sections.py, one function each) and assembling the report.

A report (JSON, schema `measure.SCHEMA`) holds the machine, the options, and per backend:
  components  every `Backend` method (engine/backend.py) in the shapes steady-state streaming calls it, and the
              whole per-chunk `Pipeline.step`: ms per call and per output frame, GFLOP per call, GFLOP/s;
  pipeline    session start (portrait, text encoding, conditioning), a live stream (first-frame latency,
              real-time factor, per-chunk latencies, per-frame stage breakdown including the DDIM sampler's
              own arithmetic and the rest of what `Pipeline.step` does between backend calls), DDIM steps
              sweep, chunk length sweep;
  scaling     cost against window length, batched sessions (one `Pipeline.step` for B sessions) and image
              resolution, each with a linear fit and a log-log exponent;
  efficiency  this machine's measured float32 matmul peak and each hot component's fraction of it with
              `efficiency_sessions` batched sessions (FLOPs from engine/modules/flops.py's counter).
Every timing is a `measure.stat` (min / median / max over repeats). Backends are resolved at run time
(`engine.backend.BACKENDS`); a section that fails is recorded in `errors` and the rest still runs.

Weights: the shipped demo checkpoint for `demo`; random weights of the published sizes elsewhere (speed does
not depend on the values). The paper config is "heavy" on a CPU (TFLOPs per frame): its heavy components are
timed once, and its stream figures are estimated from the components instead of streamed.
"""

from __future__ import annotations

import gc
import os
import time
import traceback
from dataclasses import asdict, dataclass

from .measure import SCHEMA, machine_info, matmul_peak, matmul_peak_ort
from .sections import (  # noqa: F401
    INSTRUCTION,
    TARGETS,
    components,
    efficiency_section,
    load,
    pipeline_section,
    portrait_image,
    scaling_section,
    server_section,
    speech,
)

HEAVY_GFLOP_PER_FRAME = 100.0          # a decoder above this per frame is timed once per figure (paper: 5396)


@dataclass(frozen=True)
class BenchPlan:
    name: str                          # "quick" or "full"
    repeats: int                       # timed calls per component figure
    stream_seconds: float              # audio per stream repeat
    stream_repeats: int
    sweep_seconds: float               # audio per point of the steps / chunk sweeps
    steps_sweep: tuple[int, ...]       # DDIM steps
    chunk_sweep: tuple[int, ...]       # new frames per chunk
    window_sweep: tuple[int, ...]      # window frames (prefix + chunk) for the audio encoder and denoiser
    session_sweep: tuple[int, ...]     # sessions in one batched Pipeline.step
    resolution_sweep: tuple[int, ...]  # image sides (random-weight models of the same widths; torch only)
    matmul_sizes: tuple[int, ...]
    warmup: int = 1                    # untimed calls before the timed ones, after the components warmed up
    efficiency_sessions: int = 4


QUICK = BenchPlan("quick", repeats=2, stream_seconds=1.2, stream_repeats=2, sweep_seconds=0.8,
                  steps_sweep=(1, 8), chunk_sweep=(5, 10), window_sweep=(10, 20, 40), session_sweep=(1, 2),
                  resolution_sweep=(64, 96), matmul_sizes=(256, 512), warmup=0)
FULL = BenchPlan("full", repeats=5, stream_seconds=6.0, stream_repeats=3, sweep_seconds=2.0,
                 steps_sweep=(1, 2, 4, 8, 16), chunk_sweep=(2, 5, 10), window_sweep=(10, 20, 40, 80),
                 session_sweep=(1, 2, 4, 8), resolution_sweep=(64, 96, 128, 192), matmul_sizes=(256, 512, 1024, 2048))
PLANS = {"quick": QUICK, "full": FULL}


class Progress:
    """A tqdm bar over the bench's tasks (stderr), or nothing."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="task", desc="bench", leave=False)
            except ImportError:
                pass

    def step(self, label: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(label, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------------- loading
def weights_for(cfg_name: str) -> str:
    from instructavatar.engine.config import get_config
    from instructavatar.engine.loader import default_weights

    return "shipped" if default_weights(get_config(cfg_name)) is not None else "random"


def gflop_table(cfg) -> tuple[dict | None, str]:
    """(GFLOP per unit of each component, source): the committed table (engine/costs.py) when it matches the
    config, else counted by engine/modules/flops.py (needs torch); (None, reason) when neither is possible."""
    try:
        from instructavatar.engine.costs import component_costs

        costs, source = component_costs(cfg)
    except ImportError as e:
        return None, f"no FLOP counts: {e}"
    return {c.name: c.gflop for c in costs}, source


def is_heavy(cfg, gflop: dict | None, device: str = "cpu") -> bool:
    """Whether full streams would take minutes per frame here (a TFLOP decoder on a CPU)."""
    if device != "cpu":
        return False
    if gflop is not None:
        return gflop["vae.decoder"] > HEAVY_GFLOP_PER_FRAME
    return cfg.name == "paper"


# --------------------------------------------------------------------------------------------- run
def backend_names(requested: str) -> list[str]:
    """The backends to load: `auto` (the loader picks the fastest usable one), one name, or for `all` every
    backend whose runtime library is installed here."""
    from instructavatar.engine.backend import BACKENDS, backend_present, resolve_backend

    if requested == "all":
        return [b for b in BACKENDS if b != "auto" and backend_present(b)]
    if requested != "auto":
        resolve_backend(requested)                                 # BackendError: unknown or not installed
    return [requested]


def bench_backend(config: str, backend: str, plan: BenchPlan, threads: int | None, peak: dict,
                  progress: Progress, errors: list[str], skipped: dict, onnx_dir=None) -> dict | None:
    """Every section for one backend; None (with the reason in `errors`, or in `skipped` for a backend that
    `all` found installed but cannot run this model, e.g. ORT without an export) when it does not load."""
    from instructavatar.engine.config import get_config

    cfg = get_config(config)
    weights = weights_for(config)
    t0 = time.perf_counter()
    try:
        pipeline = load(cfg, backend, threads, random_weights=(weights == "random"), onnx_dir=onnx_dir)
    except Exception as e:                                     # noqa: BLE001 - reported, the other backends run
        reason = " ".join(str(e).split())
        if skipped is not None:
            skipped[backend] = reason
        else:
            errors.append(f"{backend}: could not load: {reason}")
        for _ in range(SECTION_TASKS):
            progress.step("skipped")
        return None
    result = {"backend": getattr(pipeline.backend, "name", backend), "requested": backend, "weights": weights,
              "load_seconds": time.perf_counter() - t0, "decode_batch": pipeline.decode_batch,
              "chunk_frames": cfg.stream.chunk_frames, "prefix_frames": cfg.stream.prefix_frames,
              "steps": pipeline.sampler.num_steps, "guidance": pipeline.guidance}
    gflop, result["gflop_source"] = gflop_table(cfg)
    heavy = is_heavy(cfg, gflop, str(getattr(pipeline.backend, "device", "cpu")))
    result["heavy"] = heavy
    result["gflop_per_unit"] = gflop
    name = result["backend"]

    def section(name, fn):
        try:
            result[name] = fn()
        except Exception as e:                                  # noqa: BLE001 - reported, the rest still runs
            errors.append(f"{backend}.{name}: {type(e).__name__}: {' '.join(str(e).split())} "
                          f"({traceback.extract_tb(e.__traceback__)[-1].name})")

    section("components", lambda: components(pipeline, plan, gflop, heavy))
    progress.step("components")
    comps = result.get("components", {})
    section("pipeline", lambda: pipeline_section(pipeline, plan, heavy, comps, progress))
    section("scaling", lambda: scaling_section(pipeline, plan, heavy, threads, name, progress))
    section("efficiency", lambda: efficiency_section(pipeline, plan, gflop, heavy, comps, peak))
    progress.step("efficiency")
    pipeline = None                                             # free the model before the next backend loads
    gc.collect()
    return result


SECTION_TASKS = 9            # progress steps per backend: components, 4 pipeline, 3 scaling, efficiency


def fastest(report: dict) -> str | None:
    """The backend with the lowest median stream real-time factor in the report (None if none streamed)."""
    rtf = {k: b["pipeline"]["stream"]["rtf"]["median"] for k, b in report["backends"].items()
           if "stream" in b.get("pipeline", {})}
    return min(rtf, key=rtf.get) if rtf else next(iter(report["backends"]), None)


def machine_peak(*peaks: dict) -> dict:
    """The efficiency denominator: the best of the measured matmul peaks (torch's, ONNX Runtime's), so that no
    backend's fraction is flattered by a slower library's peak; `libraries` keeps each one's figure."""
    best = max(peaks, key=lambda p: p["peak_gflops"])
    return {**best, "libraries": {p["library"]: p["peak_gflops"] for p in peaks}}


def run_bench(config: str = "demo", backend: str = "auto", plan: BenchPlan = QUICK, threads: int | None = None,
              progress: bool = True, server: bool = True, onnx_dir=None) -> dict:
    """Measure everything the plan asks for; returns the report (see the module docstring)."""
    from .measure import set_threads

    set_threads(threads)
    names = backend_names(backend)
    bar = Progress(2 + SECTION_TASKS * len(names), progress)      # + matmul peak, server
    started = time.perf_counter()
    report = {"schema": SCHEMA, "machine": machine_info(threads),
              "options": {"config": config, "backend": backend, "backends": names, "threads": threads,
                          "plan": asdict(plan)},
              "backends": {}, "skipped": {}, "errors": []}
    peak = matmul_peak(plan.matmul_sizes, repeats=max(2, plan.repeats // 2))
    report["matmul_peak"] = peak
    if any(n.startswith("ort") for n in names):
        ort_peak = matmul_peak_ort(plan.matmul_sizes, repeats=max(2, plan.repeats // 2), threads=threads)
        if ort_peak is not None:
            report["matmul_peak_ort"] = ort_peak
            peak = machine_peak(peak, ort_peak)
    bar.step("matmul peak")
    for name in names:
        result = bench_backend(config, name, plan, threads, peak, bar, report["errors"],
                               report["skipped"] if backend == "all" else None, onnx_dir)
        if result is not None:
            report["backends"][result["backend"]] = result
    if backend == "all" and not report["backends"]:
        report["errors"].append("no backend could run: " + "; ".join(f"{k}: {v}" for k, v in report["skipped"].items()))
    if server:
        try:
            report["server"] = server_section(config, fastest(report) or names[0], plan.name == "quick", threads)
        except Exception as e:                                  # noqa: BLE001 - reported
            report["errors"].append(f"server: {type(e).__name__}: {' '.join(str(e).split())}")
    bar.step("server")
    bar.close()
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["seconds"] = time.perf_counter() - started
    return report
