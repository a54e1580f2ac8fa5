"""Photo mode's speed on one core: the photo decoder at 256 and 512 px beside the world (VAE) decoder, and the
whole photo-mode pipeline's real-time factor, measured in one run.

    python -m instructavatar.benchmarks.bench_photo [--frames 50] [--seconds 4]

Every figure is reported as wall-clock and as this process's CPU time (time.process_time), since a shared
machine inflates wall-clock; one thread everywhere (torch / ONNX Runtime threads = 1, cv2.setNumThreads(1)).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _timed(fn, repeat: int) -> tuple[float, float]:
    """(wall ms, cpu ms) per call of fn, median of `repeat` runs."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return float(np.median(wall)), float(np.median(cpu))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=50, help="frames per decoder measurement")
    ap.add_argument("--seconds", type=float, default=4.0, help="audio length of the pipeline measurement")
    ap.add_argument("--photo", default="astronaut")
    args = ap.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    from ..engine.loader import load_pipeline
    from ..engine.photo.decoder import prepare_photo
    from ..engine.photo.samples import load_sample

    pipe = load_pipeline("demo", threads=1)
    rng = np.random.default_rng(0)
    # motion latents from the generator itself (speech-like noise audio), so the decoders see real motion
    world = pipe.prepare(load_sample(args.photo))
    session, _ = pipe.new_session(world, "Talk happily.", seed=0, keep_motion=True)
    session.push_audio((0.2 * rng.standard_normal(int(16000 * args.frames / 25 + 16000))).astype(np.float32))
    session.flush()
    z = (np.concatenate(session.motion_log) * pipe.scale)[: args.frames].astype(np.float32)   # (N, M)
    rows = {}
    app = np.repeat(world.appearance, len(z), axis=0)
    batch = pipe.decode_batch
    w, c = _timed(lambda: [pipe.backend.decode(z[i:i + batch], app[i:i + batch]) for i in range(0, len(z), batch)],
                  3)
    rows[f"world decoder ({pipe.cfg.media.image_size} px, {pipe.backend.name})"] = (w / len(z), c / len(z))
    photo = load_sample(args.photo)
    for size in (256, 512):
        p = prepare_photo(pipe, photo, size=size)
        w, c = _timed(lambda p=p: p.decoder.decode(z), 3)
        rows[f"photo decoder ({size} px)"] = (w / len(z), c / len(z))
    p = prepare_photo(pipe, photo, size=512)
    audio = (0.2 * rng.standard_normal(int(16000 * args.seconds))).astype(np.float32)
    pipe.timings.clear()
    w, c = _timed(lambda: pipe.generate(p, audio=audio, instruction="Talk happily.", seed=0), 1)
    stages = pipe.timings.summary()
    print(f"{'what':40s} {'wall ms/frame':>14s} {'cpu ms/frame':>13s}")
    for k, (wm, cm) in rows.items():
        print(f"{k:40s} {wm:14.2f} {cm:13.2f}")
    print(f"photo-mode pipeline at 512 px, {args.seconds:g} s of audio: real-time factor {w / 1e3 / args.seconds:.3f} "
          f"wall, {c / 1e3 / args.seconds:.3f} cpu")
    print(json.dumps({"decoders_ms_per_frame": rows, "pipeline_rtf_wall": w / 1e3 / args.seconds,
                      "pipeline_rtf_cpu": c / 1e3 / args.seconds, "stages": stages}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
