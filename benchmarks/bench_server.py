"""Server benchmark: first-frame latency, audio-to-frame latency p50/p95, drops, concurrent real-time sessions,
what batching buys, and the chunk length's effect on latency and cost.

    python -m instructavatar.benchmarks.bench_server --config demo --backend auto --threads 2 --json out.json

`bench_server(config, backend, quick)` returns one dict (`instructavatar bench` calls it). Every session is a
real websocket client on loopback streaming audio at 1x real time in 20 ms pieces, as a microphone would.

- first frame: from the first audio message sent to the first frame received (client clock);
- audio-to-frame (server clock): from the arrival of the last audio sample a frame depends on (its chunk's end)
  to the frame leaving the server; p50/p95 over every frame of the run;
- real time with n sessions: every session has no dropped frame and p95 audio-to-frame within
  `max(500 ms, 2 x chunk)`; the sweep adds sessions until one fails;
- batching: the model step for B sessions batched against B steps alone, on the same inputs (pipeline only).
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import numpy as np

from ..engine.loader import ASSETS

INSTRUCTION = "talk happily"


def _speech(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """The bundled demo sentence, looped to `seconds` (real speech: the model's cost does not depend on it, the
    frames do)."""
    from ..engine.media.audio_io import load_audio

    try:
        base = load_audio(ASSETS / "demo_speech.wav", rate)
    except Exception:                                        # not shipped: a syllable-like tone
        t = np.arange(int(rate * 2)) / rate
        base = (0.3 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    n = int(seconds * rate)
    reps = -(-n // len(base))
    return np.roll(np.tile(base, reps)[:n], seed * 3217).astype(np.float32)


def _one_session(url: str, audio: np.ndarray, chunk_frames: int | None, seed: int, barrier, out: dict) -> None:
    from ..server.client import AvatarClient

    with AvatarClient(url) as c:
        ready = c.start(ASSETS / "demo_portrait.png", instruction=INSTRUCTION, chunk_frames=chunk_frames, seed=seed,
                        idle=False)
        times: list[float] = []

        def read():
            for _ in c.frames():
                times.append(time.monotonic())
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        barrier.wait(60)
        t0 = time.monotonic()
        c.stream_audio(audio, piece_s=0.02, speed=1.0)
        t_audio = time.monotonic()
        c.end()
        reader.join(600)
        end = c.end_event or {}
    out.update(chunk_frames=ready["chunk_frames"], first_frame_ms=1e3 * (times[0] - t0) if times else None,
               frames=end.get("frames"), frames_sent=end.get("frames_sent"), drops=end.get("frames_dropped"),
               latency_ms=end.get("latency_ms"), tail_ms=1e3 * (times[-1] - t_audio) if times else None)


def run_sessions(url: str, n: int, seconds: float, chunk_frames: int | None = None) -> dict:
    """n concurrent sessions streaming `seconds` of speech at 1x real time; per-session results and a verdict."""
    barrier = threading.Barrier(n)
    outs = [dict() for _ in range(n)]
    threads = [threading.Thread(target=_one_session, args=(url, _speech(seconds, seed=k), chunk_frames, k, barrier,
                                                           outs[k])) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    chunk = outs[0].get("chunk_frames") or 10
    budget = max(500.0, 2 * chunk * 40.0)
    ok = all(o.get("drops") == 0 and o.get("latency_ms") and o["latency_ms"]["p95"] is not None
             and o["latency_ms"]["p95"] <= budget for o in outs)
    return {"sessions": n, "seconds": seconds, "chunk_frames": chunk, "realtime": ok, "p95_budget_ms": budget,
            "per_session": outs,
            "p95_ms_worst": max((o["latency_ms"]["p95"] or 0) for o in outs if o.get("latency_ms")),
            "drops_total": sum(o.get("drops") or 0 for o in outs)}


def batching_gain(pipe, sizes=(1, 2, 4), repeats: int = 3) -> list[dict]:
    """Model time of one chunk step for B steady sessions batched vs B steps alone (pipeline only)."""
    from ..engine.media.image_io import load_portrait

    portrait = pipe.prepare(load_portrait(ASSETS / "demo_portrait.png", pipe.cfg.media.image_size))
    audio = _speech(1.0)
    rows = []
    for B in sizes:
        sessions = []
        for k in range(B):
            s, _ = pipe.new_session(portrait, INSTRUCTION, seed=k)
            s.push_audio(audio[: s.chunk_samples])                     # the prefix: steady state from here
            sessions.append(s)
        chunk = audio[: sessions[0].chunk_samples]
        batched, alone, batched_cpu, alone_cpu = [], [], [], []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            pipe.step(sessions, [chunk] * B)
            batched.append(time.perf_counter() - t)
            batched_cpu.append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            for s in sessions:
                pipe.step([s], [chunk])
            alone.append(time.perf_counter() - t)
            alone_cpu.append(time.process_time() - c)
        b, a = float(np.median(batched)) * 1e3, float(np.median(alone)) * 1e3
        bc, ac = float(np.median(batched_cpu)) * 1e3, float(np.median(alone_cpu)) * 1e3
        rows.append({"sessions": B, "batched_ms": round(b, 1), "alone_ms": round(a, 1), "speedup": round(a / b, 3),
                     "batched_cpu_ms": round(bc, 1), "alone_cpu_ms": round(ac, 1), "cpu_speedup": round(ac / bc, 3)})
    return rows


def chunk_cost(pipe, chunk_list=(2, 4, 6, 10), seconds: float = 2.0) -> list[dict]:
    """CPU and wall milliseconds per output frame of one steady session at each chunk length (pipeline only;
    process CPU time is what contention on a shared machine distorts least)."""
    from ..engine.media.image_io import load_portrait

    portrait = pipe.prepare(load_portrait(ASSETS / "demo_portrait.png", pipe.cfg.media.image_size))
    audio = _speech(seconds + 0.4)
    rows = []
    for c in chunk_list:
        s, _ = pipe.new_session(portrait, INSTRUCTION, seed=0, chunk_frames=c)
        s.push_audio(audio[: 10 * 640])                               # the prefix first: steady state from here
        t, cpu = time.perf_counter(), time.process_time()
        n = len(s.push_audio(audio[10 * 640: 10 * 640 + int(seconds * 16000) // (c * 640) * c * 640]))
        wall, used = time.perf_counter() - t, time.process_time() - cpu
        rows.append({"chunk_frames": c, "frames": n, "cpu_ms_per_frame": round(1e3 * used / n, 2),
                     "wall_ms_per_frame": round(1e3 * wall / n, 2), "latency_floor_ms": 40 * c})
    return rows


def bench_server(config: str = "demo", backend: str = "auto", quick: bool = False, threads: int | None = None,
                 seconds: float | None = None, chunk_list=(2, 4, 6, 10), max_sessions: int = 6,
                 precision: str | None = None) -> dict:
    from ..engine.loader import load_pipeline
    from ..server.app import ServerThread
    from ..server.limits import SERVE_DEFAULT_CHUNK_FRAMES, ServerLimits

    seconds = seconds or (3.0 if quick else 8.0)
    t0 = time.perf_counter()
    pipe = load_pipeline(config, backend=backend, threads=threads, random_weights=(config != "demo"),
                         announce=lambda m: None, precision=precision)
    report = {"config": config, "backend": getattr(pipe.backend, "name", backend), "threads": threads,
              "precision": precision or "fp32",
              "steps": pipe.sampler.num_steps, "seconds_per_run": seconds, "load_s": round(time.perf_counter() - t0, 2)}
    limits = ServerLimits(stats_interval_s=0, max_sessions=max_sessions + 1,
                          default_chunk_frames=SERVE_DEFAULT_CHUNK_FRAMES)          # what `serve` uses
    report["default_chunk_frames"] = SERVE_DEFAULT_CHUNK_FRAMES
    with ServerThread(pipe, limits) as srv:
        run_sessions(srv.url, 1, 1.0)                                   # warm-up (first calls, caches)
        report["single"] = run_sessions(srv.url, 1, seconds)
        sweep = []
        for n in range(1, (2 if quick else max_sessions) + 1):
            r = run_sessions(srv.url, n, seconds)
            sweep.append({k: r[k] for k in ("sessions", "realtime", "p95_ms_worst", "drops_total")})
            if not r["realtime"]:
                break
        report["sweep"] = sweep
        report["realtime_sessions"] = max([s["sessions"] for s in sweep if s["realtime"]], default=0)
        if not quick:
            report["chunk_sweep"] = []
            for c in chunk_list:
                r = run_sessions(srv.url, 1, seconds, chunk_frames=c)["per_session"][0]
                report["chunk_sweep"].append({"chunk_frames": c, "first_frame_ms": r["first_frame_ms"],
                                              "p50_ms": r["latency_ms"]["p50"], "p95_ms": r["latency_ms"]["p95"],
                                              "drops": r["drops"]})
        steps = srv.server.worker.batch_sizes
        report["worker_batch_sizes"] = {str(b): int(sum(1 for x in steps if x == b)) for b in sorted(set(steps))}
    report["batching"] = batching_gain(pipe, (1, 2) if quick else (1, 2, 4), repeats=2 if quick else 3)
    if not quick:
        report["chunk_cost"] = chunk_cost(pipe, chunk_list)
    s = report["single"]["per_session"][0]
    report["summary"] = {"first_frame_ms": s["first_frame_ms"], "audio_to_frame_p50_ms": s["latency_ms"]["p50"],
                         "audio_to_frame_p95_ms": s["latency_ms"]["p95"], "drops": s["drops"],
                         "realtime_sessions": report["realtime_sessions"]}
    return report


def main(argv=None) -> int:
    from .bench_pipeline import machine_info

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="demo")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--precision", default=None, help="as `serve --precision` (ort: fp32 or int8)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None, help="audio per run (default 8; --quick 3)")
    ap.add_argument("--max-sessions", type=int, default=6)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only-model", action="store_true",
                    help="batching gain and chunk cost only (pipeline, no server): for a busy machine")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.only_model:
        from ..engine.loader import load_pipeline

        pipe = load_pipeline(args.config, backend=args.backend, threads=args.threads, announce=lambda m: None)
        r = {"config": args.config, "backend": pipe.backend.name, "threads": args.threads,
             "batching": batching_gain(pipe, (1, 2, 4)), "chunk_cost": chunk_cost(pipe), "machine": machine_info()}
        print(json.dumps({k: r[k] for k in ("backend", "batching", "chunk_cost")}, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(r, f, indent=1)
        return 0
    r = bench_server(args.config, args.backend, args.quick, args.threads, args.seconds, max_sessions=args.max_sessions,
                     precision=args.precision)
    r["machine"] = machine_info()
    print(json.dumps(r["summary"], indent=1))
    print("sweep:", json.dumps(r["sweep"]))
    print("batching:", json.dumps(r["batching"]))
    if "chunk_sweep" in r:
        print("chunk sweep:", json.dumps(r["chunk_sweep"]))
        print("chunk cost:", json.dumps(r["chunk_cost"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
