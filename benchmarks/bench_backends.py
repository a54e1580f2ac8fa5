"""ONNX Runtime vs eager torch, per component and end to end on the shipped demo checkpoint, side by side.

    python -m instructavatar.benchmarks.bench_backends --threads 1,2 --seconds 4 --repeats 7 [--int8 DIR]

Per component (`time_components(backend, cfg)`, importable: the bench command calls it), each through the
`Backend` interface (numpy in and out, as the pipeline calls it) in the steady streaming shapes: one
instruction (text encoder at all padded tokens, conditioning), one window of audio (prefix + chunk frames),
one guided denoiser step (2 rows: instruction + neutral), the chunk's new frames through the decoder, one
portrait through the appearance and keyframe encoders. Medians over `repeats` after one warm-up call.
End to end (`time_end_to_end`): `Pipeline.generate` on the demo portrait and speech with a guided instruction;
RTF = wall seconds / audio seconds. Every backend and thread count runs in one process, one after another.
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
    out = {}
    for name, (method, args) in component_calls(cfg).items():
        fn = getattr(backend, method)
        out[name] = _median_ms(lambda fn=fn, args=args: fn(*args), repeats)
    return out


def time_end_to_end(pipe, seconds: float, repeats: int = 2) -> dict:
    """Median wall time of Pipeline.generate over the demo speech's first `seconds`; RTF = wall / audio."""
    from ..demo import DEMO_PORTRAIT, DEMO_SPEECH
    from ..engine.media.audio_io import load_audio, normalize_loudness

    audio = normalize_loudness(load_audio(DEMO_SPEECH, pipe.cfg.media.sample_rate, 600.0))
    audio = audio[: int(seconds * pipe.cfg.media.sample_rate)]
    portrait = pipe.prepare(DEMO_PORTRAIT)
    ms = _median_ms(lambda: pipe.generate(portrait, audio=audio, instruction=INSTRUCTION, seed=0), repeats)
    dur = len(audio) / pipe.cfg.media.sample_rate
    return {"wall_s": ms / 1e3, "audio_s": dur, "rtf": ms / 1e3 / dur}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--e2e-repeats", type=int, default=2)
    ap.add_argument("--int8", help="an export folder with int8 components (export --precision int8)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from ..engine.loader import load_pipeline

    rows = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        variants = [("torch", {}), ("ort", {})] + ([("ort-int8", {"onnx_dir": args.int8})] if args.int8 else [])
        for label, extra in variants:
            pipe = load_pipeline("demo", backend="torch" if label == "torch" else "ort", threads=threads,
                                 announce=lambda m: None, **extra)
            comp = time_components(pipe.backend, pipe.cfg, args.repeats)
            e2e = time_end_to_end(pipe, args.seconds, args.e2e_repeats)
            rows[f"{label}@{threads}"] = {"components_ms": comp, **e2e}
            print(f"{label} threads={threads}: RTF {e2e['rtf']:.3f}  " +
                  "  ".join(f"{k} {v:.2f}" for k, v in comp.items()), file=sys.stderr)
    lines = []
    for threads in sorted({k.split("@")[1] for k in rows}):
        base = rows[f"torch@{threads}"]
        labels = [k for k in rows if k.endswith("@" + threads)]
        lines.append(f"\n{threads} thread(s): ms per call (ratio = torch / backend)\n")
        lines.append("| component | " + " | ".join(labels) + " |")
        lines.append("|---|" + "---|" * len(labels))
        for comp in base["components_ms"]:
            cells = []
            for k in labels:
                v, ref = rows[k]["components_ms"][comp], base["components_ms"][comp]
                cells.append(f"{v:.2f}" + ("" if k.startswith("torch") else f" ({ref / v:.2f}x)"))
            lines.append(f"| {comp} | " + " | ".join(cells) + " |")
        cells = [f"{rows[k]['rtf']:.3f}" + ("" if k.startswith("torch") else f" ({base['rtf'] / rows[k]['rtf']:.2f}x)")
                 for k in labels]
        lines.append(f"| end to end RTF ({args.seconds:g} s speech) | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                               "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
