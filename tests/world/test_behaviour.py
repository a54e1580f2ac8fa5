"""Behaviour of the synthetic world: emotions, intensities, motions, idle motion (numpy only, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from instructavatar.avatarworld import behaviour as B
from instructavatar.avatarworld import instructions
from instructavatar.avatarworld.controls import (
    AU_ACTIVE_THRESHOLD,
    AU_IDS,
    AU_SLICE,
    HIGH,
    INDEX,
    LOW,
    NUM_CONTROLS,
    SPEECH_SLICE,
)
from instructavatar.avatarworld.metrics import EMOTION_TYPICAL_AUS

EMOTIONAL = [e for e in B.EMOTIONS if e != "neutral"]
N = 125  # 5 s


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def au(c: np.ndarray, a: int) -> np.ndarray:
    return c[..., INDEX[f"au{a:02d}"]]


def test_vocabularies_match_instructions():
    assert B.EMOTIONS == instructions.EMOTIONS
    assert B.INTENSITIES == instructions.INTENSITIES
    assert set(instructions.MOTIONS) <= set(B.MOTION_PROGRAMS)


@pytest.mark.parametrize("emotion", B.EMOTIONS)
def test_emotion_controls_shape_range_and_no_speech(emotion):
    for level in B.INTENSITIES:
        c = B.emotion_controls(emotion, level, N, rng(level))
        assert c.shape == (N, NUM_CONTROLS) and c.dtype == np.float32
        assert np.all(c >= LOW) and np.all(c <= HIGH)
        assert np.all(c[:, SPEECH_SLICE] == 0.0)


@pytest.mark.parametrize("emotion", EMOTIONAL)
def test_emotion_target_aus_active_and_intensity_ordered(emotion):
    means = []
    for level in B.INTENSITIES:
        c = B.emotion_controls(emotion, level, N, rng(7 + level))
        apex = c[N // 2:N - 20]  # after the onset, before a possible partial offset
        nominal = B.emotion_magnitudes(emotion, level)
        for a in B.emotion_target_aus(emotion, level):
            if nominal[AU_IDS.index(a)] >= 0.4:  # clear of the threshold, whatever the per-clip jitter
                assert np.mean(au(apex, a) >= AU_ACTIVE_THRESHOLD) > 0.9, (emotion, level, a)
        pattern = [AU_IDS.index(a) for a in B.EMOTION_AUS[emotion]]
        means.append(float(apex[:, AU_SLICE][:, pattern].mean()))
    assert means[2] > means[1] + 0.1 > means[0] + 0.2, (emotion, means)
    # at level 3 every typical AU of the authors' list is in the pattern and active
    assert set(EMOTION_TYPICAL_AUS[emotion]) <= set(B.emotion_target_aus(emotion, 3))


def test_intensity_separable_despite_jitter():
    """The strongest AU of an emotion never overlaps between levels across many jittered clips."""
    for emotion in EMOTIONAL:
        top = max(B.EMOTION_AUS[emotion], key=B.EMOTION_AUS[emotion].get)
        k = AU_IDS.index(top)
        ranges = []
        for level in B.INTENSITIES:
            v = [B.emotion_magnitudes(emotion, level, rng(s))[k] for s in range(200)]
            ranges.append((min(v), max(v)))
        assert ranges[0][1] < ranges[1][0] and ranges[1][1] < ranges[2][0], (emotion, ranges)


def test_specific_emotion_signatures():
    happy = B.apex_controls("happy", 3)
    assert au(happy, 12) >= 0.9 and au(happy, 6) >= 0.8
    assert au(B.apex_controls("surprised", 3), 2) >= 0.9
    assert au(B.apex_controls("angry", 3), 4) >= 0.9
    assert au(B.apex_controls("sad", 3), 15) >= 0.8
    assert au(B.apex_controls("disgusted", 3), 9) >= 0.9
    # jaw drop from emotion stays moderate so that speech drives the mouth
    assert max(au(B.apex_controls(e, 3), 26) for e in B.EMOTIONS) <= 0.5


def test_emotions_distinct():
    apex = {e: B.apex_controls(e, 3)[AU_SLICE] for e in B.EMOTIONS}
    for i, a in enumerate(B.EMOTIONS):
        for b in B.EMOTIONS[i + 1:]:
            assert np.abs(apex[a] - apex[b]).sum() > 1.0, (a, b)
            assert set(B.emotion_target_aus(a, 3)) != set(B.emotion_target_aus(b, 3))


def test_neutral_has_only_blinks():
    c = B.emotion_controls("neutral", 1, N, rng())
    aus = c[:, AU_SLICE].copy()
    aus[:, AU_IDS.index(45)] = 0
    assert np.all(aus == 0)


def test_idle_blinks_and_head_motion():
    n = 25 * 60
    c = B.idle_controls(n, rng(3))
    blink = au(c, 45) >= 0.5
    starts = np.flatnonzero(blink[1:] & ~blink[:-1])
    assert 60 / 6 - 1 <= len(starts) <= 60 / 2 + 1
    gaps = np.diff(starts) / 25
    assert gaps.min() >= 1.9 and gaps.max() <= 6.1
    lengths = [np.argmin(blink[s + 1:]) for s in starts]
    assert max(lengths) <= 6  # a blink is short
    for name, lo, hi in (("yaw", 0.3, 5.0), ("pitch", 0.2, 4.0), ("roll", 0.1, 3.0)):
        std = c[:, INDEX[name]].std()
        assert lo < std < hi, (name, std)
        assert np.abs(np.diff(c[:, INDEX[name]])).max() < 1.0  # smooth: < 1 degree per frame
    assert 0.01 < c[:, INDEX["gaze_x"]].std() < 0.3


def test_determinism():
    a = B.emotion_controls("happy", 2, N, rng(11))
    b = B.emotion_controls("happy", 2, N, rng(11))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, B.emotion_controls("happy", 2, N, rng(12)))
    m = B.motion_controls(["nod", "smile"], N, rng(5), sequential=True)
    assert np.array_equal(m, B.motion_controls(["nod", "smile"], N, rng(5), sequential=True))


AU_MOTIONS = {m: p.aus for m, p in B.MOTION_PROGRAMS.items() if p.aus}


@pytest.mark.parametrize("motion", sorted(B.MOTION_PROGRAMS))
def test_every_motion_moves_what_it_says(motion):
    for seed in range(3):
        c = B.motion_controls([motion], 100, rng(seed))
        idle = B.idle_controls(100, rng(seed))
        assert np.all(c[:, SPEECH_SLICE] == 0)
        for a in B.MOTION_PROGRAMS[motion].aus:
            assert au(c, a).max() >= 0.9 * B.MOTION_PROGRAMS[motion].apex[f"au{a:02d}"] >= 0.4, (motion, a)
            assert (au(c, a) >= AU_ACTIVE_THRESHOLD).sum() >= 3
        if motion in B.MOTION_POSE:
            name, sign, kind = B.MOTION_POSE[motion]
            x = c[:, INDEX[name]]
            if kind == "oscillation":
                assert x.std() > 3.0 and x.std() > 2 * idle[:, INDEX[name]].std(), (motion, x.std())
                assert (x > 4).any() and (x < -4).any()  # both directions
            elif kind == "hold":
                thr = 0.5 if name.startswith("gaze") else 8.0
                assert (sign * x > thr).sum() >= 10, (motion, x)
            else:  # wink pulse: that eye only
                assert x.max() >= 0.95
                other = "eye_close_r" if name == "eye_close_l" else "eye_close_l"
                assert c[:, INDEX[other]].max() == 0.0


def test_nod_and_shake_axes():
    nod = B.motion_controls(["nod"], 100, rng(1), idle=False)
    shake = B.motion_controls(["shake_head"], 100, rng(1), idle=False)
    assert nod[:, INDEX["pitch"]].std() > 3 and nod[:, INDEX["yaw"]].std() == 0
    assert shake[:, INDEX["yaw"]].std() > 4 and shake[:, INDEX["pitch"]].std() == 0
    tilt = B.motion_controls(["tilt_head_left"], 100, rng(1), idle=False)
    assert tilt[:, INDEX["roll"]].max() > 10 and tilt[:, INDEX["roll"]].min() >= 0
    look = B.motion_controls(["look_left"], 100, rng(1), idle=False)
    assert look[:, INDEX["gaze_x"]].max() > 0.6 and look[:, INDEX["yaw"]].max() > 4


def test_sequential_then_simultaneous():
    seq = B.motion_controls(["raise_eyebrows", "frown"], 125, rng(2), sequential=True, idle=False)
    peak1 = np.flatnonzero(au(seq, 1) > 0.5)
    peak4 = np.flatnonzero(au(seq, 4) > 0.5)
    assert peak1.size and peak4.size and peak1.max() < peak4.min()  # one after the other
    sim = B.motion_controls(["smile", "nod"], 125, rng(2), sequential=False, idle=False)
    both = (au(sim, 12) > 0.5) & (np.abs(sim[:, INDEX["pitch"]]) > 1.0)
    assert both.sum() >= 10  # at the same time


def test_apex_controls():
    c = B.apex_controls("happy", 3, motions=["nod"])
    assert c.shape == (NUM_CONTROLS,)
    assert au(c, 12) > 0.9 and c[INDEX["pitch"]] < -5
    assert np.array_equal(B.apex_controls(), np.zeros(NUM_CONTROLS, np.float32))
    assert B.apex_controls(motions=["wink_left"])[INDEX["eye_close_l"]] == 1.0
    assert au(B.apex_controls("angry", 1), 4) < au(B.apex_controls("angry", 3), 4)
    with pytest.raises(ValueError):
        B.apex_controls("bored", 3)
    with pytest.raises(ValueError):
        B.motion_controls(["moonwalk"], 10, rng())
