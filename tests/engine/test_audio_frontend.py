"""engine/modules/audio_frontend.py: shapes, frame alignment, window invariance, weight loading, ONNX export."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

from instructavatar.engine.config import get_config
from instructavatar.engine.modules.audio_frontend import (
    EDGE_PAD,
    LogMelFrontend,
    Wav2Vec2FeatureExtractor,
    build_audio_frontend,
    load_wav2vec2_feature_weights,
)

torch.manual_seed(0)


def sine(freq: float, seconds_or_samples: int, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(seconds_or_samples, dtype=torch.float64) / 16000
    return (amp * torch.sin(2 * np.pi * freq * t)).float()


@pytest.fixture(scope="module")
def frontends():
    torch.manual_seed(0)
    return {
        "logmel": LogMelFrontend().eval(),
        "w2v_group": Wav2Vec2FeatureExtractor("group").eval(),
        "w2v_layer": Wav2Vec2FeatureExtractor("layer").eval(),
    }


@pytest.mark.parametrize("name,dim", [("logmel", 64), ("w2v_group", 512), ("w2v_layer", 512)])
@pytest.mark.parametrize("frames", [1, 7, 25])
def test_shapes(frontends, name, dim, frames):
    with torch.no_grad():
        y = frontends[name](torch.randn(3, 640 * frames) * 0.1)
    assert y.shape == (3, 2 * frames, dim) and y.dtype == torch.float32
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["logmel", "w2v_group"])
def test_remainder_is_dropped(frontends, name):
    with torch.no_grad():
        assert frontends[name](torch.randn(1, 640 * 3 + 639)).shape[1] == 6
        assert frontends[name](torch.randn(1, 640 * 3 + 639)[0]).shape[:2] == (1, 6)   # (S,) accepted


def test_build_from_configs():
    demo, paper = get_config("demo"), get_config("paper")
    m = build_audio_frontend(demo.audio)
    assert isinstance(m, LogMelFrontend) and m.out_dim == demo.audio.feature_dim
    w = build_audio_frontend(paper.audio)
    assert isinstance(w, Wav2Vec2FeatureExtractor) and w.mode == "group" and w.out_dim == 512
    with pytest.raises(ValueError, match="unknown audio front end"):
        build_audio_frontend(demo.audio.__class__(**{**demo.audio.__dict__, "frontend": "mfcc"}))
    with pytest.raises(ValueError, match="512-d"):
        build_audio_frontend(paper.audio.__class__(**{**paper.audio.__dict__, "feature_dim": 256}))


def test_logmel_matches_torch_stft():
    m = LogMelFrontend()
    x = torch.randn(2, 640 * 5)
    # frame j of an n_fft frame starting at 320 j - 96 (window centred in the frame) <=> centre 320 j + 160
    off = EDGE_PAD + (m.n_fft - m.win_length) // 2
    xp = torch.nn.functional.pad(x, (off, off))
    spec = torch.stft(xp, m.n_fft, m.hop_length, m.win_length, torch.hann_window(m.win_length),
                      center=False, return_complex=True).abs() ** 2
    ref = torch.log(torch.clamp(spec.transpose(1, 2) @ m.mel_fb, min=1e-6))
    np.testing.assert_allclose(m(x).numpy(), ref[:, :10].numpy(), atol=1e-3, rtol=1e-4)


def test_logmel_filters_nonempty_and_sine_peak():
    m = LogMelFrontend()
    assert (m.mel_fb.sum(0) > 0).all()
    for freq in (300.0, 1000.0, 3000.0, 6000.0):
        y = m(sine(freq, 640 * 10)[None])[0]
        expected = int(np.argmin(np.abs(m.mel_centres_hz - freq)))
        assert abs(int(y[5:15].mean(0).argmax()) - expected) <= 1, freq


def test_frame_alignment_centres():
    """Feature frame j reads samples [320 j - 40, 320 j + 360): an impulse at sample s reaches exactly the
    frames whose span holds s, and frames 2k, 2k+1 both fall inside video frame k."""
    m = LogMelFrontend()
    silence = m(torch.zeros(1, 640 * 4))[0]
    for s in (0, 100, 330, 360, 700, 1919, 2559):    # not within ~30 taps of a Hann edge (tiny weights)
        x = torch.zeros(1, 640 * 4)
        x[0, s] = 1.0
        hit = ((m(x)[0] - silence).abs().amax(-1) > 1e-3).nonzero().flatten().tolist()
        want = [j for j in range(8) if 320 * j - 40 <= s < 320 * j + 360]
        assert hit == want, (s, hit, want)
    w = Wav2Vec2FeatureExtractor("layer").eval()
    base = w(torch.zeros(1, 640 * 4))[0]
    for s in (0, 359, 360, 2559):
        x = torch.zeros(1, 640 * 4)
        x[0, s] = 1.0
        with torch.no_grad():
            hit = ((w(x)[0] - base).abs().amax(-1) > 1e-6).nonzero().flatten().tolist()
        assert hit == [j for j in range(8) if 320 * j - 40 <= s < 320 * j + 360], s


@pytest.mark.parametrize("name", ["logmel", "w2v_layer"])
def test_window_invariance(frontends, name):
    """Whole signal vs a window starting at a multiple of 640 samples: equal away from the window edges."""
    m = frontends[name]
    x = torch.randn(1, 640 * 20) * 0.3
    with torch.no_grad():
        full = m(x)
        for start_f, end_f in ((5, 20), (3, 12), (0, 9)):
            win = m(x[:, 640 * start_f: 640 * end_f])
            a, b = 2 * start_f, 2 * end_f
            inner_full = full[:, a + 1: b - 1]
            inner_win = win[:, 1:-1]
            torch.testing.assert_close(inner_win, inner_full, atol=1e-4, rtol=1e-4)
            if start_f == 0:             # the start of the signal is the start of the window
                torch.testing.assert_close(win[:, :1], full[:, :1], atol=1e-4, rtol=1e-4)


def test_group_mode_depends_on_window_statistics(frontends):
    """Documented caveat: wav2vec2-base's GroupNorm(512, 512) normalises over the whole window."""
    m = frontends["w2v_group"]
    x = torch.randn(1, 640 * 20) * 0.3
    x[:, 640 * 10:] *= 5.0
    with torch.no_grad():
        full, win = m(x), m(x[:, 640 * 10:])
    rel = (win[:, 1:-1] - full[:, 21:-1]).abs().max() / full[:, 21:-1].abs().max()
    assert rel > 0.01


def _hf_like_state_dict(module: Wav2Vec2FeatureExtractor, prefix: str) -> dict:
    return {prefix + k: torch.randn_like(v) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("mode", ["group", "layer"])
def test_load_weights_prefixes(mode):
    m = Wav2Vec2FeatureExtractor(mode)
    sd = _hf_like_state_dict(m, "wav2vec2.feature_extractor.")
    sd["wav2vec2.encoder.layers.0.attention.k_proj.weight"] = torch.zeros(3)   # ignored
    sd["lm_head.weight"] = torch.zeros(3)
    load_wav2vec2_feature_weights(m, sd)
    for k, v in m.state_dict().items():
        assert torch.equal(v, sd["wav2vec2.feature_extractor." + k])
    m2 = Wav2Vec2FeatureExtractor(mode)
    load_wav2vec2_feature_weights(m2, {k.replace("wav2vec2.", ""): v for k, v in sd.items()})
    assert torch.equal(m2.conv_layers[3].conv.weight, m.conv_layers[3].conv.weight)


def test_load_fairseq_names():
    m = Wav2Vec2FeatureExtractor("group")
    sd = {}
    for i, layer in enumerate(m.conv_layers):
        sd[f"feature_extractor.conv_layers.{i}.0.weight"] = torch.randn_like(layer.conv.weight)
    sd["feature_extractor.conv_layers.0.2.weight"] = torch.randn(512)
    sd["feature_extractor.conv_layers.0.2.bias"] = torch.randn(512)
    load_wav2vec2_feature_weights(m, sd)
    assert torch.equal(m.conv_layers[0].layer_norm.bias, sd["feature_extractor.conv_layers.0.2.bias"])


def test_load_weights_errors():
    m = Wav2Vec2FeatureExtractor("group")
    with pytest.raises(ValueError, match="no wav2vec2 feature-extractor weights"):
        load_wav2vec2_feature_weights(m, {"encoder.weight": torch.zeros(1)})
    xlsr = _hf_like_state_dict(Wav2Vec2FeatureExtractor("layer"), "wav2vec2.feature_extractor.")
    with pytest.raises(ValueError, match="mode='layer'"):
        load_wav2vec2_feature_weights(m, xlsr)
    sd = _hf_like_state_dict(m, "feature_extractor.")
    del sd["feature_extractor.conv_layers.6.conv.weight"]
    with pytest.raises(ValueError, match=r"1 missing: conv_layers.6.conv.weight"):
        load_wav2vec2_feature_weights(m, sd)
    sd = _hf_like_state_dict(m, "feature_extractor.")
    sd["feature_extractor.conv_layers.6.conv.weight"] = torch.zeros(512, 512, 3)
    with pytest.raises(ValueError, match="shape mismatch"):
        load_wav2vec2_feature_weights(m, sd)


@pytest.mark.parametrize("mode", ["group", "layer"])
def test_matches_transformers_feature_encoder(mode):
    transformers = pytest.importorskip("transformers")
    from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2FeatureEncoder

    hf = Wav2Vec2FeatureEncoder(transformers.Wav2Vec2Config(feat_extract_norm=mode,
                                                              conv_bias=mode == "layer")).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(std=0.1)
    m = Wav2Vec2FeatureExtractor(mode).eval()
    sd = {"wav2vec2.feature_extractor." + k: v for k, v in hf.state_dict().items()}
    load_wav2vec2_feature_weights(m, sd)
    x = torch.randn(2, 640 * 6)
    with torch.no_grad():
        ref = hf(torch.nn.functional.pad(x, (EDGE_PAD, EDGE_PAD))).transpose(1, 2)
        torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["logmel", "w2v_group", "w2v_layer"])
def test_onnx_export_dynamic_length(frontends, name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    m = frontends[name]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.randn(1, 640 * 4),), buf, dynamo=False, opset_version=17,
                          input_names=["audio"], output_names=["features"],
                          dynamic_axes={"audio": {0: "batch", 1: "samples"},
                                        "features": {0: "batch", 1: "frames"}})
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for batch, frames in ((1, 3), (2, 11)):
        x = torch.randn(batch, 640 * frames) * 0.3
        with torch.no_grad():
            ref = m(x).numpy()
        out = sess.run(None, {"audio": x.numpy()})[0]
        assert out.shape == ref.shape == (batch, 2 * frames, m.out_dim)
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
    out = sess.run(None, {"audio": np.zeros((1, 640 * 2 + 100), np.float32)})[0]
    assert out.shape[1] == 4                          # the static trim traced as shape arithmetic
