"""The rig's measured gains: a world expression moves the photo's brows by the same fraction of its brow-to-eye
gap as in the world; the lips (corners included) keep MOUTH_GAIN both ways, the upper lids' rise LID_RAISE_GAIN."""

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
samples = pytest.importorskip("instructavatar.engine.photo.samples")
if not samples.available(("astronaut",)):
    pytest.skip("scikit-image's astronaut is not installed", allow_module_level=True)

from instructavatar.engine.photo import rig as R  # noqa: E402
from instructavatar.engine.photo.analysis import analyse  # noqa: E402
from instructavatar.engine.photo.head import load_head  # noqa: E402


@pytest.fixture(scope="module")
def mesh():
    return analyse(samples.load_sample("astronaut")).points.astype(np.float64)


@pytest.fixture(scope="module")
def neutral():
    return load_head().neutral.astype(np.float64)


def _brow_gap(pts):
    brows = [v for c in R.BROW_CHAINS for v in c]
    return R.eye_centres(pts)[:, 1].mean() - pts[brows, 1].mean()


def _world_gap(wn):
    eyes = np.r_[wn[R.W["eye_r"]].mean(0)[1], wn[R.W["eye_l"]].mean(0)[1]].mean()
    return eyes - wn[np.r_[R.W["brow_r"], R.W["brow_l"]], 1].mean()


def test_feature_gains_follow_the_photos_own_proportions(mesh, neutral):
    g = R.feature_gains(mesh[:, :2], neutral)
    assert 0.6 < g["brow"] < 1.2 and 1.0 < g["mouth"] < 1.8           # a real mouth is wider than the world's
    taller = mesh[:, :2].copy()
    brows = [v for c in R.BROW_CHAINS for v in c]
    eye_y = R.eye_centres(taller)[:, 1].mean()
    taller[brows, 1] = eye_y - 1.5 * (eye_y - taller[brows, 1])         # brows 1.5x as far above the eyes
    assert R.feature_gains(taller, neutral)["brow"] == pytest.approx(1.5 * g["brow"], rel=0.02)
    wide = mesh[:, :2].copy()
    c = wide[[61, 291]].mean(0)
    wide[[61, 291]] = c + 1.2 * (wide[[61, 291]] - c)                     # corners 1.2x as far apart
    assert R.feature_gains(wide, neutral)["mouth"] == pytest.approx(1.2 * g["mouth"], rel=0.02)
    wide[[61, 291]] = c + 9.0 * (wide[[61, 291]] - c)
    assert R.feature_gains(wide, neutral)["mouth"] == R.FEATURE_GAIN_RANGE[1]


def test_a_world_brow_raise_moves_the_photo_brow_by_the_same_fraction_of_its_gap(mesh, neutral):
    rig = R.build_rig(mesh, neutral)
    e = np.zeros((R.WORLD_POINTS, 2), np.float32)
    e[R.W["brow_r"], 1] = e[R.W["brow_l"], 1] = -0.1                    # world brows up by 0.1 interocular
    v = R.frame_vertices(rig, e, np.zeros(3))
    brows = [b for c in R.BROW_CHAINS for b in c]
    photo_rise = (rig.rest[brows, 1] - v[brows, 1]).mean()
    assert photo_rise / _brow_gap(mesh) == pytest.approx(0.1 / _world_gap(neutral), rel=0.05)


def test_lips_keep_mouth_gain_both_ways_and_lids_rise_less_than_they_close(mesh, neutral):
    rig = R.build_rig(mesh, neutral)
    corners = [R._MO_U[0], R._MO_U[-1], R._MI_U[0], R._MI_U[-1]]
    for sign in (-1.0, 1.0):                                              # corners up (smile), down (speech)
        e = np.zeros((R.WORLD_POINTS, 2), np.float32)
        e[corners, 1] = 0.1 * sign
        v = R.frame_vertices(rig, e, np.zeros(3))
        moved = (v[[61, 291], 1] - rig.rest[[61, 291], 1]).mean()
        assert moved == pytest.approx(0.1 * sign * R.MOUTH_GAIN * rig.scale, rel=0.05)
    lid = R.MESH_EYE_R_UPPER[4]
    row = np.searchsorted(rig.driven, lid)
    assert rig.rise_gain[row] == pytest.approx(R.LID_RAISE_GAIN * rig.vertical_gain[row])
    up, down = np.zeros((R.WORLD_POINTS, 2), np.float32), np.zeros((R.WORLD_POINTS, 2), np.float32)
    up[R._EYE_R_U, 1], down[R._EYE_R_U, 1] = -0.02, 0.02
    rise = rig.rest[lid, 1] - R.frame_vertices(rig, up, np.zeros(3))[lid, 1]
    fall = R.frame_vertices(rig, down, np.zeros(3))[lid, 1] - rig.rest[lid, 1]
    assert rise == pytest.approx(R.LID_RAISE_GAIN * fall, rel=0.05)
