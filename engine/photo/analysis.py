"""Portrait analysis for photo mode: face detection and the 468-point face mesh, once per photograph.

Runs MediaPipe's two small TFLite models (shipped in engine/photo/models/, Apache-2.0, see
LICENSE.mediapipe there; copied unchanged from the mediapipe 0.10.14 wheel) through LiteRT
(`ai-edge-litert`, the `photo` extra), torch-free and offline:

  face_detection_short_range.tflite  BlazeFace, 128x128 input in [-1, 1] -> 896 anchors x (box, 6 keypoints)
  face_landmark.tflite               192x192 face crop in [0, 1]        -> 468 points (x, y, z) + face score

The pipeline follows MediaPipe's FaceMesh graph: detection -> a square region of interest rotated so the eyes
are level (1.5x the box) -> mesh; the mesh is then refined once with a region computed from its own points.
Everything is returned in the photo's pixels. Problems are one-line `PhotoError`s (no face, face too small,
a profile beyond what the warp can turn); several faces is a warning (the largest is taken).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

MODELS = Path(__file__).resolve().parent / "models"
MIN_FACE_PX = 64             # faces narrower than this (detector box, photo pixels) are refused
MAX_YAW_DEG = 35.0           # beyond this the photo is too much of a profile for the warp
DETECTION_THRESHOLD = 0.5
MESH_THRESHOLD = 0.5


class PhotoError(ValueError):
    """A portrait photo mode cannot animate, with a one-line reason."""


@dataclass(frozen=True)
class FaceAnalysis:
    points: np.ndarray            # (468, 3) float32: x, y in photo pixels, z relative depth in pixels (+ = away)
    box: tuple[float, float, float, float]   # detector box x0, y0, x1, y1 in photo pixels
    score: float                  # mesh face-presence probability
    faces_found: int
    yaw_deg: float                # rough yaw of the photo's face (+ = nose towards image right)
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def interocular(self) -> float:
        return float(np.linalg.norm(eye_centres(self.points)[1] - eye_centres(self.points)[0]))


# Mesh indices (MediaPipe FaceMesh topology) used across photo mode.
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)   # image-left eye
LEFT_EYE = (362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374, 380, 381, 382)  # image-right eye
NOSE_TIP = 1


def eye_centres(points: np.ndarray) -> np.ndarray:
    """(2, 2): centre of the image-left eye, then the image-right eye."""
    return np.stack([points[list(RIGHT_EYE), :2].mean(0), points[list(LEFT_EYE), :2].mean(0)])


class _Model:
    def __init__(self, name: str):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:     # pragma: no cover - depends on the install
            raise PhotoError("photo mode needs LiteRT: pip install 'instructavatar[photo]' (ai-edge-litert)") from e
        self.it = Interpreter(model_path=str(MODELS / name), num_threads=1)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        self.out = [d["index"] for d in self.it.get_output_details()]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.it.set_tensor(self.inp, np.ascontiguousarray(x, np.float32))
        self.it.invoke()
        return [self.it.get_tensor(i).copy() for i in self.out]


@lru_cache(maxsize=1)
def _detector() -> _Model:
    return _Model("face_detection_short_range.tflite")


@lru_cache(maxsize=1)
def _mesh_model() -> _Model:
    return _Model("face_landmark.tflite")


@lru_cache(maxsize=1)
def _anchors() -> np.ndarray:
    """(896, 2) anchor centres of the short-range BlazeFace (strides 8, 16, 16, 16; 2 anchors per layer)."""
    out = []
    for stride, per in ((8, 2), (16, 6)):
        n = 128 // stride
        ys, xs = np.mgrid[0:n, 0:n]
        c = np.stack([(xs + 0.5) / n, (ys + 0.5) / n], -1).reshape(-1, 1, 2)
        out.append(np.repeat(c, per, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -50, 50)))


def detect_faces(rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Faces in an RGB uint8 photo, largest first: (box (4,) x0 y0 x1 y1, keypoints (6, 2), score), pixels."""
    import cv2

    h, w = rgb.shape[:2]
    side = max(h, w)                                    # letterbox to a square, as MediaPipe does
    pad_x, pad_y = (side - w) / 2, (side - h) / 2
    square = cv2.copyMakeBorder(rgb, int(pad_y), side - h - int(pad_y), int(pad_x), side - w - int(pad_x),
                                cv2.BORDER_CONSTANT, value=0)
    x = cv2.resize(square, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1.0
    reg, cls = _detector()(x[None])
    reg, score = reg[0], _sigmoid(cls[0, :, 0])
    a = _anchors()
    keep = np.nonzero(score >= DETECTION_THRESHOLD)[0]
    dets = []
    for i in keep:
        r = reg[i] / 128.0
        cx, cy = r[0] + a[i, 0], r[1] + a[i, 1]
        box = np.array([cx - r[2] / 2, cy - r[3] / 2, cx + r[2] / 2, cy + r[3] / 2]) * side
        kp = (r[4:16].reshape(6, 2) + a[i]) * side
        off = np.array([int(pad_x), int(pad_y)], np.float32)
        dets.append((box - np.r_[off, off], kp - off, float(score[i])))
    dets.sort(key=lambda d: -d[2])
    faces: list[tuple[np.ndarray, np.ndarray, float]] = []
    for d in dets:                                      # non-maximum suppression
        if all(_iou(d[0], f[0]) < 0.3 for f in faces):
            faces.append(d)
    faces.sort(key=lambda d: -(d[0][2] - d[0][0]) * (d[0][3] - d[0][1]))
    return faces


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _mesh_in_roi(rgb: np.ndarray, centre: np.ndarray, size: float, angle: float) -> tuple[np.ndarray, float]:
    """Run the mesh model on a square ROI (centre, side `size`, rotated by `angle` radians); points in pixels."""
    import cv2

    c, s = math.cos(angle), math.sin(angle)
    # ROI pixel (u, v) in [0, 192) -> photo: centre + R(angle) @ ((u, v) / 192 - 0.5) * size
    k = size / 192.0
    m = np.array([[c * k, -s * k, 0.0], [s * k, c * k, 0.0]])
    m[:, 2] = centre - m[:, :2] @ np.array([96.0, 96.0])
    crop = cv2.warpAffine(rgb, m, (192, 192), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    pts, flag = _mesh_model()(crop[None].astype(np.float32) / 255.0)
    p = pts.reshape(468, 3).astype(np.float64)
    xy = p[:, :2] @ m[:, :2].T + m[:, 2]
    z = p[:, 2] * k
    return np.concatenate([xy, z[:, None]], 1).astype(np.float32), float(_sigmoid(flag.reshape(-1))[0])


def _roi_from_points(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """MediaPipe's landmarks-to-ROI: eyes level, the points' bounding box scaled 1.5, square."""
    e = eye_centres(points)
    angle = math.atan2(e[1, 1] - e[0, 1], e[1, 0] - e[0, 0])
    c, s = math.cos(-angle), math.sin(-angle)
    centre0 = points[:, :2].mean(0)
    local = (points[:, :2] - centre0) @ np.array([[c, s], [-s, c]])
    lo, hi = local.min(0), local.max(0)
    mid = (lo + hi) / 2
    centre = centre0 + mid @ np.array([[c, -s], [s, c]])
    return centre, float(max(hi - lo) * 1.5), angle


def analyse(rgb: np.ndarray, min_face: int = MIN_FACE_PX, max_yaw: float = MAX_YAW_DEG) -> FaceAnalysis:
    """The face of a photo (RGB uint8 (H, W, 3)); PhotoError when none can be animated."""
    rgb = np.ascontiguousarray(rgb[..., :3], np.uint8)
    faces = detect_faces(rgb)
    if not faces:
        raise PhotoError("no face found in the portrait (photo mode needs one frontal face, at least "
                         f"{min_face} px wide)")
    warnings = []
    if len(faces) > 1:
        warnings.append(f"{len(faces)} faces found in the portrait; animating the largest")
    box, kp, _ = faces[0]
    width = float(box[2] - box[0])
    if width < min_face:
        raise PhotoError(f"the face is {width:.0f} px wide; photo mode needs at least {min_face} px "
                         "(use a larger or closer photo)")
    # detection -> ROI: eyes (keypoints 0, 1) level, box centre, 1.5x the box
    angle = math.atan2(kp[1, 1] - kp[0, 1], kp[1, 0] - kp[0, 0])
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    size = 1.5 * max(box[2] - box[0], box[3] - box[1])
    points, score = _mesh_in_roi(rgb, centre, size, angle)
    for _ in range(2):                                  # refine from the mesh's own region (tracking step)
        points, score = _mesh_in_roi(rgb, *_roi_from_points(points))
    if score < MESH_THRESHOLD:
        raise PhotoError(f"no clear face in the portrait (face-mesh confidence {score:.2f}; needs >= "
                         f"{MESH_THRESHOLD})")
    yaw = estimate_yaw(points)
    if abs(yaw) > max_yaw:
        raise PhotoError(f"the face is turned {abs(yaw):.0f} degrees; photo mode animates faces within "
                         f"{max_yaw:.0f} degrees of frontal")
    return FaceAnalysis(points=points, box=tuple(float(v) for v in box), score=score, faces_found=len(faces),
                        yaw_deg=yaw, warnings=tuple(warnings))


def estimate_yaw(points: np.ndarray) -> float:
    """Rough yaw in degrees from the mesh's depth: the slope of z across the two outer eye corners."""
    a, b = points[33], points[263]
    return float(np.degrees(np.arctan2(b[2] - a[2], b[0] - a[0])))
