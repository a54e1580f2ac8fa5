"""benchmarks/bench_server.py's measuring code against the cheap numpy backend (the figures are the real model's:
benchmarks/RESULTS.md)."""

from __future__ import annotations

from instructavatar.benchmarks.bench_server import batching_gain, chunk_cost, run_sessions


def test_run_sessions_measures_real_time_sessions(make_server):
    with make_server() as srv:
        r = run_sessions(srv.url, 2, 1.0, chunk_frames=4)
    assert r["sessions"] == 2 and r["chunk_frames"] == 4 and r["drops_total"] == 0
    for s in r["per_session"]:
        assert s["frames"] == 25 and s["frames_sent"] == 25 and s["first_frame_ms"] > 0
        assert s["latency_ms"]["count"] == 25 and s["latency_ms"]["p95"] >= s["latency_ms"]["p50"]
    assert r["realtime"]                                    # the numpy backend is far faster than real time


def test_batching_and_chunk_cost_rows(fake_pipe):
    rows = batching_gain(fake_pipe, (1, 2), repeats=1)
    assert [r["sessions"] for r in rows] == [1, 2] and all(r["batched_cpu_ms"] >= 0 for r in rows)
    cost = chunk_cost(fake_pipe, (2, 10), seconds=0.8)
    assert [c["chunk_frames"] for c in cost] == [2, 10] and all(c["frames"] == 20 for c in cost)
