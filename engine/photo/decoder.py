"""Photo mode: a decoder beside the VAE decoder that animates a real photograph with the generator's motion.

`prepare_photo(pipeline, photo)` analyses the photo once (engine/photo/analysis.py), crops it around the face
(or keeps the whole photo), builds the rig (engine/photo/rig.py) and returns a pipeline `Portrait` whose
`decoder` is a `PhotoDecoder`; the motion generator is conditioned on a neutral face of the world as its
keyframe (the photo's own keyframe latent means nothing to a model of the world). `Pipeline.step` then drives
the session exactly like a world face (streaming, batching with other sessions, instructions, guidance,
idle blinks) and hands the emitted motion latents to `PhotoDecoder.decode` instead of `backend.decode`:

    motion latents (N, M) -> geometry head -> world landmark displacements (N, 129, 2) + pose (N, 3)
                          -> rig -> mesh vertices (N, V, 2) -> piecewise-affine warp -> frames (N, H, W, 3)

Each frame depends on its own latent only, so streaming equals offline as for the VAE decoder.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .analysis import FaceAnalysis, PhotoError, analyse
from .head import GeometryHead, load_head
from .rig import MESH_LIP_IN_LOWER, MESH_LIP_IN_UPPER, Rig, build_rig, frame_vertices
from .warp import FlowWarp

CROP_FACE_WIDTHS = 2.4          # crop side in detector-box widths (head, hair and shoulders)
WORLD_FACE_IDENTITY = 0         # the world identity whose neutral face is the generator's keyframe


def load_photo(photo) -> np.ndarray:
    """A photo (path, bytes, PIL image or array) as RGB uint8 (H, W, 3) at its own resolution."""
    from PIL import Image

    if isinstance(photo, np.ndarray):
        a = photo
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, 2)
        if a.ndim != 3 or a.shape[2] not in (3, 4):
            raise PhotoError(f"a photo array must be (H, W, 3) RGB, got shape {a.shape}")
        if a.dtype != np.uint8:
            raise PhotoError(f"a photo array must be uint8, got {a.dtype}")
        return np.ascontiguousarray(a[..., :3])
    try:
        if isinstance(photo, (bytes, bytearray)):
            img = Image.open(io.BytesIO(photo))
        elif isinstance(photo, Image.Image):
            img = photo
        else:
            p = Path(photo)
            if not p.is_file():
                raise PhotoError(f"photo not found: {p}")
            img = Image.open(p)
        return np.asarray(img.convert("RGB"))
    except PhotoError:
        raise
    except Exception as e:
        raise PhotoError(f"cannot read the photo as an image ({type(e).__name__}: {e})") from e


def crop_around_face(rgb: np.ndarray, analysis: FaceAnalysis, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(the output photo, (2, 3) affine photo pixels -> output pixels). size None keeps the whole photo."""
    import cv2

    if size is None:
        return rgb.copy(), np.array([[1.0, 0, 0], [0, 1.0, 0]])
    x0, y0, x1, y1 = analysis.box
    side = CROP_FACE_WIDTHS * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.05 * side
    k = size / side
    m = np.array([[k, 0, size / 2 - k * cx], [0, k, size / 2 - k * cy]])
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    out = cv2.warpAffine(rgb, m, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    return out, m


@dataclass
class PhotoDecoder:
    photo: np.ndarray            # (H, W, 3) uint8: the output frame at rest
    rig: Rig
    head: GeometryHead
    analysis: FaceAnalysis

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return self.photo.shape

    def geometry(self, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, M) normalised motion latents -> vertices (N, V, 2) output pixels, pose (N, 3) degrees."""
        expr, pose = self.head(latents)
        return np.stack([frame_vertices(self.rig, e, p) for e, p in zip(expr, pose)]), pose

    def __post_init__(self):
        chains = (np.array(MESH_LIP_IN_UPPER), np.array(MESH_LIP_IN_LOWER))
        self.warp = FlowWarp(self.photo, self.rig.rest[:, :2], self.rig.triangles, ~self.rig.mouth, chains,
                             self.rig.scale)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """(N, M) normalised motion latents -> frames (N, H, W, 3) uint8."""
        verts, _ = self.geometry(latents)
        frames = [self.warp(v) for v in verts]
        return np.stack(frames) if frames else np.zeros((0, *self.photo.shape), np.uint8)


def world_face(image_size: int) -> np.ndarray:
    """The neutral world face the generator takes as keyframe for photo sessions (S, S, 3) uint8."""
    from ...avatarworld.controls import neutral
    from ...avatarworld.identity import identity, identity_ids
    from ...avatarworld.render import FaceRenderer

    ident = identity(identity_ids("heldout", WORLD_FACE_IDENTITY + 1)[WORLD_FACE_IDENTITY])
    return FaceRenderer(image_size).render(ident, neutral())


def prepare_photo(pipeline, photo, size: int | None = 512, head: GeometryHead | str | Path | None = None,
                  analysis: FaceAnalysis | None = None):
    """A pipeline Portrait that animates `photo` (see the module docstring). size: output side (a square crop
    around the face), or None for the photo's own resolution. Warnings (several faces) are on
    `portrait.decoder.analysis.warnings`."""
    if size is not None and (int(size) != size or not 32 <= int(size) <= 4096):
        raise PhotoError(f"photo output size must be an integer 32..4096 (or None for the photo's own), got {size}")
    rgb = load_photo(photo)
    a = analysis if analysis is not None else analyse(rgb)
    out, m = crop_around_face(rgb, a, None if size is None else int(size))
    pts = a.points.astype(np.float64)
    k = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    mesh = np.concatenate([pts[:, :2] @ m[:, :2].T + m[:, 2], pts[:, 2:3] * k], 1)
    h = head if isinstance(head, GeometryHead) else load_head(head)
    if h.motion_dim != pipeline.cfg.motion_dim:
        raise PhotoError(f"the photo head reads {h.motion_dim}-number motion latents; model "
                         f"{pipeline.cfg.name!r} emits {pipeline.cfg.motion_dim}")
    portrait = pipeline.prepare(world_face(pipeline.cfg.media.image_size))
    portrait.decoder = PhotoDecoder(photo=out, rig=build_rig(mesh, h.neutral), head=h, analysis=a)
    return portrait
