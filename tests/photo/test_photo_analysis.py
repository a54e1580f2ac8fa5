"""Portrait analysis on bundled photographs, the rig's retargeting on the photo's mesh, and the error cases."""

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("cv2")
samples = pytest.importorskip("instructavatar.engine.photo.samples")
if not samples.available(("astronaut",)):
    pytest.skip("scikit-image's astronaut is not installed", allow_module_level=True)

from instructavatar.engine.photo import rig as R  # noqa: E402
from instructavatar.engine.photo.analysis import PhotoError, analyse  # noqa: E402
from instructavatar.engine.photo.decoder import load_photo  # noqa: E402
from instructavatar.engine.photo.head import load_head  # noqa: E402


@pytest.fixture(scope="module")
def astronaut():
    rgb = samples.load_sample("astronaut")
    return rgb, analyse(rgb)


def test_analysis_finds_the_astronauts_face(astronaut):
    rgb, a = astronaut
    assert a.points.shape == (468, 3) and a.faces_found == 1 and not a.warnings
    x0, y0, x1, y1 = a.box
    assert 170 < x0 < 200 and 260 < x1 < 290 and 60 < y0 < 100       # her face in the 512x512 photo
    # the mesh's eyes are level and apart by about half the box; the nose tip lies between them
    e = R.eye_centres(a.points)
    assert abs(e[0, 1] - e[1, 1]) < 5 and 0.35 < a.interocular / (x1 - x0) < 0.6
    assert e[0, 0] < a.points[1, 0] < e[1, 0]
    assert abs(a.yaw_deg) < 10


def test_rig_rest_pose_is_the_mesh_and_a_world_blink_closes_the_photo_eye(astronaut):
    _, a = astronaut
    head = load_head()
    rig = R.build_rig(a.points, head.neutral)
    zero = np.zeros((R.WORLD_POINTS, 2), np.float32)
    rest = R.frame_vertices(rig, zero, np.zeros(3))
    assert np.allclose(rest, rig.rest[:, :2], atol=1e-4)
    # world: the upper lids come down onto the lower lids (the neutral's eye opening) -> the photo's eyes shut
    blink = zero.copy()
    for up, lo in ((R._EYE_R_U, R._EYE_R_L), (R._EYE_L_U, R._EYE_L_L)):
        blink[up, 1] = head.neutral[lo, 1] - head.neutral[up, 1]
    v = R.frame_vertices(rig, blink, np.zeros(3))
    for up, lo in ((R.MESH_EYE_R_UPPER, R.MESH_EYE_R_LOWER), (R.MESH_EYE_L_UPPER, R.MESH_EYE_L_LOWER)):
        before = np.abs(rig.rest[list(up), 1] - rig.rest[list(lo), 1]).max()
        after = np.abs(v[list(up), 1] - v[list(lo), 1]).max()
        assert before > 3 and after < 0.25 * before
    # a jaw drop of 0.2 interocular units parts the photo's lips by about 0.2 * its interocular distance
    jaw = zero.copy()
    jaw[R._MI_L, 1] = 0.2
    v = R.frame_vertices(rig, jaw, np.zeros(3))
    gap = v[R.MESH_LIP_IN_LOWER[5], 1] - v[R.MESH_LIP_IN_UPPER[5], 1]
    gap0 = rig.rest[R.MESH_LIP_IN_LOWER[5], 1] - rig.rest[R.MESH_LIP_IN_UPPER[5], 1]
    assert gap - gap0 == pytest.approx(0.2 * R.MOUTH_GAIN * rig.scale, rel=0.1)
    # yaw turns the nose towards image right for + (the world's convention)
    v = R.frame_vertices(rig, zero, np.array([15.0, 0, 0]))
    assert v[1, 0] - rest[1, 0] > 0.1 * rig.scale


def test_errors_are_one_line_and_clear(astronaut):
    rgb, _ = astronaut
    with pytest.raises(PhotoError, match="no face found"):
        analyse(np.full((256, 256, 3), 128, np.uint8))
    with pytest.raises(PhotoError, match="px wide; photo mode needs at least 200 px"):
        analyse(rgb, min_face=200)
    if samples.available(("cameraman",)):
        with pytest.raises(PhotoError, match="turned .* degrees"):
            analyse(samples.load_sample("cameraman"))
    with pytest.raises(PhotoError, match="uint8"):
        load_photo(rgb.astype(np.float32))
    with pytest.raises(PhotoError, match="not found"):
        load_photo("/nonexistent/photo.png")


def test_several_faces_take_the_largest_and_say_so(astronaut):
    rgb, a = astronaut
    import cv2

    crop = rgb[30:250, 120:340]                                     # (220, 220) around her face
    small = cv2.resize(crop, (176, 176), interpolation=cv2.INTER_AREA)
    two = np.concatenate([np.pad(small, ((22, 22), (0, 0), (0, 0)), mode="edge"), crop], 1)   # (220, 396)
    b = analyse(two)
    assert b.faces_found == 2 and "2 faces found" in b.warnings[0]
    expect = np.array(a.box) + [176 - 120, -30, 176 - 120, -30]    # the larger face: the full-size one
    centre = lambda box: np.array([box[0] + box[2], box[1] + box[3]]) / 2      # noqa: E731
    assert np.abs(centre(b.box) - centre(expect)).max() < 0.1 * (expect[2] - expect[0])
