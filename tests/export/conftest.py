"""Shared fixtures of the export tests: the shipped demo export and checkpoint, and a reduced paper config.

Graphs are exported once per test session (session-scoped fixtures, small shapes) to keep the default suite fast.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from instructavatar.engine.config import AdapterConfig, AutoencoderConfig, ConformerConfig, get_config
from instructavatar.engine.loader import DEMO_ONNX, DEMO_WEIGHTS


def tiny_paper():
    """The paper config's architecture (CLIP text, wav2vec2 front end, dot-image motion encoder, no warp, no
    blink cue, 12-head attention replaced by 4) at small depth and width, 64 px frames."""
    cfg = get_config("paper")
    ae = lambda cin, cout: AutoencoderConfig(in_channels=cin, out_channels=cout, ch=32, ch_mult=(1, 2, 4),  # noqa: E731
                                             num_res_blocks=1, norm_groups=8)
    conf = ConformerConfig(d_model=64, layers=1, heads=4, ffn_dim=128, kernel=5)
    return replace(
        cfg, media=replace(cfg.media, image_size=64),
        vae=replace(cfg.vae, appearance=ae(3, 3), motion=ae(3, 3), decoder=ae(6, 3), keyframe_ch=8),
        audio=replace(cfg.audio, conformer=conf),
        text=replace(cfg.text, width=64, layers=2, heads=4, ffn_dim=128),
        denoiser=replace(cfg.denoiser, conformer=replace(conf, layers=2),
                         emotion_adapter=AdapterConfig(hidden=64, layers=4),
                         motion_adapter=AdapterConfig(hidden=64, layers=4),
                         keyframe_adapter=AdapterConfig(hidden=64, layers=4)),
        stream=replace(cfg.stream, chunk_frames=4, prefix_frames=4))


@pytest.fixture(scope="session")
def demo_export():
    if not (DEMO_ONNX / "manifest.json").is_file():
        pytest.fail(f"the shipped demo export is missing: {DEMO_ONNX} (instructavatar export --config demo "
                    f"--format onnx --out {DEMO_ONNX})")
    return DEMO_ONNX


@pytest.fixture(scope="session")
def demo_model():
    from instructavatar.engine.loader import build_model

    return build_model(get_config("demo"), DEMO_WEIGHTS)


PAPER_DEFAULT = ["text_encoder", "condition", "audio_encoder", "appearance_encoder", "keyframe_encoder", "denoiser",
                 "decoder"]


def _paper_export(tmp_path_factory, exporters: tuple[str, ...], components: list[str] | None = None):
    import torch

    from instructavatar.engine.loader import build_model
    from instructavatar.export.onnx_export import export_onnx

    cfg = tiny_paper()
    torch.manual_seed(0)
    model = build_model(cfg, random_weights=True)
    with torch.no_grad():                      # open the zero gates so every branch reaches the output
        for name, p in model.named_parameters():
            if ".gate." in name or "skip_in" in name:
                p.normal_(0, 0.05)
    out = tmp_path_factory.mktemp("paper_onnx_" + exporters[0])
    export_onnx(model, cfg, out, check=False, log=lambda m: None, exporters=exporters, components=components)
    return cfg, model, out


@pytest.fixture(scope="session")
def paper_export(tmp_path_factory):
    """The reduced paper config with random (non-zero-gated) weights, exported without fed weights. For speed the
    default suite exports every component with TorchScript (seconds per graph; the dynamo export of this config
    takes minutes on a 2-core machine, and the demo's dynamo graphs are checked by default). The all-dynamo
    export of this config is the slow `paper_export_dynamo`."""
    return _paper_export(tmp_path_factory, ("torchscript",), PAPER_DEFAULT)


@pytest.fixture(scope="session")
def paper_export_dynamo(tmp_path_factory):
    return _paper_export(tmp_path_factory, ("dynamo",))
