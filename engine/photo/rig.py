"""Photo mode's geometry step: the world's landmark motion retargeted onto a photo's face mesh.

Inputs per frame (from the geometry head, engine/photo/head.py): the world's 129 landmark displacements from
neutral, in interocular units and a pose-free frame, and the head pose (yaw, pitch, roll degrees).

Retargeting uses a fixed correspondence between contours of the world's layout (avatarworld/render.py
`_LAYOUT`) and MediaPipe mesh contours (brows, eyelids, outer and inner lips, jaw, nose): each mesh vertex on a
contour takes the world displacement interpolated at its arc-length position along the matching world contour,
scaled by the photo's interocular distance and turned by the photo's in-plane roll. Eyelids are scaled by the
photo's own eye opening (a world blink closes the photo's eye exactly), and lids and lips never cross. Every
other vertex follows harmonically (a Laplacian over the mesh, solved once per portrait: a (V, driven) matrix),
with a ring outside the face held still, so hair, neck and background stay where they are. Head pose is
then a small 3D rotation of the displaced mesh (MediaPipe's z) about a pivot behind the face.

The topology: MediaPipe's 854 face triangles (derived once from its tesselation, Apache-2.0), strips that fill
the eye openings and the mouth opening (the mouth's are flagged: the warp paints a mouth interior there), and a
band of triangles between the face oval and the ring.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .analysis import eye_centres

MODELS = Path(__file__).resolve().parent / "models"

# World landmark layout (avatarworld/render.py _LAYOUT); kept here so the runtime needs no world import.
_WORLD_LAYOUT = (("jaw", 17), ("head", 15), ("brow_r", 5), ("brow_l", 5), ("eye_r", 12), ("eye_l", 12),
                 ("iris_r", 5), ("iris_l", 5), ("nose", 9), ("mouth_outer", 16), ("mouth_inner", 16),
                 ("cheek_r", 6), ("cheek_l", 6))
WORLD_POINTS = sum(n for _, n in _WORLD_LAYOUT)


def _world_regions() -> dict[str, np.ndarray]:
    out, start = {}, 0
    for name, n in _WORLD_LAYOUT:
        out[name] = np.arange(start, start + n)
        start += n
    return out


W = _world_regions()


def _upper_lower(idx: np.ndarray, n_upper: int) -> tuple[np.ndarray, np.ndarray]:
    """A world contour stored as upper chain (left -> right) then lower chain reversed -> both, corners shared."""
    upper = idx[:n_upper]
    lower = np.r_[idx[0], idx[n_upper:][::-1], idx[n_upper - 1]]
    return upper, lower


_EYE_R_U, _EYE_R_L = _upper_lower(W["eye_r"], 7)
_EYE_L_U, _EYE_L_L = _upper_lower(W["eye_l"], 7)
_MO_U, _MO_L = _upper_lower(W["mouth_outer"], 9)
_MI_U, _MI_L = _upper_lower(W["mouth_inner"], 9)

# (world chain, mesh chain) pairs, both in the same direction (image left -> right, or inner -> outer brow).
MESH_EYE_R_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
MESH_EYE_R_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
MESH_EYE_L_UPPER = (362, 398, 384, 385, 386, 387, 388, 466, 263)
MESH_EYE_L_LOWER = (362, 382, 381, 380, 374, 373, 390, 249, 263)
MESH_LIP_OUT_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
MESH_LIP_OUT_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
MESH_LIP_IN_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
MESH_LIP_IN_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MESH_JAW = (234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454)
MESH_NOSE = (168, 6, 197, 195, 5, 4, 1, 2, 98, 327, 97, 326)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)

BROW_CHAINS = ((107, 66, 105, 63, 70), (55, 65, 52, 53, 46), (336, 296, 334, 293, 300), (285, 295, 282, 283, 276))
CHAINS: tuple[tuple[np.ndarray, tuple[int, ...]], ...] = (
    (W["brow_r"], BROW_CHAINS[0]), (W["brow_r"], BROW_CHAINS[1]),
    (W["brow_l"], BROW_CHAINS[2]), (W["brow_l"], BROW_CHAINS[3]),
    (_EYE_R_U, MESH_EYE_R_UPPER), (_EYE_R_L, MESH_EYE_R_LOWER),
    (_EYE_L_U, MESH_EYE_L_UPPER), (_EYE_L_L, MESH_EYE_L_LOWER),
    (_MO_U, MESH_LIP_OUT_UPPER), (_MO_L, MESH_LIP_OUT_LOWER),
    (_MI_U, MESH_LIP_IN_UPPER), (_MI_L, MESH_LIP_IN_LOWER),
    (W["jaw"], MESH_JAW),
)
EYE_CHAINS = {4, 5, 6, 7}
UPPER_LID_CHAINS = {4, 6}
MOUTH_CHAINS = {8, 9, 10, 11, 12}
RING_SCALE = 1.5               # the still ring around the face oval (x the oval's radius from the face centre)
MAX_POSE_DEG = (20.0, 15.0, 20.0)   # yaw, pitch, roll the warp turns at most
# Gains. The eyelids and the brows travel by that feature's size on the photo over its size in the world's
# neutral face (interocular units, measured per photo by feature_gains), so an expression moves them by the same
# fraction of themselves as in the world: the lids by the eye opening (a world blink closes the photo's eye
# exactly), the brows by the brow-to-eye gap (real brows sit closer to the eyes than the world's: 0.59-0.78).
# Limits, by eye: the lips' and the jaw's vertical travel x MOUTH_GAIN (the world's cartoon range of opening looks
# exaggerated on a photo), the lids opening wider than at rest x LID_RAISE_GAIN (AU5). The mouth-width ratio
# (feature_gains' 'mouth', 1.11-1.60) was tried on the lip corners and is not applied: dlib then read the mouth
# as less open and lip sync fell (one sentence: astronaut 0.94 -> 0.82, obama 0.875 -> 0.79; on the corners'
# rise only: 0.88 and 0.73; docs/photo_mode.md).
MOUTH_GAIN = 0.6
LID_RAISE_GAIN = 0.4
FEATURE_GAIN_RANGE = (0.5, 2.0)     # a feature-size gain is clipped to this range (a mis-measured mesh)


def _arc(points: np.ndarray) -> np.ndarray:
    d = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]
    return d / max(d[-1], 1e-9)


def _interp_weights(t_mesh: np.ndarray, t_world: np.ndarray) -> np.ndarray:
    """(len(t_mesh), len(t_world)) linear-interpolation weights along a chain."""
    w = np.zeros((len(t_mesh), len(t_world)))
    for i, t in enumerate(t_mesh):
        j = int(np.clip(np.searchsorted(t_world, t) - 1, 0, len(t_world) - 2))
        a = (t - t_world[j]) / max(t_world[j + 1] - t_world[j], 1e-9)
        a = float(np.clip(a, 0.0, 1.0))
        w[i, j], w[i, j + 1] = 1 - a, a
    return w


@lru_cache(maxsize=1)
def mesh_triangles() -> np.ndarray:
    return np.load(MODELS / "face_mesh_triangles.npy").astype(np.int64)


def _strip(a: tuple[int, ...], b: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Triangles between two chains of equal length sharing their end points."""
    out = []
    for i in range(len(a) - 1):
        for tri in ((a[i], a[i + 1], b[i + 1]), (a[i], b[i + 1], b[i])):
            if len(set(tri)) == 3:
                out.append(tri)
    return out


@dataclass(frozen=True)
class Rig:
    """Everything per portrait that the per-frame geometry needs (built once by `build_rig`)."""
    rest: np.ndarray          # (V, 3) vertices at rest in output pixels (mesh 468, then the ring), z in pixels
    triangles: np.ndarray     # (F, 3) int64
    mouth: np.ndarray         # (F,) bool: triangles of the mouth opening
    driven: np.ndarray        # (D,) vertex ids driven by the world
    retarget: np.ndarray      # (D, 129) world displacement -> driven displacement (before scale and roll)
    harmonic: np.ndarray      # (V, D) driven displacement -> every vertex (ring rows are zero)
    scale: float              # photo interocular distance / world unit (pixels per interocular unit)
    roll: np.ndarray          # (2, 2) the photo face's in-plane rotation
    vertical_gain: np.ndarray  # (D,) gain on downward travel: eyelids photo / world eye opening; brows the brow gap
    #                            ratio; jaw and lips MOUTH_GAIN
    rise_gain: np.ndarray     # (D,) gain on upward travel: the same, upper lids x LID_RAISE_GAIN
    sideways_gain: np.ndarray  # (D,) horizontal gain: brows the brow gap ratio, else 1
    pivot: np.ndarray         # (3,) rotation centre
    lid_pairs: np.ndarray     # (K, 2) vertex ids (upper, lower) that must not cross (lids, inner lips)
    n_mesh: int


def build_rig(points: np.ndarray, world_neutral: np.ndarray) -> Rig:
    """points (468, 3) the photo's mesh in output pixels; world_neutral (129, 2) the world's canonical neutral
    landmarks in interocular units (from the head file)."""
    pts = np.asarray(points, np.float64)
    n = len(pts)
    eyes = eye_centres(pts)
    iod = float(np.linalg.norm(eyes[1] - eyes[0]))
    ang = float(np.arctan2(eyes[1, 1] - eyes[0, 1], eyes[1, 0] - eyes[0, 0]))
    roll = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])

    # rings: the face oval pushed out from the face centre
    oval = pts[list(FACE_OVAL), :2]
    centre = oval.mean(0)
    ring = centre + (oval - centre) * RING_SCALE
    rest = np.concatenate([pts, np.concatenate([ring, np.full((len(oval), 1), pts[:, 2].max())], 1)])
    ring1 = tuple(range(n, n + len(oval)))

    def band(a, b):
        a, b = tuple(a) + (a[0],), tuple(b) + (b[0],)
        return _strip(a, b)

    eye_fill = _strip(MESH_EYE_R_UPPER, MESH_EYE_R_LOWER) + _strip(MESH_EYE_L_UPPER, MESH_EYE_L_LOWER)
    mouth_fill = _strip(MESH_LIP_IN_UPPER, MESH_LIP_IN_LOWER)
    extra = eye_fill + band(FACE_OVAL, ring1)
    tris = np.concatenate([mesh_triangles(), np.array(extra + mouth_fill, np.int64)])
    mouth = np.zeros(len(tris), bool)
    mouth[len(tris) - len(mouth_fill):] = True

    # retargeting weights: chains by arc length, nose by the world nose's mean
    rows: dict[int, list[np.ndarray]] = {}
    mouth_v, upper_lid_v = set(), set()
    for k, (wchain, mchain) in enumerate(CHAINS):
        wt = _interp_weights(_arc(pts[list(mchain), :2]), _arc(world_neutral[wchain]))
        for i, v in enumerate(mchain):
            r = np.zeros(WORLD_POINTS)
            r[wchain] = wt[i]
            rows.setdefault(v, []).append(r)
        if k in MOUTH_CHAINS:
            mouth_v.update(mchain)
        if k in UPPER_LID_CHAINS:
            upper_lid_v.update(mchain[1:-1])
    nose = np.zeros(WORLD_POINTS)
    nose[W["nose"]] = 1.0 / len(W["nose"])
    for v in MESH_NOSE:
        rows.setdefault(v, []).append(nose)
    driven = np.array(sorted(rows), np.int64)
    retarget = np.stack([np.mean(rows[v], 0) for v in driven])

    # eyelid gain: the photo's eye opening over the world's (in interocular units)
    def opening(u, lo, src):
        return float(np.abs(src[list(u)][:, 1] - src[list(lo)][:, 1]).max())

    vertical = np.ones(len(driven))          # gain on downward travel (y down)
    for wu, wl, mu, ml in ((_EYE_R_U, _EYE_R_L, MESH_EYE_R_UPPER, MESH_EYE_R_LOWER),
                           (_EYE_L_U, _EYE_L_L, MESH_EYE_L_UPPER, MESH_EYE_L_LOWER)):
        g = (opening(mu, ml, pts[:, :2]) / iod) / max(opening(wu, wl, world_neutral), 1e-6)
        for v in mu + ml:
            vertical[np.searchsorted(driven, v)] = float(np.clip(g, 0.3, 3.0))

    gains = feature_gains(pts[:, :2], world_neutral, roll)
    sideways = np.ones(len(driven))
    for chain in BROW_CHAINS:
        rows = np.searchsorted(driven, chain)
        sideways[rows] = vertical[rows] = gains["brow"]
    rise = vertical.copy()
    lips = np.searchsorted(driven, sorted(mouth_v))
    vertical[lips] = rise[lips] = MOUTH_GAIN
    upper_lids = np.searchsorted(driven, sorted(upper_lid_v))
    rise[upper_lids] = vertical[upper_lids] * LID_RAISE_GAIN
    harmonic = _harmonic(len(rest), tris, driven, np.array(ring1))
    pivot = np.r_[centre, pts[:, 2].mean() + 1.2 * iod]
    pairs = [(u, lo) for u, lo in zip(MESH_EYE_R_UPPER[1:-1], MESH_EYE_R_LOWER[1:-1])]
    pairs += [(u, lo) for u, lo in zip(MESH_EYE_L_UPPER[1:-1], MESH_EYE_L_LOWER[1:-1])]
    pairs += [(u, lo) for u, lo in zip(MESH_LIP_IN_UPPER[1:-1], MESH_LIP_IN_LOWER[1:-1])]
    return Rig(rest=rest.astype(np.float32), triangles=tris, mouth=mouth, driven=driven,
               retarget=retarget.astype(np.float32), harmonic=harmonic.astype(np.float32), scale=iod,
               roll=roll.astype(np.float32), vertical_gain=vertical.astype(np.float32),
               rise_gain=rise.astype(np.float32),
               sideways_gain=sideways.astype(np.float32),
               pivot=pivot.astype(np.float32),
               lid_pairs=np.array(pairs, np.int64), n_mesh=n)


def feature_gains(points: np.ndarray, world_neutral: np.ndarray, roll: np.ndarray | None = None) -> dict[str, float]:
    """Photo feature size / world feature size, both in interocular units, clipped to FEATURE_GAIN_RANGE:
    'brow' (the brow-to-eye gap: from the brow contours' mean down to the eye centres) and 'mouth' (the distance
    between the outer lip corners). points (468, 2) the photo's mesh; roll (2, 2) its in-plane rotation
    (the gap is measured across the eye line)."""
    pts = np.asarray(points, np.float64)[:, :2]
    wn = np.asarray(world_neutral, np.float64)
    up = np.array([0.0, 1.0]) if roll is None else np.asarray(roll, np.float64) @ np.array([0.0, 1.0])
    eyes = eye_centres(pts)
    iod = float(np.linalg.norm(eyes[1] - eyes[0]))
    brows = [c for chain in BROW_CHAINS for c in chain]
    photo = {"brow": float((eyes.mean(0) - pts[brows].mean(0)) @ up) / iod,
             "mouth": float(np.linalg.norm(pts[MESH_LIP_OUT_UPPER[-1]] - pts[MESH_LIP_OUT_UPPER[0]])) / iod}
    w_eyes = np.stack([wn[W["eye_r"]].mean(0), wn[W["eye_l"]].mean(0)])
    w_iod = float(np.linalg.norm(w_eyes[1] - w_eyes[0]))
    w_brows = np.r_[W["brow_r"], W["brow_l"]]
    world = {"brow": float(w_eyes[:, 1].mean() - wn[w_brows, 1].mean()) / w_iod,
             "mouth": float(np.linalg.norm(wn[_MO_U[-1]] - wn[_MO_U[0]])) / w_iod}
    lo, hi = FEATURE_GAIN_RANGE
    return {k: float(np.clip(photo[k] / max(world[k], 1e-6), lo, hi)) for k in photo}


def _harmonic(V: int, tris: np.ndarray, driven: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """(V, D): each vertex's displacement as a harmonic function of the driven ones (fixed vertices: zero)."""
    A = np.zeros((V, V))
    for a, b, c in tris:
        for i, j in ((a, b), (b, c), (c, a)):
            A[i, j] = A[j, i] = 1.0
    L = np.diag(A.sum(1)) - A
    known = np.r_[driven, fixed]
    free = np.setdiff1d(np.arange(V), known)
    H = np.zeros((V, len(driven)))
    H[driven, np.arange(len(driven))] = 1.0
    if len(free):
        rhs = -L[np.ix_(free, driven)]
        H[free] = np.linalg.solve(L[np.ix_(free, free)] + 1e-9 * np.eye(len(free)), rhs)
    return H


def frame_vertices(rig: Rig, expression: np.ndarray, pose_deg: np.ndarray) -> np.ndarray:
    """(V, 2) vertex positions for one frame: expression (129, 2) interocular units, pose (3,) degrees."""
    d = rig.retarget @ expression                                      # (D, 2) interocular units, world frame
    d[:, 0] *= rig.sideways_gain
    d[:, 1] *= np.where(d[:, 1] < 0, rig.rise_gain, rig.vertical_gain)                # y down: < 0 = up
    d = (d @ rig.roll.T) * rig.scale                                   # photo pixels
    moved = rig.rest.copy()
    moved[:, :2] += rig.harmonic @ d
    for u, lo in rig.lid_pairs:                                        # lids and lips never cross
        if moved[u, 1] > moved[lo, 1]:
            mid = 0.5 * (moved[u, 1] + moved[lo, 1])
            moved[u, 1] = moved[lo, 1] = mid
    m = rig.n_mesh
    yaw, pitch, roll = np.radians(np.clip(pose_deg, -np.array(MAX_POSE_DEG), MAX_POSE_DEG))
    p = moved[:m] - rig.pivot
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    x, z = x * cy - z * sy, x * sy + z * cy                            # yaw: nose towards image right for +
    y, z = y * cp + z * sp, -y * sp + z * cp                           # pitch: nose up for +
    x, y = x * cr - y * sr, x * sr + y * cr                            # roll: clockwise in the image for +
    moved[:m] = np.stack([x, y, z], 1) + rig.pivot
    return moved[:, :2]
