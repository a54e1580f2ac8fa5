"""Face renderer: shapes, determinism, and every control visibly moving its own region (on pixels)."""

from __future__ import annotations

import numpy as np
import pytest

from instructavatar.avatarworld.controls import INDEX, NUM_CONTROLS, neutral
from instructavatar.avatarworld.identity import identity
from instructavatar.avatarworld.render import (
    LANDMARK_REGIONS,
    NUM_LANDMARKS,
    REGION_COLOURS,
    FaceRenderer,
    landmark_image,
    region_mask,
)

IDS = list(range(12))  # covers several hair styles and accessories (hat, beard, glasses, ...)

# control (value) -> regions that must hold the change.
REGION_OF = {
    ("au01", 1.0): ["brows"], ("au02", 1.0): ["brows"], ("au04", 1.0): ["brows"],
    ("au05", 1.0): ["eyes"], ("au06", 1.0): ["cheeks", "eyes"], ("au07", 1.0): ["eyes"],
    ("au09", 1.0): ["nose", "cheeks"], ("au12", 1.0): ["mouth", "cheeks"], ("au15", 1.0): ["mouth"],
    ("au17", 1.0): ["mouth", "chin"], ("au20", 1.0): ["mouth"], ("au23", 1.0): ["mouth"],
    ("au25", 1.0): ["mouth"], ("au26", 1.0): ["mouth", "chin"], ("au43", 1.0): ["eyes"],
    ("au45", 1.0): ["eyes"], ("eye_close_l", 1.0): ["eye_l"], ("eye_close_r", 1.0): ["eye_r"],
    ("speech_jaw", 1.0): ["mouth", "chin"], ("speech_width", 1.0): ["mouth"],
    ("speech_width", -1.0): ["mouth"], ("speech_round", 1.0): ["mouth"],
    ("gaze_x", 1.0): ["eyes"], ("gaze_x", -1.0): ["eyes"],
    ("gaze_y", 1.0): ["eyes"], ("gaze_y", -1.0): ["eyes"],
}


def _with(name: str, value: float) -> np.ndarray:
    c = neutral()
    c[INDEX[name]] = value
    return c


@pytest.fixture(scope="module")
def r128() -> FaceRenderer:
    return FaceRenderer(128)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_shapes_and_dtypes(size):
    r = FaceRenderer(size)
    ident = identity(3)
    img, lm = r.render_with_landmarks(ident, neutral())
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert lm.shape == (NUM_LANDMARKS, 2) and lm.dtype == np.float32
    assert np.array_equal(lm, r.landmarks(ident, neutral()))
    assert np.array_equal(img, r.render(ident, neutral()))
    assert (lm >= 0).all() and (lm < size).all()           # a neutral face lies inside the frame
    clip = r.render_clip(ident, np.stack([neutral(), _with("au12", 1.0)]))
    assert clip.shape == (2, size, size, 3) and clip.dtype == np.uint8
    li = landmark_image(lm, size, 64)
    assert li.shape == (64, 64, 3) and li.dtype == np.uint8


def test_landmarks_scale_with_size():
    a = FaceRenderer(64).landmarks(identity(5), neutral())
    b = FaceRenderer(256).landmarks(identity(5), neutral())
    np.testing.assert_allclose(a * 4, b, atol=1e-3)


def test_regions_cover_all_landmarks():
    assert 100 <= NUM_LANDMARKS <= 200
    base = ["jaw", "head", "brow_r", "brow_l", "eye_r", "eye_l", "iris_r", "iris_l", "nose", "mouth_outer",
            "mouth_inner", "cheek_r", "cheek_l"]
    idx = np.sort(np.concatenate([LANDMARK_REGIONS[n] for n in base]))
    assert np.array_equal(idx, np.arange(NUM_LANDMARKS))
    for name in ("brows", "eyes", "iris", "nose", "mouth", "jaw", "cheeks", "chin"):
        assert len(LANDMARK_REGIONS[name]) > 0


def test_deterministic(r128):
    rng = np.random.default_rng(0)
    c = rng.uniform(0, 1, NUM_CONTROLS).astype(np.float32)
    a = r128.render(identity(7), c)
    b = FaceRenderer(128).render(identity(7), c.copy())
    assert np.array_equal(a, b)


def test_controls_are_clipped(r128):
    c = _with("au12", 5.0)
    assert np.array_equal(r128.render(identity(1), c), r128.render(identity(1), _with("au12", 1.0)))


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize(("control", "regions"), list(REGION_OF.items()), ids=lambda v: str(v))
def test_control_changes_its_region(size, control, regions):
    """Max of each control vs neutral: a large change inside the region's (dilated) landmark box, and
    nearly all of the image change inside it."""
    r = FaceRenderer(size)
    name, value = control
    ids = IDS if size == 128 else IDS[:4]
    for i in ids:
        ident = identity(i)
        a, la = r.render_with_landmarks(ident, neutral())
        b, lb = r.render_with_landmarks(ident, _with(name, value))
        diff = np.abs(a.astype(np.int16) - b).sum(-1)              # (size,size) 0..765
        mask = region_mask(la, regions, size) | region_mask(lb, regions, size)
        inside = diff[mask].mean()
        frac = diff[mask].sum() / max(1, diff.sum())
        assert inside > 2.5, f"{control} identity {i}: mean change {inside:.2f} in {regions} too small"
        assert frac > 0.85, f"{control} identity {i}: only {frac:.2f} of the change inside {regions}"


def _centre(lm: np.ndarray, region: str) -> np.ndarray:
    return lm[LANDMARK_REGIONS[region]].mean(0)


def test_pose_moves_landmarks_the_right_way(r128):
    ident = identity(2)
    lm0 = r128.landmarks(ident, neutral())
    nose0 = _centre(lm0, "nose")
    assert _centre(r128.landmarks(ident, _with("yaw", 30)), "nose")[0] > nose0[0] + 5     # to image right
    assert _centre(r128.landmarks(ident, _with("yaw", -30)), "nose")[0] < nose0[0] - 5
    assert _centre(r128.landmarks(ident, _with("pitch", 25)), "nose")[1] < nose0[1] - 3    # up
    assert _centre(r128.landmarks(ident, _with("pitch", -25)), "nose")[1] > nose0[1] + 3
    shift = r128.landmarks(ident, _with("tx", 0.1)) - lm0
    np.testing.assert_allclose(shift, np.broadcast_to([12.8, 0.0], shift.shape), atol=1e-3)
    shift = r128.landmarks(ident, _with("ty", 0.1)) - lm0
    np.testing.assert_allclose(shift, np.broadcast_to([0.0, 12.8], shift.shape), atol=1e-3)
    # +roll is clockwise in the image: the crown moves right, the image-right eye (subject's left) down.
    lr = r128.landmarks(ident, _with("roll", 25))
    top = LANDMARK_REGIONS["head"][7]
    assert lr[top, 0] > lm0[top, 0] + 5
    assert _centre(lr, "eye_l")[1] > _centre(lm0, "eye_l")[1] + 3
    assert _centre(lr, "eye_r")[1] < _centre(lm0, "eye_r")[1] - 3


@pytest.mark.parametrize("name", ["yaw", "pitch", "roll", "tx", "ty"])
def test_pose_moves_the_whole_face(r128, name):
    ident = identity(4)
    value = {"tx": 0.1, "ty": 0.1}.get(name, 25.0)
    a, la = r128.render_with_landmarks(ident, neutral())
    b, lb = r128.render_with_landmarks(ident, _with(name, value))
    diff = np.abs(a.astype(np.int16) - b).sum(-1) > 30
    for region in ("eyes", "nose", "mouth", "brows"):
        m = region_mask(la, region, 128, pad=0.0)
        assert diff[m].mean() > 0.15, f"{name}: {region} did not move"
    assert np.abs(lb - la).mean() > 3


def test_gaze_moves_irises(r128):
    ident = identity(6)
    i0 = _centre(r128.landmarks(ident, neutral()), "iris")
    assert _centre(r128.landmarks(ident, _with("gaze_x", 1)), "iris")[0] > i0[0] + 1.5
    assert _centre(r128.landmarks(ident, _with("gaze_x", -1)), "iris")[0] < i0[0] - 1.5
    assert _centre(r128.landmarks(ident, _with("gaze_y", 1)), "iris")[1] < i0[1] - 0.5


def test_eye_closure_closes_lids(r128):
    ident = identity(8)

    def opening(lm, side):
        e = lm[LANDMARK_REGIONS["eye_" + side]]        # upper lid 0..6 (corners 0, 6), lower lid 7..11
        return e[9, 1] - e[3, 1]                         # lower-mid y minus upper-mid y (pixels)

    lm0 = r128.landmarks(ident, neutral())
    wink = r128.landmarks(ident, _with("eye_close_l", 1))
    assert opening(lm0, "l") > 2 and abs(opening(wink, "l")) < 0.2
    assert abs(opening(wink, "r") - opening(lm0, "r")) < 1e-4
    closed = r128.landmarks(ident, _with("au43", 1))
    assert abs(opening(closed, "l")) < 0.2 and abs(opening(closed, "r")) < 0.2
    wide = r128.landmarks(ident, _with("au05", 1))
    assert opening(wide, "l") > opening(lm0, "l") + 0.5


def test_brow_and_mouth_landmarks_move_the_right_way(r128):
    ident = identity(9)
    lm0 = r128.landmarks(ident, neutral())
    assert _centre(r128.landmarks(ident, _with("au01", 1)), "brows")[1] < _centre(lm0, "brows")[1] - 1
    assert _centre(r128.landmarks(ident, _with("au04", 1)), "brows")[1] > _centre(lm0, "brows")[1] + 1
    corners = LANDMARK_REGIONS["mouth_outer"][[0, 8]]
    assert r128.landmarks(ident, _with("au12", 1))[corners, 1].mean() < lm0[corners, 1].mean() - 1
    assert r128.landmarks(ident, _with("au15", 1))[corners, 1].mean() > lm0[corners, 1].mean() + 1
    chin = LANDMARK_REGIONS["jaw"][8]
    assert r128.landmarks(ident, _with("au26", 1))[chin, 1] > lm0[chin, 1] + 3


def test_landmark_image_has_only_region_colours(r128):
    allowed = {(0, 0, 0)} | set(REGION_COLOURS.values())
    imgs = []
    for i in (0, 1, 2):
        lm = r128.landmarks(identity(i), _with("au12", 1.0))
        img = landmark_image(lm, 128, 128)
        colours = {tuple(int(v) for v in p) for p in img.reshape(-1, 3)}
        assert colours <= allowed
        assert len(colours) >= 6
        imgs.append(img)
    lm = r128.landmarks(identity(0), neutral())
    assert not np.array_equal(landmark_image(lm, 128, 128), imgs[0])   # expression shows in the dots


def test_landmark_image_ignores_appearance(r128):
    """Same geometry, different skin/hair colour -> the same landmark image."""
    import dataclasses

    a = identity(3)
    b = dataclasses.replace(a, skin=(90, 60, 40), hair_colour=(250, 250, 250), background_top=(0, 0, 255))
    la, lb = r128.landmarks(a, _with("au04", 1)), r128.landmarks(b, _with("au04", 1))
    assert np.array_equal(landmark_image(la, 128, 64), landmark_image(lb, 128, 64))
    assert not np.array_equal(r128.render(a, neutral()), r128.render(b, neutral()))


def test_soft_landmark_dots_keep_subpixel_motion(r128):
    lm = r128.landmarks(identity(0), neutral())
    hard, soft = landmark_image(lm, 128, 64), landmark_image(lm, 128, 64, soft=True)
    assert hard.shape == soft.shape == (64, 64, 3) and soft.dtype == np.uint8
    moved = lm + np.array([0.4, 0.0])                   # 0.2 px at 64: the hard dots mostly stay put
    assert np.abs(landmark_image(moved, 128, 64, soft=True).astype(int) - soft).sum() > \
        np.abs(landmark_image(moved, 128, 64).astype(int) - hard).sum()
    # a dot on a pixel centre is the hard dot; its weight spreads over 2x2 pixels halfway between centres
    one = np.array([[10.5, 20.5]]) * 2                  # src 128 -> dot image 64
    pts = np.repeat(one, len(lm), 0)
    img = landmark_image(pts, 128, 64, soft=True)
    assert img[20, 10].max() == 255 and img.reshape(-1, 3).max(1).astype(bool).sum() == 1
    img = landmark_image(pts + 1.0, 128, 64, soft=True)   # +0.5 px in x and y at 64
    assert (img[20:22, 10:12].max(-1) > 0).all() and img[20:22, 10:12].max() < 70
