"""Photo mode's pixel step on synthetic meshes: the identity warp is the photo exactly, a known displacement
moves a pixel where expected, and the runtime flow warp agrees with the exact piecewise-affine warp."""

import numpy as np
import pytest

pytest.importorskip("cv2")

from instructavatar.engine.photo.warp import FlowWarp, warp_frame  # noqa: E402


def grid_mesh(n=9, lo=40.0, hi=216.0):
    """A (n*n, 2) grid of vertices and its triangles (two per cell)."""
    xs = np.linspace(lo, hi, n)
    v = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2)
    tris = []
    for j in range(n - 1):
        for i in range(n - 1):
            a, b, c, d = j * n + i, j * n + i + 1, (j + 1) * n + i, (j + 1) * n + i + 1
            tris += [(a, b, d), (a, d, c)]
    return v, np.array(tris)


def ramp_photo(size=256):
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([x % 256, y % 256, (x + y) // 2 % 256], -1).astype(np.uint8)


def test_identity_warp_is_the_photo_exactly():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    v, tris = grid_mesh()
    mouth = np.zeros(len(tris), bool)
    assert np.array_equal(warp_frame(photo, v, v.copy(), tris, mouth), photo)
    fw = FlowWarp(photo, v, tris, ~mouth, (np.array([0]), np.array([1])), iod=50.0)
    assert np.array_equal(fw(v.copy()), photo)


@pytest.mark.parametrize("exact", [True, False])
def test_known_displacement_moves_the_pixel(exact):
    photo = ramp_photo()
    v, tris = grid_mesh()
    mouth = np.zeros(len(tris), bool)
    centre = 40                                             # the middle vertex of the 9x9 grid: (128, 128)
    d = np.array([5.0, -3.0])
    dst = v.copy()
    dst[centre] += d
    if exact:
        out = warp_frame(photo, v, dst, tris, mouth)
    else:
        out = FlowWarp(photo, v, tris, ~mouth, (np.array([0]), np.array([1])), iod=50.0, stride=2)(dst)
    p = v[centre].astype(int)
    q = (v[centre] + d).astype(int)
    tol = 0 if exact else 1
    assert np.abs(out[q[1], q[0]].astype(int) - photo[p[1], p[0]]).max() <= tol
    # far from the moved vertex (outside its triangles) nothing changes
    assert np.array_equal(out[:30], photo[:30])
    assert np.array_equal(out[60, 60], photo[60, 60])


def test_flow_warp_agrees_with_the_exact_warp():
    rng = np.random.default_rng(1)
    photo = ramp_photo()
    v, tris = grid_mesh()
    border = (v[:, 0] <= 40) | (v[:, 0] >= 216) | (v[:, 1] <= 40) | (v[:, 1] >= 216)
    dst = v + np.where(border[:, None], 0.0, rng.uniform(-4, 4, v.shape))
    mouth = np.zeros(len(tris), bool)
    exact = warp_frame(photo, v, dst, tris, mouth).astype(int)
    fast = FlowWarp(photo, v, tris, ~mouth, (np.array([0]), np.array([1])), iod=50.0)(dst).astype(int)
    err = np.abs(exact - fast)[50:206, 50:206, :2]          # the ramp channels: error = position error (px)
    assert np.median(err) <= 1 and np.percentile(err, 95) <= 3


# The mouth interior on a synthetic mouth: lips as two chains sharing their corners, 96 px wide.
SKIN = (180, 120, 100)


def lips(gap_mid: float, y: float = 100.0, n: int = 9) -> np.ndarray:
    """(2n, 2) vertices: the upper chain (ids 0..n-1) on y, the lower (n..2n-1) opening to `gap_mid` at the
    middle, both from corner (80, y) to corner (176, y)."""
    xs = np.linspace(80.0, 176.0, n)
    bulge = np.sin(np.linspace(0, np.pi, n))
    return np.concatenate([np.stack([xs, np.full(n, y)], 1), np.stack([xs, y + gap_mid * bulge], 1)])


CHAINS = (np.arange(9), np.arange(9, 18))


def paint_mouth(photo, rest, dst, light=200.0):
    import cv2

    from instructavatar.engine.photo.warp import mouth_interior

    up, lo = CHAINS
    poly = np.concatenate([dst[up], dst[lo][::-1][1:-1]])
    m = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mouth_interior(photo, photo.copy(), m > 0, dst, rest, CHAINS, 60.0, (0, 0), light), m > 0


def luma(a):
    return a.astype(float) @ np.array([0.299, 0.587, 0.114])


def test_the_photos_own_teeth_move_with_the_lips_unstretched():
    photo = np.full((256, 256, 3), SKIN, np.uint8)
    rest = lips(12.0)
    photo[100:106, 90:166] = 240                      # upper teeth showing between the lips at rest
    photo[106:112, 90:166] = 150                      # lower teeth
    out, _ = paint_mouth(photo, rest, rest.copy())
    assert np.array_equal(out, photo)                 # lips at rest: the photo
    dst = rest.copy()
    dst[9:, 1] = 100 + 32.0 * np.sin(np.linspace(0, np.pi, 9))   # the jaw drops: gap 12 -> 32 px at the middle
    out, mask = paint_mouth(photo, rest, dst)
    col = luma(out[:, 128])
    assert col[101:105].min() > 220                   # upper teeth stay under the upper lip, same height
    assert col[108:124].max() < 100                   # a dark cavity in the new gap
    assert 120 < col[127:130].mean() < 180            # lower teeth moved down with the lower lip (132 - 6 .. 132)


def test_drawn_teeth_stay_off_the_corners_and_follow_the_photos_light():
    photo = np.full((256, 256, 3), SKIN, np.uint8)
    rest = lips(0.0)                                  # closed lips: nothing of the photo's own to show
    dst = rest.copy()
    dst[9:, 1] = 100 + 24.0 * np.sin(np.linspace(0, np.pi, 9))
    out, mask = paint_mouth(photo, rest, dst, light=230.0)
    y = luma(out)
    centre = y[98:128, 118:138][mask[98:128, 118:138]]
    assert centre.max() > 150                          # teeth at the middle of the mouth
    corners = np.r_[np.arange(80, 92), np.arange(164, 177)]
    import cv2

    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0   # off the soft edge to the skin
    assert y[:, corners][inner[:, corners]].max() < 140   # the outer eighth of each side: no white ring (skin is 135)
    dim, _ = paint_mouth(photo, rest, dst, light=90.0)
    assert luma(dim)[98:128, 118:138][mask[98:128, 118:138]].max() < centre.max() - 30
