"""InstructAvatar: all trainable components of one configuration, built from its dataclasses.

Holds no I/O and no sampling loop: the pipeline drives the components through a backend
(engine/backend.py); training code calls the same modules.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .audio_encoder import AudioEncoder
from .denoiser import Denoiser
from .text_encoder import build_text_encoder
from .vae import VAE

# Parameter prefixes of the frozen, separately distributed text encoder: never stored in our checkpoints.
TEXT_ENCODER_PREFIX = "text_encoder."


class InstructAvatar(nn.Module):
    def __init__(self, cfg: ModelConfig, pretrained_text: bool = True):
        super().__init__()
        self.cfg = cfg
        d = cfg.denoiser.conformer.d_model
        self.vae = VAE(cfg.vae, cfg.media.image_size)
        self.audio_encoder = AudioEncoder(cfg.audio, out_dim=d)
        self.text_encoder = build_text_encoder(cfg.text, pretrained=pretrained_text)
        self.denoiser = Denoiser(cfg.denoiser, motion_dim=cfg.motion_dim, text_dim=cfg.text.width)
        for p in self.text_encoder.parameters():
            p.requires_grad_(False)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen text encoder (that comes from its own package or file)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(TEXT_ENCODER_PREFIX)}

    def component_parameters(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {
            "vae.appearance_encoder": count(self.vae.appearance_encoder),
            "vae.motion_encoder": count(self.vae.motion_encoder),
            "vae.keyframe_encoder": count(self.vae.keyframe_encoder),
            "vae.decoder": count(self.vae.decoder),
            "audio_encoder": count(self.audio_encoder),
            "text_encoder": count(self.text_encoder),
            "denoiser": count(self.denoiser),
        }
