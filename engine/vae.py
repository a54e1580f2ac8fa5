"""GAIA-style VAE: appearance and motion are encoded separately; the decoder renders motion + appearance.

- AppearanceEncoder: RGB frame (B,3,S,S) in [-1,1] -> appearance latent (B,Ca,S/f,S/f). Once per portrait.
- MotionEncoder: landmark-dot image (B,3,L,L) -> motion latent (B,Cm,m,m), flattened to (B, M) per frame.
- KeyframeEncoder: RGB portrait -> motion latent directly (our addition: a user's portrait has no
  landmarks, so a small head trained to regress the motion encoder's output stands in for a detector).
- Decoder: motion latent upsampled to the appearance grid, concatenated, -> RGB frame (B,3,S,S).

Blocks follow the LDM KL autoencoder (ResNet blocks with GroupNorm + SiLU, stride-2 conv downsampling,
nearest + conv upsampling, optional middle self-attention), the structure the authors' VAE config
(`ddconfig`: ch 256, ch_mult 1,2,4, 8 res blocks) instantiates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import AutoencoderConfig, VAEConfig


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, ch), ch, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention (LDM middle block)."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = _norm(ch, groups)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        h = self.norm(x)
        q, k, v = (m(h).flatten(2).transpose(1, 2)[:, None] for m in (self.q, self.k, self.v))  # (B,1,HW,C)
        y = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).reshape(B, C, H, W)
        return x + self.proj_out(y)


class MidBlock(nn.Module):
    def __init__(self, ch: int, groups: int, attention: bool):
        super().__init__()
        self.block_1 = ResnetBlock(ch, ch, groups)
        self.attn_1 = AttnBlock(ch, groups) if attention else nn.Identity()
        self.block_2 = ResnetBlock(ch, ch, groups)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """(B, in_channels, S, S) -> (B, 2*out_channels, S/f, S/f): KL mean and log-variance."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        g = cfg.norm_groups
        widths = [cfg.ch * m for m in cfg.ch_mult]
        self.shuffle = cfg.shuffle
        self.conv_in = nn.Conv2d(cfg.in_channels * cfg.shuffle**2, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = cfg.ch
        for level, cout in enumerate(widths):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResnetBlock(cin, cout, g))
                cin = cout
            if level + 1 < len(widths):
                stage.downsample = nn.Conv2d(cin, cin, 3, stride=2, padding=0)   # LDM pads (0,1,0,1) first
            self.down.append(stage)
        self.mid = MidBlock(cin, g, cfg.mid_attention)
        self.norm_out = _norm(cin, g)
        self.conv_out = nn.Conv2d(cin, 2 * cfg.out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if self.shuffle > 1:
            x = F.pixel_unshuffle(x, self.shuffle)
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(F.pad(h, (0, 1, 0, 1)))
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, in_channels, S/f, S/f) -> (B, out_channels, S, S) in [-1, 1] (tanh)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        g = cfg.norm_groups
        widths = [cfg.ch * m for m in cfg.ch_mult]
        cin = widths[-1]
        self.conv_in = nn.Conv2d(cfg.in_channels, cin, 3, padding=1)
        self.mid = MidBlock(cin, g, cfg.mid_attention)
        self.up = nn.ModuleList()                    # built lowest resolution first, like LDM's reversed list
        for level in reversed(range(len(widths))):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(cin, widths[level], g))
                cin = widths[level]
            if level > 0:
                stage.upsample = nn.Conv2d(cin, cin, 3, padding=1)
            self.up.append(stage)
        self.shuffle = cfg.shuffle
        self.norm_out = _norm(cin, g)
        self.conv_out = nn.Conv2d(cin, cfg.out_channels * cfg.shuffle**2, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for stage in self.up:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.conv_out(F.silu(self.norm_out(h)))
        if self.shuffle > 1:
            h = F.pixel_shuffle(h, self.shuffle)
        return torch.tanh(h)


class KeyframeEncoder(nn.Module):
    """RGB portrait (B,3,S,S) -> motion latent (B, M): a strided CNN + linear head."""

    def __init__(self, cfg: VAEConfig, image_size: int):
        super().__init__()
        c = cfg.keyframe_ch
        layers, cin, side = [], 3, image_size
        for cout in (c, 2 * c, 4 * c, 8 * c, 8 * c):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.GroupNorm(min(8, cout), cout), nn.SiLU()]
            cin, side = cout, side // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin * side * side, cfg.motion_dim)

    def forward(self, image: Tensor) -> Tensor:
        return self.head(self.features(image).flatten(1))


class VAE(nn.Module):
    def __init__(self, cfg: VAEConfig, image_size: int):
        super().__init__()
        self.cfg = cfg
        self.image_size = image_size
        self.appearance_encoder = Encoder(cfg.appearance)
        self.motion_encoder = Encoder(cfg.motion)
        self.keyframe_encoder = KeyframeEncoder(cfg, image_size)
        self.decoder = Decoder(cfg.decoder)
        if cfg.decoder.in_channels != cfg.app_channels + cfg.motion_channels:
            raise ValueError("decoder.in_channels must equal appearance + motion latent channels")
        # Per-dimension statistics of the motion latents over the training data (set once the motion
        # encoder is final, stored in the checkpoint): the public motion latent is (raw - shift) / scale,
        # unit variance per dimension, which is the space the diffusion model works in. Identity until set.
        self.register_buffer("motion_shift", torch.zeros(cfg.motion_dim))
        self.register_buffer("motion_scale", torch.ones(cfg.motion_dim))

    @staticmethod
    def _mean(moments: Tensor) -> Tensor:
        return moments.chunk(2, dim=1)[0]

    def encode_appearance(self, image: Tensor) -> Tensor:
        """(B,3,S,S) in [-1,1] -> (B,Ca,S/f,S/f) (posterior mean)."""
        return self._mean(self.appearance_encoder(image))

    @torch.no_grad()
    def set_motion_stats(self, shift: Tensor, scale: Tensor) -> None:
        """Fix the raw -> normalised motion latent map (per-dimension mean and std of the training data)."""
        self.motion_shift.copy_(torch.as_tensor(shift, dtype=self.motion_shift.dtype))
        self.motion_scale.copy_(torch.as_tensor(scale, dtype=self.motion_scale.dtype))

    def encode_motion_raw(self, landmark_image: Tensor) -> Tensor:
        """(B,3,L,L) in [-1,1] -> (B, M) flattened raw motion latent (posterior mean)."""
        return self._mean(self.motion_encoder(landmark_image)).flatten(1)

    def encode_motion(self, landmark_image: Tensor) -> Tensor:
        """(B,3,L,L) in [-1,1] -> (B, M) normalised motion latent."""
        return (self.encode_motion_raw(landmark_image) - self.motion_shift) / self.motion_scale

    def encode_keyframe(self, image: Tensor) -> Tensor:
        """Portrait (B,3,S,S) in [-1,1] -> (B, M) normalised motion latent of the face it shows."""
        return (self.keyframe_encoder(image) - self.motion_shift) / self.motion_scale

    def decode(self, motion: Tensor, appearance: Tensor) -> Tensor:
        """Normalised motion (N, M) and appearance (N, Ca, a, a) -> frames (N, 3, S, S) in [-1, 1]."""
        return self.decode_raw(motion * self.motion_scale + self.motion_shift, appearance)

    def decode_raw(self, motion: Tensor, appearance: Tensor) -> Tensor:
        """Raw motion (N, M) and appearance (N, Ca, a, a) -> frames (N, 3, S, S) in [-1, 1]."""
        m = self.cfg.motion_side
        grid = motion.view(motion.shape[0], self.cfg.motion_channels, m, m)
        grid = F.interpolate(grid, size=appearance.shape[-2:], mode="nearest")
        return self.decoder(torch.cat([appearance, grid], dim=1))
