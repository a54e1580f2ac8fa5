"""Build a ready pipeline by name: config + weights + backend + tokenizer.

The shipped files are found through the installed `instructavatar` package (instructavatar/assets/), so a
wheel install finds them as an editable checkout does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import instructavatar

from .backend import resolve_backend
from .config import ModelConfig, get_config
from .pipeline import Pipeline
from .tokenizer import build_tokenizer

ASSETS = Path(instructavatar.__file__).resolve().parent / "assets"
DEMO_WEIGHTS = ASSETS / "demo" / "demo.safetensors"


class MissingWeightsError(FileNotFoundError):
    pass


def default_weights(cfg: ModelConfig) -> Path | None:
    return DEMO_WEIGHTS if cfg.name == "demo" and DEMO_WEIGHTS.is_file() else None


def build_model(cfg: ModelConfig, weights: str | Path | None = None, random_weights: bool = False,
                clip_weights: str | Path | None = None, seed: int = 0):
    """InstructAvatar with weights loaded strictly (or random ones, only when asked for explicitly)."""
    import torch

    from .modules.model import InstructAvatar
    from .modules.weights import load_checkpoint

    path = Path(weights) if weights else (None if random_weights else default_weights(cfg))
    if path is None and not random_weights:
        raise MissingWeightsError(
            f"no weights for config {cfg.name!r}: pass --weights FILE, or --random-weights to run with "
            "random weights (output will be noise-like)")
    if path is not None and not path.is_file():
        from .modules.weights import WeightsError

        raise WeightsError(f"weights file not found: {path}")
    torch.manual_seed(seed)
    model = InstructAvatar(cfg, pretrained_text=(cfg.text.kind == "minilm"))
    if path is not None:
        load_checkpoint(model, path)
    if cfg.text.kind == "clip" and clip_weights:
        from .modules.text_encoder import load_clip_text_weights

        load_clip_text_weights(model.text_encoder, clip_weights)
    return model.eval()


def load_pipeline(config: str | ModelConfig = "demo", weights: str | Path | None = None,
                  random_weights: bool = False, backend: str = "auto", steps: int | None = None,
                  eta: float | None = None, device: str = "cpu", threads: int | None = None,
                  clip_weights: str | Path | None = None, seed: int = 0, announce=None,
                  guidance: float | None = None) -> Pipeline:
    cfg = get_config(config) if isinstance(config, str) else config
    name = resolve_backend(backend)
    model = build_model(cfg, weights, random_weights, clip_weights, seed)
    if random_weights and not weights:
        (announce or (lambda m: print(m, file=sys.stderr)))(
            f"*** RANDOM WEIGHTS: config {cfg.name!r} is running untrained; the video will not follow "
            "the audio or the instruction ***")
    assert name == "torch"
    from .modules.torch_backend import TorchBackend

    return Pipeline(cfg, TorchBackend(model, device=device, threads=threads), build_tokenizer(cfg.text),
                    steps=steps, eta=eta, guidance=guidance)
