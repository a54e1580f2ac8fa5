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
