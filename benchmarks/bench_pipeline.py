"""Inference speed of the pipeline: per-stage milliseconds, real-time factor and first-frame latency.

One function per measurement, each returning a dict (``instructavatar bench`` can call them); ``main()``
prints one table per configuration and writes JSON when asked. Random weights (speed does not depend on
the values), wall-clock time, warm-up calls excluded, median and p90 over repeats:

    python -m instructavatar.benchmarks.bench_pipeline --configs demo --steps 8 --seconds 4 --repeats 5
    python -m instructavatar.benchmarks.bench_pipeline --configs demo,paper --paper-frames 4 --json out.json

Stages are timed in the shapes streaming uses in steady state: every chunk of C new frames runs the audio
encoder and the denoiser over the whole window (prefix P + chunk C frames), the denoiser once per DDIM
step, then decodes the C new frames. Per output frame that is audio/C + steps x denoise/C + decode.

The paper configuration is very heavy on a CPU (the decoder alone is ~5.4 TFLOP per 256 px frame, the
appearance encoder ~4.1 TFLOP per portrait), so for it the decoder times at most ``--paper-frames``
frames per repeat, those two stages run ``--paper-repeats`` times, and the real-time factor and latency
are estimated from the stage times unless ``--paper-stream`` asks for a real stream.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone

import numpy as np

from .measure import cpu_model, time_ms
from .sections import _steps, portrait_image, speech

INSTRUCTION = "Talk happily and nod slowly."


# --------------------------------------------------------------------------------------------- helpers
def _stats(ms: list[float]) -> dict:
    a = np.asarray(ms, np.float64)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "min": float(a.min()),
            "n": int(a.size)}




# -------------------------------------------------------------------------------------------- machine


def machine_info() -> dict:
    """CPU, cores, load, library versions and thread counts, date (UTC)."""
    import torch

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        capability = "unknown"
    return {
        "cpu": cpu_model(),
        "cpu_capability": capability,
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "numpy": np.__version__,
        "gpu": torch.cuda.is_available(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ---------------------------------------------------------------------------------------------- costs
def stage_gflop(cfg) -> dict:
    """GFLOP per call of each timed stage, in the shapes `bench_stages` times (from engine.modules.flops)."""
    from instructavatar.engine.modules.flops import component_costs

    by = {c.name: c.gflop for c in component_costs(cfg)}
    T = cfg.stream.window_frames
    return {
        "portrait": by["vae.appearance_encoder"] + by["vae.keyframe_encoder"],
        "text_encoder": by["text_encoder"],
        "condition": by["denoiser.condition"],
        "audio": by["audio_encoder"] * T,          # flops.py counts it per frame of 1 s of audio
        "denoise_step": by["denoiser"] * T,        # per frame x step, counted on the streaming window
        "decode": by["vae.decoder"],               # per frame
    }


# ----------------------------------------------------------------------------------------- measurements
def bench_stages(pipeline, seconds: float = 4.0, steps: int = 8, repeats: int = 3,
                 max_frames: int | None = None, heavy_repeats: int | None = None) -> dict:
    """Each stage on its own, through the backend, in steady-state streaming shapes.

    One repeat covers `seconds` of audio: ceil(seconds * fps / C) windows through the audio encoder and
    one denoiser step each; the decoder decodes the same number of frames (at most `max_frames`, in
    batches of `pipeline.decode_batch`, as the pipeline does). The denoiser is timed for one step (every
    DDIM step costs the same) and scaled by `steps`. Per instruction: tokenizer + text encoder + the
    denoiser's instruction conditioning; per portrait: `Pipeline.prepare` (appearance latent + keyframe).
    `heavy_repeats` caps the repeats of the portrait and decoder stages (the paper config's TFLOP ones).
    """
    cfg, be = pipeline.cfg, pipeline.backend
    C, P = cfg.stream.chunk_frames, cfg.stream.prefix_frames
    T, M, spf, fps = C + P, cfg.motion_dim, pipeline.samples_per_frame, cfg.media.fps
    frames = max(1, math.ceil(seconds * fps))
    windows = max(1, math.ceil(frames / C))
    dec_frames = min(frames, max_frames) if max_frames else frames
    heavy = min(repeats, heavy_repeats) if heavy_repeats else repeats

    # per portrait (first call warms up, its result feeds the later stages)
    image = portrait_image(cfg.media.image_size)
    portrait = pipeline.prepare(image)
    portrait_ms = time_ms(lambda: pipeline.prepare(image), heavy, warmup=0)

    # per instruction: split into tokenizer, text encoder, conditioning
    tokens = pipeline.tokenizer([INSTRUCTION])
    emb, pooled = be.encode_text(tokens.ids, tokens.mask)
    tok_ms = time_ms(lambda: pipeline.tokenizer([INSTRUCTION]), repeats)
    text_ms = time_ms(lambda: be.encode_text(tokens.ids, tokens.mask), repeats)
    cond_ms = time_ms(lambda: be.condition(emb, tokens.mask, pooled, portrait.keyframe), repeats)
    inst = be.condition(emb, tokens.mask, pooled, portrait.keyframe)

    # per window (steady state: prefix + chunk)
    wave = speech(windows * T * spf / cfg.media.sample_rate).reshape(windows, 1, T * spf)
    audio = be.encode_audio(wave[0])
    audio_ms = time_ms(lambda: [be.encode_audio(w) for w in wave], repeats, per=windows)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, T, M), dtype=np.float32)
    t = np.array([pipeline.sampler.timesteps[0]], np.int64)
    known = np.zeros((1, T), np.float32)
    known[:, :P] = 1.0
    step_ms = time_ms(lambda: [be.denoise(x, t, audio, known, inst) for _ in range(windows)], repeats,
                       per=windows)

    # per frame: decoder, batched like Pipeline._decode
    motion = rng.standard_normal((dec_frames, M), dtype=np.float32) * cfg.diffusion.latent_scale
    app = np.repeat(portrait.appearance, dec_frames, axis=0)
    nb = pipeline.decode_batch

    def decode():                                                   # chunk by chunk, as streaming does
        for c in range(0, dec_frames, C):
            for i in range(c, min(c + C, dec_frames), nb):
                j = min(i + nb, c + C, dec_frames)
                be.decode(motion[i:j], app[i:j])

    if max_frames:                                                  # heavy config: warm up on one frame
        be.decode(motion[:1], app[:1])
    else:
        decode()
    decode_ms = time_ms(decode, heavy, warmup=0, per=dec_frames)

    s = {k: _stats(v) for k, v in dict(portrait=portrait_ms, tokenizer=tok_ms, text_encoder=text_ms,
                                       condition=cond_ms, audio=audio_ms, denoise_step=step_ms,
                                       decode=decode_ms).items()}
    s["text"] = _stats([a + b + c for a, b, c in zip(tok_ms, text_ms, cond_ms)])
    # per output frame (median figures): C new frames per window
    per_frame = {"audio": s["audio"]["median"] / C,
                 "denoise": s["denoise_step"]["median"] * steps / C,
                 "decode": s["decode"]["median"]}
    frame_ms = sum(per_frame.values())
    return {
        "config": cfg.name, "steps": steps, "chunk_frames": C, "prefix_frames": P, "window_frames": T,
        "chunk_ms": 1e3 * C / fps, "windows_per_repeat": windows, "decoded_frames_per_repeat": dec_frames,
        "decode_batch": nb, "repeats": repeats, "heavy_repeats": heavy,
        "stages_ms_per_call": s,          # portrait/text/tokenizer/...: per call; audio/denoise_step: per
                                          # window; decode: per frame
        "per_frame_ms": {**per_frame, "denoise_step": s["denoise_step"]["median"] / C, "total": frame_ms},
        "share": {k: v / frame_ms for k, v in per_frame.items()},
        # first chunk: no prefix yet (window = C); estimated from the steady-state window, so an upper bound
        "estimated_rtf": frame_ms * fps / 1e3,
        "estimated_first_chunk_ms": s["audio"]["median"] + steps * s["denoise_step"]["median"]
        + C * s["decode"]["median"],
    }


def bench_stream(pipeline, seconds: float = 4.0, steps: int = 8, repeats: int = 3, portrait=None,
                 instruction: str = INSTRUCTION) -> dict:
    """End to end through a Session, chunk by chunk, as a live stream would run.

    Real-time factor = processing time / audio duration (< 1: faster than real time), over all chunks
    including the first (no prefix, cheaper) and the flushed tail; `steady_rtf` uses the later chunks only.
    First-frame latency = the `push_audio` call that completes the first chunk (encode, all DDIM steps,
    decode of its C frames) and returns its frames; a live stream also waits `chunk_ms` for that audio to
    arrive, so `first_frame_latency_with_fill_ms` = chunk_ms + compute. Portrait preparation and the
    instruction are done before the clock starts (once per stream, see bench_stages).
    """
    cfg = pipeline.cfg
    cs, fps = pipeline.chunk_samples, cfg.media.fps
    chunk_ms = 1e3 * cfg.stream.chunk_frames / fps
    audio = speech(seconds, cfg.media.sample_rate)
    p = pipeline.prepare(portrait_image(cfg.media.image_size) if portrait is None else portrait)

    def run(seed: int, n_samples: int):
        session, _ = pipeline.new_session(p, instruction, seed)
        pipeline.timings.clear()
        times, cpu0, frames = [], time.process_time(), 0
        for i in range(0, n_samples, cs):
            t0 = time.perf_counter()
            piece = audio[i:i + cs]
            out = session.push_audio(piece)
            if len(piece) < cs:                                      # the tail: padded to whole frames
                out = session.flush()
            times.append((time.perf_counter() - t0) * 1e3)
            frames += len(out)
        return times, time.process_time() - cpu0, frames

    with _steps(pipeline, steps):
        run(0, min(len(audio), 2 * cs))                              # warm-up: first and a prefixed chunk
        rtf, steady, first, cpu_ratio, stage_ms = [], [], [], [], {}
        for r in range(repeats):
            times, cpu_s, frames = run(r, len(audio))
            total = sum(times)
            rtf.append(total / (1e3 * len(audio) / cfg.media.sample_rate))
            first.append(times[0])
            full = times[1:len(audio) // cs]                         # prefixed full chunks
            if full:
                steady.append(float(np.mean(full)) / chunk_ms)
            cpu_ratio.append(cpu_s / (total / 1e3))
            for k, v in pipeline.timings.samples.items():
                stage_ms.setdefault(k, []).append(sum(v) / frames)
    stage = {k: float(np.median(v)) for k, v in stage_ms.items()}
    return {
        "config": cfg.name, "steps": steps, "audio_seconds": len(audio) / cfg.media.sample_rate,
        "frames": frames, "chunk_frames": cfg.stream.chunk_frames, "chunk_ms": chunk_ms, "repeats": repeats,
        "rtf": _stats(rtf),
        "steady_rtf": _stats(steady) if steady else None,
        "first_frame_latency_ms": _stats(first),
        "first_frame_latency_with_fill_ms": chunk_ms + float(np.median(first)),
        "cpu_time_over_wall": float(np.median(cpu_ratio)),   # ~ threads kept busy; lower on a loaded machine
        "stage_ms_per_frame": stage,                         # pipeline.timings, all chunks, median over repeats
        "overhead_ms_per_frame": float(np.median(rtf)) * 1e3 / fps - sum(stage.values()),
    }


# ---------------------------------------------------------------------------------------------- report
def _row(cells, widths):
    return "  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths)))


def format_report(result: dict) -> str:
    st, g = result["stages"], result["gflop_per_call"]
    s, pf = st["stages_ms_per_call"], st["per_frame_ms"]
    C, T, steps = st["chunk_frames"], st["window_frames"], st["steps"]
    fps_ms = st["chunk_ms"] / C
    lines = [f"config {st['config']}: chunk {C} frames ({st['chunk_ms']:.0f} ms of audio) + prefix "
             f"{st['prefix_frames']}, {steps} DDIM steps; median (p90) of {st['repeats']} repeats"
             + (f", {st['heavy_repeats']} for portrait/decoder" if st['heavy_repeats'] != st['repeats'] else "")]
    w = (30, 10, 10, 11, 9, 7, 12, 9)
    lines.append(_row(("per output frame", "calls/fr", "ms/call", "p90", "ms/frame", "share", "GFLOP/frame",
                       "GFLOP/s"), w))
    lines.append("-" * (sum(w) + 2 * (len(w) - 1)))
    rows = [(f"audio encoder (window {T})", 1 / C, "audio", pf["audio"]),
            (f"denoiser, 1 step (window {T})", steps / C, "denoise_step", pf["denoise"]),
            (f"decoder (batch {min(st['decode_batch'], C, st['decoded_frames_per_repeat'])})", 1.0, "decode",
             pf["decode"])]
    total_gf = 0.0
    for name, calls, key, ms in rows:
        gf = g[key] * calls
        total_gf += gf
        lines.append(_row((name, f"{calls:.3g}", f"{s[key]['median']:.2f}", f"{s[key]['p90']:.2f}",
                           f"{ms:.2f}", f"{100 * ms / pf['total']:.1f}%", f"{gf:.4g}",
                           f"{gf / ms * 1e3:.1f}"), w))
    lines.append(_row(("frame total (sum of stages)", "", "", "", f"{pf['total']:.2f}", "100%",
                       f"{total_gf:.4g}", f"{total_gf / pf['total'] * 1e3:.1f}"), w))
    lines.append(f"  frame budget at {1e3 / fps_ms:.0f} fps: {fps_ms:.0f} ms -> estimated RTF "
                 f"{st['estimated_rtf']:.3g} (denoiser per step per frame {pf['denoise_step']:.3f} ms)")
    lines.append(_row(("per instruction / portrait", "", "ms/call", "p90", "", "", "GFLOP", "GFLOP/s"), w))
    for name, key, gf in (("tokenizer", "tokenizer", None), ("text encoder", "text_encoder", g["text_encoder"]),
                          ("conditioning", "condition", g["condition"]),
                          ("instruction total", "text", g["text_encoder"] + g["condition"]),
                          ("portrait (prepare)", "portrait", g["portrait"])):
        ms = s[key]["median"]
        lines.append(_row((name, "", f"{ms:.2f}", f"{s[key]['p90']:.2f}", "", "",
                           "" if gf is None else f"{gf:.4g}", "" if gf is None else f"{gf / ms * 1e3:.1f}"), w))
    sr = result.get("stream")
    if sr:
        steady = sr["steady_rtf"]
        lines.append(
            f"stream ({sr['audio_seconds']:g} s, {sr['frames']} frames, {sr['repeats']} repeats): RTF "
            f"{sr['rtf']['median']:.3g} (p90 {sr['rtf']['p90']:.3g})"
            + (f", steady-state RTF {steady['median']:.3g}" if steady else "")
            + f"; overhead outside the timed stages {sr['overhead_ms_per_frame']:.2f} ms/frame; "
            f"CPU/wall {sr['cpu_time_over_wall']:.2f}")
        lat = sr["first_frame_latency_ms"]
        lines.append(f"first-frame latency: compute {lat['median']:.1f} ms (p90 {lat['p90']:.1f}) for the first "
                     f"{sr['chunk_frames']}-frame chunk; with the {sr['chunk_ms']:.0f} ms of audio it waits for: "
                     f"{sr['first_frame_latency_with_fill_ms']:.1f} ms")
    else:
        lines.append(f"stream: not run; estimated from the stages: RTF {st['estimated_rtf']:.3g}, first-frame "
                     f"latency <= {st['chunk_ms']:.0f} ms fill + {st['estimated_first_chunk_ms']:.0f} ms compute")
    for g, gs in result.get("guidance_streams", {}).items():
        lines.append(f"stream with instruction guidance {g}: RTF {gs['rtf']['median']:.3g} "
                     f"(p90 {gs['rtf']['p90']:.3g}), {gs['rtf']['median'] / sr['rtf']['median']:.2f}x the stream "
                     f"above (guidance {result['guidance']:g}; 1 = off)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main
VARIANTS = {"nowarp": "the VAE decoder without the portrait warp (vae.warp off), to time the warp side by side"}


def bench_config(name: str):
    """"demo", "paper", or a config with a variant, "demo:nowarp" (see VARIANTS)."""
    from dataclasses import replace

    from instructavatar.engine.config import get_config

    base, _, variant = name.partition(":")
    cfg = get_config(base)
    if variant == "nowarp":
        return replace(cfg, vae=replace(cfg.vae, warp=False))
    if variant:
        raise ValueError(f"unknown variant {variant!r} of {base!r}; choose from {', '.join(VARIANTS)}")
    return cfg


def run_config(name: str, args) -> dict:
    from instructavatar.engine.loader import load_pipeline

    cfg = bench_config(name)
    paper = cfg.name == "paper"
    t0 = time.perf_counter()
    pipeline = load_pipeline(cfg, random_weights=True, threads=args.threads, announce=lambda m: None)
    load_s = time.perf_counter() - t0
    result = {"config": name, "load_seconds": load_s, "gflop_per_call": stage_gflop(cfg)}
    result["stages"] = bench_stages(pipeline, args.seconds, args.steps, args.repeats,
                                    max_frames=args.paper_frames if paper else None,
                                    heavy_repeats=args.paper_repeats if paper else None)
    result["stages"]["config"] = name                         # with its variant, if any
    if not paper or args.paper_stream:
        seconds = args.seconds if not paper else cfg.stream.chunk_frames * 2 / cfg.media.fps
        result["guidance"] = pipeline.guidance                 # the config's instruction guidance
        result["stream"] = bench_stream(pipeline, seconds, args.steps, args.repeats if not paper else 1)
        for g in args.guidance if not paper else []:     # instruction guidance: the same stream, side by side
            pipeline.guidance = g
            result.setdefault("guidance_streams", {})[f"{g:g}"] = bench_stream(pipeline, seconds, args.steps,
                                                                               args.repeats)
    del pipeline
    gc.collect()
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="demo",
                    help="comma-separated: demo,paper; a variant after a colon, e.g. demo:nowarp (the decoder "
                         "without the portrait warp, for a side-by-side ratio)")
    ap.add_argument("--steps", type=int, default=8, help="DDIM steps")
    ap.add_argument("--seconds", type=float, default=4.0, help="audio per repeat")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--paper-frames", type=int, default=4, help="paper: frames decoded per repeat")
    ap.add_argument("--paper-repeats", type=int, default=1, help="paper: repeats of the portrait and decoder")
    ap.add_argument("--guidance", type=lambda v: [float(x) for x in v.split(",")], default=[],
                    help="demo: also stream with these instruction-guidance scales (e.g. 2), side by side")
    ap.add_argument("--paper-stream", action="store_true",
                    help="paper: also stream 2 chunks end to end (very slow on a CPU: 50 decoded frames)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    for n in names:
        try:
            bench_config(n)
        except ValueError as e:                                 # ConfigError is one too
            ap.error(str(e))
    if args.steps < 1 or args.repeats < 1 or args.seconds <= 0 or args.paper_frames < 1:
        ap.error("--steps, --repeats and --paper-frames must be >= 1 and --seconds > 0")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    info = machine_info()
    print(f"{info['cpu']} ({info['cpu_capability']}), {info['cores_usable']}/{info['cores']} cores, "
          f"load {' '.join(map(str, info['load_average']))}; torch {info['torch']} ({info['torch_threads']} "
          f"threads), numpy {info['numpy']}, Python {info['python']}; {info['date']}; wall-clock times")
    results = {"machine": info, "args": vars(args), "configs": {}}
    for n in names:
        r = run_config(n, args)
        results["configs"][n] = r
        print()
        print(format_report(r))
        sys.stdout.flush()
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"\nload average at the end: {' '.join(map(str, results['machine']['load_average_end']))}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
