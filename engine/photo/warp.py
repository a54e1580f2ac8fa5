"""Photo mode's pixel step: a piecewise-affine backward warp of the photo over the rig's triangles, a mouth
interior where the lips part, numpy + OpenCV (torch-free).

For every output pixel inside a destination triangle, the triangle's affine map (destination -> rest position)
gives the photo pixel to sample (cv2.remap, bilinear); pixels outside the ring are the photo's own. The map is
continuous across shared edges, so the warp cannot tear. Where the lips part further than in the photo,
the mouth opening shows a mouth interior (`mouth_interior`): the photo's own teeth carried by the lips,
a cavity in the new gap, drawn teeth for photos whose lips are closed. With the rest vertices as destination
the warp returns the photo exactly (tested).
"""

from __future__ import annotations

import numpy as np

CAVITY = np.array([52.0, 22.0, 24.0])      # RGB of the mouth interior's deepest point
TEETH = np.array([226.0, 220.0, 206.0])
MIN_AREA = 0.5                             # px^2: thinner triangles are left to their neighbours (identity there)


def affine_maps(dst: np.ndarray, src: np.ndarray, tris: np.ndarray):
    """Per triangle: (F, 2, 3) affine dst -> src, (F,) whether the destination triangle is drawn (area above
    MIN_AREA), (F,) source and destination areas in px^2."""
    d = dst[tris]                                              # (F, 3, 2)
    s = src[tris]
    D = np.concatenate([d, np.ones((len(tris), 3, 1))], 2)     # (F, 3, 3) rows [x y 1]
    dst_area = np.abs(np.linalg.det(D)) / 2
    src_area = np.abs(np.linalg.det(np.concatenate([s, np.ones((len(tris), 3, 1))], 2))) / 2
    ok = dst_area > MIN_AREA
    Dinv = np.zeros_like(D)
    Dinv[ok] = np.linalg.inv(D[ok])
    A = np.einsum("fij,fjk->fki", Dinv, s)                     # A.T = D^-1 @ s -> A (F, 2, 3)
    return A.astype(np.float32), ok, src_area, dst_area


def triangle_ids(dst: np.ndarray, tris: np.ndarray, ok: np.ndarray, shape: tuple[int, int],
                 box: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w) int32 id of the destination triangle covering each pixel of `box` (x0, y0, x1, y1), -1 = none."""
    import cv2

    x0, y0, x1, y1 = box
    ids = np.full((y1 - y0, x1 - x0), -1, np.int32)
    shift = 4                                                  # sub-pixel vertex precision for fillConvexPoly
    pts = np.round((dst - [x0, y0]) * (1 << shift)).astype(np.int32)
    area = np.abs((dst[tris[:, 1]] - dst[tris[:, 0]])[:, 0] * (dst[tris[:, 2]] - dst[tris[:, 0]])[:, 1]
                  - (dst[tris[:, 1]] - dst[tris[:, 0]])[:, 1] * (dst[tris[:, 2]] - dst[tris[:, 0]])[:, 0])
    order = np.nonzero(ok)[0]
    for f in order[np.argsort(area[order])]:                   # thin first: larger neighbours own shared edges
        cv2.fillConvexPoly(ids, pts[tris[f]], int(f), lineType=cv2.LINE_8, shift=shift)
    return ids


def warp_frame(photo: np.ndarray, rest: np.ndarray, dst: np.ndarray, tris: np.ndarray, mouth: np.ndarray,
               mouth_chains: tuple[np.ndarray, np.ndarray] | None = None, iod: float = 1.0) -> np.ndarray:
    """photo (H, W, 3) uint8, rest/dst (V, 2) vertex positions (pixels), tris (F, 3), mouth (F,) bool
    -> the warped photo (H, W, 3) uint8. `mouth_chains` = (upper, lower) inner-lip vertex ids for the teeth."""
    import cv2

    H, W = photo.shape[:2]
    lo = np.floor(np.minimum(rest.min(0), dst.min(0))).astype(int) - 1
    hi = np.ceil(np.maximum(rest.max(0), dst.max(0))).astype(int) + 2
    x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    x1, y1 = min(int(hi[0]), W), min(int(hi[1]), H)
    out = photo.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    A, ok, src_area, dst_area = affine_maps(dst.astype(np.float64), rest.astype(np.float64), tris)
    ok &= mouth | (src_area > MIN_AREA)                        # a skin triangle needs a source to sample
    ids = triangle_ids(dst, tris, ok, (H, W), (x0, y0, x1, y1))
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    inside = ids >= 0
    # outside every triangle the map is the identity: a last row of A that is exactly that
    A = np.concatenate([A, np.array([[[1, 0, 0], [0, 1, 0]]], np.float32)])
    safe = np.where(inside, ids, len(A) - 1)
    a = A.reshape(len(A), 6)
    mx = a[:, 0][safe] * xs + a[:, 1][safe] * ys + a[:, 2][safe]
    my = a[:, 3][safe] * xs + a[:, 4][safe] * ys + a[:, 5][safe]
    region = cv2.remap(photo, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    if mouth.any() and mouth_chains is not None and dst_area[mouth].sum() > src_area[mouth].sum() + MIN_AREA:
        mouth_ids = np.r_[mouth, False]
        m = mouth_ids[safe]
        rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        if len(rows):                                           # paint within the opening's box only
            r0, r1 = max(rows[0] - 2, 0), rows[-1] + 3
            c0, c1 = max(cols[0] - 2, 0), cols[-1] + 3
            region[r0:r1, c0:c1] = mouth_interior(photo, region[r0:r1, c0:c1], m[r0:r1, c0:c1], dst, rest,
                                                  mouth_chains, iod, (x0 + c0, y0 + r0),
                                                  face_light(photo, rest, mouth_chains, iod))
    out[y0:y1, x0:x1] = region
    return out


def face_light(photo: np.ndarray, rest: np.ndarray, chains, iod: float) -> float:
    """The photo's lit skin level (0..255): the 90th percentile of luma over the upper lip, nose and inner cheeks
    (from the mouth corners' width, between 0.15 and 0.9 interocular distances above the mouth at rest). The
    drawn teeth are no brighter than the photo's own light allows."""
    if chains is None:
        return 200.0
    up = chains[0]
    x0, x1 = float(rest[up[0], 0]), float(rest[up[-1], 0])
    y = float(rest[up, 1].min())
    H, W = photo.shape[:2]
    c0, c1 = int(np.clip(np.floor(min(x0, x1)), 0, W)), int(np.clip(np.ceil(max(x0, x1)) + 1, 0, W))
    r0, r1 = int(np.clip(np.floor(y - 0.9 * iod), 0, H)), int(np.clip(np.ceil(y - 0.15 * iod) + 1, 0, H))
    patch = photo[r0:r1, c0:c1].reshape(-1, 3).astype(np.float32)
    if len(patch) < 4:
        return 200.0
    return float(np.percentile(patch @ np.array([0.299, 0.587, 0.114], np.float32), 90))


def _lip_line(chain: np.ndarray, pts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The y of a lip chain (vertex ids) at columns x, by linear interpolation along the chain's x order."""
    xy = pts[chain]
    order = np.argsort(xy[:, 0], kind="stable")
    return np.interp(x, xy[order, 0], xy[order, 1])


def mouth_interior(photo: np.ndarray, region: np.ndarray, mask: np.ndarray, dst: np.ndarray, rest: np.ndarray,
                   chains, iod: float, origin: tuple[int, int], light: float = 200.0) -> np.ndarray:
    """The mouth opening's pixels (`mask` over `region`, whose top-left pixel is `origin` in the output) for lips
    at `dst` whose rest position is `rest`.

    What the photo shows between its lips at rest (teeth, a dark gap, nothing for closed lips) is split at its
    middle: the upper half moves with the upper lip and the lower half with the lower lip, unstretched, so a
    smiling photo's own teeth stay teeth. The new gap between them is a cavity: the lips' colour darkened,
    darkest at its centre. Where the photo shows no teeth of its own, drawn teeth appear at the top of the
    cavity (and at its bottom once the mouth is well open): across the middle of the mouth only, tapering to
    nothing before the corners, lit at most as brightly as the photo's skin (`light`), darker towards the
    corners and under the lip's shadow, with anti-aliased edges. With the lips at rest the result is the photo.
    """
    import cv2

    up, lo = chains
    x0, y0 = origin
    h, w = region.shape[:2]
    cols = np.arange(w, dtype=np.float64) + x0
    left, right = float(dst[up[0], 0]), float(dst[up[-1], 0])
    u = np.clip((cols - left) / max(right - left, 1e-6), 0, 1)        # 0 .. 1 corner to corner
    xr = float(rest[up[0], 0]) + u * float(rest[up[-1], 0] - rest[up[0], 0])   # the same place on the rest lips
    upper_y, lower_y = _lip_line(up, dst, cols), _lip_line(lo, dst, cols)
    rest_upper = _lip_line(up, rest, xr)
    half0 = np.maximum(_lip_line(lo, rest, xr) - rest_upper, 0) / 2   # (w,) half the rest gap
    rows = np.arange(h, dtype=np.float64)[:, None] + y0
    d_up, d_lo = rows - upper_y, lower_y - rows                       # (h, w) px below the upper / above the lower
    from_up = d_up <= d_lo
    src_y = np.where(from_up, rest_upper + np.minimum(d_up, half0), rest_upper + 2 * half0 - np.minimum(d_lo, half0))
    src_x = np.broadcast_to(xr, (h, w))
    own = cv2.remap(photo, src_x.astype(np.float32), src_y.astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    # the new gap: rows farther than half the rest gap from both lips; a pixel's coverage by it (anti-aliased)
    beyond = np.minimum(d_up, d_lo) - half0
    cav = np.clip(np.minimum(rows + 0.5, lower_y - half0) - np.maximum(rows - 0.5, upper_y + half0), 0, 1) * mask
    lip = region[mask].astype(np.float32).mean(0) if mask.any() else CAVITY
    gap_new = np.maximum(lower_y - upper_y - 2 * half0, 0)            # (w,) px
    depth = np.clip(beyond / np.maximum(gap_new / 2, 1.0), 0, 1)[..., None]
    layer = np.broadcast_to((0.55 * CAVITY + 0.45 * 0.35 * lip), (h, w, 3)) * (1.0 - 0.45 * depth)
    drawn = float(np.clip(1 - 2 * half0.max() / (0.1 * iod), 0, 1))  # photo's own teeth shown -> none drawn
    if drawn > 0:
        taper = np.sqrt(np.clip(1 - ((2 * u - 1) / 0.78) ** 2, 0, 1))  # no teeth in the outer ~quarter
        t_up = np.minimum(0.09 * iod, 0.42 * gap_new) * taper          # upper teeth show most
        t_lo = np.clip(0.25 * (gap_new - 0.12 * iod), 0, 0.045 * iod) * taper
        b_up, b_lo = d_up - half0, d_lo - half0                       # px into the new gap from each side
        cover_up = np.clip(t_up - b_up + 0.5, 0, 1) * (b_up > -0.5)
        cover_lo = np.clip(t_lo - b_lo + 0.5, 0, 1) * (b_lo > -0.5)
        cover = np.maximum(cover_up, cover_lo) * drawn
        level = float(np.clip(0.3 + 0.75 * light / 255.0, 0.45, 1.0))
        upper = cover_up >= cover_lo
        t_rel = np.where(upper, np.clip(b_up / np.maximum(t_up, 1e-6), 0, 1),
                         np.clip(b_lo / np.maximum(t_lo, 1e-6), 0, 1))
        lit = (0.68 + 0.32 * np.sqrt(t_rel)) * (0.72 + 0.28 * taper) * np.where(upper, 1.0, 0.8)
        layer = layer * (1 - cover[..., None]) + (TEETH * level * lit[..., None]) * cover[..., None]
    inner = own * (1 - cav[..., None]) + layer * cav[..., None]
    sigma = max(0.8, 0.012 * iod)
    k = 2 * int(np.ceil(2 * sigma)) + 1
    alpha = (cv2.GaussianBlur(mask.astype(np.float32), (k, k), sigma) * mask)[..., None]
    return np.rint(region * (1 - alpha) + inner * alpha).clip(0, 255).astype(np.uint8)


class FlowWarp:
    """The runtime warp: the same piecewise-affine deformation as `warp_frame`, evaluated as a dense flow.

    Built once per portrait: every point of a coarse grid (every `stride` pixels) over the ring's box gets its
    rest triangle and barycentric weights. Per frame the vertex displacements F = dst - rest are interpolated
    onto the grid (a gather), the backward map p = q - F(p) is solved on the grid by fixed-point iterations
    (each a cv2.remap of the small flow field), upsampled to pixels (cv2.resize), and the photo sampled once
    (cv2.remap).
    No per-triangle work per frame. At rest F = 0 and the output is the photo exactly; elsewhere it agrees
    with the exact warp to a fraction of a pixel where the deformation is smooth (tested). The mouth opening
    (inner-lip polygon) is painted as in `warp_frame`.
    """

    def __init__(self, photo: np.ndarray, rest: np.ndarray, tris: np.ndarray, skin: np.ndarray,
                 mouth_chains: tuple[np.ndarray, np.ndarray], iod: float, stride: int = 4, iterations: int = 3):
        import cv2

        self.photo, self.rest = photo, rest.astype(np.float64)
        self.chains, self.iod, self.iterations = mouth_chains, float(iod), int(iterations)
        self.light = face_light(photo, self.rest, mouth_chains, self.iod)
        H, W = photo.shape[:2]
        lo = np.floor(self.rest.min(0)).astype(int) - stride
        hi = np.ceil(self.rest.max(0)).astype(int) + stride
        self.x0, self.y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
        self.x1, self.y1 = min(int(hi[0]), W), min(int(hi[1]), H)
        w, h = self.x1 - self.x0, self.y1 - self.y0
        nx, ny = w // stride + 2, h // stride + 2
        # the rest triangle of every grid point
        t = tris[skin]
        ids = np.full((ny, nx), -1, np.int32)
        shift = 4
        half = (stride - 1) / 2                                    # grid point (i, j) sits at pixel x0+stride*i+half
        pts = np.round((self.rest - [self.x0 + half, self.y0 + half]) / stride * (1 << shift)).astype(np.int32)
        d = self.rest[t]
        area = np.abs((d[:, 1, 0] - d[:, 0, 0]) * (d[:, 2, 1] - d[:, 0, 1])
                      - (d[:, 1, 1] - d[:, 0, 1]) * (d[:, 2, 0] - d[:, 0, 0])) / 2
        for f in np.argsort(area):
            if area[f] > MIN_AREA:
                cv2.fillConvexPoly(ids, pts[t[f]], int(f), lineType=cv2.LINE_8, shift=shift)
        gy, gx = np.mgrid[0:ny, 0:nx]
        q = np.stack([self.x0 + stride * gx + half, self.y0 + stride * gy + half], -1).reshape(-1, 2)
        fid = ids.reshape(-1)
        inside = fid >= 0
        tri = t[np.where(inside, fid, 0)]                          # (n, 3) vertex ids
        a, b, c = self.rest[tri[:, 0]], self.rest[tri[:, 1]], self.rest[tri[:, 2]]
        den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
        den = np.where(np.abs(den) < 1e-12, 1.0, den)
        w0 = ((b[:, 1] - c[:, 1]) * (q[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (q[:, 1] - c[:, 1])) / den
        w1 = ((c[:, 1] - a[:, 1]) * (q[:, 0] - c[:, 0]) + (a[:, 0] - c[:, 0]) * (q[:, 1] - c[:, 1])) / den
        wts = np.stack([w0, w1, 1 - w0 - w1], 1) * inside[:, None]
        self.stride, self.half, self.grid_shape = stride, half, (ny, nx)
        self.vid, self.wts = tri.astype(np.int64), wts.astype(np.float32)   # (n, 3) each
        self.gq = q.reshape(ny, nx, 2).astype(np.float32)          # grid points in pixels
        self.gu = np.stack([gx, gy], -1).astype(np.float32)        # and in grid units
        xs = np.arange(self.x0, self.x1, dtype=np.float32)
        ys = np.arange(self.y0, self.y1, dtype=np.float32)
        self.qx, self.qy = np.meshgrid(xs, ys)                      # (h, w) pixel coordinates

    def __call__(self, dst: np.ndarray) -> np.ndarray:
        """dst (V, 2) vertex positions -> the warped photo (H, W, 3) uint8."""
        import cv2

        F = (np.asarray(dst, np.float64) - self.rest).astype(np.float32)            # (V, 2)
        out = self.photo.copy()
        if not np.any(F):
            return out
        ny, nx = self.grid_shape
        flow = np.einsum("nk,nkc->nc", self.wts, F[self.vid]).reshape(ny, nx, 2)     # on rest positions
        # solve p + flow(p) = q for p at every grid point q (fixed point), in grid units
        disp = flow.copy()
        for _ in range(self.iterations - 1):
            pu = self.gu - disp / self.stride
            disp = cv2.remap(flow, pu[..., 0], pu[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        w, h = self.x1 - self.x0, self.y1 - self.y0
        full = cv2.resize(disp, (nx * self.stride, ny * self.stride), interpolation=cv2.INTER_LINEAR)[:h, :w]
        region = cv2.remap(self.photo, self.qx - full[..., 0], self.qy - full[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        region = self._mouth(region, np.asarray(dst, np.float64))
        out[self.y0:self.y1, self.x0:self.x1] = region
        return out

    def _mouth(self, region: np.ndarray, dst: np.ndarray) -> np.ndarray:
        import cv2

        up, lo = self.chains
        poly = np.concatenate([dst[up], dst[lo][::-1][1:-1]])
        rest_poly = np.concatenate([self.rest[up], self.rest[lo][::-1][1:-1]])
        a_dst = abs(cv2.contourArea(poly.astype(np.float32)))
        a_rest = abs(cv2.contourArea(rest_poly.astype(np.float32)))
        if a_dst <= a_rest + MIN_AREA:                             # not opened past rest: the warp's own pixels
            return region
        lo_xy = np.floor(poly.min(0)).astype(int) - 2 - [self.x0, self.y0]
        hi_xy = np.ceil(poly.max(0)).astype(int) + 3 - [self.x0, self.y0]
        c0, r0 = max(int(lo_xy[0]), 0), max(int(lo_xy[1]), 0)
        c1, r1 = min(int(hi_xy[0]), region.shape[1]), min(int(hi_xy[1]), region.shape[0])
        if c1 <= c0 or r1 <= r0:
            return region
        m = np.zeros((r1 - r0, c1 - c0), np.uint8)
        shift = 4
        cv2.fillPoly(m, [np.round((poly - [self.x0 + c0, self.y0 + r0]) * (1 << shift)).astype(np.int32)], 1,
                     lineType=cv2.LINE_8, shift=shift)
        if m.any():
            region = region.copy()
            region[r0:r1, c0:c1] = mouth_interior(self.photo, region[r0:r1, c0:c1], m > 0, dst, self.rest,
                                                  self.chains, self.iod, (self.x0 + c0, self.y0 + r0), self.light)
        return region
