"""ONNX Runtime vs eager torch, per component and end to end on the shipped demo checkpoint, side by side.

    python -m instructavatar.benchmarks.bench_backends --threads 1,2 --seconds 4 --repeats 7 [--no-int8] [--spin]

Per component (`time_components(backend, cfg)`, importable: the bench command calls it), each through the
`Backend` interface (numpy in and out, as the pipeline calls it) in the steady streaming shapes: one
instruction (text encoder at all padded tokens, conditioning), one window of audio (prefix + chunk frames),
one guided denoiser step (2 rows: instruction + neutral), the chunk's new frames through the decoder, one
portrait through the appearance and keyframe encoders. Medians over `repeats` after one warm-up call.
End to end (`time_end_to_end`): `Pipeline.generate` on the demo portrait and speech with a guided instruction;
RTF = wall seconds / audio seconds. Every backend and thread count runs in one process, one after another.
`--spin` adds ORT with ORT's default spinning pool threads ("ort-spin"), the engine's sessions do not spin
(engine/ort_backend.session_options): what that choice buys, side by side.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

INSTRUCTION = "Talk happily with a big smile."


def _median_ms(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts))


def component_calls(cfg, seed: int = 0) -> dict:
    """{component: (Backend method name, args)} in the pipeline's steady streaming shapes."""
    from ..engine.backend import InstructionTensors

    rng = np.random.default_rng(seed)
    S, M = cfg.media.image_size, cfg.motion_dim
    N, Dt = cfg.text.context, cfg.text.width
    D, L = cfg.denoiser.conformer.d_model, cfg.denoiser.conformer.layers
    T, C = cfg.stream.window_frames, cfg.stream.chunk_frames
    Ca, a = cfg.vae.appearance_channels, S // cfg.vae.app_downsample
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    inst = InstructionTensors(const=f(2, L, D), keys=f(2, L, N, D), values=f(2, L, N, D),
                              mask=np.ones((2, N), np.float32))
    known = np.zeros((2, T), np.float32)
    known[:, :cfg.stream.prefix_frames] = 1
    blink = np.zeros((1, T), np.float32) if cfg.audio.blink_cue else None
    return {
        "text_encoder": ("encode_text", (rng.integers(1, 1000, (1, N)), np.ones((1, N), np.int64))),
        "condition": ("condition", (f(1, N, Dt), np.ones((1, N), np.int64), f(1, Dt), f(1, M))),
        "audio_encoder": ("encode_audio", (0.1 * f(1, T * cfg.media.samples_per_frame), blink)),
        "appearance_encoder": ("encode_appearance", (np.clip(f(1, 3, S, S), -1, 1),)),
        "keyframe_encoder": ("encode_keyframe", (np.clip(f(1, 3, S, S), -1, 1),)),
        "denoiser_step": ("denoise", (f(2, T, M), np.full(2, 500, np.int64), f(2, T, D), known, inst)),
        "decoder": ("decode", (f(C, M), f(C, Ca, a, a))),
    }


def time_components(backend, cfg, repeats: int = 7) -> dict[str, float]:
    """Median ms per call of each component through `backend` (see component_calls for the shapes)."""
    return {k: v["median"] for k, v in compare_components({"b": backend}, cfg, repeats)["b"].items()}


def compare_components(backends: dict, cfg, repeats: int = 7) -> dict[str, dict[str, dict[str, float]]]:
    """{label: {component: {min, median}}} ms per call, the backends interleaved call by call (A B A B ...)
    so that a shared machine's load falls on all of them alike."""
    calls = component_calls(cfg)
    times = {k: {c: [] for c in calls} for k in backends}
    for comp, (method, args) in calls.items():
        for be in backends.values():
            getattr(be, method)(*args)                                   # warm-up
        for _ in range(repeats):
            for label, be in backends.items():
                t0 = time.perf_counter()
                getattr(be, method)(*args)
                times[label][comp].append((time.perf_counter() - t0) * 1e3)
    return {k: {c: {"min": float(np.min(v)), "median": float(np.median(v))} for c, v in per.items()}
            for k, per in times.items()}


def time_end_to_end(pipes: dict, seconds: float, repeats: int = 2) -> dict[str, dict]:
    """Pipeline.generate over the demo speech's first `seconds`, pipelines interleaved; RTF = wall / audio
    (min and median over repeats, after one warm-up run each)."""
    from ..demo import DEMO_PORTRAIT, DEMO_SPEECH
    from ..engine.media.audio_io import load_audio, normalize_loudness

    first = next(iter(pipes.values()))
    rate = first.cfg.media.sample_rate
    audio = normalize_loudness(load_audio(DEMO_SPEECH, rate, 600.0))[: int(seconds * rate)]
    dur = len(audio) / rate
    portraits = {k: p.prepare(DEMO_PORTRAIT) for k, p in pipes.items()}
    walls = {k: [] for k in pipes}
    for r in range(repeats + 1):
        for k, p in pipes.items():
            t0 = time.perf_counter()
            p.generate(portraits[k], audio=audio, instruction=INSTRUCTION, seed=0)
            if r:
                walls[k].append(time.perf_counter() - t0)
    return {k: {"audio_s": dur, "rtf_min": min(w) / dur, "rtf_median": float(np.median(w)) / dur}
            for k, w in walls.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--e2e-repeats", type=int, default=2)
    ap.add_argument("--no-int8", action="store_true", help="skip ORT with the shipped int8 decoder")
    ap.add_argument("--spin", action="store_true", help="also ORT with spinning pool threads (ORT's default)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from ..engine.loader import load_pipeline

    rows = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        variants = [("torch", {}), ("ort", {})] + ([] if args.no_int8 else [("ort-int8", {"precision": "int8"})])
        pipes = {f"{label}@{threads}": load_pipeline("demo", backend="torch" if label == "torch" else "ort",
                                                      threads=threads, announce=lambda m: None, **extra)
                 for label, extra in variants}
        if args.spin:
            from ..engine.loader import DEMO_WEIGHTS
            from ..engine.ort_backend import OrtBackend

            p = load_pipeline("demo", backend="ort", threads=threads, announce=lambda m: None)
            p.backend = OrtBackend(p.backend.folder, p.cfg, weights=DEMO_WEIGHTS, threads=threads, spin=True)
            pipes[f"ort-spin@{threads}"] = p
        if "torch" in pipes[f"torch@{threads}"].backend.__class__.__module__:
            import torch

            torch.set_num_threads(threads)
        comps = compare_components({k: p.backend for k, p in pipes.items()}, pipes[f"torch@{threads}"].cfg,
                                   args.repeats)
        e2e = time_end_to_end(pipes, args.seconds, args.e2e_repeats)
        for k in pipes:
            rows[k] = {"components_ms": comps[k], **e2e[k]}
            print(f"{k}: RTF min {e2e[k]['rtf_min']:.3f} median {e2e[k]['rtf_median']:.3f}  " +
                  "  ".join(f"{c} {v['min']:.2f}" for c, v in comps[k].items()), file=sys.stderr)
        del pipes
    lines = []
    for threads in sorted({k.split("@")[1] for k in rows}):
        base = rows[f"torch@{threads}"]
        labels = [k for k in rows if k.endswith("@" + threads)]
        lines.append(f"\n{threads} thread(s): min ms per call over {args.repeats} interleaved repeats "
                     "(speed-up = torch / backend)\n")
        lines.append("| component | " + " | ".join(labels) + " |")
        lines.append("|---|" + "---|" * len(labels))
        for comp in base["components_ms"]:
            cells = []
            for k in labels:
                v, ref = rows[k]["components_ms"][comp]["min"], base["components_ms"][comp]["min"]
                cells.append(f"{v:.2f}" + ("" if k.startswith("torch") else f" ({ref / v:.2f}x)"))
            lines.append(f"| {comp} | " + " | ".join(cells) + " |")
        for stat in ("rtf_min", "rtf_median"):
            cells = [f"{rows[k][stat]:.3f}" + ("" if k.startswith("torch") else f" ({base[stat] / rows[k][stat]:.2f}x)")
                     for k in labels]
            lines.append(f"| end to end {stat.replace('_', ' ')} ({args.seconds:g} s speech) | " + " | ".join(cells)
                         + " |")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                               "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
