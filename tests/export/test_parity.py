"""ONNX Runtime vs torch, per component and end to end (export/specs.py is the contract both sides read)."""

from __future__ import annotations

import numpy as np
import pytest

from instructavatar.engine.config import get_config
from instructavatar.engine.ort_backend import OrtBackend
from instructavatar.export.specs import build_wrapper, component_specs, example_inputs

TOL = 1e-4          # fp32 max abs


def _size_sets(spec):
    """Two or more sizes of every dynamic axis: all axes at their first test size, then all at their last."""
    return [{k: a.test_sizes[i] for k, a in spec.axes.items()} for i in (0, -1)]


def _compare(backend: OrtBackend, model, cfg) -> dict[str, float]:
    import torch

    worst = {}
    for name, spec in component_specs(cfg).items():
        if name not in backend.sessions:
            continue
        wrapper = build_wrapper(spec, model)
        for sizes in _size_sets(spec):
            feeds = example_inputs(spec, seed=3, **sizes)
            got = backend.run(name, **feeds)
            with torch.inference_mode():
                want = wrapper(*(torch.from_numpy(v) for v in feeds.values()))
            want = want if isinstance(want, tuple) else (want,)
            for t, g, w in zip(spec.outputs, got, want):
                assert g.shape == tuple(w.shape), (name, t.name, sizes)
                worst[name] = max(worst.get(name, 0.0), float(np.abs(g - w.numpy()).max()))
    return worst


def test_demo_components_match_torch(demo_export, demo_model):
    cfg = get_config("demo")
    backend = OrtBackend(demo_export, cfg, weights=demo_export.parent / "demo.safetensors", threads=1)
    worst = _compare(backend, demo_model, cfg)
    assert set(worst) >= {n for n, s in component_specs(cfg).items() if s.runtime}
    assert max(worst.values()) <= TOL, worst


def test_paper_components_match_torch(paper_export):
    from .conftest import PAPER_DEFAULT

    cfg, model, folder = paper_export
    backend = OrtBackend(folder, cfg, threads=1, components=PAPER_DEFAULT)
    worst = _compare(backend, model, cfg)
    assert set(worst) == set(PAPER_DEFAULT)
    assert max(worst.values()) <= TOL, worst


@pytest.mark.slow
def test_paper_dynamo_components_match_torch(paper_export_dynamo):
    cfg, model, folder = paper_export_dynamo
    worst = _compare(OrtBackend(folder, cfg, threads=1), model, cfg)
    assert set(worst) >= {n for n, s in component_specs(cfg).items() if s.runtime}
    assert max(worst.values()) <= TOL, worst


def test_parity_check_can_fail(demo_export, demo_model):
    """The comparison is not vacuous: a perturbed torch weight is caught."""
    import torch

    cfg = get_config("demo")
    backend = OrtBackend(demo_export, cfg, weights=demo_export.parent / "demo.safetensors", threads=1)
    w = demo_model.vae.decoder.conv_out.weight
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w.add_(0.01)
        spec = component_specs(cfg)["decoder"]
        feeds = example_inputs(spec, seed=3)
        with torch.inference_mode():
            want = build_wrapper(spec, demo_model)(*(torch.from_numpy(v) for v in feeds.values())).numpy()
        assert np.abs(backend.run("decoder", **feeds)[0] - want).max() > TOL
    finally:
        with torch.no_grad():
            w.copy_(saved)


def test_ort_pipeline_frames_match_torch(demo_export):
    """The shipped checkpoint end to end (two chunks: the second has a prefix; guided instruction; blinks)."""
    from instructavatar.demo import DEMO_PORTRAIT
    from instructavatar.engine.loader import load_pipeline
    from instructavatar.engine.media.image_io import load_portrait

    cfg = get_config("demo")
    audio = (0.1 * np.sin(np.arange(int(0.9 * 16000)) * 2 * np.pi * 180 / 16000)).astype(np.float32)
    portrait = load_portrait(DEMO_PORTRAIT, cfg.media.image_size)
    frames = {}
    for name in ("ort", "torch"):
        pipe = load_pipeline("demo", backend=name, threads=1)
        assert pipe.backend.name == name
        frames[name] = pipe.generate(portrait, audio=audio, instruction="Talk happily with a big smile.", seed=1)
    assert frames["ort"].shape == frames["torch"].shape and len(frames["ort"]) == 23
    diff = np.abs(frames["ort"].astype(int) - frames["torch"].astype(int))
    assert diff.max() <= 2, diff.max()
    assert frames["ort"].std() > 10              # real frames, not a blank image


@pytest.mark.slow
def test_paper_full_size_components_match_torch(tmp_path):
    import torch

    from instructavatar.engine.loader import build_model
    from instructavatar.export.onnx_export import export_onnx

    cfg = get_config("paper")
    torch.manual_seed(0)
    model = build_model(cfg, random_weights=True)
    names = ["text_encoder", "condition", "audio_encoder", "keyframe_encoder", "denoiser"]   # decoder: 60 s/frame
    export_onnx(model, cfg, tmp_path, check=False, log=lambda m: None, components=names)
    worst = _compare(OrtBackend(tmp_path, cfg, threads=2, components=names), model, cfg)
    assert max(worst.values()) <= TOL, worst
