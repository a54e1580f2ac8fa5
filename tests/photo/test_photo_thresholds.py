"""The evaluation's instruction threshold: the detector's noise on a change of a clip STATISTIC (its spread across
still clips, x sqrt 2 for a difference of two), not the per-frame noise. Pure numpy: no dlib, no photos."""

import numpy as np
import pytest

from instructavatar.training import photo_quality as Q

KEYS = ("mouth", "eyes", "corner", "brow", "yaw", "pitch")


def _clips(n_clips, n_frames, frame_std, seed=0):
    rng = np.random.default_rng(seed)
    return [{k: rng.normal(0.0, frame_std, n_frames) for k in KEYS} for _ in range(n_clips)]


def test_noise_of_a_clip_mean_is_the_spread_of_clip_means():
    clips = _clips(400, 100, 0.01)
    sn = Q.statistic_noise(clips)
    assert set(sn) == {f"{key}/{stat}" for _, key, stat, _ in Q.INSTRUCTIONS}
    # i.i.d. frames: a 100-frame mean has std 0.01 / 10; the change of two such means sqrt(2) times that
    assert sn["mouth/mean"] == pytest.approx(np.sqrt(2) * 0.001, rel=0.15)
    assert sn["brow/mean"] < 0.2 * 0.01                    # far below the per-frame std the old rule used
    # the std of 100 normal frames has spread std / sqrt(2 (n - 1)): that is the noise of nod's / shake's statistic
    assert sn["yaw/std"] == pytest.approx(np.sqrt(2) * 0.01 / np.sqrt(2 * 99), rel=0.2)


def test_noise_of_a_statistic_is_measured_not_assumed():
    clips = _clips(6, 100, 0.01)
    for c in clips[:3]:
        c["mouth"] = c["mouth"] + 0.05                      # clips that disagree by a constant: that is noise too
    assert Q.statistic_noise(clips)["mouth/mean"] > 0.02
    still = [{k: np.full(100, 0.3) for k in KEYS} for _ in range(3)]
    assert Q.statistic_noise(still)["corner/mean"] == 0.0


def test_one_still_clip_is_refused():
    with pytest.raises(ValueError, match="at least 2 still clips"):
        Q.statistic_noise(_clips(1, 10, 0.01))
