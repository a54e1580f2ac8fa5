"""The websocket server end to end on loopback: every protocol message, concurrency, clocks, bad input."""

from __future__ import annotations

import base64
import gc
import json
import threading
import time
import tracemalloc
import urllib.request

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from instructavatar.server.client import ws_connect as connect
from instructavatar.server.protocol import AUDIO_HEADER, AUDIO_MAGIC, AudioFormat, pack_audio

from .conftest import png, tone
from .helpers import collect, open_session, recv_json, send_audio, start_msg


def offline(pipe, portrait: bytes, audio, instruction=None, seed=0, chunk_frames=None):
    """What the pipeline alone makes of the same input as sent (PCM16; streaming == offline, any split)."""
    audio = np.round(np.clip(audio, -1, 1) * 32767).astype(np.float32) / 32768
    s, _ = pipe.new_session(portrait, instruction, seed=seed, chunk_frames=chunk_frames)
    return np.concatenate([s.push_audio(audio), s.flush()])


def test_every_message_of_the_protocol(make_server, fake_pipe):
    portrait = png(1)
    with make_server(stats_interval_s=0.2, idle_timeout_s=1.0) as srv:
        ws = connect(srv.url, max_size=2**26)
        ws.send(json.dumps({"type": "portrait.upload", "data": base64.b64encode(portrait).decode(),
                            "request_id": 7}))
        up = recv_json(ws)
        assert up["type"] == "portrait.ready" and up["request_id"] == 7
        ws.send(json.dumps({"type": "session.start", "version": 1, "portrait_id": up["portrait_id"],
                            "instruction": "smile", "request_id": "s", "colour": "blue",
                            "output": {"format": "rgb"}, "chunk_frames": 5}))
        warn = recv_json(ws)
        assert warn["type"] == "warning" and warn["code"] == "unknown_field" and "colour" in warn["message"]
        ready = recv_json(ws)
        assert ready["type"] == "session.ready" and ready["request_id"] == "s"
        for key in ("session_id", "fps", "width", "height", "chunk_frames", "backend", "model", "instruction"):
            assert key in ready
        assert ready["chunk_frames"] == 5 and ready["backend"] == "fake-numpy" and ready["fps"] == 25
        assert ready["instruction"]["text"] == "smile" and "understood_as" in ready["instruction"]
        seq = send_audio(ws, tone(0.4))
        ws.send(json.dumps({"type": "instruction.set", "text": "look sad", "request_id": "i1"}))
        ack = recv_json(ws, {"instruction.ack"})
        assert ack["request_id"] == "i1" and ack["text"] == "look sad"
        stats = recv_json(ws, {"stats"})
        assert {"frames_sent", "frames_dropped", "latency_ms", "audio_buffered_ms"} <= set(stats)
        for _ in range(4):                                    # keepalive holds the 1 s idle timeout off
            time.sleep(0.4)
            ws.send(json.dumps({"type": "keepalive"}))
        ws.send(json.dumps({"type": "interrupt", "request_id": "x"}))
        intr = recv_json(ws, {"interrupted"})
        assert intr["request_id"] == "x" and "dropped_audio_ms" in intr and "dropped_frames" in intr
        send_audio(ws, tone(0.4), seq0=seq)
        ws.send(json.dumps({"type": "audio.end"}))
        frames, events = collect(ws)
        end = [e for e in events if e["type"] == "session.end"]
        assert len(end) == 1 and end[0]["reason"] == "audio_end"
        assert {"frames", "frames_sent", "frames_dropped", "audio_ms", "duration_s"} <= set(end[0])
        assert frames and frames[-1].format == "rgb" and frames[-1].rgb().shape == (128, 128, 3)
        assert ws.close_code == 1000

        ws, _ = open_session(srv.url, portrait)               # close: session.end at once
        ws.send(json.dumps({"type": "close"}))
        _, events = collect(ws)
        assert events[-1]["type"] == "session.end" and events[-1]["reason"] == "client_close"

        ws, _ = open_session(srv.url, portrait)               # idle timeout without keepalive
        _, events = collect(ws, timeout=10)
        assert [e["code"] for e in events if e["type"] == "error"] == ["idle_timeout"]
        assert events[-1]["type"] == "session.end" and events[-1]["reason"] == "idle_timeout"


def test_four_concurrent_sessions_get_their_own_frames(make_server, fake_pipe, monkeypatch):
    batch_sizes = []
    real_step = fake_pipe.step
    monkeypatch.setattr(fake_pipe, "step", lambda ss, cs: batch_sizes.append(len(ss)) or real_step(ss, cs))
    inputs = [(png(10 + k), tone(1.0 + 0.3 * k, 150 + 60 * k, seed=k), text)
              for k, text in enumerate(["smile", "look sad", None, "raise your eyebrows"])]
    results = {}

    def run(k):
        portrait, audio, text = inputs[k]
        ws, ready = open_session(srv.url, portrait, instruction=text, output={"format": "rgb"}, seed=k)
        send_audio(ws, audio, piece=800 + 300 * k)
        ws.send(json.dumps({"type": "audio.end"}))
        results[k] = collect(ws)

    with make_server() as srv:
        threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert max(batch_sizes) > 1                               # sessions really shared model steps
    for k, (portrait, audio, text) in enumerate(inputs):
        frames, events = results[k]
        n = -(-len(audio) // 640)                             # 25 per second of audio
        assert [f.index for f in frames] == list(range(n))
        assert [f.pts_us for f in frames] == [i * 40_000 for i in range(n)]
        want = offline(fake_pipe, portrait, audio, text, seed=k)
        np.testing.assert_array_equal(np.stack([f.rgb() for f in frames]), want)
        assert events[-1]["type"] == "session.end" and events[-1]["frames_dropped"] == 0


def test_instruction_at_a_sample_time_lands_in_the_chunk_holding_it(make_server, fake_pipe):
    portrait, audio = png(3), tone(2.0)
    at = 16000 + 100                          # input sample 16100 lies in chunk 2 (samples 12800..19199)
    with make_server() as srv:
        ws, _ = open_session(srv.url, portrait, instruction="smile", output={"format": "rgb"})
        ws.send(json.dumps({"type": "instruction.set", "text": "look very sad", "at_sample": at, "request_id": 1}))
        assert recv_json(ws, {"instruction.ack"})["session_sample"] == at
        send_audio(ws, audio)
        ws.send(json.dumps({"type": "audio.end"}))
        frames, _ = collect(ws)
    got = np.stack([f.rgb() for f in frames])
    before = offline(fake_pipe, portrait, audio, "smile")
    after = offline(fake_pipe, portrait, audio, "look very sad")
    np.testing.assert_array_equal(got[:20], before[:20])
    np.testing.assert_array_equal(got[20:], after[20:])
    assert not np.array_equal(before[20:30], after[20:30])


def test_timestamps_stay_on_the_audio_clock_over_60_seconds(make_server):
    rate, seconds = 48000, 60.0
    audio = tone(seconds, rate=rate)
    fmt = AudioFormat("float32", rate, 1)
    with make_server(max_pending_audio_s=90) as srv:
        ws, ready = open_session(srv.url, png(4), audio={"format": "float32", "rate": rate, "channels": 1})
        send_audio(ws, audio, piece=4800, fmt=fmt)
        ws.send(json.dumps({"type": "audio.end"}))
        frames, events = collect(ws, timeout=120)
    assert len(frames) == int(seconds * 25)
    idx = np.array([f.index for f in frames])
    assert (np.diff(idx) == 1).all() and idx[0] == 0
    pts = np.array([f.pts for f in frames])
    audio_clock = idx / 25.0                                 # frame i shows audio [i/25, (i+1)/25)
    assert np.abs(pts - audio_clock).max() < 1 / 25
    assert events[-1]["audio_ms"] == pytest.approx(seconds * 1e3, abs=1)


def test_bad_input_gets_errors_while_another_session_streams(make_server, fake_pipe):
    good_portrait, good_audio = png(20), tone(3.0)
    good, checked = {}, threading.Event()

    def stream():                             # streams before, during and after the bad input below
        ws, _ = open_session(srv.url, good_portrait, output={"format": "rgb"}, idle=False)
        for i in range(0, len(good_audio), 3200):
            send_audio(ws, good_audio[i:i + 3200], piece=3200, seq0=i // 3200)
            if i == 9600:
                checked.wait(120)
            time.sleep(0.02)
        ws.send(json.dumps({"type": "audio.end"}))
        good["result"] = collect(ws)

    with make_server(max_sessions=3, max_message_bytes=200_000) as srv:
        t = threading.Thread(target=stream)
        t.start()
        ws = connect(srv.url, max_size=2**26)
        ws.send("{not json")
        assert recv_json(ws)["code"] == "bad_json"
        ws.send(json.dumps({"type": "dance"}))
        assert recv_json(ws)["code"] == "unknown_type"
        ws.send(pack_audio(0, tone(0.1), AudioFormat()))
        assert recv_json(ws)["code"] == "not_started"
        ws.send(start_msg(b"this is not an image"))
        assert recv_json(ws)["code"] == "bad_portrait"
        ws.send(start_msg(png(5), version=2))
        assert recv_json(ws)["code"] == "unsupported_version"
        ws.send(start_msg(png(5), audio={"format": "mp3"}))
        assert recv_json(ws)["code"] == "bad_message"
        ws.send(start_msg(png(5), audio={"format": "float32", "rate": 16000, "channels": 1}))
        assert recv_json(ws)["type"] == "session.ready"
        ws.send(AUDIO_HEADER.pack(AUDIO_MAGIC, 0) + b"\x00\x00\x80")          # not whole float32 samples
        assert recv_json(ws)["code"] == "bad_audio"
        bad = np.zeros(800, np.float32)
        bad[10] = np.nan
        ws.send(pack_audio(0, bad, AudioFormat("float32")))
        assert recv_json(ws)["code"] == "bad_audio"
        ws.send(b"WHAT" + bytes(8))
        assert recv_json(ws)["code"] == "bad_audio"
        ws.send(pack_audio(0, tone(0.1), AudioFormat("float32")))
        ws.send(pack_audio(0, tone(0.1), AudioFormat("float32")))                 # a repeat
        assert recv_json(ws, {"error"})["code"] == "bad_sequence"
        ws.send(json.dumps({"type": "session.start", "version": 1, "portrait_id": "x"}))
        assert recv_json(ws, {"error"})["code"] == "already_started"
        third, _ = open_session(srv.url, png(6))                                  # the third slot
        over = connect(srv.url)
        over.send(start_msg(png(7)))
        err = recv_json(over)
        assert err["code"] == "too_many_sessions" and err["fatal"]
        with pytest.raises(ConnectionClosed):
            over.recv(timeout=5)
        assert over.close_code == 1013
        big = connect(srv.url, max_size=2**26)
        big.send("x" * 300_000)                                                   # oversized -> 1009
        with pytest.raises(ConnectionClosed):
            big.recv(timeout=5)
        assert big.close_code == 1009
        third.close_socket()                                                      # abrupt disconnect
        ws.close_socket()
        checked.set()
        t.join(120)
        deadline = time.monotonic() + 10
        while (srv.server.active or srv.server.worker.sessions) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.server.active == 0 and not srv.server.worker.sessions
    frames, events = good["result"]
    assert [f.index for f in frames] == list(range(75))
    np.testing.assert_array_equal(np.stack([f.rgb() for f in frames]), offline(fake_pipe, good_portrait, good_audio))
    assert events[-1]["type"] == "session.end" and events[-1]["reason"] == "audio_end"


def test_token_and_origins_are_checked(make_server):
    with make_server(token="s3cret", allowed_origins=("http://good.example",)) as srv:
        ws = connect(srv.url)
        ws.send(start_msg(png(1), token="wrong"))
        assert recv_json(ws)["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1008
        ws, ready = open_session(srv.url, png(1), token="s3cret")
        ws.close()
        with pytest.raises(InvalidStatus):
            connect(srv.url, origin="http://evil.example")
        connect(srv.url, origin="http://good.example").close()


def test_a_slow_reader_gets_frames_dropped_with_timestamps_kept(make_server):
    with make_server(out_queue_frames=4) as srv:
        ws = connect(srv.url, max_size=2**26, max_queue=2, compression=None)
        ws.send(start_msg(png(2), output={"format": "rgb"}))
        assert recv_json(ws)["type"] == "session.ready"
        send_audio(ws, tone(20.0), piece=16000)
        ws.send(json.dumps({"type": "audio.end"}))
        time.sleep(4)                                          # read nothing while the server renders
        frames, events = collect(ws, timeout=60)
    end = events[-1]
    assert end["type"] == "session.end" and end["frames_dropped"] > 0
    assert end["frames_sent"] + end["frames_dropped"] == end["frames"] == 500
    idx = [f.index for f in frames]
    assert idx == sorted(idx) and len(idx) == end["frames_sent"]
    assert all(f.pts_us == f.index * 40_000 for f in frames)


def test_no_audio_keeps_the_avatar_moving_on_the_wall_clock(make_server):
    with make_server(idle_fill_after_s=0.1) as srv:
        ws, ready = open_session(srv.url, png(8), chunk_frames=5)
        t0 = time.monotonic()
        got = []
        while time.monotonic() - t0 < 1.6:
            m = ws.recv(timeout=5)
            if isinstance(m, bytes):
                from instructavatar.server.protocol import parse_frame
                got.append(parse_frame(m))
        ws.close()
    assert got and all(f.idle for f in got)
    assert 5 <= len(got) <= 1.6 * 25 + 10                      # moving, and never ahead of the wall clock
    assert [f.index for f in got] == list(range(len(got)))


def test_health_and_metrics(make_server):
    with make_server() as srv:
        ws, _ = open_session(srv.url, png(9))
        send_audio(ws, tone(0.8))
        ws.send(json.dumps({"type": "audio.end"}))
        collect(ws)
        health = json.loads(urllib.request.urlopen(srv.http + "/healthz", timeout=10).read())
        assert health["status"] == "ok" and health["worker_alive"]
        text = urllib.request.urlopen(srv.http + "/metrics", timeout=10).read().decode()
        assert "instructavatar_frames_sent_total 20.0" in text
        assert "instructavatar_audio_to_frame_seconds_bucket" in text and 'stage="denoise_step"' in text
        page = urllib.request.urlopen(srv.http + "/", timeout=10).read().decode()
        assert "<canvas" in page


def test_no_growth_over_100_connect_disconnect_cycles(make_server):
    from instructavatar.server.app import Connection
    from instructavatar.server.worker import StreamState

    def live():
        gc.collect()
        # type(), not isinstance(): isinstance on a weakref proxy whose referent has died raises ReferenceError
        return sum(issubclass(type(o), (Connection, StreamState)) for o in gc.get_objects())

    with make_server() as srv:
        ws = connect(srv.url)
        ws.send(json.dumps({"type": "portrait.upload", "data": base64.b64encode(png(11)).decode()}))
        pid = recv_json(ws)["portrait_id"]
        ws.close()

        def cycle(i):
            ws = connect(srv.url)
            ws.send(json.dumps({"type": "session.start", "version": 1, "portrait_id": pid}))
            recv_json(ws, {"session.ready"})
            send_audio(ws, tone(0.1))
            if i % 2:
                ws.close_socket()                              # abrupt
            else:
                ws.send(json.dumps({"type": "close"}))
                collect(ws)

        for i in range(20):
            cycle(i)
        time.sleep(0.3)
        tracemalloc.start()
        base_objects, base_mem = live(), tracemalloc.get_traced_memory()[0]
        for i in range(100):
            cycle(i)
        deadline = time.monotonic() + 10
        while (srv.server.active or srv.server.connections or srv.server.worker.sessions) \
                and time.monotonic() < deadline:                 # the worker runs the last close commands
            time.sleep(0.05)
        grown = tracemalloc.get_traced_memory()[0] - base_mem
        tracemalloc.stop()
        assert srv.server.active == 0 and not srv.server.worker.sessions and not srv.server.connections
        assert srv.server.metrics.registry.get_sample_value("instructavatar_sessions") == 0
        assert live() <= base_objects
        assert grown < 2_000_000, grown


def test_the_demo_checkpoint_serves_batched_sessions_as_it_renders_alone(make_server):
    """The real model behind the server: two sessions share a step and get what the pipeline makes alone."""
    from instructavatar.engine.loader import load_pipeline

    pipe = load_pipeline("demo", steps=1, threads=1)
    inputs = [(png(30), tone(0.4, 170, seed=1), "talk happily"), (png(31), tone(0.4, 260, seed=2), None)]
    results = {}
    go = threading.Barrier(2)

    def run(k):
        portrait, audio, text = inputs[k]
        ws, ready = open_session(srv.url, portrait, instruction=text, output={"format": "rgb"}, seed=k, idle=False)
        results[f"ready{k}"] = ready
        go.wait(30)
        send_audio(ws, audio, piece=len(audio))
        ws.send(json.dumps({"type": "audio.end"}))
        results[k] = collect(ws, timeout=120)

    with make_server(pipe) as srv:
        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
    for k, (portrait, audio, text) in enumerate(inputs):
        frames, events = results[k]
        assert [f.index for f in frames] == list(range(10)) and events[-1]["reason"] == "audio_end"
        want = offline(pipe, portrait, audio, text, seed=k)
        diff = np.abs(np.stack([f.rgb() for f in frames]).astype(int) - want.astype(int))
        assert diff.max() <= 2                                    # batched float rounding only
    understood = results["ready0"]["instruction"]["understood_as"]   # Pipeline.understand's report
    assert understood["label"] == "happy" and "understood as happy" in understood["description"]


def test_a_session_failing_in_the_model_ends_alone(make_server, fake_pipe, monkeypatch):
    real_step = fake_pipe.step

    def step(sessions, chunks):                          # the model fails on one session's batch
        if any(s.instruction_text == "explode" for s in sessions):
            raise FloatingPointError("boom")
        return real_step(sessions, chunks)
    monkeypatch.setattr(fake_pipe, "step", step)
    with make_server() as srv:
        bad, _ = open_session(srv.url, png(40), instruction="explode", idle=False)
        good, _ = open_session(srv.url, png(41), output={"format": "rgb"}, idle=False)
        for ws in (bad, good):
            send_audio(ws, tone(0.8), piece=12800)
        good.send(json.dumps({"type": "audio.end"}))
        try:                                            # the failing session may be closed by the server already
            bad.send(json.dumps({"type": "audio.end"}))
        except ConnectionClosed:
            pass
        _, bad_events = collect(bad)
        frames, good_events = collect(good)
    assert [e["code"] for e in bad_events if e["type"] == "error"] == ["internal"]
    assert bad_events[-1]["type"] == "session.end" and bad_events[-1]["reason"] == "error"
    assert [f.index for f in frames] == list(range(20)) and good_events[-1]["reason"] == "audio_end"
