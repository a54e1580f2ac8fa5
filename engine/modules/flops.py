"""Parameter counts and GFLOP per component, measured by counting the ops of one forward pass.

Counting runs on the meta device (no memory, no weights), with torch's FlopCounterMode: a multiply-add
counts as 2 FLOPs; convolutions and matrix products are counted, elementwise ops are not.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import ModelConfig
from ..costs import ComponentCost, per_frame_gflop  # noqa: F401 - re-exported: one definition, torch-free
from .model import InstructAvatar


def _count(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def component_costs(cfg: ModelConfig) -> list[ComponentCost]:
    with torch.device("meta"):
        return _costs(cfg)


def _costs(cfg: ModelConfig) -> list[ComponentCost]:
    model = InstructAvatar(cfg, pretrained_text=False).to("meta").eval()   # buffers built from numpy too
    params = model.component_parameters()
    S, fps, spf = cfg.media.image_size, cfg.media.fps, cfg.media.samples_per_frame
    M, D = cfg.motion_dim, cfg.denoiser.conformer.d_model
    T = cfg.stream.window_frames
    N = cfg.text.context
    a = S // cfg.vae.app_downsample
    meta = dict(device="meta")
    image = torch.zeros(1, 3, S, S, **meta)
    with torch.no_grad():
        app = _count(lambda: model.vae.encode_appearance(image))
        mot = _count(lambda: model.vae.encode_motion(torch.zeros(1, *cfg.vae.motion_input_shape, **meta)))
        key = _count(lambda: model.vae.keyframe_encoder(image))
        dec = _count(lambda: model.vae.decode(torch.zeros(1, M, **meta),
                                              torch.zeros(1, cfg.vae.appearance_channels, a, a, **meta)))
        aud = _count(lambda: model.audio_encoder(torch.zeros(1, fps * spf, **meta))) / fps
        ids = torch.zeros(1, N, dtype=torch.int64, **meta)
        txt = _count(lambda: model.text_encoder(ids, torch.ones_like(ids)))
        tokens = torch.zeros(1, N, cfg.text.width, **meta)
        cache = model.denoiser.condition(tokens, torch.zeros(1, cfg.text.width, **meta), torch.zeros(1, M, **meta))
        cond = _count(lambda: model.denoiser.condition(tokens, torch.zeros(1, cfg.text.width, **meta),
                                                       torch.zeros(1, M, **meta)))
        den = _count(lambda: model.denoiser.forward_cached(torch.zeros(1, T, M, **meta),
                                                           torch.zeros(1, dtype=torch.int64, **meta),
                                                           torch.zeros(1, T, D, **meta), cache,
                                                           torch.ones(1, N, **meta))) / T
    return [
        ComponentCost("vae.appearance_encoder", params["vae.appearance_encoder"], app, "portrait"),
        ComponentCost("vae.motion_encoder", params["vae.motion_encoder"], mot, "frame (training)"),
        ComponentCost("vae.keyframe_encoder", params["vae.keyframe_encoder"], key, "portrait"),
        ComponentCost("vae.decoder", params["vae.decoder"], dec, "frame"),
        ComponentCost("audio_encoder", params["audio_encoder"], aud, "frame"),
        ComponentCost("text_encoder", params["text_encoder"], txt, "instruction"),
        ComponentCost("denoiser.condition", 0, cond, "instruction"),
        ComponentCost("denoiser", params["denoiser"], den, "frame x step"),
    ]
