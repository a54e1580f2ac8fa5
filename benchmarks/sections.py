"""The sections of a bench report, one function each, over a loaded `Pipeline` (benchmarks/harness.py runs them).

components (every Backend method in steady-state streaming shapes, and the whole Pipeline.step), pipeline
(session start, an instrumented live stream, DDIM steps and chunk length sweeps), scaling (window length,
batched sessions, image resolution, with fits), efficiency (fraction of the measured matmul peak), server.
`Shapes` builds the arrays a backend sees in steady state for B sessions.
"""

from __future__ import annotations

import gc
import inspect
import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .measure import fit_linear, fit_power, scale_stat, stat, time_ms
from .timed_backend import COMPONENTS, CallLog, instrumented

if TYPE_CHECKING:
    from .harness import BenchPlan, Progress

INSTRUCTION = "Talk happily and nod slowly."
TARGETS = {"denoise": 0.4, "decode": 0.6}   # issue 26: fraction of the matmul peak with 4 batched sessions


# --------------------------------------------------------------------------------------------- inputs
def speech(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A speech-like test signal (amplitude-modulated tone + noise), float32 mono."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
            + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def portrait_image(size: int, seed: int = 0) -> np.ndarray:
    """A deterministic (size, size, 3) uint8 image (its content does not change the speed)."""
    return (np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8)



def load(cfg, backend: str, threads: int | None, random_weights: bool, onnx_dir=None):
    from instructavatar.engine.loader import load_pipeline

    kwargs = {"onnx_dir": onnx_dir} if onnx_dir else {}
    return load_pipeline(cfg, random_weights=random_weights, backend=backend, threads=threads,
                         announce=lambda m: None, **kwargs)


def _guided(pipeline) -> bool:
    return pipeline.guidance != 1.0                      # the bench's instruction is never the default one


def _rows(pipeline, sessions: int = 1) -> int:
    """Denoiser rows for `sessions` sessions: a guided session also runs the default instruction."""
    return sessions * (2 if _guided(pipeline) else 1)


class _steps:
    """Run the pipeline's sampler at `steps` DDIM steps inside the block, restoring it afterwards."""

    def __init__(self, pipeline, steps: int):
        self.sampler, self.steps = pipeline.sampler, steps

    def __enter__(self):
        self.saved = (self.sampler.num_steps, self.sampler.eta)
        self.sampler.set_timesteps(self.steps, self.sampler.eta)

    def __exit__(self, *exc):
        self.sampler.set_timesteps(*self.saved)


def _session_chunks(pipeline) -> bool:
    """Whether sessions take their own chunk length (Pipeline.new_session(chunk_frames=...))."""
    return "chunk_frames" in inspect.signature(pipeline.new_session).parameters


def _with_chunk(pipeline, chunk: int):
    """(pipeline, new_session kwargs) that stream with `chunk` new frames per chunk: the session setting
    where the pipeline has one, else a Pipeline over the same backend with the config's chunk replaced."""
    if _session_chunks(pipeline):
        return pipeline, {"chunk_frames": chunk}
    from instructavatar.engine.pipeline import Pipeline

    cfg = pipeline.cfg.with_(stream=replace(pipeline.cfg.stream, chunk_frames=chunk))
    other = Pipeline(cfg, pipeline.backend, pipeline.tokenizer, steps=pipeline.sampler.num_steps,
                     eta=pipeline.sampler.eta, guidance=pipeline.guidance)
    return other, {}


# ------------------------------------------------------------------------------------------ shapes
class Shapes:
    """The arrays a backend gets in steady-state streaming for `sessions` sessions (prefix + chunk)."""

    def __init__(self, pipeline, window: int | None = None, sessions: int = 1):
        cfg, be = pipeline.cfg, pipeline.backend
        self.C, self.P = cfg.stream.chunk_frames, cfg.stream.prefix_frames
        self.T = window or self.C + self.P
        self.B, self.R, M = sessions, _rows(pipeline, sessions), cfg.motion_dim
        spf = cfg.media.samples_per_frame
        rgb = portrait_image(cfg.media.image_size)
        from instructavatar.engine.media.image_io import to_model_input

        self.image = to_model_input(rgb)                                          # (1, 3, S, S)
        self.rgb = rgb
        self.wave = np.tile(speech(self.T * spf / cfg.media.sample_rate), (self.B, 1))   # (B, T*640)
        self.blink = np.zeros((self.B, self.T), np.float32) if cfg.audio.blink_cue else None
        tok = pipeline.tokenizer([INSTRUCTION])
        self.ids, self.mask = tok.ids, tok.mask
        self.keyframe, self.appearance, self.tokens, self.pooled = _encoded(pipeline, self.image, self.ids,
                                                                            self.mask)
        from instructavatar.engine.backend import InstructionTensors

        one = be.condition(self.tokens, self.mask, self.pooled, self.keyframe)
        self.inst = InstructionTensors.stack([one] * self.R) if self.R > 1 else one
        audio = be.encode_audio(self.wave[:1].astype(np.float32), None if self.blink is None else self.blink[:1])
        self.audio = np.repeat(audio, self.R, axis=0)                                    # (R, T, D)
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((self.R, self.T, M), dtype=np.float32)
        self.t = np.full(self.R, pipeline.sampler.timesteps[0], np.int64)
        self.known = np.zeros((self.R, self.T), np.float32)
        self.known[:, :min(self.P, self.T - 1)] = 1.0
        n = self.B * self.C                                                              # frames to decode
        self.motion = rng.standard_normal((n, M), dtype=np.float32) * cfg.diffusion.latent_scale
        self.app_frames = np.repeat(self.appearance, n, axis=0)


def _encoded(pipeline, image, ids, mask):
    """keyframe (1, M) scaled, appearance (1, Ca, h, w), tokens, pooled for the bench's portrait and instruction,
    computed once per pipeline (the paper config's appearance encoder takes about a minute on a CPU core)."""
    cached = getattr(pipeline, "_bench_encoded", None)
    if cached is None:
        be = pipeline.backend
        keyframe = be.encode_keyframe(image) / pipeline.cfg.diffusion.latent_scale
        cached = (keyframe, be.encode_appearance(image), *be.encode_text(ids, mask))
        pipeline._bench_encoded = cached
    return cached


def _decode_all(be, shapes: Shapes, batch: int, frames: int | None = None):
    n = len(shapes.motion) if frames is None else frames
    for i in range(0, n, batch):
        be.decode(shapes.motion[i:min(i + batch, n)], shapes.app_frames[i:min(i + batch, n)])


# ------------------------------------------------------------------------------------------ sections
def components(pipeline, plan: BenchPlan, gflop: dict | None, heavy: bool) -> dict:
    """Each Backend method in steady-state shapes for one session, and the whole per-chunk Pipeline.step."""
    be, cfg = pipeline.backend, pipeline.cfg
    sh = Shapes(pipeline)
    C, T, steps = sh.C, sh.T, pipeline.sampler.num_steps
    g = gflop or {}
    r, heavy_r = plan.repeats, (1 if heavy else plan.repeats)
    decode_frames = 1 if heavy else C
    nb = pipeline.decode_batch
    # name: (fn, repeats, warmup, calls per output frame, batch/shape words, GFLOP per call)
    table = {
        "encode_appearance": (lambda: be.encode_appearance(sh.image), heavy_r, 0 if heavy else 1, None,
                              "1 portrait", g.get("vae.appearance_encoder")),
        "encode_keyframe": (lambda: be.encode_keyframe(sh.image), heavy_r, 0 if heavy else 1, None,
                            "1 portrait", g.get("vae.keyframe_encoder")),
        "encode_text": (lambda: be.encode_text(sh.ids, sh.mask), r, 1, None, f"1 x {sh.ids.shape[1]} tokens",
                        g.get("text_encoder")),
        "condition": (lambda: be.condition(sh.tokens, sh.mask, sh.pooled, sh.keyframe), r, 1, None,
                      "1 instruction", g.get("denoiser.condition")),
        "encode_audio": (lambda: be.encode_audio(sh.wave[:1].astype(np.float32),
                                                 None if sh.blink is None else sh.blink[:1]),
                         r, 1, 1 / C, f"1 x {T} frames", g.get("audio_encoder", 0) * T or None),
        "denoise": (lambda: be.denoise(sh.x, sh.t, sh.audio, sh.known, sh.inst), r, 1, steps / C,
                    f"{sh.R} rows x {T} frames", g.get("denoiser", 0) * T * sh.R or None),
        "decode": (lambda: _decode_all(be, sh, nb, decode_frames), heavy_r, 0 if heavy else 1,
                   1 / decode_frames, f"{decode_frames} frames, batches of {nb}",
                   g.get("vae.decoder", 0) * decode_frames or None),
    }
    out = {}
    for name in COMPONENTS:
        fn, reps, warm, per_frame, shape, gf = table[name]
        out[name] = _figure(time_ms(fn, reps, warmup=warm), per_frame, shape, gf)
    if not heavy:
        session, _ = pipeline.new_session(sh.rgb, INSTRUCTION, seed=0)
        chunk = speech(C / cfg.media.fps)
        pipeline.step([session], [chunk])                          # first chunk: the prefix fills
        total_gf = None
        if gflop is not None:
            total_gf = (out["encode_audio"]["gflop_per_call"] + steps * out["denoise"]["gflop_per_call"]
                        + C * g["vae.decoder"])
        out["chunk"] = _figure(time_ms(lambda: pipeline.step([session], [chunk]), r), 1 / C,
                               f"Pipeline.step, 1 session, {steps} DDIM steps, chunk {C} + prefix {sh.P}", total_gf)
    else:
        per_frame = sum(out[k]["ms_per_frame"]["median"] for k in ("encode_audio", "denoise", "decode"))
        out["chunk_estimated_ms_per_frame"] = per_frame
    return out


def _figure(ms: list[float], per_frame: float | None, shape: str, gflop: float | None) -> dict:
    s = stat(ms)
    fig = {"ms_per_call": s, "calls_per_frame": per_frame, "shape": shape,
           "ms_per_frame": scale_stat(s, per_frame) if per_frame else None, "gflop_per_call": gflop,
           "gflops": gflop / (s["median"] * 1e-3) if gflop else None}
    return fig


def _stream(pipeline, seconds: float, seed: int, image, session_kwargs=None) -> dict:
    """One live stream through a Session, chunk by chunk, instrumented: per-chunk ms, first chunk, RTF,
    ms in each backend method and in the sampler."""
    cfg = pipeline.cfg
    log = CallLog()
    portrait = pipeline.prepare(image)
    session, _ = pipeline.new_session(portrait, INSTRUCTION, seed, **(session_kwargs or {}))
    cs = session.chunk_samples if hasattr(session, "chunk_samples") else pipeline.chunk_samples
    audio = speech(seconds, cfg.media.sample_rate, seed)
    chunk_ms, frames = [], 0
    with instrumented(pipeline, log):
        for i in range(0, len(audio), cs):
            piece = audio[i:i + cs]
            t0 = time.perf_counter()
            out = session.push_audio(piece)
            if len(piece) < cs:
                out = np.concatenate([out, session.flush()])
            chunk_ms.append((time.perf_counter() - t0) * 1e3)
            frames += len(out)
    audio_ms = 1e3 * len(audio) / cfg.media.sample_rate
    total = sum(chunk_ms)
    backend_ms = log.total(COMPONENTS + ("denoise_chunk",))
    sampler_ms = log.total(("ddim_step", "initial_noise"))
    stages = {k: sum(v) / frames for k, v in log.ms.items()}
    stages["other"] = max(0.0, total - backend_ms - sampler_ms) / frames
    return {"chunk_ms": chunk_ms, "first_ms": chunk_ms[0], "rtf": total / audio_ms, "frames": frames,
            "steady_rtf": (float(np.mean(chunk_ms[1:-1])) / (1e3 * (cs / cfg.media.sample_rate))
                           if len(chunk_ms) > 2 else None),
            "stage_ms_per_frame": stages, "chunk_samples": cs}


def _streams(pipeline, seconds: float, repeats: int, image, session_kwargs=None, warm: bool = True) -> dict:
    if warm:                                                        # warm-up: a first and a prefixed chunk
        _stream(pipeline, min(seconds, 2 * pipeline.chunk_samples / pipeline.cfg.media.sample_rate), 99, image,
                session_kwargs)
    runs = [_stream(pipeline, seconds, r, image, session_kwargs) for r in range(repeats)]
    fps = pipeline.cfg.media.fps
    chunk_frames = runs[0]["chunk_samples"] // pipeline.cfg.media.samples_per_frame
    fill_ms = 1e3 * chunk_frames / fps
    first = stat([r["first_ms"] for r in runs])
    keys = sorted({k for r in runs for k in r["stage_ms_per_frame"]})
    stages = {k: stat([r["stage_ms_per_frame"].get(k, 0.0) for r in runs]) for k in keys}
    steady = [r["steady_rtf"] for r in runs if r["steady_rtf"] is not None]
    return {
        "audio_seconds": seconds, "repeats": repeats, "frames": runs[0]["frames"], "chunk_frames": chunk_frames,
        "chunk_audio_ms": fill_ms,
        "rtf": stat([r["rtf"] for r in runs]),
        "steady_rtf": stat(steady) if steady else None,
        "first_frame_latency_ms": first,                 # compute of the first chunk (no prefix yet)
        "first_frame_latency_with_fill_ms": fill_ms + first["median"],   # + the chunk's audio it waits for
        "chunk_latency_ms": stat([m for r in runs for m in r["chunk_ms"][1:]] or [runs[0]["first_ms"]]),
        "chunk_latencies_ms": [round(m, 3) for r in runs for m in r["chunk_ms"]],   # raw, for the distribution
        "stage_ms_per_frame": stages,
    }


def pipeline_section(pipeline, plan: BenchPlan, heavy: bool, comps: dict, progress: Progress) -> dict:
    """Session start, a live stream with its stage breakdown, the DDIM steps and chunk length sweeps."""
    cfg = pipeline.cfg
    image = portrait_image(cfg.media.image_size)
    out = {"guidance": pipeline.guidance, "steps": pipeline.sampler.num_steps, "instruction": INSTRUCTION,
           "session_chunks": _session_chunks(pipeline)}
    if heavy:                                                  # estimated: a real stream takes minutes per frame
        fps, C = cfg.media.fps, cfg.stream.chunk_frames
        steps = pipeline.sampler.num_steps
        per_frame = {k: comps[k]["ms_per_frame"]["median"] for k in ("encode_audio", "denoise", "decode")}
        total = sum(per_frame.values())
        out["estimated"] = {"stage_ms_per_frame": per_frame, "ms_per_frame": total, "rtf": total * fps / 1e3,
                            "first_chunk_ms": comps["encode_audio"]["ms_per_call"]["median"]
                            + steps * comps["denoise"]["ms_per_call"]["median"] + C * per_frame["decode"],
                            "how": "sum of the components' per-frame medians (no stream run)"}
        out["steps_sweep"] = {str(n): {"estimated_ms_per_frame": total - per_frame["denoise"]
                                       + per_frame["denoise"] * n / steps} for n in plan.steps_sweep}
        progress.step("pipeline (estimated)")
        return out
    log = CallLog()
    with instrumented(pipeline, log):
        prep = time_ms(lambda: pipeline.prepare(image), plan.repeats)
        prep_log = {k: stat(v) for k, v in log.ms.items()}
        log.clear()
        portrait = pipeline.prepare(image)
        log.clear()
        start = time_ms(lambda: pipeline.new_session(portrait, INSTRUCTION, seed=0), plan.repeats)
        start_log = {k: stat(v) for k, v in log.ms.items()}
    tok = time_ms(lambda: pipeline.tokenizer([INSTRUCTION]), plan.repeats)
    out["session_start"] = {
        "prepare_portrait_ms": stat(prep), "prepare_portrait_calls_ms": prep_log,
        "new_session_ms": stat(start), "tokenizer_ms": stat(tok),
        "text_encoding_ms": start_log.get("encode_text"), "conditioning_ms": start_log.get("condition"),
    }
    progress.step("session start")
    out["stream"] = _streams(pipeline, plan.stream_seconds, plan.stream_repeats, image, warm=plan.warmup > 0)
    progress.step("stream")
    sweep = {}
    for n in plan.steps_sweep:
        with _steps(pipeline, n):
            s = _streams(pipeline, plan.sweep_seconds, 1, image, warm=False)   # same shapes as the stream
        sweep[str(n)] = {k: s[k] for k in ("rtf", "first_frame_latency_ms", "chunk_latency_ms")}
    out["steps_sweep"] = sweep
    progress.step("steps sweep")
    sweep = {}
    for c in plan.chunk_sweep:
        p, kwargs = _with_chunk(pipeline, c)
        s = _streams(p, plan.sweep_seconds, 1, image, kwargs, warm=plan.warmup > 0 and c != cfg.stream.chunk_frames)
        sweep[str(c)] = {k: s[k] for k in ("rtf", "first_frame_latency_ms", "first_frame_latency_with_fill_ms",
                                           "chunk_latency_ms", "chunk_audio_ms")}
    out["chunk_sweep"] = sweep
    progress.step("chunk sweep")
    return out


def scaling_section(pipeline, plan: BenchPlan, heavy: bool, threads: int | None, backend: str,
                    progress: Progress) -> dict:
    """Cost against window length, batched sessions and resolution, with fits."""
    cfg, be = pipeline.cfg, pipeline.backend
    out = {}
    windows = {}
    for T in plan.window_sweep:
        if T > cfg.denoiser.max_frames:
            continue
        sh = Shapes(pipeline, window=T)
        windows[str(T)] = {
            "encode_audio_ms": stat(time_ms(lambda sh=sh: be.encode_audio(
                sh.wave[:1].astype(np.float32), None if sh.blink is None else sh.blink[:1]), plan.repeats,
                plan.warmup)),
            "denoise_ms": stat(time_ms(lambda sh=sh: be.denoise(sh.x, sh.t, sh.audio, sh.known, sh.inst),
                                       plan.repeats, plan.warmup)),
        }
    xs = [int(k) for k in windows]
    out["window"] = {"points": windows, "rows": _rows(pipeline),
                     "fits": {k: _fits(xs, [windows[str(x)][k]["median"] for x in xs])
                              for k in ("encode_audio_ms", "denoise_ms")}}
    progress.step("window scaling")
    if not heavy:
        out["sessions"] = _sessions(pipeline, plan)
    progress.step("session scaling")
    if not heavy and backend == "torch":
        out["resolution"] = _resolution(cfg, plan, threads)
    progress.step("resolution scaling")
    return out


def _fits(x, y) -> dict:
    return {"linear": fit_linear(x, y), "power": fit_power(x, y)}


def _sessions(pipeline, plan: BenchPlan) -> dict:
    cfg = pipeline.cfg
    C = cfg.stream.chunk_frames
    chunk_ms = 1e3 * C / cfg.media.fps
    portrait = pipeline.prepare(portrait_image(cfg.media.image_size))
    chunk = speech(C / cfg.media.fps)
    points = {}
    for B in plan.session_sweep:
        sessions = [pipeline.new_session(portrait, INSTRUCTION, seed=b)[0] for b in range(B)]
        pipeline.step(sessions, [chunk] * B)                        # every session now has its prefix
        ms = stat(time_ms(lambda s=sessions, B=B: pipeline.step(s, [chunk] * B), plan.repeats, plan.warmup))
        points[str(B)] = {"step_ms": ms, "ms_per_session_frame": scale_stat(ms, 1 / (B * C)),
                          "real_time": ms["median"] < chunk_ms}
    xs = [int(k) for k in points]
    ys = [points[str(b)]["step_ms"]["median"] for b in xs]
    lin = fit_linear(xs, ys)
    measured_rt = max([b for b in xs if points[str(b)]["real_time"]], default=0)
    extrapolated = None
    if lin["slope"] > 0 and math.isfinite(lin["slope"]):
        extrapolated = max(0, int((chunk_ms - lin["intercept"]) // lin["slope"]))
    return {"points": points, "chunk_audio_ms": chunk_ms, "fits": _fits(xs, ys),
            "real_time_sessions_measured": measured_rt,      # most sessions in the sweep that kept up
            "real_time_sessions_fit": extrapolated}          # from the linear fit: step_ms(B) < chunk audio


def _resolution(cfg, plan: BenchPlan, threads: int | None) -> dict:
    """Random-weight models of the same widths at other image sides (the VAE is convolutional)."""
    points = {}
    for side in plan.resolution_sweep:
        c = cfg.with_(media=replace(cfg.media, image_size=side))
        p = load(c, "torch", threads, random_weights=True)
        sh = Shapes(p)
        points[str(side)] = {
            "decode_ms_per_frame": stat(time_ms(lambda p=p, sh=sh: _decode_all(p.backend, sh, p.decode_batch),
                                                plan.repeats, per=len(sh.motion))),
            "encode_appearance_ms": stat(time_ms(lambda p=p, sh=sh: p.backend.encode_appearance(sh.image),
                                                 plan.repeats)),
        }
        del p, sh
        gc.collect()
    xs = [int(k) for k in points]
    return {"points": points, "weights": "random",
            "fits": {k: _fits(xs, [points[str(x)][k]["median"] for x in xs])
                     for k in ("decode_ms_per_frame", "encode_appearance_ms")}}


def efficiency_section(pipeline, plan: BenchPlan, gflop: dict | None, heavy: bool, comps: dict, peak: dict) -> dict:
    """Each hot component's achieved GFLOP/s as a fraction of the measured matmul peak, with
    `plan.efficiency_sessions` sessions batched (the paper config's decoder: one frame, from components)."""
    out = {"peak": peak, "sessions": plan.efficiency_sessions, "targets": TARGETS}
    if gflop is None:
        out["unavailable"] = "no FLOP counts (engine/costs.py's table does not match and torch is not installed)"
        return out
    be = pipeline.backend
    B = plan.efficiency_sessions
    sh = Shapes(pipeline, sessions=B)
    T = sh.T
    hot = {
        "denoise": (lambda: be.denoise(sh.x, sh.t, sh.audio, sh.known, sh.inst), gflop["denoiser"] * T * sh.R,
                    f"{sh.R} rows ({B} sessions{', guided' if _guided(pipeline) else ''}) x {T} frames"),
        "encode_audio": (lambda: be.encode_audio(sh.wave.astype(np.float32), sh.blink),
                         gflop["audio_encoder"] * T * B, f"{B} x {T} frames"),
    }
    if not heavy:
        hot["decode"] = (lambda: _decode_all(be, sh, pipeline.decode_batch), gflop["vae.decoder"] * len(sh.motion),
                         f"{len(sh.motion)} frames ({B} sessions x {sh.C}), batches of {pipeline.decode_batch}")
    fractions = {}
    for name, (fn, gf, shape) in hot.items():
        ms = stat(time_ms(fn, plan.repeats, plan.warmup))
        achieved = gf / (ms["median"] * 1e-3)
        fractions[name] = {"ms_per_call": ms, "gflop_per_call": gf, "gflops": achieved,
                           "fraction_of_peak": achieved / peak["peak_gflops"], "shape": shape}
    if heavy:                                                   # one frame at batch 1, from the components
        d = comps["decode"]
        fractions["decode"] = {"ms_per_call": d["ms_per_call"], "gflop_per_call": d["gflop_per_call"],
                               "gflops": d["gflops"], "fraction_of_peak": d["gflops"] / peak["peak_gflops"],
                               "shape": d["shape"] + " (1 session)"}
    for name in ("text_encoder",):
        c = comps["encode_text"]
        if c["gflops"]:
            fractions[name] = {"ms_per_call": c["ms_per_call"], "gflop_per_call": c["gflop_per_call"],
                               "gflops": c["gflops"], "fraction_of_peak": c["gflops"] / peak["peak_gflops"],
                               "shape": c["shape"]}
    out["components"] = fractions
    out["targets_met"] = {k: fractions[k]["fraction_of_peak"] >= v for k, v in TARGETS.items() if k in fractions}
    return out


def server_section(config: str, backend: str, quick: bool, threads: int | None = None) -> dict:
    """The server's own benchmark (benchmarks/bench_server.py: real loopback websocket clients at 1x real time:
    first frame, audio-to-frame p50/p95, drops, concurrent real-time sessions), when this version has it."""
    try:
        from . import bench_server
    except ImportError as e:
        return {"available": False, "reason": f"benchmarks/bench_server.py cannot be imported here ({e})"}
    fn = getattr(bench_server, "bench_server", None)
    if fn is None:
        return {"available": False, "reason": "benchmarks/bench_server.py has no bench_server() function"}
    return {"available": True, "backend": backend, "result": fn(config=config, backend=backend, quick=quick,
                                                              threads=threads)}
