"""GAIA-style VAE: appearance and motion are encoded separately; the decoder renders motion + appearance.

- AppearanceEncoder: RGB frame (B,3,S,S) in [-1,1] -> appearance latent (B,Ca,S/f,S/f). Once per portrait.
- MotionEncoder: landmark-dot image (B,3,L,L) -> motion latent (B,Cm,m,m), flattened to (B, M) per frame.
  With `landmark_points` (demo; our change) the motion encoder is an MLP on the landmark coordinates (B,N,2) in
  [-1, 1] instead (`PointMotionEncoder`): at the demo's 64 px dot image, a landmark's movement below a pixel is
  lost, and most of the world's action units move landmarks by less than that (docs/STATUS.md: the latent
  of the dot encoder explained R^2 0.45 of the AU intensities, the coordinates 0.80 linearly).
- KeyframeEncoder: RGB portrait -> motion latent directly (our addition: a user's portrait has no
  landmarks, so a small head trained to regress the motion encoder's output stands in for a detector).
- Decoder: motion latent upsampled to the appearance grid, concatenated, -> RGB frame (B,3,S,S).
- Warp (config `warp`, demo only; our addition): a plain decoder must redraw every edge of the face from a
  latent of another pose and expression, and averages detail away. With `warp`, the cached appearance also
  carries the portrait's pixels and its own motion latent (keyframe encoder); a small head predicts a
  backward flow from (appearance latent, portrait motion, target motion), the latent and the pixels are
  warped by it, and the decoder blends the warped pixels into its output through a predicted mask (and reads
  them through a skip at its last stage). Every new part starts at zero, so a warp model initialised from a
  plain one renders what the plain one did (within a 2% blend).

Blocks follow the LDM KL autoencoder (ResNet blocks with GroupNorm + SiLU, stride-2 conv downsampling,
nearest + conv upsampling, optional middle self-attention), the structure the authors' VAE config
(`ddconfig`: ch 256, ch_mult 1,2,4, 8 res blocks) instantiates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import AutoencoderConfig, VAEConfig


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
    """(B, in_channels, S/f, S/f) -> (B, out_channels, S, S) in [-1, 1] (tanh).

    With `image_skip`, forward also takes an image (B, out_channels, S, S) (the warped portrait): it enters
    the last stage through a zero-initialised conv, and the output is a per-pixel blend of the decoded frame
    and that image, the mask predicted from the last features (initialised to 2% image), plus a zero-initialised
    additive detail (what the warp cannot bring: blush, wrinkle and crease lines drawn on the warped skin),
    clamped to [-1, 1]."""

    def __init__(self, cfg: AutoencoderConfig, image_skip: bool = False, detail: bool = True):
        super().__init__()
        g = cfg.norm_groups
        widths = [cfg.ch * m for m in cfg.ch_mult]
        cin = widths[-1]
        self.conv_in = nn.Conv2d(cfg.in_channels, cin, 3, padding=1)
        self.mid = MidBlock(cin, g, cfg.mid_attention)
        self.up = nn.ModuleList()                    # built lowest resolution first, like LDM's reversed list
        for level in reversed(range(len(widths))):
            last_stage_in = cin                      # channels entering the full-resolution stage (level 0)
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
        self.image_skip = image_skip
        if image_skip:
            self.skip_in = nn.Conv2d(cfg.out_channels * cfg.shuffle**2, last_stage_in, 3, padding=1)
            self.mask_out = nn.Conv2d(cin, cfg.shuffle**2, 3, padding=1)
            nn.init.zeros_(self.skip_in.weight)
            nn.init.zeros_(self.skip_in.bias)
            nn.init.zeros_(self.mask_out.weight)
            nn.init.constant_(self.mask_out.bias, -4.0)            # sigmoid(-4) = 0.018
        self.detail = image_skip and detail
        if self.detail:
            self.detail_out = nn.Conv2d(cin, cfg.out_channels * cfg.shuffle**2, 3, padding=1)
            nn.init.zeros_(self.detail_out.weight)
            nn.init.zeros_(self.detail_out.bias)

    def forward(self, z: Tensor, image: Tensor | None = None) -> Tensor:
        if self.image_skip and image is None:
            raise ValueError("this decoder blends a warped portrait: pass image=")
        h = self.mid(self.conv_in(z))
        for i, stage in enumerate(self.up):
            if self.image_skip and i == len(self.up) - 1:        # last stage: the warped portrait's pixels
                h = h + self.skip_in(F.pixel_unshuffle(image, self.shuffle) if self.shuffle > 1 else image)
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        feats = F.silu(self.norm_out(h))
        out = self.conv_out(feats)
        if self.shuffle > 1:
            out = F.pixel_shuffle(out, self.shuffle)
        out = torch.tanh(out)
        if not self.image_skip:
            return out
        mask = self.mask_out(feats)
        if self.shuffle > 1:
            mask = F.pixel_shuffle(mask, self.shuffle)
        mask = torch.sigmoid(mask)                                   # (B,1,S,S): 1 = take the warped portrait
        frame = out + mask * (image - out)
        if not self.detail:
            return frame
        detail = self.detail_out(feats)
        if self.shuffle > 1:
            detail = F.pixel_shuffle(detail, self.shuffle)
        return (frame + detail).clamp(-1.0, 1.0)


class FlowHead(nn.Module):
    """(B, Ca+2Cm, a, a) appearance latent ++ the portrait's and the target's upsampled motion -> (B, 2, a, a)
    backward flow: for each output position, the (x, y) offset in normalised [-1, 1] coordinates at which to
    sample the portrait.
    One stride-2 level widens the view to head-pose displacements. The output conv starts at zero."""

    def __init__(self, cin: int, ch: int):
        super().__init__()
        self.conv_in = nn.Conv2d(cin, ch, 3, padding=1)
        self.down = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv_out = nn.Conv2d(2 * ch, 2, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = F.silu(self.conv_in(x))
        d = F.silu(self.mid(F.silu(self.down(h))))
        d = F.interpolate(d, size=h.shape[-2:], mode="nearest")
        return self.conv_out(torch.cat([h, d], dim=1))


def warp(x: Tensor, flow: Tensor) -> Tensor:
    """Sample x (B,C,H,W) at identity + flow; flow (B,2,H,W) holds (x, y) offsets in normalised coordinates
    (align_corners=False, so the identity grid hits pixel centres exactly and flow 0 returns x).
    The grid and the sampling are fp32 whatever the input's type (bf16 cannot address a 256-pixel grid)."""
    B, _, H, W = x.shape
    ys = (torch.arange(H, dtype=torch.float32, device=x.device) + 0.5) * (2.0 / H) - 1.0
    xs = (torch.arange(W, dtype=torch.float32, device=x.device) + 0.5) * (2.0 / W) - 1.0
    base = torch.stack([xs[None, :].expand(H, W), ys[:, None].expand(H, W)], dim=-1)       # (H,W,2)
    grid = base[None] + flow.permute(0, 2, 3, 1).float()
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(x.dtype)


class PointMotionEncoder(nn.Module):
    """Landmark coordinates (B, N, 2) in [-1, 1] -> (B, 2*Cm, m, m): KL mean and log-variance on the same grid
    the image motion encoder produces, so everything downstream is unchanged."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.points, self.channels, self.side = cfg.landmark_points, cfg.motion_channels, cfg.motion_side
        h = cfg.point_hidden
        self.net = nn.Sequential(nn.Linear(2 * cfg.landmark_points, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(),
                                 nn.Linear(h, 2 * cfg.motion_dim))
        # Per-coordinate mean and std of the training landmarks (set once before training, stored with the
        # weights): expressions move landmarks by a few hundredths of the frame, so the MLP reads standardised
        # coordinates. Identity until set.
        self.register_buffer("point_shift", torch.zeros(2 * cfg.landmark_points))
        self.register_buffer("point_scale", torch.ones(2 * cfg.landmark_points))

    @torch.no_grad()
    def set_input_stats(self, points: Tensor) -> None:
        """Standardise by these training landmarks (B, N, 2) from now on."""
        flat = points.flatten(1)
        self.point_shift.copy_(flat.mean(0))
        self.point_scale.copy_(flat.std(0).clamp(min=1e-3))

    def forward(self, points: Tensor) -> Tensor:
        if points.shape[1:] != (self.points, 2):
            raise ValueError(f"motion encoder reads landmark points (B, {self.points}, 2), got {tuple(points.shape)}")
        x = (points.flatten(1) - self.point_shift) / self.point_scale
        return self.net(x).view(points.shape[0], 2 * self.channels, self.side, self.side)


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
    # parameter prefixes that only a `warp` VAE has; all start at zero, so a plain VAE's weights can start one
    WARP_PARTS = ("flow_head.", "decoder.skip_in.", "decoder.mask_out.", "decoder.detail_out.")
    # the decoder's detail head (added last); zero-initialised, so a state without it is the same model
    DETAIL_PART = "decoder.detail_out."

    def __init__(self, cfg: VAEConfig, image_size: int):
        super().__init__()
        self.cfg = cfg
        self.image_size = image_size
        self.appearance_encoder = Encoder(cfg.appearance)
        self.motion_encoder = PointMotionEncoder(cfg) if cfg.landmark_points else Encoder(cfg.motion)
        self.keyframe_encoder = KeyframeEncoder(cfg, image_size)
        self.decoder = Decoder(cfg.decoder, image_skip=cfg.warp, detail=cfg.detail)
        if cfg.warp:
            self.flow_head = FlowHead(cfg.app_channels + 2 * cfg.motion_channels, cfg.decoder.ch)
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
        """(B,3,S,S) in [-1,1] -> (B, appearance_channels, S/f, S/f): the posterior mean; with `warp` also the
        portrait's pixels folded onto the same grid and its raw motion latent (keyframe encoder) upsampled
        onto it (the decoder's flow goes from the portrait's motion to the target's)."""
        return self.appearance_state(self._mean(self.appearance_encoder(image)), image)

    def appearance_state(self, latent: Tensor, image: Tensor) -> Tensor:
        """Appearance latent (B,Ca,a,a) of `image` (B,3,S,S) -> the decoder's appearance input. The portrait's
        motion is detached: in training the keyframe head learns only its own regression, never the decoder's
        reconstruction (the motion generator is conditioned on the same head)."""
        if not self.cfg.warp:
            return latent
        own_motion = self.motion_grid(self.keyframe_encoder(image).detach(), latent.shape[-1])
        return torch.cat([latent, F.pixel_unshuffle(image, self.cfg.app_downsample), own_motion], dim=1)

    def motion_grid(self, motion: Tensor, side: int) -> Tensor:
        """Raw motion (N, M) -> (N, Cm, side, side): the latent grid, nearest-upsampled."""
        m = self.cfg.motion_side
        return F.interpolate(motion.view(motion.shape[0], self.cfg.motion_channels, m, m), size=(side, side),
                             mode="nearest")

    @torch.no_grad()
    def set_motion_stats(self, shift: Tensor, scale: Tensor) -> None:
        """Fix the raw -> normalised motion latent map (per-dimension mean and std of the training data)."""
        self.motion_shift.copy_(torch.as_tensor(shift, dtype=self.motion_shift.dtype))
        self.motion_scale.copy_(torch.as_tensor(scale, dtype=self.motion_scale.dtype))

    def encode_motion_raw(self, landmarks: Tensor) -> Tensor:
        """Landmark image (B,3,L,L) in [-1,1], or with `landmark_points` coordinates (B,N,2) in [-1,1] -> (B, M)
        flattened raw motion latent (posterior mean)."""
        return self._mean(self.motion_encoder(landmarks)).flatten(1)

    def encode_motion(self, landmarks: Tensor) -> Tensor:
        """Landmark image or points (as encode_motion_raw) -> (B, M) normalised motion latent."""
        return (self.encode_motion_raw(landmarks) - self.motion_shift) / self.motion_scale

    def encode_keyframe(self, image: Tensor) -> Tensor:
        """Portrait (B,3,S,S) in [-1,1] -> (B, M) normalised motion latent of the face it shows."""
        return (self.keyframe_encoder(image) - self.motion_shift) / self.motion_scale

    def decode(self, motion: Tensor, appearance: Tensor) -> Tensor:
        """Normalised motion (N, M) and appearance (N, Ca, a, a) -> frames (N, 3, S, S) in [-1, 1]."""
        return self.decode_raw(motion * self.motion_scale + self.motion_shift, appearance)

    def decode_raw(self, motion: Tensor, appearance: Tensor) -> Tensor:
        """Raw motion (N, M) and appearance (N, appearance_channels, a, a) -> frames (N, 3, S, S) in [-1, 1]."""
        return self.decode_raw_with_flow(motion, appearance)[0]

    def decode_raw_with_flow(self, motion: Tensor, appearance: Tensor) -> tuple[Tensor, Tensor | None]:
        """decode_raw, also returning the backward flow (N, 2, a, a) it warped the portrait by (None without
        `warp`); training supervises the flow at the landmarks."""
        grid = self.motion_grid(motion, appearance.shape[-1])
        if not self.cfg.warp:
            return self.decoder(torch.cat([appearance, grid], dim=1)), None
        ca, cp = self.cfg.app_channels, 3 * self.cfg.app_downsample ** 2
        latent, own_motion = appearance[:, :ca], appearance[:, ca + cp:]
        pixels = F.pixel_shuffle(appearance[:, ca:ca + cp], self.cfg.app_downsample)
        flow = self.flow_head(torch.cat([latent, own_motion, grid], dim=1))
        flow_px = F.interpolate(flow, size=pixels.shape[-2:], mode="bilinear", align_corners=False)
        frame = self.decoder(torch.cat([warp(latent, flow), grid], dim=1), image=warp(pixels, flow_px))
        return frame, flow
