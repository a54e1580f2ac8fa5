"""The rig's measured gains: a world expression moves each photo feature by the same fraction of that feature's
size as in the world (brows: the brow-to-eye gap; lip corners: the mouth width), while the lips' opening keeps
MOUTH_GAIN."""

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


def test_a_smile_keeps_its_corner_travel_and_the_opening_keeps_mouth_gain(mesh, neutral):
    rig = R.build_rig(mesh, neutral)
    e = np.zeros((R.WORLD_POINTS, 2), np.float32)
    corners = [R._MO_U[0], R._MO_U[-1], R._MI_U[0], R._MI_U[-1]]
    e[corners, 1] = -0.1                                                  # world lip corners up by 0.1
    v = R.frame_vertices(rig, e, np.zeros(3))
    world_width = np.linalg.norm(neutral[R._MO_U[-1]] - neutral[R._MO_U[0]])
    photo_width = np.linalg.norm(mesh[291, :2] - mesh[61, :2])
    rise = (rig.rest[[61, 291], 1] - v[[61, 291], 1]).mean()
    assert rise / photo_width == pytest.approx(0.1 / world_width, rel=0.05)
    mid = R.MESH_LIP_OUT_UPPER[5]                                         # the lips' middle: the opening's gain
    row = np.searchsorted(rig.driven, mid)
    assert rig.vertical_gain[row] == pytest.approx(R.MOUTH_GAIN, abs=0.02)
