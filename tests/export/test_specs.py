"""The export contract itself: sizes derived from the config, examples that never specialise an axis to 1."""

from __future__ import annotations

import inspect

import pytest

from instructavatar.engine.config import get_config
from instructavatar.export.specs import AxisRange, build_wrapper, component_specs, example_inputs

from .conftest import tiny_paper


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_profiles_follow_the_config(name):
    cfg = get_config(name)
    specs = component_specs(cfg)
    assert [n for n, s in specs.items() if s.runtime] == ["text_encoder", "condition", "audio_encoder",
                                                           "appearance_encoder", "keyframe_encoder", "denoiser",
                                                           "decoder"]
    den = specs["denoiser"]
    T, N = cfg.stream.window_frames, cfg.text.context
    assert den.profile("opt")["keys"] == (2, cfg.denoiser.conformer.layers, N, cfg.denoiser.conformer.d_model)
    assert den.profile("max")["x_t"] == (16, T, cfg.motion_dim)
    audio = specs["audio_encoder"]
    assert audio.profile("opt")["wave"] == (2, T * cfg.media.samples_per_frame)
    assert ("blink" in audio.profile("opt")) == cfg.audio.blink_cue          # demo always, paper never
    for spec in specs.values():
        for axis in spec.axes.values():
            assert axis.example >= 2 and len(axis.test_sizes) >= 2
            assert axis.min <= min(axis.test_sizes) and max(axis.test_sizes) <= axis.max


def test_bad_axis_range_is_refused():
    with pytest.raises(ValueError, match="axis B"):
        AxisRange("B", 2, 1, 4, example=2, test_sizes=(1, 2))


def test_wrappers_take_the_spec_inputs_in_order():
    import torch

    from instructavatar.engine.loader import build_model

    cfg = tiny_paper()
    model = build_model(cfg, random_weights=True)
    for spec in component_specs(cfg).values():
        w = build_wrapper(spec, model)
        assert list(inspect.signature(w.forward).parameters) == [t.name for t in spec.inputs], spec.name
        feeds = example_inputs(spec)
        with torch.inference_mode():
            out = w(*(torch.from_numpy(v) for v in feeds.values()))
        out = out if isinstance(out, tuple) else (out,)
        sizes = spec.sizes()
        assert [tuple(o.shape) for o in out] == [t.concrete(sizes) for t in spec.outputs], spec.name
