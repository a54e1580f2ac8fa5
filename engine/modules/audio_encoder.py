"""Audio encoder: front end (wav2vec2 conv features or log-mel, 50 Hz) -> stride-2 Conv1d (25 Hz, one
vector per video frame) -> audio Conformer with absolute positions -> projection to the denoiser width.

(B, S) waveform at 16 kHz with S = F * 640 -> (B, F, d_model): added element-wise to the motion tokens.
Motion-only mode feeds silence (zeros) through the same encoder, as the paper does with empty audio.
With `blink_cue` (demo config) a per-frame blink cue (B, F) in [0, 1] (engine/blinks.py: the engine schedules idle
blinks, the model renders them) goes through a zero-initialised Linear(1, out_dim) and is added to the output;
no cue = zeros.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..config import AudioConfig
from .audio_frontend import build_audio_frontend
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
        self.blink_proj = None
        if cfg.blink_cue:
            self.blink_proj = nn.Linear(1, out_dim)
            nn.init.zeros_(self.blink_proj.weight)
            nn.init.zeros_(self.blink_proj.bias)

    def encode(self, wave: Tensor) -> Tensor:
        """(B, S) waveform -> (B, F, out_dim) without the blink cue (the paper config's exported signature)."""
        feats = self.frontend(wave)                                  # (B, 2F, feature_dim) at 50 Hz
        h = self.downsample(feats.transpose(1, 2)).transpose(1, 2)   # (B, F, d) at 25 Hz
        h = h + self.positions[: h.shape[1]][None]
        for layer in self.layers:
            h = layer(h)
        return self.out_proj(h)                                      # (B, F, out_dim)

    def encode_with_blink(self, wave: Tensor, blink: Tensor) -> Tensor:
        """(B, S) waveform, (B, F) blink cue -> (B, F, out_dim): the demo config's exported signature (no
        Python branch: the cue is always an input; shapes are checked by the caller or the runtime)."""
        out = self.encode(wave)
        return out + self.blink_proj(blink.to(out.dtype)[..., None])

    def forward(self, wave: Tensor, blink: Tensor | None = None) -> Tensor:
        """Training / eager entry: the cue is optional (a zero cue when missing) and its shape is checked."""
        out = self.encode(wave)
        if self.blink_proj is None:
            return out
        if blink is None:
            blink = out.new_zeros(out.shape[:2])
        if tuple(blink.shape) != tuple(out.shape[:2]):
            raise ValueError(f"blink cue must be (B, F) = {tuple(out.shape[:2])}, got {tuple(blink.shape)}")
        return out + self.blink_proj(blink.to(out.dtype)[..., None])
