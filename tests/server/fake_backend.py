"""A cheap numpy implementation of the `Backend` interface for server tests (not a model).

Every output is a deterministic function of its inputs, so frames depend on the portrait, the audio of each
frame and the instruction, and a test can predict them with `Pipeline.generate` on the same backend. It lets the
protocol, scheduling and clock tests run 60 s of audio in seconds on a loaded 2-core machine; the demo checkpoint
is exercised by the tests marked as using it.
"""

from __future__ import annotations

import numpy as np

from instructavatar.engine.backend import InstructionTensors
from instructavatar.engine.config import get_config
from instructavatar.engine.pipeline import Pipeline
from instructavatar.engine.tokenizer import build_tokenizer

D, DT = 8, 8


class FakeBackend:
    name = "fake-numpy"

    def __init__(self, cfg, fail_on_text: str | None = None):
        self.cfg = cfg
        self.M = cfg.motion_dim
        self.fail_on_text = fail_on_text
        self.fail_ids: set[int] = set()

    def encode_appearance(self, image):                       # (B,3,H,W) -> (B,3,16,16)
        B, _, H, W = image.shape
        return image.reshape(B, 3, 16, H // 16, 16, W // 16).mean(axis=(3, 5)).astype(np.float32)

    def encode_keyframe(self, image):
        return np.tile(image.mean(axis=(2, 3)), (1, -(-self.M // 3)))[:, : self.M].astype(np.float32)

    def encode_motion(self, landmarks):
        return np.zeros((len(landmarks), self.M), np.float32)

    def encode_text(self, ids, mask):
        phase = (ids[..., None] * np.arange(1, DT + 1)) % 97 / 97.0           # (B,N,DT)
        tokens = (np.sin(phase * 6.283) * mask[..., None]).astype(np.float32)
        pooled = tokens.sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
        return tokens, pooled.astype(np.float32)

    def condition(self, tokens, mask, pooled, keyframe):
        B, N, _ = tokens.shape
        const = np.broadcast_to(pooled[:, None, :D], (B, 1, D)).astype(np.float32).copy()
        return InstructionTensors(const=const, keys=tokens[:, None, :, :D].copy(), values=tokens[:, None, :, :D].copy(),
                                  mask=mask.astype(np.float32))

    def encode_audio(self, wave, blink=None):
        B, S = wave.shape
        T = S // 640
        frames = wave.reshape(B, T, 640)
        rms = np.sqrt((frames ** 2).mean(-1))                                  # (B,T)
        out = np.zeros((B, T, D), np.float32)
        out[..., 0] = rms
        out[..., 1] = frames[..., :320].mean(-1)
        if blink is not None:
            out[..., 2] = blink
        return out

    def denoise(self, x_t, t, audio, known, inst):
        if np.isnan(x_t).any():
            raise FloatingPointError("NaN in x_t")
        B, T, M = x_t.shape
        x0 = np.zeros((B, T, M), np.float32)
        x0[..., 0] = 4 * audio[..., 0]
        x0[..., 1] = inst.const[:, 0, 0][:, None]
        x0[..., 2] = inst.const[:, 0, 1][:, None]
        return x0

    def decode(self, motion, appearance):
        S = self.cfg.media.image_size
        img = np.repeat(np.repeat(appearance, S // 16, axis=2), S // 16, axis=3)   # (N,3,S,S)
        img = 0.6 * img
        img[:, 0] += 0.4 * np.tanh(motion[:, 0])[:, None, None]
        img[:, 1] += 0.4 * np.tanh(motion[:, 1])[:, None, None]
        img[:, 2] += 0.4 * np.tanh(motion[:, 2])[:, None, None]
        return np.clip(img, -1, 1).astype(np.float32)


def fake_pipeline(**kw) -> Pipeline:
    cfg = get_config("demo")
    return Pipeline(cfg, FakeBackend(cfg), build_tokenizer(cfg.text), steps=1, **kw)
