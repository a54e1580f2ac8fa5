"""Audio encoder: front end (wav2vec2 conv features or log-mel, 50 Hz) -> stride-2 Conv1d (25 Hz, one
vector per video frame) -> audio Conformer with absolute positions -> projection to the denoiser width.

(B, S) waveform at 16 kHz with S = F * 640 -> (B, F, d_model): added element-wise to the motion tokens.
Motion-only mode feeds silence (zeros) through the same encoder, as the paper does with empty audio.
"""

from __future__ import annotations

from torch import Tensor, nn

from .audio_frontend import build_audio_frontend
from .config import AudioConfig
from .conformer import ConformerLayer, sinusoidal_table


class AudioEncoder(nn.Module):
    def __init__(self, cfg: AudioConfig, out_dim: int, max_frames: int = 4096):
        super().__init__()
        c = cfg.conformer
        self.frontend = build_audio_frontend(cfg)
        self.downsample = nn.Conv1d(cfg.feature_dim, c.d_model, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", sinusoidal_table(max_frames, c.d_model), persistent=False)
        self.layers = nn.ModuleList(ConformerLayer(c) for _ in range(c.layers))
        self.out_proj = nn.Linear(c.d_model, out_dim)

    def forward(self, wave: Tensor) -> Tensor:
        feats = self.frontend(wave)                                  # (B, 2F, feature_dim) at 50 Hz
        h = self.downsample(feats.transpose(1, 2)).transpose(1, 2)   # (B, F, d) at 25 Hz
        h = h + self.positions[: h.shape[1]][None]
        for layer in self.layers:
            h = layer(h)
        return self.out_proj(h)                                      # (B, F, out_dim)
