"""Portraits the model cannot use as given are said, not hidden (issue 22): transparency composited over grey,
grayscale kept grey, and a cheap check whether a portrait is a face of the demo's synthetic world."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instructavatar.engine.media.image_io import (
    NEUTRAL_BACKGROUND,
    load_portrait,
    looks_like_world_face,
    world_face_score,
)

from .numpy_backend import numpy_pipeline

PORTRAIT = Path(__file__).resolve().parents[2] / "instructavatar" / "assets" / "demo_portrait.png"


@pytest.fixture(scope="module")
def pipe():
    return numpy_pipeline(steps=1)


def rgba_portrait() -> bytes:
    rgb = np.asarray(Image.open(PORTRAIT).convert("RGB"))
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[24:104, 24:104] = 255                                   # an opaque face, a transparent border
    rgba = np.dstack([rgb // 4, alpha])                           # dark pixels under the transparent part
    b = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(b, format="PNG")
    return b.getvalue()


def test_transparent_background_is_composited_over_grey_and_said():
    warnings = []
    rgb = load_portrait(rgba_portrait(), 128, warnings)
    assert (rgb[:10, :10] == NEUTRAL_BACKGROUND).all()            # not black
    assert any("transparent" in w for w in warnings)
    clean = []
    load_portrait(PORTRAIT, 128, clean)
    assert clean == []


def test_rgba_arrays_are_composited_too():
    rgba = np.zeros((64, 64, 4), np.uint8)                        # fully transparent black
    assert (load_portrait(rgba, 64) == NEUTRAL_BACKGROUND).all()


def test_grayscale_portrait_is_said_and_its_frames_stay_grey(pipe):
    grey = Image.open(PORTRAIT).convert("L")
    session, warnings = pipe.new_session(grey, "talk happily")
    assert any("grayscale" in w for w in warnings)
    frames = np.concatenate([session.push_audio(np.zeros(6400, np.float32)), session.flush()])
    assert (frames[..., 0] == frames[..., 1]).all() and (frames[..., 1] == frames[..., 2]).all()
    colour, _ = pipe.new_session(PORTRAIT, "talk happily")
    f = colour.push_audio(np.zeros(6400, np.float32))
    assert np.abs(f[..., 0].astype(int) - f[..., 2]).max() > 10   # a colour portrait keeps its colours


def test_world_faces_pass_and_photo_like_images_are_flagged(pipe):
    world = load_portrait(PORTRAIT, 128)
    assert looks_like_world_face(world)
    b = io.BytesIO()
    Image.fromarray(world).save(b, format="JPEG", quality=75)    # a world face saved as JPEG still passes
    assert looks_like_world_face(load_portrait(b.getvalue(), 128))
    rng = np.random.default_rng(0)                                # texture + sensor noise, as a photo has
    photo = np.clip(world + rng.normal(0, 4, world.shape), 0, 255).astype(np.uint8)
    assert world_face_score(photo) < 0.45 < world_face_score(world)
    _, warnings = pipe.new_session(photo)
    assert any("synthetic world" in w for w in warnings)
    _, none = pipe.new_session(PORTRAIT)
    assert not any("synthetic world" in w for w in none)


def test_a_real_photograph_is_flagged():
    data = pytest.importorskip("skimage.data")
    assert not looks_like_world_face(load_portrait(data.astronaut(), 128))
