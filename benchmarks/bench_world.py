"""Throughput of the synthetic world, single core.

One function per measurement (each returns items/s); ``main()`` prints a table. Run pinned to one core
for figures comparable with benchmarks/RESULTS.md:

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 0 python -m instructavatar.benchmarks.bench_world
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from instructavatar.avatarworld.controls import HIGH, LOW, NUM_CONTROLS  # noqa: E402
from instructavatar.avatarworld.identity import identity  # noqa: E402
from instructavatar.avatarworld.render import FaceRenderer, landmark_image  # noqa: E402


def _random_controls(n: int, seed: int = 0) -> np.ndarray:
    """(n, NUM_CONTROLS) controls: AUs mostly low, pose and gaze across half their range."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0, 1, (n, NUM_CONTROLS)) ** 2 * (HIGH - LOW) * 0.5 + LOW * 0.5
    return c.astype(np.float32)


def _rate(step, seconds: float) -> float:
    """Calls of step(i) per CPU-second of this process over ~seconds of CPU time (after 5 warm-up calls).

    CPU time (time.process_time) rather than wall time, so the figure is the single-core throughput even
    on a machine shared with other jobs; with BENCH_WALL=1 in the environment it uses wall time instead."""
    clock = time.perf_counter if os.environ.get("BENCH_WALL") == "1" else time.process_time
    for i in range(5):
        step(i)
    n, t0 = 0, clock()
    while True:
        step(n)
        n += 1
        dt = clock() - t0
        if dt >= seconds:
            return n / dt


def bench_renderer(size: int = 128, seconds: float = 2.0) -> float:
    """Frames/s of FaceRenderer.render at size x size (varied identities and controls)."""
    r = FaceRenderer(size)
    ids = [identity(i) for i in range(64)]
    ctrl = _random_controls(256)
    return _rate(lambda i: r.render(ids[i % 64], ctrl[i % 256]), seconds)


def bench_render_with_landmarks(size: int = 128, seconds: float = 2.0) -> float:
    """Frames/s of render_with_landmarks + landmark_image at the same size (what the data generator does)."""
    r = FaceRenderer(size)
    ids = [identity(i) for i in range(64)]
    ctrl = _random_controls(256)

    def step(i: int) -> None:
        _, lm = r.render_with_landmarks(ids[i % 64], ctrl[i % 256])
        landmark_image(lm, size, size)

    return _rate(step, seconds)


def bench_landmarks(size: int = 128, seconds: float = 1.0) -> float:
    """Landmark sets/s (geometry only, no drawing)."""
    r = FaceRenderer(size)
    ids = [identity(i) for i in range(64)]
    ctrl = _random_controls(256)
    return _rate(lambda i: r.landmarks(ids[i % 64], ctrl[i % 256]), seconds)


def bench_landmark_image(size: int = 128, seconds: float = 1.0) -> float:
    """landmark_image calls/s for precomputed landmarks."""
    r = FaceRenderer(size)
    lms = [r.landmarks(identity(i), c) for i, c in enumerate(_random_controls(64))]
    return _rate(lambda i: landmark_image(lms[i % 64], size, size), seconds)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    args = ap.parse_args(argv)
    clock = "wall-clock" if os.environ.get("BENCH_WALL") == "1" else "CPU-time"
    print(f"single core, {clock} rates, {args.seconds:g} s per measurement")
    print(f"{'size':>5} | {'render fps':>10} | {'render+lm+dots fps':>18} | {'landmarks/s':>11} | "
          f"{'dot image/s':>11}")
    print("-" * 69)
    for s in args.sizes:
        render = bench_renderer(s, args.seconds)
        full = bench_render_with_landmarks(s, args.seconds)
        lms = bench_landmarks(s, args.seconds / 2)
        dots = bench_landmark_image(s, args.seconds / 2)
        print(f"{s:>5} | {render:>10.0f} | {full:>18.0f} | {lms:>11.0f} | {dots:>11.0f}")


if __name__ == "__main__":
    main()
