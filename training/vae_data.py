"""Frame pairs for VAE training, rendered on the fly from the synthetic world.

A pair = two frames of the same identity: the source gives appearance (half the time a still, near-
neutral portrait, as at inference; otherwise another random frame), the target gives motion (its
landmark-dot image) and is the reconstruction target. Target controls mix realistic behaviour
(emotions, motion instructions, speech mouths) with uniformly random controls for coverage.
"""

from __future__ import annotations

import numpy as np

from ..avatarworld import behaviour, clips
from ..avatarworld.controls import AU_SLICE, INDEX, NUM_CONTROLS, SPEECH_SLICE, clip_controls
from ..avatarworld.identity import identity, identity_ids
from ..avatarworld.instructions import EMOTIONS
from ..avatarworld.render import FaceRenderer, landmark_image


def motion_input(points: np.ndarray, image_size: int, vae_cfg, soft_dots: bool = False) -> np.ndarray:
    """What the VAE's motion encoder reads for landmarks `points` (..., N, 2) in pixels of an image_size frame,
    float32 and ready for the model: the coordinates scaled to [-1, 1] (..., N, 2) when the VAE reads
    `landmark_points`, else the landmark-dot image (..., 3, l, l) in [-1, 1]."""
    pts = np.asarray(points, np.float32)
    if vae_cfg.landmark_points:
        if pts.shape[-2] != vae_cfg.landmark_points:
            raise ValueError(f"the VAE reads {vae_cfg.landmark_points} landmarks, got {pts.shape[-2]}")
        return pts * np.float32(2.0 / image_size) - np.float32(1.0)
    flat = pts.reshape(-1, *pts.shape[-2:])
    imgs = np.stack([landmark_image(p, image_size, vae_cfg.landmark_size, soft=soft_dots) for p in flat])
    x = imgs.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
    return x.reshape(*pts.shape[:-2], *x.shape[1:])


def random_controls(rng: np.random.Generator) -> np.ndarray:
    """One frame's controls: realistic (emotion + speech, motion instruction) or uniformly random."""
    u = rng.random()
    n = 30
    if u < 0.45:
        c = behaviour.emotion_controls(str(rng.choice(EMOTIONS)), int(rng.integers(1, 4)), n, rng)[rng.integers(n)]
        if rng.random() < 0.7:                                   # talking mouth
            c[SPEECH_SLICE] = (rng.uniform(0, 0.9), rng.uniform(-0.8, 0.8), rng.uniform(0, 0.8))
    elif u < 0.75:
        motions, sequential, _ = clips.sample_motions(rng)
        c = behaviour.motion_controls(motions, n, rng, sequential=sequential)[rng.integers(n)]
    else:
        c = np.zeros(NUM_CONTROLS, np.float32)
        aus = rng.random(16) < 0.25
        c[:16] = aus * rng.uniform(0.2, 1.0, 16)
        c[INDEX["eye_close_l"]], c[INDEX["eye_close_r"]] = (rng.random(2) < 0.08) * rng.uniform(0.5, 1, 2)
        c[SPEECH_SLICE] = (rng.uniform(0, 0.9), rng.uniform(-0.8, 0.8), rng.uniform(0, 0.8))
        c[INDEX["yaw"]], c[INDEX["pitch"]], c[INDEX["roll"]] = rng.uniform(-25, 25), rng.uniform(-18, 18), \
            rng.uniform(-15, 15)
        c[INDEX["tx"]], c[INDEX["ty"]] = rng.uniform(-0.06, 0.06, 2)
        c[INDEX["gaze_x"]], c[INDEX["gaze_y"]] = rng.uniform(-1, 1, 2)
    return clip_controls(c)


def portrait_controls(rng: np.random.Generator) -> np.ndarray:
    """A still, near-neutral portrait (eyes open, mouth closed, small pose)."""
    c = behaviour.idle_controls(20, rng, blinks=False)[rng.integers(20)]
    return clip_controls(c)


EXPRESSION_THRESHOLD = 6      # uint8 levels: a pixel belongs to the expression where the AUs change it more


def expression_mask(renderer: FaceRenderer, ident, controls: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """(S, S) bool: the pixels the action units change in `frame` (rendered from `controls`): where it differs
    from the same face, pose, gaze and mouth with every AU at zero (brow furrows, blush, folds, wrinkles, chin
    crease, eyelids). Known only in the world; it weights the VAE's reconstruction loss (`--expression-weight`)."""
    plain = controls.copy()
    plain[AU_SLICE] = 0.0
    diff = np.abs(frame.astype(np.int16) - renderer.render(ident, plain).astype(np.int16)).max(-1)
    return diff > EXPRESSION_THRESHOLD


class FramePairSampler:
    def __init__(self, image_size: int, vae_cfg, split: str = "train", soft_dots: bool = False,
                 expression: bool = False):
        self.renderer = FaceRenderer(image_size)
        self.size, self.vae_cfg, self.soft_dots, self.expression = image_size, vae_cfg, soft_dots, expression
        self.ids = identity_ids(split)

    def sample(self, rng: np.random.Generator, ident_index: int | None = None) -> dict[str, np.ndarray]:
        ident = identity(int(rng.choice(self.ids)) if ident_index is None else ident_index)
        src = portrait_controls(rng) if rng.random() < 0.5 else random_controls(rng)
        tgt = random_controls(rng)
        source, src_points = self.renderer.render_with_landmarks(ident, src)
        target, lms = self.renderer.render_with_landmarks(ident, tgt)
        out = {"source": source, "target": target,
               "landmarks": motion_input(lms, self.size, self.vae_cfg, self.soft_dots), "controls": tgt,
               "source_points": src_points, "target_points": lms}   # (L, 2) pixels: supervise a warp's flow
        if self.expression:
            out["expression"] = expression_mask(self.renderer, ident, tgt, target)[None].astype(np.float32)
        return out

    def batch(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        items = [self.sample(rng) for _ in range(n)]
        out = {k: np.stack([it[k] for it in items]) for k in items[0]}
        for k in ("source", "target"):                                   # uint8 NHWC -> float NCHW [-1, 1]
            out[k] = out[k].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
        return out


def fixed_eval_set(image_size: int, vae_cfg, n: int, seed: int = 1234,
                   split: str = "heldout", soft_dots: bool = False, expression: bool = False) -> dict[str, np.ndarray]:
    """A fixed batch of held-out-identity pairs for validation (same every run)."""
    return FramePairSampler(image_size, vae_cfg, split, soft_dots, expression).batch(n, np.random.default_rng(seed))
