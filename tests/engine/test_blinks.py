"""Idle blinks: the schedule (engine/blinks.py), the audio encoder's cue input, the pipeline's use of both."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from instructavatar.avatarworld import controls as C
from instructavatar.engine.blinks import BlinkSchedule, raised_cosine
from instructavatar.engine.config import BlinkConfig, get_config
from instructavatar.engine.loader import load_pipeline
from instructavatar.engine.modules.audio_encoder import AudioEncoder

FPS = 25


def test_cue_of_a_span_is_the_same_however_it_is_asked_for():
    whole = BlinkSchedule(BlinkConfig(), FPS, seed=7).cue(0, 1500)
    pieces = BlinkSchedule(BlinkConfig(), FPS, seed=7)
    rng, got, start = np.random.default_rng(0), [], 0
    while start < 1500:                                       # overlapping windows, as the pipeline asks
        n = int(rng.integers(1, 40))
        got.append(pieces.cue(max(0, start - 10), n + min(start, 10))[min(start, 10):])
        start += n
    np.testing.assert_array_equal(np.concatenate(got)[:1500], whole)
    assert not np.array_equal(BlinkSchedule(BlinkConfig(), FPS, seed=8).cue(0, 1500), whole)


def test_blinks_follow_the_configured_statistics():
    cfg = BlinkConfig()
    sched = BlinkSchedule(cfg, FPS, seed=3)
    events = sched.events(FPS * 3600)                          # an hour
    centres = np.array([e[0] for e in events]) / FPS
    widths = np.array([e[1] for e in events]) / FPS
    peaks = np.array([e[2] for e in events])
    gaps = np.diff(centres)
    assert cfg.first_s[0] <= centres[0] <= cfg.first_s[1]
    assert gaps.min() >= cfg.interval_s[0] and gaps.max() <= cfg.interval_s[1]
    assert np.mean(gaps) == pytest.approx(np.mean(cfg.interval_s), rel=0.05)
    assert widths.min() >= cfg.duration_s[0] and widths.max() <= cfg.duration_s[1]
    assert peaks.min() >= cfg.peak[0] and peaks.max() <= cfg.peak[1]
    cue = sched.cue(0, FPS * 60)
    assert 0.0 <= cue.min() and cue.max() <= 1.0 and cue.dtype == np.float32
    # every blink of the first minute shows in the cue at its centre
    for c, _w, p in sched.events(FPS * 60):
        if c < FPS * 60 - 1:
            assert cue[int(round(c))] >= 0.5 * p


def test_disabled_schedule_gives_zeros_and_bad_configs_are_refused():
    assert not BlinkSchedule(BlinkConfig(), FPS, seed=1, enabled=False).cue(0, 500).any()
    with pytest.raises(ValueError, match="interval_s"):
        BlinkSchedule(BlinkConfig(interval_s=(0.0, 1.0)), FPS)
    with pytest.raises(ValueError, match="duration_s"):
        BlinkSchedule(BlinkConfig(duration_s=(0.3, 0.1)), FPS)


def test_raised_cosine_matches_the_worlds_blink_pulse():
    from instructavatar.avatarworld.behaviour import _pulse

    np.testing.assert_allclose(raised_cosine(40, 17.3, 5.1), _pulse(40, 17.3, 5.1))
    np.testing.assert_allclose(raised_cosine(10, 17.3, 5.1, start=12), _pulse(40, 17.3, 5.1)[12:22])


def test_audio_encoder_blink_cue_starts_at_zero_and_is_checked():
    cfg = get_config("demo")
    assert cfg.audio.blink_cue and not get_config("paper").audio.blink_cue
    torch.manual_seed(0)
    enc = AudioEncoder(cfg.audio, out_dim=32).eval()
    wave = torch.randn(2, 12 * 640) * 0.1
    cue = torch.rand(2, 12)
    with torch.no_grad():
        plain = enc(wave)
        np.testing.assert_array_equal(enc(wave, cue).numpy(), plain.numpy())     # zero-initialised
        torch.nn.init.normal_(enc.blink_proj.weight)
        moved = enc(wave, cue)
        np.testing.assert_allclose(enc(wave, torch.zeros(2, 12)).numpy(), enc(wave).numpy())   # None = zeros
    assert (moved - plain).abs().max() > 1e-3
    with pytest.raises(ValueError, match="blink cue"):
        enc(wave, torch.zeros(2, 11))
    paper_keys = AudioEncoder(replace_conformer_small(get_config("paper").audio), out_dim=8).state_dict()
    assert not any("blink" in k for k in paper_keys)       # the authors' key map is unchanged


def replace_conformer_small(audio_cfg):
    from dataclasses import replace

    return replace(audio_cfg, conformer=replace(audio_cfg.conformer, d_model=16, layers=1, ffn_dim=16, heads=2))


@pytest.fixture(scope="module")
def blinking_pipe():
    """The demo model with random weights and a nonzero blink projection, so the cue changes the motion."""
    pipe = load_pipeline("demo", random_weights=True, steps=2, threads=1, announce=lambda m: None)
    with torch.no_grad():
        proj = pipe.backend.model.audio_encoder.blink_proj
        torch.manual_seed(0)
        proj.weight.normal_(0.0, 3.0)
    return pipe


def test_streaming_equals_offline_with_the_blink_cue(blinking_pipe):
    pipe = blinking_pipe
    portrait = (np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8)
    seconds = 6.0
    offline = pipe.generate(portrait, seconds=seconds, instruction="talk happily", seed=4)
    session, _ = pipe.new_session(portrait, "talk happily", seed=4)
    rng, pieces, left = np.random.default_rng(2), [], int(seconds * 16000)
    while left > 0:
        n = min(left, int(rng.integers(1, 9000)))
        pieces.append(session.push_audio(np.zeros(n, np.float32)))
        left -= n
    pieces.append(session.flush())
    np.testing.assert_array_equal(np.concatenate(pieces), offline)
    quiet, _ = pipe.new_session(portrait, "talk happily", seed=4, idle_blinks=False)
    still = np.concatenate([quiet.push_audio(np.zeros(int(seconds * 16000), np.float32)), quiet.flush()])
    assert np.abs(still.astype(int) - offline.astype(int)).max() > 0          # the cue reaches the frames


def test_training_cue_is_the_truths_blink_track_except_where_a_blink_is_instructed():
    from instructavatar.training.train_motion import idle_blink_cue

    i45, a45 = C.AU_IDS.index(45), C.INDEX["au45"]
    lengths = np.array([5, 4, 6])
    controls = np.zeros((15, C.NUM_CONTROLS), np.float32)
    controls[:, a45] = np.linspace(0.0, 1.0, 15)
    target = np.zeros((3, len(C.AU_IDS)), np.float32)
    target[1, i45] = 1.0                                     # clip 1 is told to blink
    data = SimpleNamespace(controls=controls, target_aus=target, lengths=lengths,
                           frame_offsets=np.concatenate([[0], np.cumsum(lengths)]))
    cue = idle_blink_cue(data)
    np.testing.assert_array_equal(cue[:5], controls[:5, a45])
    assert not cue[5:9].any()
    np.testing.assert_array_equal(cue[9:], controls[9:, a45])
