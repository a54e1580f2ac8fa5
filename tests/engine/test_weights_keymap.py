"""The authors' parameter-name map (engine/modules/weights.py) and our checkpoint round trip.

The authors' state dict is synthetic: names and shapes written out from their training code
(wangyuchi369/InstructAvatar: UnifiedSplitEOSTETFAllTalkingA2VqvaeKeylaPoseModel with
UnifiedSplitTFTEZeroConvCondConformer, PosConformer, TalkingMLPEncoder, CLIP-Adapter, ConditionPredictor;
AutoEncoderKLwithLDMK with LDM Encoder/Decoder), for a reduced paper-like config. Shapes only: everything
lives on the meta device, so the paper-sized layers cost nothing.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from instructavatar.engine.config import get_config
from instructavatar.engine.modules.model import InstructAvatar
from instructavatar.engine.modules.weights import (
    APPROX,
    EXACT,
    WeightsError,
    describe_mapping,
    load_checkpoint,
    map_authors,
    map_authors_state_dict,
    save_checkpoint,
)

META = torch.device("meta")


# ---------------------------------------------------------------------------------- synthetic authors' dict
def _t(*shape):
    return torch.empty(*shape, device=META)


def _linear(sd, name, cout, cin, bias=True):
    sd[name + ".weight"] = _t(cout, cin)
    if bias:
        sd[name + ".bias"] = _t(cout)


def _norm(sd, name, d):
    sd[name + ".weight"], sd[name + ".bias"] = _t(d), _t(d)


def _mha(sd, name, d):
    sd[name + ".in_proj_weight"], sd[name + ".in_proj_bias"] = _t(3 * d, d), _t(3 * d)
    _linear(sd, name + ".out_proj", d, d)


def _torchaudio_layer(sd, p, d, ffn, kernel):
    for f in ("ffn1", "ffn2"):
        _norm(sd, f"{p}.{f}.sequential.0", d)
        _linear(sd, f"{p}.{f}.sequential.1", ffn, d)
        _linear(sd, f"{p}.{f}.sequential.4", d, ffn)
    _norm(sd, p + ".self_attn_layer_norm", d)
    _mha(sd, p + ".self_attn", d)
    _norm(sd, p + ".conv_module.layer_norm", d)
    c = p + ".conv_module.sequential"
    sd[c + ".0.weight"], sd[c + ".0.bias"] = _t(2 * d, d, 1), _t(2 * d)
    sd[c + ".2.weight"], sd[c + ".2.bias"] = _t(d, 1, kernel), _t(d)
    for k in ("weight", "bias", "running_mean", "running_var"):
        sd[f"{c}.3.{k}"] = _t(d)
    sd[c + ".3.num_batches_tracked"] = torch.empty((), dtype=torch.long, device=META)
    sd[c + ".5.weight"], sd[c + ".5.bias"] = _t(d, d, 1), _t(d)
    _norm(sd, p + ".final_layer_norm", d)


def _mlp_encoder(sd, p, cin, cout, hidden, layers):
    _linear(sd, p + ".in_proj", hidden, cin)
    for i in range(layers):
        _linear(sd, f"{p}.layers.{i}.linear", hidden, hidden)
    _linear(sd, p + ".out_proj", cout, hidden)


def _resblock(sd, p, cin, cout):
    _norm(sd, p + ".norm1", cin)
    sd[p + ".conv1.weight"], sd[p + ".conv1.bias"] = _t(cout, cin, 3, 3), _t(cout)
    _norm(sd, p + ".norm2", cout)
    sd[p + ".conv2.weight"], sd[p + ".conv2.bias"] = _t(cout, cout, 3, 3), _t(cout)
    if cin != cout:
        sd[p + ".nin_shortcut.weight"], sd[p + ".nin_shortcut.bias"] = _t(cout, cin, 1, 1), _t(cout)


def _conv(sd, name, cout, cin, k):
    sd[name + ".weight"], sd[name + ".bias"] = _t(cout, cin, k, k), _t(cout)


def _mid(sd, p, c):
    _resblock(sd, p + ".block_1", c, c)
    _norm(sd, p + ".attn_1.norm", c)
    for n in ("q", "k", "v", "proj_out"):
        _conv(sd, f"{p}.attn_1.{n}", c, c, 1)
    _resblock(sd, p + ".block_2", c, c)


def _ldm_encoder(sd, p, ch, mult, nres, cin, z):
    _conv(sd, p + ".conv_in", ch, cin, 3)
    block_in = ch
    for i, m in enumerate(mult):
        for j in range(nres):
            _resblock(sd, f"{p}.down.{i}.block.{j}", block_in, ch * m)
            block_in = ch * m
        if i != len(mult) - 1:
            _conv(sd, f"{p}.down.{i}.downsample.conv", block_in, block_in, 3)
    _mid(sd, p + ".mid", block_in)
    _norm(sd, p + ".norm_out", block_in)
    _conv(sd, p + ".conv_out", 2 * z, block_in, 3)


def _ldm_decoder(sd, p, ch, mult, nres, z, out_ch):
    block_in = ch * mult[-1]
    _conv(sd, p + ".conv_in", block_in, z, 3)
    _mid(sd, p + ".mid", block_in)
    for i in reversed(range(len(mult))):          # LDM: up[i] is level i (up[0] = full resolution)
        for j in range(nres + 1):
            _resblock(sd, f"{p}.up.{i}.block.{j}", block_in, ch * mult[i])
            block_in = ch * mult[i]
        if i != 0:
            _conv(sd, f"{p}.up.{i}.upsample.conv", block_in, block_in, 3)
    _norm(sd, p + ".norm_out", block_in)
    _conv(sd, p + ".conv_out", out_ch, block_in, 3)


def authors_state(cfg) -> dict[str, torch.Tensor]:
    """The authors' two checkpoints (motion generator + VAE), merged, for a paper-layout `cfg`."""
    sd: dict[str, torch.Tensor] = {}
    dn, au = cfg.denoiser, cfg.audio
    d, m = dn.conformer.d_model, cfg.motion_dim
    da = au.conformer.d_model
    text = cfg.text.width
    # audio
    sd["audio_downsample.weight"], sd["audio_downsample.bias"] = _t(da, au.feature_dim, 3), _t(da)
    sd["audio_encoder.pos_enc.pe"] = _t(5000, 1, da)
    for i in range(au.conformer.layers):
        _torchaudio_layer(sd, f"audio_encoder.conformer_layers.{i}", da, au.conformer.ffn_dim, au.conformer.kernel)
    _linear(sd, "audio_encoder.out_proj", d, da)
    # pose predictor / projection (ConditionPredictor: 2 x [Conv1d k3, ReLU, LayerNorm(dim=1), Dropout])
    for j, cin in enumerate((d, 384)):
        sd[f"pose_pred.conv.{j}.0.weight"], sd[f"pose_pred.conv.{j}.0.bias"] = _t(384, cin, 3), _t(384)
        _norm(sd, f"pose_pred.conv.{j}.2", 384)
    _linear(sd, "pose_pred.linear", 3, 384)
    _linear(sd, "pose_proj", d, 3)
    # condition encoders
    _mlp_encoder(sd, "keylatent_encoder", m, d, dn.keyframe_adapter.hidden, 4)
    _mlp_encoder(sd, "instruct_encoder", text, d, dn.emotion_adapter.hidden, 4)
    for a in ("emotion_adapter", "motion_adapter"):
        _linear(sd, a + ".fc.0", d // 4, d, bias=False)
        _linear(sd, a + ".fc.2", d, d // 4, bias=False)
    sd["clip_text_encoder.transformer.text_model.embeddings.token_embedding.weight"] = _t(cfg.text.vocab, text)
    sd["clip_text_encoder.transformer.text_projection.weight"] = _t(text, text)
    # backbone
    _linear(sd, "backbone.input_projection", d, m)
    _linear(sd, "backbone.mlp.0", 4 * d, d)
    _linear(sd, "backbone.mlp.2", d, 4 * d)
    sd["backbone.pos_enc.pe"] = _t(5000, 1, d)
    for i in range(dn.conformer.layers):
        p = f"backbone.conformer_layers.{i}"
        _linear(sd, p + ".diffusion_projection", d, d)
        _linear(sd, p + ".cond_projection", d, d)
        _torchaudio_layer(sd, p, d, dn.conformer.ffn_dim, dn.conformer.kernel)
        _norm(sd, p + ".cross_attn_layer_norm", d)
        _mha(sd, p + ".cross_attn", d)
        _linear(sd, p + ".film.gain", d, d)
        _linear(sd, p + ".film.bias", d, d)
        _norm(sd, p + ".cross_attn_layer_norm_text", d)
        _mha(sd, p + ".cross_attn_text", d)
        sd[p + ".emotion_zero_conv.weight"] = _t(d, d, 1)
        sd[p + ".motion_zero_conv.weight"] = _t(d, d, 1)
        _norm(sd, p + ".cross_attn_layer_norm_text_motion", d)
        _mha(sd, p + ".cross_attn_text_motion", d)
    _linear(sd, "backbone.out_proj", m, d)
    # VAE (one ddconfig for both encoders and the decoder; z = embed_dim = the latent channels)
    a, dec = cfg.vae.appearance, cfg.vae.decoder
    z = a.out_channels
    _ldm_encoder(sd, "encoder", a.ch, a.ch_mult, a.num_res_blocks, 3, z)
    _ldm_encoder(sd, "ldmk_encoder", a.ch, a.ch_mult, a.num_res_blocks, 3, z)
    _ldm_decoder(sd, "decoder", dec.ch, dec.ch_mult, dec.num_res_blocks, z, 3)
    _conv(sd, "quant_conv", 2 * z, 2 * z, 1)
    _conv(sd, "quant_conv_ldmk", 2 * z, 2 * z, 1)
    _conv(sd, "quant_ldmk_and_conv", z, 2 * z, 1)
    _conv(sd, "post_quant_conv", z, z, 1)
    for i in range(2):
        _conv(sd, f"downs.{i}.conv", 2 * z, 2 * z, 3)
        _conv(sd, f"ups.{i}.conv", z, z, 3)
    sd["loss.logvar"] = _t(())
    sd["loss.discriminator.main.0.weight"] = _t(64, 3, 4, 4)
    return sd


def small_paper_config():
    """The paper's layout and widths, with fewer layers / blocks and a narrower VAE."""
    cfg = get_config("paper")
    ae = dict(ch=64, num_res_blocks=1)
    vae = replace(cfg.vae, appearance=replace(cfg.vae.appearance, **ae), motion=replace(cfg.vae.motion, **ae),
                  decoder=replace(cfg.vae.decoder, **ae))
    return cfg.with_(vae=vae,
                     audio=replace(cfg.audio, conformer=replace(cfg.audio.conformer, layers=1)),
                     text=replace(cfg.text, layers=1),
                     denoiser=replace(cfg.denoiser, conformer=replace(cfg.denoiser.conformer, layers=2)))


@pytest.fixture(scope="module")
def paper_like():
    cfg = small_paper_config()
    with torch.device(META):
        model = InstructAvatar(cfg, pretrained_text=False)
    return cfg, model.trainable_state_dict()


# The documented "does not map" set (docs/weights.md), as patterns over the authors' names.
DOES_NOT_MAP = [
    r"audio_encoder\.pos_enc\.pe", r"backbone\.pos_enc\.pe",
    r"backbone\.mlp\.\d\.(weight|bias)",
    r"backbone\.conformer_layers\.\d+\.(diffusion_projection|cond_projection|film\.gain|film\.bias)\.(weight|bias)",
    r"backbone\.conformer_layers\.\d+\.(cross_attn_layer_norm|cross_attn_layer_norm_text)\.(weight|bias)",
    r"keylatent_encoder\..+", r"instruct_encoder\..+", r"(emotion|motion)_adapter\.fc\.\d\.weight",
    r"pose_pred\..+", r"pose_proj\..+", r"clip_text_encoder\..+",
    r"downs\.\d\.conv\..+", r"ups\.\d\.conv\..+", r"quant_conv_ldmk\..+", r"loss\..+",
]

# Our tensors that no authors' tensor fills.
NO_SOURCE = [
    r"audio_encoder\.frontend\..+", r"denoiser\.time_mlp\..+", r"denoiser\.known_embedding",
    r"denoiser\.(emotion|motion|keyframe)_adapter\..+", r"denoiser\.layers\.\d+\.keyframe\.gate\..+",
    r"denoiser\.(pose|au|intensity)_head\..+", r"vae\.keyframe_encoder\..+", r"vae\.motion_(shift|scale)",
]


def _matches(key, patterns):
    return any(re.fullmatch(p, key) for p in patterns)


# ----------------------------------------------------------------------------------------- key map tests
def test_every_mapped_key_fits_our_model(paper_like):
    cfg, ours = paper_like
    theirs = authors_state(cfg)
    mapped, unmapped = map_authors_state_dict(theirs)
    wrong = {k: (tuple(v.shape), tuple(ours[k].shape) if k in ours else None)
             for k, v in mapped.items() if k not in ours or tuple(v.shape) != tuple(ours[k].shape)}
    assert not wrong
    assert len(mapped) > 0.7 * len(ours)


def test_unmapped_is_exactly_the_documented_set(paper_like):
    cfg, _ = paper_like
    theirs = authors_state(cfg)
    _, unmapped = map_authors_state_dict(theirs)
    expected = {k for k in theirs if _matches(k, DOES_NOT_MAP)}
    assert set(unmapped) == expected
    assert len(unmapped) == len(set(unmapped))


def test_our_keys_without_source_are_the_documented_set(paper_like):
    cfg, ours = paper_like
    mapped, _ = map_authors_state_dict(authors_state(cfg))
    missing = set(ours) - set(mapped)
    assert missing == {k for k in ours if _matches(k, NO_SOURCE)}


def test_specific_names_and_reshapes(paper_like):
    cfg, _ = paper_like
    res = map_authors(authors_state(cfg))
    d, levels = cfg.denoiser.conformer.d_model, len(cfg.vae.decoder.ch_mult)
    m = res.mapped
    assert res.sources["denoiser.layers.1.attn.qkv.weight"] == ["backbone.conformer_layers.1.self_attn.in_proj_weight"]
    assert res.sources["audio_encoder.layers.0.conv.batch_norm.running_var"] == [
        "audio_encoder.conformer_layers.0.conv_module.sequential.3.running_var"]
    assert tuple(m["denoiser.layers.0.motion.gate.weight"].shape) == (d, d)       # (d, d, 1) -> (d, d)
    assert res.sources["denoiser.layers.0.motion.k.weight"] == [
        "backbone.conformer_layers.0.cross_attn_text_motion.in_proj_weight"]
    assert res.sources["denoiser.layers.0.cond_norm.weight"] == [
        "backbone.conformer_layers.0.cross_attn_layer_norm_text_motion.weight"]
    assert res.sources["denoiser.layers.0.emotion.gate.weight"] == [
        "backbone.conformer_layers.0.emotion_zero_conv.weight"]
    # LDM decoder.up[i] is level i (full size first); ours builds up[] lowest resolution first.
    assert res.sources[f"vae.decoder.up.{levels - 1}.block.0.conv1.weight"] == ["decoder.up.0.block.0.conv1.weight"]
    assert res.sources["vae.decoder.up.0.upsample.weight"] == [f"decoder.up.{levels - 1}.upsample.conv.weight"]
    assert res.sources["vae.appearance_encoder.down.0.downsample.weight"] == ["encoder.down.0.downsample.conv.weight"]
    assert res.fidelity["vae.appearance_encoder.conv_out.weight"] == EXACT
    assert res.fidelity["vae.decoder.conv_in.weight"] == APPROX
    assert res.fidelity["denoiser.in_proj.weight"] == APPROX
    assert res.fidelity["denoiser.layers.0.keyframe.v.weight"] == APPROX


def test_values_split_reshape_and_zero_bias():
    d = 8
    w = torch.randn(3 * d, d)
    gate = torch.randn(d, d, 1)
    res = map_authors({"backbone.conformer_layers.0.cross_attn_text.in_proj_weight": w,
                       "backbone.conformer_layers.0.motion_zero_conv.weight": gate})
    assert torch.equal(res.mapped["denoiser.layers.0.emotion.q.weight"], w[:d])
    assert torch.equal(res.mapped["denoiser.layers.0.emotion.v.weight"], w[2 * d:])
    assert torch.equal(res.mapped["denoiser.layers.0.motion.gate.weight"], gate[..., 0])
    assert torch.equal(res.mapped["denoiser.layers.0.motion.gate.bias"], torch.zeros(d))
    x = torch.randn(2, 5, d)                                       # Conv1d(k=1, no bias) == our Linear
    ref = F.conv1d(x.transpose(1, 2), gate).transpose(1, 2)
    assert torch.allclose(F.linear(x, res.mapped["denoiser.layers.0.motion.gate.weight"],
                                   res.mapped["denoiser.layers.0.motion.gate.bias"]), ref, atol=1e-5)


def test_vae_folds_match_the_authors_convs():
    torch.manual_seed(0)
    z, c = 3, 16
    sd = {"encoder.conv_out.weight": torch.randn(2 * z, c, 3, 3), "encoder.conv_out.bias": torch.randn(2 * z),
          "quant_conv.weight": torch.randn(2 * z, 2 * z, 1, 1), "quant_conv.bias": torch.randn(2 * z),
          "decoder.conv_in.weight": torch.randn(c, z, 3, 3), "decoder.conv_in.bias": torch.randn(c),
          "quant_ldmk_and_conv.weight": torch.randn(z, 2 * z, 1, 1), "quant_ldmk_and_conv.bias": torch.randn(z),
          "post_quant_conv.weight": torch.randn(z, z, 1, 1), "post_quant_conv.bias": torch.randn(z)}
    res = map_authors(sd, num_decoder_levels=1)
    assert not res.unmapped
    h = torch.randn(2, c, 10, 10)
    theirs = F.conv2d(F.conv2d(h, sd["encoder.conv_out.weight"], sd["encoder.conv_out.bias"], padding=1),
                      sd["quant_conv.weight"], sd["quant_conv.bias"])
    ours = F.conv2d(h, res.mapped["vae.appearance_encoder.conv_out.weight"],
                    res.mapped["vae.appearance_encoder.conv_out.bias"], padding=1)
    assert torch.allclose(ours, theirs, atol=1e-4)
    lat = torch.randn(2, 2 * z, 10, 10)
    y = F.conv2d(F.conv2d(lat, sd["quant_ldmk_and_conv.weight"], sd["quant_ldmk_and_conv.bias"]),
                 sd["post_quant_conv.weight"], sd["post_quant_conv.bias"])
    theirs = F.conv2d(y, sd["decoder.conv_in.weight"], sd["decoder.conv_in.bias"], padding=1)
    ours = F.conv2d(lat, res.mapped["vae.decoder.conv_in.weight"], res.mapped["vae.decoder.conv_in.bias"], padding=1)
    assert torch.allclose(ours[..., 1:-1, 1:-1], theirs[..., 1:-1, 1:-1], atol=1e-4)   # exact off the border


def test_decoder_conv_in_without_its_fold_partners_is_unmapped():
    sd = {"decoder.conv_in.weight": torch.randn(16, 3, 3, 3), "decoder.conv_in.bias": torch.randn(16)}
    res = map_authors(sd, num_decoder_levels=1)
    assert not res.mapped and set(res.unmapped) == set(sd)


def test_unknown_keys_are_reported():
    mapped, unmapped = map_authors_state_dict({"something.else": torch.zeros(1)})
    assert not mapped and unmapped == ["something.else"]


def test_describe_mapping_lists_the_rules():
    text = describe_mapping()
    for needle in ("motion_zero_conv", "cross_attn_text_motion", "decoder.up", "film", "keylatent_encoder",
                   "Our tensors with no authors' source"):
        assert needle in text


# -------------------------------------------------------------------------------- checkpoint round trip
@pytest.fixture(scope="module")
def demo_model():
    torch.manual_seed(0)
    return InstructAvatar(get_config("demo"), pretrained_text=False)


def _fresh_demo():
    torch.manual_seed(1)
    return InstructAvatar(get_config("demo"), pretrained_text=False)


def test_round_trip(demo_model, tmp_path):
    path = tmp_path / "demo.safetensors"
    save_checkpoint(demo_model, path)
    other = _fresh_demo()
    meta = load_checkpoint(other, path)
    assert meta["config"] == "demo" and meta["format"] and "config_json" in meta
    a, b = demo_model.trainable_state_dict(), other.trainable_state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(k.startswith("text_encoder.") for k in a)


def _save_modified(model, path, change):
    state = {k: v.detach().clone().contiguous() for k, v in model.trainable_state_dict().items()}
    change(state)
    save_file(state, str(path), metadata={"format": "1", "config": model.cfg.name})


@pytest.mark.parametrize("case", ["missing", "unexpected", "shape"])
def test_strict_load_names_the_problem(demo_model, tmp_path, case):
    key = "denoiser.out_proj.weight"
    path = tmp_path / f"{case}.safetensors"
    if case == "missing":
        _save_modified(demo_model, path, lambda s: s.pop(key))
    elif case == "unexpected":
        key = "denoiser.extra.weight"
        _save_modified(demo_model, path, lambda s: s.__setitem__(key, torch.zeros(2)))
    else:
        _save_modified(demo_model, path, lambda s: s.__setitem__(key, torch.zeros(3, 3)))
    with pytest.raises(WeightsError) as e:
        load_checkpoint(_fresh_demo(), path)
    assert key in str(e.value)
    assert {"missing": "missing", "unexpected": "unexpected", "shape": "shape mismatch"}[case] in str(e.value)


def test_other_config_refused(tmp_path):
    path = tmp_path / "paper.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "1", "config": "paper"})
    with pytest.raises(WeightsError) as e:
        load_checkpoint(_fresh_demo(), path)
    assert "'paper'" in str(e.value) and "'demo'" in str(e.value)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_corrupt_file_is_a_weights_error(demo_model, tmp_path, how):
    path = tmp_path / f"{how}.safetensors"
    if how == "truncated":
        save_checkpoint(demo_model, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00\x01not a safetensors file" * 10)
    else:
        path.write_bytes(b"")
    with pytest.raises(WeightsError):
        load_checkpoint(_fresh_demo(), path)


def test_missing_file_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_checkpoint(_fresh_demo(), tmp_path / "nope.safetensors")


def test_docs_embed_the_generated_table():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "weights.md").read_text()
    assert describe_mapping() in doc


def test_partial_load_into_a_model(demo_model):
    from instructavatar.engine.modules.weights import load_authors_state_dict

    c = get_config("demo").audio.conformer
    meta: dict[str, torch.Tensor] = {}
    _torchaudio_layer(meta, "audio_encoder.conformer_layers.1", c.d_model, c.ffn_dim, c.kernel)
    sd = {k: (torch.randn(v.shape) if v.is_floating_point() else torch.zeros(v.shape, dtype=v.dtype))
          for k, v in meta.items()}
    model = _fresh_demo()
    res = load_authors_state_dict(model, sd)
    own = model.trainable_state_dict()
    assert len(res.mapped) == len(sd) and not res.unmapped
    for ours, srcs in res.sources.items():
        assert torch.equal(own[ours], sd[srcs[0]])
    sd["audio_encoder.conformer_layers.1.ffn1.sequential.1.weight"] = torch.zeros(3, 3)
    with pytest.raises(WeightsError, match="ffn1.fc1.weight"):
        load_authors_state_dict(_fresh_demo(), sd)
