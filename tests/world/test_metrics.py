"""Metrics of the synthetic world pinned on hand-made examples."""

from __future__ import annotations

import numpy as np
import pytest

from instructavatar.avatarworld import controls as C
from instructavatar.avatarworld import metrics as M

A = len(C.AU_IDS)


def _set(*aus: int) -> np.ndarray:
    s = np.zeros(A, bool)
    for a in aus:
        s[C.AU_IDS.index(a)] = True
    return s


def test_clip_au_labels_needs_three_frames():
    fa = np.zeros((10, A), bool)
    fa[[1, 5, 9], C.AU_IDS.index(12)] = True        # 3 scattered frames: active
    fa[[2, 3], C.AU_IDS.index(4)] = True            # 2 frames: not active
    got = M.clip_au_labels(fa)
    assert got.tolist() == _set(12).tolist()
    assert M.clip_au_labels(fa, min_frames=2).tolist() == _set(4, 12).tolist()
    # a clip shorter than min_frames needs the AU in all its frames; an empty clip has none
    short = np.ones((2, A), bool)
    assert M.clip_au_labels(short).all()
    assert not M.clip_au_labels(np.zeros((0, A), bool)).any()


def test_clip_au_labels_matches_data_generator():
    from instructavatar.avatarworld import clips

    rng = np.random.default_rng(0)
    ctrl = C.clip_controls(rng.uniform(0, 0.5, (40, C.NUM_CONTROLS)).astype(np.float32))
    frames, clip_level = clips.clip_labels(ctrl)
    assert np.array_equal(M.clip_au_labels(C.active_aus(ctrl)), clip_level)


def test_set_f1_known_values():
    assert M.set_f1(_set(1, 2, 4), _set(1, 2, 4)) == 1.0
    assert M.set_f1(_set(1, 2), _set(2, 4)) == pytest.approx(0.5)      # tp 1, |p| 2, |t| 2
    assert M.set_f1(_set(1, 2, 4, 5), _set(1)) == pytest.approx(2 / 5)  # tp 1, |p| 4, |t| 1
    assert M.set_f1(_set(), _set()) == 1.0
    assert M.set_f1(_set(1), _set()) == 0.0
    assert M.set_f1(_set(), _set(1)) == 0.0


def test_au_f1_and_au_emo_on_frames():
    pred = np.zeros((6, A), bool)
    pred[:, C.AU_IDS.index(6)] = True
    pred[:, C.AU_IDS.index(12)] = True
    pred[:2, C.AU_IDS.index(7)] = True               # only 2 frames: not in the clip set
    true = np.zeros((6, A), bool)
    true[:, [C.AU_IDS.index(a) for a in (6, 12, 25)]] = True
    assert M.au_f1(pred, true) == pytest.approx(2 * 2 / (2 + 3))
    # happy's typical AUs are 6, 12, 26, 7: two of four recalled
    assert M.au_emo(pred, "happy") == pytest.approx(0.5)
    assert M.au_emo(pred, "neutral") is None
    assert M.au_emo(pred, "happiness") == pytest.approx(0.5)


def test_frame_f1_micro_macro():
    p = np.zeros((4, A), bool)
    t = np.zeros((4, A), bool)
    i, j = C.AU_IDS.index(1), C.AU_IDS.index(2)
    t[:, i] = True
    p[:2, i] = True                  # AU1: tp 2, fn 2 -> F1 2/3
    p[:, j] = True                   # AU2: fp 4 -> F1 0
    f = M.frame_f1(p, t)
    assert f["micro"] == pytest.approx(2 * 2 / (2 * 2 + 4 + 2))
    assert f["macro"] == pytest.approx((2 / 3 + 0.0) / 2)
    assert f["au01"] == pytest.approx(2 / 3)


def test_pearson_and_mae():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    assert M.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert M.pearson(x, -x) == pytest.approx(-1.0)
    assert M.pearson(np.array([1.0, 2.0, 1.0, 2.0]), np.array([1.0, 1.0, 2.0, 2.0])) == pytest.approx(0.0)
    assert M.pearson(np.ones(5), x) is None         # constant: undefined
    assert M.pearson(x, np.zeros(4)) is None
    assert M.pearson(x[:1], x[:1]) is None
    assert M.pearson(x, np.array([0.0, 1.0, 2.0, 3.0, 99.0])) == pytest.approx(1.0)  # truncated
    assert M.mae(x, x + 0.5) == pytest.approx(0.5)
    ls = M.lip_sync(np.zeros(10), np.zeros(10))
    assert ls["lipsync_corr"] is None and ls["lipsync_mae"] == 0.0


def test_jitter_known_sequence():
    assert M.jitter(np.arange(10.0)) == pytest.approx(0.0)             # linear: no second difference
    assert M.jitter(np.array([0.0, 1.0, 0.0, 1.0, 0.0])) == pytest.approx(2.0)
    assert M.jitter(np.array([0.0, 0.0, 3.0])) == pytest.approx(3.0)
    assert M.jitter(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])) == pytest.approx(1.0)  # mean over dims
    assert M.jitter(np.zeros(2)) == 0.0


def test_intensity_calibration_and_level():
    scores = [("happy", 1, 0.1), ("happy", 1, 0.15), ("happy", 2, 0.3), ("happy", 2, 0.35),
              ("happy", 3, 0.6), ("happy", 3, 0.7)]
    th = M.calibrate_intensity_thresholds(scores)
    assert set(th) == {"happy", "*"}
    t12, t23 = th["happy"]
    assert 0.15 < t12 < 0.3 and 0.35 < t23 < 0.6
    assert [M.intensity_level(s, e, th) for e, _, s in scores] == [1, 1, 2, 2, 3, 3]
    assert M.intensity_level(0.65, "sad", th) == 3          # pooled fallback
    ia = np.zeros((5, A), np.float32)
    ia[:, C.AU_IDS.index(12)] = 0.8
    assert M.intensity_score(ia, "happy") == pytest.approx(0.2)   # (0.8 + 0 + 0 + 0) / 4
    assert M.intensity_score(ia, "neutral") is None


def test_motion_happens():
    t = np.arange(100)
    nod = {"pose": np.stack([np.zeros(100), 10 * np.sin(t / 4), np.zeros(100)], 1)}
    still = {"pose": np.zeros((100, 3)), "gaze": np.zeros((100, 2)), "eyes": np.zeros((100, 2))}
    assert M.motion_happens(nod, "nod") is True
    assert M.motion_happens(still, "nod") is False
    turn = {"pose": np.stack([np.r_[np.zeros(30), np.full(70, 18.0)], np.zeros(100), np.zeros(100)], 1)}
    assert M.motion_happens(turn, "turn_head_left") is True
    assert M.motion_happens(turn, "turn_head_right") is False
    wink = {"eyes": np.r_[np.zeros((40, 2)), np.tile([[1.0, 0.0]], (5, 1)), np.zeros((55, 2))]}
    assert M.motion_happens(wink, "wink_left") is True
    assert M.motion_happens(wink, "wink_right") is False
    assert M.motion_happens(still, "smile") is None           # AU motion: measured by AU_F1


def test_switch_latency():
    T, k = 30, 10
    true = np.zeros((T, A), bool)
    i4, i12 = C.AU_IDS.index(4), C.AU_IDS.index(12)
    true[:k, i4] = True           # frown, then smile from frame 12
    true[12:, i12] = True
    assert M.switch_latency(true, true, k) == 2
    pred = true.copy()
    pred[12:18, i4] = True        # the frown lingers until frame 17
    assert M.switch_latency(pred, true, k) == 8
    never = np.zeros((T, A), bool)
    assert M.switch_latency(never, true, k) is None
    blink = pred.copy()
    blink[:, C.AU_IDS.index(45)] = True   # blinks never block the switch
    assert M.switch_latency(blink, true, k) == 8


def _pred_from_controls(ctrl: np.ndarray) -> dict:
    return {"au_prob": (C.active_aus(ctrl)).astype(np.float32), "au_intensity": ctrl[:, C.AU_SLICE].copy(),
            "pose": ctrl[:, C.ROTATION_SLICE].copy(),
            "mouth": np.stack([C.mouth_opening(ctrl), ctrl[:, C.INDEX["speech_width"]],
                               ctrl[:, C.INDEX["speech_round"]]], 1),
            "gaze": ctrl[:, C.GAZE_SLICE].copy(), "eyes": np.stack(C.eye_closure(ctrl), 1)}


def test_evaluate_clip_perfect_prediction_and_summarize():
    from instructavatar.avatarworld import behaviour

    rng = np.random.default_rng(1)
    ctrl = behaviour.emotion_controls("happy", 3, 60, rng)
    ctrl[:, C.INDEX["speech_jaw"]] = 0.4 + 0.3 * np.sin(np.arange(60) / 3)
    truth = M.ClipTruth("c0", ctrl, emotion="happy", intensity=3, speech=ctrl[:, C.SPEECH_SLICE])
    pred = _pred_from_controls(ctrl)
    score = M.intensity_score(pred["au_intensity"], "happy")
    r = M.evaluate_clip(pred, truth, {"*": [score - 0.2, score - 0.1]})
    assert r["au_f1"] == 1.0 and r["au_frame_f1"] == 1.0
    assert r["intensity_acc"] == 1.0 and r["intensity_pred"] == 3
    assert r["pose_mae"] == 0.0
    assert r["jitter_pose"] == pytest.approx(r["jitter_pose_truth"])
    assert r["switch_latency"] is None and r["motion_ok"] is None
    silent = M.ClipTruth("c1", behaviour.motion_controls("nod", 80, rng), motions=("nod",))
    r2 = M.evaluate_clip(_pred_from_controls(silent.controls), silent)
    assert r2["lipsync_corr"] is None and r2["motion_ok"] == 1.0 and r2["au_emo"] is None
    s = M.summarize([r, r2])
    assert s["clips"] == 2 and s["au_f1"] == 1.0
    assert s["n_lipsync_corr"] == 1 and s["n_motion_ok"] == 1 and s["n_intensity_acc"] == 1
    assert s["jitter_pose_ratio"] == pytest.approx(1.0)


def test_evaluate_clip_truncates_to_shorter():
    ctrl = np.zeros((20, C.NUM_CONTROLS), np.float32)
    pred = _pred_from_controls(ctrl[:15])
    r = M.evaluate_clip(pred, M.ClipTruth("x", ctrl))
    assert r["frames"] == 15 and r["au_f1"] == 1.0
