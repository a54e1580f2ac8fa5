"""The scheduler-facing engine API: step_ready batches by window shape, bounded feed, instructions at a sample
time, per-session chunk length, nothing written lazily in step, bounded timings."""

from __future__ import annotations

import numpy as np
import pytest

from instructavatar.engine.loader import load_pipeline
from instructavatar.engine.pipeline import PendingAudioFull, StageTimings
from tests.server.conftest import png, tone
from tests.server.fake_backend import fake_pipeline


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("demo", random_weights=True, steps=1, threads=1, announce=lambda m: None)


def test_step_ready_batches_by_window_shape_and_matches_sessions_alone(pipe, monkeypatch):
    specs = [(png(1), 10, "smile", 0.0), (png(2), 10, None, 0.4), (png(3), 5, "look sad", 0.0), (png(4), 10, None, 0.0)]
    audio = [tone(0.8, 180 + 40 * k, seed=k) for k in range(4)]
    batched, alone = [], []
    for k, (portrait, chunk, text, head) in enumerate(specs):
        for group in (batched, alone):
            s, _ = pipe.new_session(portrait, text, seed=k, chunk_frames=chunk, keep_motion=True)
            if head:
                s.push_audio(audio[k][:int(head * 16000)])       # already streaming: it has a prefix
            group.append(s)
    calls = []
    real_step = pipe.step
    monkeypatch.setattr(pipe, "step", lambda ss, cs: calls.append(sorted((s.prefix_len, len(c)) for s, c in
                                                                       zip(ss, cs))) or real_step(ss, cs))
    for k, s in enumerate(batched):
        s.feed(audio[k][int(specs[k][3] * 16000):])
    out = pipe.step_ready(batched)
    # shapes: (prefix 0, 6400) x2 new sessions of 10 frames, (10, 6400) the streaming one, (0, 3200) chunk 5
    assert sorted(map(tuple, calls)) == [((0, 3200),), ((0, 6400), (0, 6400)), ((10, 6400),)]
    assert [s for s, _ in out] == batched
    while any(len(s.pending) >= s.chunk_samples for s in batched):
        pipe.step_ready(batched)
    monkeypatch.setattr(pipe, "step", real_step)
    for k, s in enumerate(alone):
        s.push_audio(audio[k][int(specs[k][3] * 16000):])
    for a, b in zip(batched, alone):
        assert a.frames_emitted == b.frames_emitted
        np.testing.assert_allclose(np.concatenate(a.motion_log), np.concatenate(b.motion_log), atol=1e-4)


def test_chunk_length_is_a_session_setting(pipe):
    with pytest.raises(ValueError, match="chunk_frames"):
        pipe.new_session(png(1), chunk_frames=1)
    with pytest.raises(ValueError, match="chunk_frames"):
        pipe.new_session(png(1), chunk_frames=11)
    s, _ = pipe.new_session(png(1), chunk_frames=3)
    frames = s.push_audio(tone(0.5))                            # 12.5 frames: four whole chunks of 3
    assert len(frames) == 12 and s.prefix_len == 10 and len(s.flush()) == 1


def test_instruction_at_a_sample_time_applies_in_the_chunk_holding_it():
    pipe = fake_pipeline()
    audio = tone(2.0)
    ref_a = pipe.generate(png(5), audio, instruction="smile")
    ref_b = pipe.generate(png(5), audio, instruction="look sad")
    s, _ = pipe.new_session(png(5), "smile")
    s.schedule_instruction("look sad", 2 * 6400 + 5)             # inside chunk 2 (frames 20..29)
    got = np.concatenate([s.push_audio(audio), s.flush()])
    np.testing.assert_array_equal(got[:20], ref_a[:20])
    np.testing.assert_array_equal(got[20:], ref_b[20:])
    assert s.instruction_text == "look sad" and not s.scheduled


def test_feed_is_bounded_and_loses_nothing_when_refused():
    pipe = fake_pipeline()
    s, _ = pipe.new_session(png(6), max_pending_samples=10_000)
    s.feed(np.zeros(8000, np.float32))
    with pytest.raises(PendingAudioFull, match="10000"):
        s.feed(np.zeros(4000, np.float32))
    assert len(s.pending) == 8000
    s.schedule_instruction("smile", 100_000)
    assert s.drop_pending() == 8000 and len(s.pending) == 0 and not s.scheduled


def test_step_writes_no_lazy_state():
    pipe = fake_pipeline()                                       # demo config: guidance 1.5
    s, _ = pipe.new_session(png(7), "smile")
    neutral, paired = s.portrait.neutral, s.paired
    assert neutral is not None and paired is not None
    s.push_audio(tone(0.8))
    assert s.portrait.neutral is neutral and s.paired is paired
    s.set_instruction("look sad")
    assert s.paired is not paired and s.paired.keys.shape[0] == 2


def test_stage_timings_are_bounded_with_running_totals():
    t = StageTimings(keep=5)
    for i in range(100):
        t.add("decode", float(i))
    assert list(t.samples["decode"]) == [95.0, 96.0, 97.0, 98.0, 99.0] and t.recent("decode")[-1] == 99.0
    assert t.summary()["decode"] == {"count": 100, "mean_ms": 49.5, "total_ms": 4950.0}
