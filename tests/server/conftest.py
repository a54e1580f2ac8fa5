"""Fixtures of the server tests: pipelines (cheap numpy backend, the demo checkpoint), servers, portraits."""

from __future__ import annotations

import io
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from instructavatar.server.app import ServerThread
from instructavatar.server.limits import ServerLimits

from .fake_backend import fake_pipeline


def png(seed: int, size: int = 96) -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, 3)
    img = np.clip(base + rng.integers(-40, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def tone(seconds: float, freq: float = 220.0, amp: float = 0.3, rate: int = 16000, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    env = 0.5 + 0.5 * np.sin(2 * np.pi * (1.5 + seed) * t)                 # syllable-like envelope
    return (amp * env * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="session")
def fake_pipe():
    return fake_pipeline()


@pytest.fixture
def make_server(fake_pipe):
    @contextmanager
    def make(pipeline=None, **limits):
        limits.setdefault("stats_interval_s", 0)
        limits.setdefault("max_audio_rate", 1000.0)
        with ServerThread(pipeline or fake_pipe, ServerLimits(**limits)) as srv:
            yield srv
    return make
