"""The face renderer of the synthetic world: identity + control vector -> RGB frame and landmarks.

Geometry. Features live on a simple 3D head in *head units*: x to the image right, y up, z towards the
camera, origin at the head centre; the face is ~2 units wide. Points on the face surface get their depth
from an ellipsoid (``_Geometry.surface``) and are rotated by yaw, then pitch, then roll and projected with
weak perspective (orthographic + scale), then translated by tx/ty. The head outline, hair silhouette and jaw
are *silhouette* points: a rotating ellipsoid keeps its outline roughly in place, so they only shift by
their forward offset ``zf`` (the chin sticks out, the crown does not) and get slightly narrower (k < 1).

Drawing. PIL polygons and lines at 2x (``SS``) in a fixed back-to-front order (back hair, neck, ears,
face, cheeks, eyes, nose, mouth, front hair, brows, glasses), then ``Image.reduce(2)`` for anti-aliasing.
The landmarks (``NUM_LANDMARKS`` points, see ``LANDMARK_REGIONS``) are the very points the features are
drawn from, divided by ``SS``, so the landmark-dot image (``landmark_image``) encodes expression and pose
but never appearance.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .controls import INDEX, clip_controls, eye_closure, mouth_opening
from .identity import Identity

SS = 2            # supersampling factor (draw at SS x size, then reduce)
_SCALE = 0.25     # pixels per head unit / image size
_CY = 0.45        # head centre, fraction of the image height
_CHIN_ARC = 0.06 * np.array([0.3, 0.8, 1, 0.8, 0.3])   # AU17 chin-boss crease profile
_CHEEK_DZ = np.array([0.02, 0.02, 0.02, 0.03, 0.03, 0.03])
_K = 0.85         # silhouette depth/width ratio: how much the outline narrows when the head turns

# Landmark layout: (region, count) in order. "_l"/"_r" regions are the SUBJECT's left/right
# (subject's left = image right, like the controls' eye_close_l).
_LAYOUT: tuple[tuple[str, int], ...] = (
    ("jaw", 17), ("head", 15), ("brow_r", 5), ("brow_l", 5), ("eye_r", 12), ("eye_l", 12),
    ("iris_r", 5), ("iris_l", 5), ("nose", 9), ("mouth_outer", 16), ("mouth_inner", 16),
    ("cheek_r", 6), ("cheek_l", 6),
)
NUM_LANDMARKS: int = sum(n for _, n in _LAYOUT)


def _regions() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    start = 0
    for name, n in _LAYOUT:
        out[name] = np.arange(start, start + n)
        start += n
    for group, parts in (("brows", ("brow_r", "brow_l")), ("eyes", ("eye_r", "eye_l")),
                         ("iris", ("iris_r", "iris_l")), ("mouth", ("mouth_outer", "mouth_inner")),
                         ("cheeks", ("cheek_r", "cheek_l")), ("outline", ("jaw", "head"))):
        out[group] = np.concatenate([out[p] for p in parts])
    # The lower jaw: chin and the jaw line below the mouth (moves with AU17/AU26/speech_jaw).
    out["chin"] = out["jaw"][4:13]
    return out


LANDMARK_REGIONS: dict[str, np.ndarray] = _regions()

# Dot colour per region in landmark_image (drawn in this order).
REGION_COLOURS: dict[str, tuple[int, int, int]] = {
    "head": (128, 128, 128), "jaw": (255, 255, 255), "cheeks": (60, 90, 255), "nose": (255, 150, 0),
    "brows": (255, 255, 0), "eyes": (0, 255, 0), "iris": (0, 255, 255), "mouth_outer": (255, 0, 0),
    "mouth_inner": (255, 0, 255),
}


# Landmark indices in region drawing order and their dot colours, for landmark_image.
_DOT_ORDER = np.concatenate([LANDMARK_REGIONS[r] for r in REGION_COLOURS])
_DOT_COLOURS = np.array([REGION_COLOURS[r] for r in REGION_COLOURS for _ in LANDMARK_REGIONS[r]], np.uint8)


def _mix(a, b, t: float) -> tuple[int, int, int]:
    """Colour a*(1-t) + b*t as an int RGB tuple."""
    t = min(max(float(t), 0.0), 1.0)
    return tuple(int(round(a[i] * (1 - t) + b[i] * t)) for i in range(3))


def _scale(a, f: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(v * f)))) for v in a)


def _rot(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3,3) rotation R = Roll @ Pitch @ Yaw (angles in degrees); rotated = p @ R.T."""
    y, p, r = np.radians([yaw, pitch, roll])
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])    # +yaw: nose (z>0) to image right
    rp = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])    # +pitch: nose up
    rr = np.array([[cr, sr, 0], [-sr, cr, 0], [0, 0, 1]])    # +roll: clockwise in the image
    return rr @ rp @ ry


def _xy(x, y) -> np.ndarray:
    """(n,2) from two length-n arrays (a faster np.stack([x, y], 1))."""
    out = np.empty((len(x), 2))
    out[:, 0] = x
    out[:, 1] = y
    return out


@cache
def _lin(a: float, b: float, n: int) -> np.ndarray:
    """Cached np.linspace for the constant parameter grids (read-only)."""
    out = np.linspace(a, b, n)
    out.flags.writeable = False
    return out


@cache
def _circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.cos(a), np.sin(a)


def _bump(t: np.ndarray, p: float = 0.8) -> np.ndarray:
    """A lid/lip profile over t in [-1, 1]: 0 at the corners, 1 in the middle."""
    return np.maximum(1.0 - t * t, 0.0) ** p


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 16) -> np.ndarray:
    cos, sin = _circle(n)
    return _xy(cx + rx * cos, cy + ry * sin)


def _resample(keys: np.ndarray, n: int) -> np.ndarray:
    """n points evenly spaced by arc length along the polyline keys (m,2)."""
    d = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(keys, axis=0).T))])
    s = np.linspace(0, d[-1], n)
    return np.stack([np.interp(s, d, keys[:, 0]), np.interp(s, d, keys[:, 1])], 1)


def _clamp_to_lids(pts: np.ndarray, xs: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Clip points (n,2) of an iris/pupil circle to the eye opening between the lid curves (head units)."""
    x = np.minimum(np.maximum(pts[:, 0], xs[0]), xs[-1])
    return _xy(x, np.minimum(np.maximum(pts[:, 1], np.interp(x, xs, lower)), np.interp(x, xs, upper)))


class _Pending:
    """Handle for surface points queued by _Geometry.lazy (replaced by their projection in _resolve)."""

    __slots__ = ("slot",)

    def __init__(self, slot: int):
        self.slot = slot


class _Geometry:
    """All 2D feature points of one frame in draw space (SS x output pixels), built from head units."""

    def __init__(self, ident: Identity, c: np.ndarray, size: int):
        self.ident, self.c = ident, c
        g = lambda name: float(c[INDEX[name]])  # noqa: E731
        self.g = g
        self.fw = ident.face_width
        self.rot = _rot(g("yaw"), g("pitch"), g("roll"))
        self.yaw_r, self.pitch_r, self.roll_r = np.radians([g("yaw"), g("pitch"), g("roll")])
        ds = size * SS
        self.px = _SCALE * ds
        self.cx = 0.5 * ds + g("tx") * ds
        self.cy = _CY * ds + g("ty") * ds
        self.proj = (self.px * self.rot[:2]).tolist()     # the two image rows of the rotation, scaled
        self.ax = 1.0 / (1.1 * self.fw) ** 2
        self.pts: dict[str, np.ndarray] = {}
        self._queue: list[tuple[np.ndarray, np.ndarray]] = []

    # -- projection -------------------------------------------------------------------------------
    def surface(self, xy: np.ndarray, dz: float | np.ndarray = 0.0) -> np.ndarray:
        """Project surface points xy (n,2) lifted by dz towards the camera -> (n,2) draw coords.

        The depth comes from an ellipsoid: z = sqrt(1 - (x / 1.1 fw)^2 - (y / 1.55)^2) (floored)."""
        x, y = xy[:, 0], xy[:, 1]
        z = np.sqrt(np.maximum(1.0 - self.ax * (x * x) - (y * y) * (1 / 1.55 ** 2), 0.04)) + dz
        (a, b, c), (d, e, f) = self.proj
        return _xy(self.cx + a * x + b * y + c * z, self.cy - d * x - e * y - f * z)

    def lazy(self, xy: np.ndarray, dz: float | np.ndarray = 0.0) -> _Pending:
        """Queue surface points for one batched projection at the end of build() (see _resolve)."""
        xy = np.asarray(xy, np.float64)
        self._queue.append((xy, np.broadcast_to(np.asarray(dz, np.float64), (len(xy),))))
        return _Pending(len(self._queue) - 1)

    def _resolve(self) -> None:
        """Project every queued point set in one call and replace the _Pending handles by (n,2) arrays."""
        xy = np.concatenate([q[0] for q in self._queue], 0)
        dz = np.concatenate([q[1] for q in self._queue])
        out = self.surface(xy, dz)
        ends = np.cumsum([len(q[0]) for q in self._queue])
        parts = np.split(out, ends[:-1])

        def fix(v):
            if isinstance(v, _Pending):
                return parts[v.slot]
            if isinstance(v, dict):
                return {k: fix(x) for k, x in v.items()}
            if isinstance(v, list):
                return [fix(x) for x in v]
            return v

        self.pts = fix(self.pts)
        self.eye_draw = fix(self.eye_draw)
        self.nose_draw = fix(self.nose_draw)
        self.mouth_draw = fix(self.mouth_draw)
        self._queue = []

    def silhouette(self, xy: np.ndarray, zf: float | np.ndarray = 0.0) -> np.ndarray:
        """Project outline points xy (n,2) with forward offset zf: narrow by k, shift by zf*sin(angle)."""
        ya, pa, ra = self.yaw_r, self.pitch_r, self.roll_r
        x = xy[:, 0] * np.sqrt(np.cos(ya) ** 2 + (_K * np.sin(ya)) ** 2) + zf * np.sin(ya)
        y = xy[:, 1] * np.sqrt(np.cos(pa) ** 2 + (_K * np.sin(pa)) ** 2) + zf * np.cos(ya) * np.sin(pa)
        xr, yr = x * np.cos(ra) + y * np.sin(ra), -x * np.sin(ra) + y * np.cos(ra)
        return _xy(self.cx + self.px * xr, self.cy - self.px * yr)

    def flat(self, xy: np.ndarray) -> np.ndarray:
        """Body points (neck, shoulders): translate only."""
        return _xy(self.cx + self.px * xy[:, 0], self.cy - self.px * xy[:, 1])

    # -- features ---------------------------------------------------------------------------------
    def build(self) -> _Geometry:
        idt, g = self.ident, self.g
        fw, fh = self.fw, idt.face_height
        P = self.pts
        # Vertical layout (head units).
        ey = idt.eye_height
        tip_y = ey - idt.nose_length
        my = tip_y - 0.24
        self.ey, self.tip_y, self.my = ey, tip_y, my
        open_ = float(mouth_opening(self.c))
        au = {a: g(a) for a in ("au01", "au02", "au04", "au05", "au06", "au07", "au09", "au12", "au15",
                                "au17", "au20", "au23")}
        self.au = au
        sw, sr = g("speech_width"), g("speech_round")
        gap = 0.34 * open_ * (1.0 + 0.25 * sr)          # lip opening (speech, AU25, AU26)
        # The chin follows the jaw part of the opening only (AU25 parts the lips without the jaw).
        jaw_open = min(1.0, max(0.0, g("speech_jaw")) + 0.75 * g("au26"))
        jaw_drop = 0.8 * 0.34 * jaw_open - 0.06 * au["au17"]   # AU17 pushes the chin up

        # Face outline: jaw (17, subject's right -> chin -> left) and head top (15, right -> left).
        chin_y = (my - idt.chin_drop) * fh
        jw = idt.jaw_width * fw
        keys = np.array([[fw, 0.0], [fw * 0.985, -0.3], [jw + 0.06, -0.78 * fh], [idt.chin_width + 0.1,
                        chin_y + 0.16], [idt.chin_width * 0.55, chin_y + 0.015], [0.0, chin_y]])
        half = _resample(keys, 9)                                  # (9,2) right side, top -> chin
        jaw = np.concatenate([half * [-1, 1], half[::-1][1:]], 0)   # (17,2) image-left -> right
        # Weight of the jaw motion: 1 at the chin, 0 at cheek level.
        w = np.minimum(np.maximum((-0.25 - jaw[:, 1]) / (-0.25 - chin_y), 0), 1) ** 1.2
        jaw[:, 1] -= jaw_drop * w
        jaw_zf = 0.55 * np.maximum(1 - np.abs(jaw[:, 0]) / fw, 0) ** 1.5 * w
        P["jaw"] = self.silhouette(jaw, jaw_zf)
        a = _lin(0, np.pi, 17)[1:-1]
        top = _xy(fw * np.cos(a), 1.3 * fh * np.sin(a))  # (15,2) right -> left over the crown
        P["head"] = self.silhouette(top, 0.0)
        self.top_xy, self.fh = top, fh

        # Brows: 5 centre points each, inner -> outer.
        t = _lin(0, 1, 5)
        for side, name in ((-1, "brow_r"), (1, "brow_l")):
            es = idt.eye_spacing
            x = side * (es - 0.2 + 0.45 * t + 0.06 * au["au04"] * -(1 - t))
            base = ey + 0.165 * idt.eye_size * idt.eye_roundness + 0.17
            y = (base + idt.brow_arch * 0.05 * np.sin(np.pi * t * 0.85) + 0.02 * t
                 + 0.14 * au["au01"] * (1 - t) ** 1.3 + 0.14 * au["au02"] * t ** 1.2
                 - 0.07 * au["au04"] - 0.05 * au["au04"] * (1 - t))
            P[name] = self.lazy(_xy(x, y), 0.04)

        # Eyes: 12-point contour (upper lid 7 incl. corners, lower lid 5) + clipped iris/pupil.
        close = eye_closure(self.c)
        ew = 0.17 * idt.eye_size
        self.eye_draw = {}
        for side, name, cl in ((-1, "r", float(close[1])), (1, "l", float(close[0]))):
            cx = side * idt.eye_spacing
            tt = _lin(-1, 1, 7)
            xs = cx + ew * tt
            tilt = idt.eye_tilt * (side * tt)           # outer corner (side*t = 1) up by eye_tilt
            hu = ew * idt.eye_roundness * (1 + 0.55 * au["au05"]) * (1 - 0.35 * au["au07"])
            hl = ew * 0.45 * max(0.12, 1 - 0.55 * au["au07"] - 0.45 * au["au06"])
            lower = ey + tilt - hl * _bump(tt, 0.9)
            upper = ey + tilt + _bump(tt) * (hu * (1 - cl) - hl * cl)   # closes onto the lower lid
            P["eye_" + name] = self.lazy(np.concatenate(
                [_xy(xs, upper), _xy(xs[1:-1], lower[1:-1])[::-1]], 0), 0.02)
            # Iris and pupil: circles moved by gaze, clamped between the lids (in head units).
            r = 0.085 * idt.eye_size
            icx = cx + g("gaze_x") * (ew - r) * 0.85
            icy = ey + 0.2 * hu + g("gaze_y") * r * 0.55
            lids = (xs, lower, np.maximum(upper, lower))
            iris = _clamp_to_lids(_ellipse(icx, icy, r, r, 20), *lids)
            pupil = _clamp_to_lids(_ellipse(icx, icy, 0.45 * r, 0.45 * r, 12), *lids)
            marks = _clamp_to_lids(np.array([[icx, icy], [icx + r, icy], [icx, icy + r], [icx - r, icy],
                                             [icx, icy - r]]), *lids)
            P["iris_" + name] = self.lazy(marks, 0.03)
            crease = ey + tilt + _bump(tt) * (hu * (1 - 0.5 * cl) + 0.045 * (1 - 0.4 * au["au05"]))
            corner = np.array([[cx + side * ew * 1.05, ey + idt.eye_tilt]])
            feet = self.lazy(np.concatenate([corner, corner + np.array(
                [[side * 0.1, 0.05], [side * 0.12, -0.01], [side * 0.1, -0.07]])], 0), 0.0)   # (4,2)
            self.eye_draw[name] = dict(
                iris=self.lazy(iris, 0.03), pupil=self.lazy(pupil, 0.03),
                crease=self.lazy(_xy(xs[1:-1], crease[1:-1]), 0.02),
                feet=feet,
                open=float(np.max(upper - lower)))

        # Nose: bridge 4 (top -> tip) + base 5 (wing, nostril, tip, nostril, wing).
        nw = idt.nose_width * (1 + 0.15 * au["au09"])
        bridge = _xy(np.zeros(4), np.linspace(ey + 0.02, tip_y + 0.08, 4))
        base = np.array([[-nw, tip_y + 0.03], [-nw * 0.45, tip_y - 0.035], [0, tip_y - 0.04],
                         [nw * 0.45, tip_y - 0.035], [nw, tip_y + 0.03]])
        base[[0, 4], 1] += 0.06 * au["au09"]
        base[[1, 3], 1] += 0.04 * au["au09"]
        base_dz = np.array([0.1, 0.14, 0.3 + 0.05 * idt.nose_bulb, 0.14, 0.1])
        P["nose"] = self.lazy(np.concatenate([bridge, base], 0), np.concatenate([_lin(0.04, 0.26, 4), base_dz]))
        self.nose_draw = dict(
            wrinkles=[self.lazy(np.array([[-0.09, y], [0, y + 0.02], [0.09, y]]), 0.12)
                      for y in (ey - 0.06, ey - 0.12, ey - 0.18)],
            side=self.lazy(np.array([[-0.07 * np.sign(self.yaw_r or 1), ey - 0.02],
                                        [-0.09 * np.sign(self.yaw_r or 1), tip_y + 0.05]]), 0.15),
            nostrils=[self.lazy(_ellipse(s * nw * 0.5, tip_y - 0.01 + 0.04 * au["au09"],
                                            0.045 * (1 + 0.2 * au["au09"]), 0.022, 10), 0.12)
                      for s in (-1, 1)],
            tip=self.lazy(_ellipse(0, tip_y + 0.02, 0.07 + 0.04 * idt.nose_bulb, 0.055, 12), 0.27))

        # Mouth: outer 16 (upper 9 incl. corners, lower 7) and inner 16 (same layout).
        mw = idt.mouth_width * (1 + 0.22 * au["au12"] + 0.4 * au["au20"] - 0.2 * au["au23"]
                                + 0.25 * sw - 0.3 * sr - 0.05 * au["au15"])
        corner_dy = 0.11 * au["au12"] - 0.1 * au["au15"] + 0.03 * au["au09"] - 0.02 * au["au20"]
        lt = (idt.lip_thickness * (1 - 0.7 * au["au23"]) * (1 - 0.35 * au["au20"]) * (1 + 0.45 * sr)
              * (1 - 0.25 * max(sw, 0.0)))
        tt = _lin(-1, 1, 9)
        xs = mw * tt * (1 - 0.05 * sr * _bump(tt))
        line = my + corner_dy * tt ** 2 + 0.025 * au["au09"] + 0.04 * au["au17"] * _bump(tt)
        pw = 0.8 - 0.5 * sr                              # rounder opening for rounded lips
        up_in = line + 0.12 * gap * _bump(tt, pw)
        lo_in = line - gap * _bump(tt, pw)
        bow = 1 - 0.25 * np.exp(-(tt / 0.2) ** 2)        # cupid's bow dip
        up_out = up_in + 0.85 * lt * _bump(tt, 0.45) * bow
        lo_out = lo_in - lt * (1 + 0.4 * au["au17"]) * _bump(tt, 0.55)
        lift = 0.09 + 0.04 * _bump(tt)                   # lips stand out of the surface
        P["mouth_outer"] = self.lazy(np.concatenate(
            [_xy(xs, up_out), _xy(xs[1:-1], lo_out[1:-1])[::-1]], 0),
            np.concatenate([lift, lift[1:-1][::-1]]))
        xi = xs * 0.96
        P["mouth_inner"] = self.lazy(np.concatenate(
            [_xy(xi, up_in), _xy(xi[1:-1], lo_in[1:-1])[::-1]], 0),
            np.concatenate([lift, lift[1:-1][::-1]]) - 0.01)
        m = np.abs(tt) < 0.8
        teeth_h = np.minimum(0.06, 0.45 * gap * _bump(tt, pw))
        self.mouth_draw = dict(
            gap=gap,
            teeth=self.lazy(np.concatenate([_xy(xi[m], up_in[m]),
                                               _xy(xi[m], (up_in - teeth_h)[m])[::-1]], 0), 0.1),
            chin=self.lazy(_xy(_lin(-0.12, 0.12, 5), lo_out.min() - 0.1 + 0.04 * au["au17"] - _CHIN_ARC),
                              0.05))

        # Cheeks: apple arc 3 + nasolabial fold 3, per side.
        for side, name in ((-1, "cheek_r"), (1, "cheek_l")):
            ccx = side * (idt.eye_spacing + 0.05)
            ccy = ey - 0.3 + 0.07 * au["au06"] + 0.03 * au["au12"]
            apple = np.array([[ccx - side * 0.13, ccy - 0.05], [ccx, ccy + 0.06],
                              [ccx + side * 0.13, ccy - 0.05]])
            fold = np.array([[side * (nw + 0.05), tip_y + 0.02 + 0.03 * au["au09"]],
                             [side * (nw + 0.1 + 0.04 * au["au12"]), tip_y - 0.12],
                             [side * (mw + 0.06), line[0] - 0.06 + 0.03 * au["au12"]]])
            P[name] = self.lazy(np.concatenate([apple, fold], 0), _CHEEK_DZ)
            self.pts[name + "_blush"] = self.lazy(_ellipse(ccx, ccy - 0.02, 0.16, 0.1, 14), 0.02)
        self._resolve()
        return self

    def landmarks(self) -> np.ndarray:
        """(NUM_LANDMARKS, 2) float32 landmarks in output pixels."""
        return (np.concatenate([self.pts[name] for name, _ in _LAYOUT], 0) / SS).astype(np.float32)


@lru_cache(maxsize=256)
def _background(top: tuple, bottom: tuple, n: int) -> Image.Image:
    """Vertical gradient background image (n x n)."""
    t = np.linspace(0, 1, n)[:, None]
    col = np.array(top, np.float64) * (1 - t) + np.array(bottom, np.float64) * t   # (n,3)
    arr = np.broadcast_to(np.round(col)[:, None, :], (n, n, 3)).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def _flat(pts: np.ndarray) -> list[float]:
    return pts.ravel().tolist()


class FaceRenderer:
    """Draws identities under control vectors at ``size`` x ``size`` (64..256)."""

    def __init__(self, size: int = 128):
        if not 32 <= size <= 512:
            raise ValueError(f"size {size} out of range")
        self.size = int(size)

    # -- public API -------------------------------------------------------------------------------
    def landmarks(self, ident: Identity, controls: np.ndarray) -> np.ndarray:
        """(NUM_LANDMARKS, 2) float32 (x, y) pixel coordinates in this renderer's image."""
        return self._geometry(ident, controls).landmarks()

    def render(self, ident: Identity, controls: np.ndarray) -> np.ndarray:
        """(size, size, 3) uint8 RGB frame."""
        return self._draw(self._geometry(ident, controls))

    def render_with_landmarks(self, ident: Identity, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        geo = self._geometry(ident, controls)
        return self._draw(geo), geo.landmarks()

    def render_clip(self, ident: Identity, controls_seq: np.ndarray) -> np.ndarray:
        """(T, size, size, 3) uint8 frames for a (T, NUM_CONTROLS) control sequence."""
        out = np.empty((len(controls_seq), self.size, self.size, 3), np.uint8)
        for i, c in enumerate(controls_seq):
            out[i] = self.render(ident, c)
        return out

    # -- internals --------------------------------------------------------------------------------
    def _geometry(self, ident: Identity, controls: np.ndarray) -> _Geometry:
        c = clip_controls(np.asarray(controls, np.float32))
        return _Geometry(ident, c, self.size).build()

    def _draw(self, geo: _Geometry) -> np.ndarray:
        idt, P, au = geo.ident, geo.pts, geo.au
        ds = self.size * SS
        lw = max(1, round(ds / 128))                       # base line width in draw pixels
        img = _background(idt.background_top, idt.background_bottom, ds).copy()
        d = ImageDraw.Draw(img)
        poly = lambda pts, fill: d.polygon(_flat(pts), fill=fill)  # noqa: E731
        skin, hair = idt.skin, idt.hair_colour
        shade, dark = _scale(skin, 0.8), _scale(skin, 0.55)
        style, fw, fh = idt.hair_style, geo.fw, geo.fh

        # Back hair (behind the head: moves opposite to the face when turning, zf < 0).
        if style in ("bob", "long"):
            bottom = -0.75 if style == "bob" else -2.0
            a = _lin(-0.15 * np.pi, 1.15 * np.pi, 15)
            ring = np.stack([1.14 * fw * np.cos(a), 1.3 * fh * 1.08 * np.sin(a) + 0.02], 1)
            ring = np.concatenate([[[1.18 * fw, bottom]], ring, [[-1.18 * fw, bottom]]], 0)
            poly(geo.silhouette(ring, -0.3), hair)
        elif style == "afro":
            poly(geo.silhouette(_ellipse(0, 0.45, 1.5 * fw, 1.3, 24), -0.2), hair)
        elif style == "bun":
            poly(geo.silhouette(_ellipse(0, 1.3 * fh + 0.2, 0.36, 0.3, 16), -0.3), hair)

        # Neck and shoulders (translate only).
        poly(geo.flat(np.array([[-0.42, -0.3], [0.42, -0.3], [0.46, -1.75], [-0.46, -1.75]])), shade)
        poly(geo.flat(np.array([[-0.46, -1.55], [0.46, -1.55], [1.7, -1.85], [2.0, -3.0], [-2.0, -3.0],
                                [-1.7, -1.85]])), idt.shirt_colour)

        # Ears (+ earrings), then the face.
        for s in (-1, 1):
            ear = _ellipse(s * fw * 0.97, geo.ey - 0.1, 0.11, 0.24, 12)
            ep = geo.surface(ear, -0.12)
            poly(ep, _scale(skin, 0.9))
            if idt.accessory == "earrings":
                low = ep[np.argmax(ep[:, 1])]
                r = 0.05 * geo.px
                d.ellipse([low[0] - r, low[1], low[0] + r, low[1] + 2 * r], fill=idt.accessory_colour)
        poly(np.concatenate([P["jaw"], P["head"]], 0), skin)

        # Cheeks (AU6 blush) and nasolabial folds (AU12).
        blush = _mix(skin, (skin[0], skin[1] * 0.7, skin[2] * 0.7), 0.15 + 0.6 * au["au06"])
        fold_t = 0.15 + 0.7 * max(au["au12"], 0.6 * au["au09"], 0.4 * au["au06"])
        for name in ("cheek_r", "cheek_l"):
            poly(P[name + "_blush"], blush)
            d.line(_flat(P[name][3:]), fill=_mix(skin, dark, fold_t), width=lw)

        # Beard / moustache (under the lips).
        if idt.accessory == "beard":
            jaw = P["jaw"][2:15]
            inner = geo.surface(np.array([[0.75 * fw, geo.my + 0.02], [0.35, geo.my + 0.12],
                                          [0, geo.my + 0.14], [-0.35, geo.my + 0.12],
                                          [-0.75 * fw, geo.my + 0.02]]), 0.08)
            poly(np.concatenate([jaw, inner], 0), hair)
            # Shaved patch around the lips so the mouth keeps its contrast.
            patch = _ellipse(0, geo.my - 0.03, idt.mouth_width * 1.5 + 0.06, 0.15, 16)
            poly(geo.surface(patch, 0.08), skin)
        elif idt.accessory == "moustache":
            poly(geo.surface(np.array([[-0.3, geo.my + 0.02], [0, geo.my + 0.1], [0.3, geo.my + 0.02],
                                       [0.2, geo.my + 0.13], [0, geo.my + 0.17], [-0.2, geo.my + 0.13]]),
                             0.1), hair)

        # Eyes: white, iris, pupil, lash line, lower lid, crease, crow's feet (AU6).
        lash = _scale(hair, 0.5) if sum(hair) < 300 else (40, 30, 30)
        for name in ("r", "l"):
            e, ed = P["eye_" + name], geo.eye_draw[name]
            if ed["open"] > 0.004:
                poly(e, (245, 245, 240))
                poly(ed["iris"], idt.iris_colour)
                poly(ed["pupil"], (15, 10, 10))
            d.line(_flat(e[:7]), fill=lash, width=2 * lw)
            d.line(_flat(np.concatenate([e[6:], e[:1]], 0)), fill=shade, width=lw)
            d.line(_flat(ed["crease"]), fill=shade, width=lw)
            if au["au06"] > 0.02:
                for k in (1, 2, 3):
                    f = ed["feet"][[0, k]]
                    d.line(_flat(f), fill=_mix(skin, dark, au["au06"]), width=lw)

        # Nose: side line, tip, nostrils, AU9 wrinkles.
        nd = geo.nose_draw
        d.line(_flat(nd["side"]), fill=shade, width=lw)
        poly(nd["tip"], _scale(skin, 0.93))
        for n in nd["nostrils"]:
            poly(n, dark)
        d.line(_flat(P["nose"][4:]), fill=_scale(skin, 0.7), width=lw)
        if au["au09"] > 0.02:
            for wr in nd["wrinkles"]:
                d.line(_flat(wr), fill=_mix(skin, dark, au["au09"]), width=lw)

        # Mouth: lips, cavity, teeth, lip line; AU17 chin boss.
        md = geo.mouth_draw
        poly(P["mouth_outer"], idt.lip_colour)
        if md["gap"] > 0.01:
            poly(P["mouth_inner"], (60, 20, 25))
            poly(md["teeth"], (240, 238, 228))
        d.line(_flat(P["mouth_inner"][:9]), fill=_scale(idt.lip_colour, 0.55), width=lw)
        if au["au17"] > 0.02:
            d.line(_flat(md["chin"]), fill=_mix(skin, dark, au["au17"]), width=2 * lw)

        # Front hair / hat (between the crown silhouette and a hairline on the forehead).
        if style != "bald" and idt.accessory != "hat":
            self._front_hair(geo, poly, style, hair)
        if idt.accessory == "hat":
            a = _lin(0, np.pi, 13)
            dome = np.stack([1.08 * fw * np.cos(a), 0.66 + (1.3 * fh + 0.12 - 0.66) * np.sin(a)], 1)
            poly(geo.silhouette(dome, 0.0), idt.accessory_colour)
            brim = geo.surface(_ellipse(0, 0.68, 1.2 * fw, 0.08, 16), 0.0)
            poly(brim, _scale(idt.accessory_colour, 0.75))

        # Brows last among the face features so hair never hides them; AU4 glabella lines.
        for name in ("brow_r", "brow_l"):
            c = P[name]                                   # (5,2) inner -> outer, draw coords
            dirn = np.gradient(c, axis=0)
            nrm = np.stack([dirn[:, 1], -dirn[:, 0]], 1)
            nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-9
            nrm *= np.sign(-nrm[:, 1:2].mean() or 1)      # point up in the image
            half = 0.5 * idt.brow_thickness * geo.px * np.array([1.0, 1.0, 0.9, 0.75, 0.5])[:, None]
            poly(np.concatenate([c + nrm * half, (c - nrm * half)[::-1]], 0), idt.brow_colour)
        if au["au04"] > 0.02:
            col = _mix(skin, dark, au["au04"])
            for s in (-1, 1):
                x = s * 0.05
                y = geo.ey + 0.17 + 0.165 * idt.eye_size * idt.eye_roundness
                d.line(_flat(geo.surface(np.array([[x, y + 0.06], [x * 0.8, y - 0.08]]), 0.05)),
                       fill=col, width=lw)

        if idt.accessory == "glasses":
            col = idt.accessory_colour
            rims = []
            for s in (-1, 1):
                rim = geo.surface(_ellipse(s * idt.eye_spacing, geo.ey, 0.24, 0.16, 18), 0.12)
                rims.append(rim)
                d.line(_flat(np.concatenate([rim, rim[:1]], 0)), fill=col, width=2 * lw)
            d.line(_flat(np.stack([rims[0][0], rims[1][9]])), fill=col, width=2 * lw)

        return np.asarray(img.reduce(SS))

    @staticmethod
    def _front_hair(geo: _Geometry, poly, style: str, hair) -> None:
        fw, fh = geo.fw, geo.fh
        a = _lin(-0.06 * np.pi, 1.06 * np.pi, 19)
        lift = {"short": 1.06, "bob": 1.09, "long": 1.08, "fringe": 1.08, "bun": 1.05, "afro": 1.1,
                "spiky": 1.1}[style]
        outer = np.stack([lift * fw * np.cos(a), lift * 1.3 * fh * np.sin(a)], 1)
        if style == "spiky":
            outer[1::2] *= 1.12
        # Hairline (surface points), subject's left temple -> centre -> right temple.
        line_y = {"fringe": 0.66, "short": 0.9, "spiky": 0.88}.get(style, 0.82)
        xs = np.linspace(fw * 0.97, -fw * 0.97, 11)
        ys = 0.5 + (line_y - 0.5) * np.clip(1 - (xs / fw) ** 6, 0, 1) ** 0.3
        if style == "fringe":
            ys[2:-2] = line_y
        hairline = geo.surface(np.stack([xs, ys], 1), 0.03)
        poly(np.concatenate([geo.silhouette(outer[::-1], 0.0), hairline], 0), hair)


def landmark_image(landmarks: np.ndarray, src_size: int, size: int, soft: bool = False) -> np.ndarray:
    """(size, size, 3) uint8: landmarks (from an src_size image) as dots coloured by facial region.

    Black background; dots are max(1, size // 64) pixels square. Only REGION_COLOURS appear, so the image
    carries geometry (expression, pose, face shape) and nothing of skin, hair or background colour.
    ``soft``: each dot is splatted bilinearly over the pixels it overlaps (its colour scaled by the overlap,
    the brighter value kept where dots meet), so movements below a pixel still change the image; the hard
    dots snap to the pixel grid and lose them.
    """
    dot = max(1, size // 64)
    pts = np.asarray(landmarks, np.float64)[_DOT_ORDER] * (size / src_size) - (dot - 1) / 2.0
    if soft:
        return _soft_dots(pts - 0.5, dot, size)
    img = np.zeros((size, size, 3), np.uint8)
    x, y = _square_pixels(np.floor(pts).astype(np.int64), dot)   # each dot's top-left pixel -> its dot x dot pixels
    col = np.repeat(_DOT_COLOURS, dot * dot, 0)
    ok = (x >= 0) & (x < size) & (y >= 0) & (y < size)
    img[y[ok], x[ok]] = col[ok]          # later regions (REGION_COLOURS order) overwrite earlier ones
    return img


def _square_pixels(corner: np.ndarray, dot: int) -> tuple[np.ndarray, np.ndarray]:
    """x, y (N*dot*dot,) of the dot x dot pixel squares whose top-left pixels are ``corner`` (N, 2) int."""
    off = np.arange(dot)
    x = (corner[:, 0, None, None] + off[None, None, :]).repeat(dot, 1).ravel()
    y = (corner[:, 1, None, None] + off[None, :, None]).repeat(dot, 2).ravel()
    return x, y


def _soft_dots(corner: np.ndarray, dot: int, size: int) -> np.ndarray:
    """Bilinear splat of dot x dot squares whose top-left pixel centre sits at ``corner`` (N, 2)."""
    base = np.floor(corner).astype(np.int64)
    frac = corner - base                                            # (N, 2) in [0, 1)
    acc = np.zeros((size * size, 3), np.float64)
    for dx in (0, 1):
        wx = frac[:, 0] if dx else 1.0 - frac[:, 0]
        for dy in (0, 1):
            wy = frac[:, 1] if dy else 1.0 - frac[:, 1]
            x, y = _square_pixels(base + np.array([dx, dy]), dot)
            col = np.repeat(_DOT_COLOURS * (wx * wy)[:, None], dot * dot, 0)
            ok = (x >= 0) & (x < size) & (y >= 0) & (y < size)
            np.maximum.at(acc, y[ok] * size + x[ok], col[ok])
    return np.rint(acc).astype(np.uint8).reshape(size, size, 3)


def region_mask(landmarks: np.ndarray, region: str | list[str], size: int, pad: float = 0.04) -> np.ndarray:
    """(size, size) bool: the bounding box of a region's landmarks (or several regions'), dilated by
    ``pad * size`` pixels. ``landmarks`` must be in this image's pixel coordinates."""
    names = [region] if isinstance(region, str) else list(region)
    idx = np.concatenate([LANDMARK_REGIONS[n] for n in names])
    pts = np.asarray(landmarks)[idx]
    p = pad * size
    x0, y0 = np.floor(pts.min(0) - p).astype(int)
    x1, y1 = np.ceil(pts.max(0) + p).astype(int)
    mask = np.zeros((size, size), bool)
    mask[max(0, y0):max(0, y1 + 1), max(0, x0):max(0, x1 + 1)] = True
    return mask
