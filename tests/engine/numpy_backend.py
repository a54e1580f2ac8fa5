"""A small deterministic numpy `Backend` for fast pipeline tests (no torch, no weights).

Every output depends on the inputs it should (audio per frame, the instruction's unmasked tokens, the keyframe,
the portrait, the noisy motion), so tests of the pipeline's plumbing (input checks, streaming, batching,
instruction switches) can fail; NaN audio propagates to NaN frames as in the real model.
"""

from __future__ import annotations

import numpy as np

from instructavatar.engine.backend import InstructionTensors
from instructavatar.engine.config import ModelConfig


class NumpyBackend:
    name = "numpy-test"

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.cfg = cfg
        self.M, self.D = cfg.motion_dim, cfg.denoiser.conformer.d_model
        self.L, self.Dt = cfg.denoiser.conformer.layers, cfg.text.width
        self.Ca, self.a = cfg.vae.appearance_channels, cfg.media.image_size // cfg.vae.app_downsample
        self.spf = cfg.media.samples_per_frame
        self.w_text = rng.standard_normal((self.Dt, self.D)).astype(np.float32) / np.sqrt(self.Dt)
        self.w_audio = rng.standard_normal((2, self.D)).astype(np.float32)
        self.w_motion = rng.standard_normal((self.D, self.M)).astype(np.float32) / np.sqrt(self.D)
        self.w_dec = rng.standard_normal((self.M, 3)).astype(np.float32) / np.sqrt(self.M)

    def encode_appearance(self, image):                      # (B,3,H,W) -> (B,Ca,a,a)
        B, _, H, _ = image.shape
        k = H // self.a
        pooled = image.reshape(B, 3, self.a, k, self.a, k).mean(axis=(3, 5))
        return np.tile(pooled, (1, -(-self.Ca // 3), 1, 1))[:, : self.Ca].astype(np.float32)

    def encode_keyframe(self, image):                        # (B,3,H,W) -> (B,M)
        return np.tile(image.mean(axis=(2, 3)), (1, -(-self.M // 3)))[:, : self.M].astype(np.float32)

    def encode_motion(self, landmarks):
        return np.zeros((landmarks.shape[0], self.M), np.float32)

    def encode_text(self, ids, mask):                        # (B,N) -> (B,N,Dt), (B,Dt)
        freqs = np.linspace(0.001, 0.05, self.Dt, dtype=np.float32)
        tokens = np.sin(ids[..., None].astype(np.float32) * freqs)
        m = mask[..., None].astype(np.float32)
        return tokens.astype(np.float32), ((tokens * m).sum(1) / m.sum(1)).astype(np.float32)

    def condition(self, tokens, mask, pooled, keyframe):
        B, N, _ = tokens.shape
        kv = tokens @ self.w_text                                                    # (B,N,D)
        const = (pooled @ self.w_text)[:, None] + keyframe.mean(1)[:, None, None]    # (B,1,D)
        return InstructionTensors(const=np.repeat(const, self.L, 1).astype(np.float32),
                                  keys=np.repeat(kv[:, None], self.L, 1).astype(np.float32),
                                  values=np.repeat(np.cos(kv)[:, None], self.L, 1).astype(np.float32),
                                  mask=mask.astype(np.float32))

    def encode_audio(self, wave, blink=None):                # (B,S) -> (B,T,D)
        B = wave.shape[0]
        f = wave.reshape(B, -1, self.spf)
        feats = np.stack([np.sqrt((f ** 2).mean(-1)), f.mean(-1)], -1) @ self.w_audio     # (B,T,D)
        if blink is not None:
            feats = feats + blink[..., None]
        return feats.astype(np.float32)

    def denoise(self, x_t, t, audio, known, inst):           # -> x0 (B,T,M)
        q = audio + x_t.mean(-1, keepdims=True) + inst.const[:, :1]                  # (B,T,D)
        scores = np.einsum("btd,bnd->btn", q, inst.keys[:, 0]) / np.sqrt(self.D)
        scores = np.where(inst.mask[:, None] > 0, scores, -1e9)
        w = np.exp(scores - scores.max(-1, keepdims=True)) * (inst.mask[:, None] > 0)
        w = w / w.sum(-1, keepdims=True)
        h = q + np.einsum("btn,bnd->btd", w, inst.values[:, 0])
        return (np.tanh(h @ self.w_motion) + 0.1 * x_t).astype(np.float32)

    def decode(self, motion, appearance):                    # (N,M), (N,Ca,a,a) -> (N,3,H,W) in [-1,1]
        S = self.cfg.media.image_size
        up = np.repeat(np.repeat(appearance[:, :3], S // self.a, 2), S // self.a, 3)
        return np.tanh(up + (motion @ self.w_dec)[:, :, None, None]).astype(np.float32)


def numpy_pipeline(config: str = "demo", steps: int = 2, **kwargs):
    from instructavatar.engine.config import get_config
    from instructavatar.engine.pipeline import Pipeline
    from instructavatar.engine.tokenizer import build_tokenizer

    cfg = get_config(config)
    return Pipeline(cfg, NumpyBackend(cfg), build_tokenizer(cfg.text), steps=steps, **kwargs)
