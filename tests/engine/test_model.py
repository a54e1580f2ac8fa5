"""Model shapes for both configs, zero gates at initialisation, and per-instruction cache equivalence."""

from dataclasses import replace

import pytest
import torch

from instructavatar.engine.config import ConformerConfig, get_config
from instructavatar.engine.modules.denoiser import Denoiser
from instructavatar.engine.modules.model import InstructAvatar

torch.set_num_threads(1)


def small_denoiser_cfg(**flags):
    cfg = get_config("demo").denoiser
    return replace(cfg, conformer=ConformerConfig(d_model=32, layers=2, heads=4, ffn_dim=64, kernel=5, dropout=0.0),
                   **flags)


def randomize_gates(model):
    """Give the zero-initialised gates trained-looking values so the branches matter."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".gate." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def inputs(B=2, T=7, N=6, M=16, Dt=24, D=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, N)
    mask[0, 4:] = 0                                   # padded tokens in the first instruction
    return dict(x_t=torch.randn(B, T, M, generator=g), t=torch.tensor([999, 10][:B]),
                audio=torch.randn(B, T, D, generator=g), tokens=torch.randn(B, N, Dt, generator=g), mask=mask,
                pooled=torch.randn(B, Dt, generator=g), keyframe=torch.randn(B, M, generator=g))


@pytest.mark.parametrize("flags", [{}, {"two_branch": False}, {"zero_gates": False}])
def test_cached_equals_uncached(flags):
    torch.manual_seed(0)
    model = Denoiser(small_denoiser_cfg(**flags), motion_dim=16, text_dim=24).eval()
    randomize_gates(model)
    x = inputs()
    with torch.no_grad():
        cache = model.condition(x["tokens"], x["pooled"], x["keyframe"])
        cached = model.forward_cached(x["x_t"], x["t"], x["audio"], cache, x["mask"])
        reference = model.forward_reference(x["x_t"], x["t"], x["audio"], x["tokens"], x["mask"], x["pooled"],
                                            x["keyframe"])
    assert cached.shape == (2, 7, 16)
    assert (cached - reference).abs().max().item() < 1e-5
    # the shortcut is not vacuous: the branches change the output
    with torch.no_grad():
        other = model.condition(x["tokens"] * 0 + 1, x["pooled"] * 0 + 1, x["keyframe"] * 0)
        assert (model.forward_cached(x["x_t"], x["t"], x["audio"], other, x["mask"]) - cached).abs().max() > 1e-3


def test_padded_tokens_are_ignored():
    torch.manual_seed(0)
    model = Denoiser(small_denoiser_cfg(), motion_dim=16, text_dim=24).eval()
    randomize_gates(model)
    x = inputs()
    changed = x["tokens"].clone()
    changed[0, 4:] += 100.0                            # only the masked positions of instruction 0
    with torch.no_grad():
        a = model.forward_cached(x["x_t"], x["t"], x["audio"],
                                 model.condition(x["tokens"], x["pooled"], x["keyframe"]), x["mask"])
        b = model.forward_cached(x["x_t"], x["t"], x["audio"],
                                 model.condition(changed, x["pooled"], x["keyframe"]), x["mask"])
    assert (a[0] - b[0]).abs().max() < 1e-5


def test_zero_gates_make_each_branch_a_noop_at_init():
    torch.manual_seed(0)
    model = Denoiser(small_denoiser_cfg(), motion_dim=16, text_dim=24).eval()
    x = inputs()
    with torch.no_grad():
        base = model.forward_cached(x["x_t"], x["t"], x["audio"],
                                    model.condition(x["tokens"], x["pooled"], x["keyframe"]), x["mask"])
        for key in ("tokens", "pooled", "keyframe"):      # motion, emotion and keyframe branch inputs
            y = dict(x)
            y[key] = torch.randn_like(x[key]) * 10
            out = model.forward_cached(y["x_t"], y["t"], y["audio"],
                                       model.condition(y["tokens"], y["pooled"], y["keyframe"]), y["mask"])
            assert torch.equal(out, base), key
    gates = [n for n, _ in model.named_parameters() if ".gate." in n]
    assert len(gates) == 2 * 3 * 2                          # weight+bias x 3 branches x 2 layers
    assert all(p.abs().sum() == 0 for n, p in model.named_parameters() if ".gate." in n)


def test_audio_and_time_change_the_prediction():
    torch.manual_seed(0)
    model = Denoiser(small_denoiser_cfg(), motion_dim=16, text_dim=24).eval()
    x = inputs()
    with torch.no_grad():
        cache = model.condition(x["tokens"], x["pooled"], x["keyframe"])
        a = model.forward_cached(x["x_t"], x["t"], x["audio"], cache, x["mask"])
        b = model.forward_cached(x["x_t"], x["t"], torch.zeros_like(x["audio"]), cache, x["mask"])
        c = model.forward_cached(x["x_t"], x["t"].flip(0), x["audio"], cache, x["mask"])
    assert (a - b).abs().max() > 1e-3 and (a - c).abs().max() > 1e-3


def test_demo_shapes_end_to_end():
    cfg = get_config("demo")
    torch.manual_seed(0)
    m = InstructAvatar(cfg, pretrained_text=False).eval()
    S, M, T = cfg.media.image_size, cfg.motion_dim, 5
    with torch.no_grad():
        app = m.vae.encode_appearance(torch.zeros(2, 3, S, S))
        assert app.shape == (2, cfg.vae.appearance_channels, S // cfg.vae.app_downsample, S // cfg.vae.app_downsample)
        assert cfg.vae.motion_input_shape == (cfg.vae.landmark_points, 2)        # the demo reads coordinates
        assert m.vae.encode_motion(torch.zeros(2, *cfg.vae.motion_input_shape)).shape == (2, M)
        with pytest.raises(ValueError, match="landmark points"):
            m.vae.encode_motion(torch.zeros(2, 3, cfg.vae.landmark_size, cfg.vae.landmark_size))
        assert m.vae.keyframe_encoder(torch.zeros(2, 3, S, S)).shape == (2, M)
        audio = m.audio_encoder(torch.zeros(2, T * cfg.media.samples_per_frame))
        assert audio.shape == (2, T, cfg.denoiser.conformer.d_model)
        ids = torch.ones(2, cfg.text.context, dtype=torch.int64)
        tokens, pooled = m.text_encoder(ids, torch.ones_like(ids))
        assert tokens.shape == (2, cfg.text.context, cfg.text.width) and pooled.shape == (2, cfg.text.width)
        cache = m.denoiser.condition(tokens, pooled, torch.zeros(2, M))
        L, D = cfg.denoiser.conformer.layers, cfg.denoiser.conformer.d_model
        const, keys, values = cache
        assert const.shape == (2, L, D) and keys.shape == (2, L, cfg.text.context, D) and values.shape == keys.shape
        x0, hidden = m.denoiser.forward_cached(torch.zeros(2, T, M), torch.tensor([5, 5]), audio, cache,
                                               torch.ones(2, cfg.text.context), return_hidden=True)
        assert x0.shape == (2, T, M)
        heads = m.denoiser.heads(x0, hidden)
        assert heads["pose"].shape == (2, T, 3) and heads["au_logits"].shape == (2, cfg.denoiser.num_aus)
        assert heads["intensity_logits"].shape == (2, 3)
        frames = m.vae.decode(torch.zeros(2 * T, M), app.repeat_interleave(T, 0))
        assert frames.shape == (2 * T, 3, S, S) and frames.abs().max() <= 1


def test_paper_shapes_on_meta_device():
    cfg = get_config("paper")
    with torch.device("meta"):
        m = InstructAvatar(cfg, pretrained_text=False).to("meta")
        S, M, T = 256, 768, 4
        app = m.vae.encode_appearance(torch.zeros(1, 3, S, S))
        assert tuple(app.shape) == (1, 3, 64, 64)
        assert tuple(m.vae.encode_motion(torch.zeros(1, 3, 64, 64)).shape) == (1, 768)
        assert tuple(m.vae.decode(torch.zeros(2, M), torch.zeros(2, 3, 64, 64)).shape) == (2, 3, 256, 256)
        audio = m.audio_encoder(torch.zeros(1, T * 640))
        assert tuple(audio.shape) == (1, T, 768)
        ids = torch.zeros(1, 77, dtype=torch.int64)
        tokens, pooled = m.text_encoder(ids, torch.ones_like(ids))
        assert tuple(tokens.shape) == (1, 77, 768) and tuple(pooled.shape) == (1, 768)
        cache = m.denoiser.condition(tokens, pooled, torch.zeros(1, M))
        assert tuple(cache[1].shape) == (1, 12, 77, 768)
        assert tuple(m.denoiser.forward_cached(torch.zeros(1, T, M), torch.zeros(1, dtype=torch.int64), audio,
                                               cache, torch.ones(1, 77)).shape) == (1, T, M)
    assert cfg.motion_dim == 768 and cfg.denoiser.conformer.layers == 12 and cfg.denoiser.conformer.heads == 12


def test_unknown_config_is_a_clear_error():
    from instructavatar.engine.config import ConfigError

    with pytest.raises(ConfigError, match="unknown config 'huge'.*demo"):
        get_config("huge")
