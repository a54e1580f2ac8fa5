"""Photo mode through the Pipeline: frames from a real photo, streaming == offline, world and photo sessions
in one batched step, and --mode auto's choice."""

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("cv2")
samples = pytest.importorskip("instructavatar.engine.photo.samples")
if not samples.available(("astronaut",)):
    pytest.skip("scikit-image's astronaut is not installed", allow_module_level=True)

from instructavatar.engine.loader import load_pipeline  # noqa: E402
from instructavatar.engine.photo.decoder import prepare_photo  # noqa: E402
from instructavatar.engine.photo.mode import prepare_for_mode  # noqa: E402


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("demo", threads=1, steps=2)          # speed: the decoder is what is tested


@pytest.fixture(scope="module")
def photo_portrait(pipe):
    return prepare_photo(pipe, samples.load_sample("astronaut"), size=128)


def speech(seconds=1.6, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)                          # syllable-like bursts
    return (0.3 * env * rng.standard_normal(len(t))).astype(np.float32)


def test_photo_mode_frames_are_the_photo_moving(pipe, photo_portrait):
    audio = speech()
    frames = pipe.generate(photo_portrait, audio=audio, instruction="open your mouth wide", seed=0)
    photo = photo_portrait.decoder.photo
    assert frames.shape == (40, 128, 128, 3) and frames.dtype == np.uint8
    diff = np.abs(frames.astype(int) - photo).mean(axis=(1, 2, 3))
    assert diff.max() > 1.0                                               # it moves
    assert np.median(diff) < 12                                           # and stays the photo
    # far from the face (the crop's top corners: background) nothing changes
    assert np.array_equal(frames[:, :8, :8], np.broadcast_to(photo[:8, :8], frames[:, :8, :8].shape))


def test_streaming_equals_offline_in_photo_mode(pipe, photo_portrait):
    audio = speech(2.2, seed=1)
    offline = pipe.generate(photo_portrait, audio=audio, instruction="smile", seed=3)
    session, _ = pipe.new_session(photo_portrait, "smile", seed=3)
    rng = np.random.default_rng(0)
    out, i = [], 0
    while i < len(audio):
        n = int(rng.integers(100, 9000))
        out.append(session.push_audio(audio[i:i + n]))
        i += n
    out.append(session.flush())
    streamed = np.concatenate(out)
    assert streamed.shape == offline.shape and np.array_equal(streamed, offline)


def test_world_and_photo_sessions_share_a_batched_step(pipe, photo_portrait):
    from instructavatar.engine.photo.decoder import world_face

    world = pipe.prepare(world_face(128))
    a, _ = pipe.new_session(photo_portrait, seed=5)
    b, _ = pipe.new_session(world, seed=5)
    chunk = speech(1.0)[: pipe.chunk_samples]
    fa, fb = pipe.step([a, b], [chunk, chunk])
    a2, _ = pipe.new_session(photo_portrait, seed=5)
    b2, _ = pipe.new_session(world, seed=5)
    n = pipe.chunk_samples // pipe.samples_per_frame
    assert fa.shape == (n, 128, 128, 3) and fb.shape == (n, 128, 128, 3)
    assert np.array_equal(fa, pipe.step([a2], [chunk])[0])
    assert np.abs(fb.astype(int) - pipe.step([b2], [chunk])[0]).max() <= 1


def test_mode_auto_picks_photo_for_a_photograph_and_world_for_a_world_face(pipe):
    from instructavatar.engine.photo.decoder import world_face

    said = []
    p, mode = prepare_for_mode(pipe, samples.load_sample("astronaut"), "auto", "256", say=said.append,
                               warn=said.append)
    assert mode == "photo" and p.decoder.frame_shape == (256, 256, 3) and "photo mode" in said[-1]
    p, mode = prepare_for_mode(pipe, world_face(128), "auto", "256", say=said.append, warn=said.append)
    assert mode == "world" and p.decoder is None
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)      # no face, no world
    p, mode = prepare_for_mode(pipe, noise, "auto", "256", say=said.append, warn=said.append)
    assert mode == "world" and "cannot animate" in said[-1]
