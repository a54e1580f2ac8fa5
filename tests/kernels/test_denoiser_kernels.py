"""The whole denoiser with the Triton cross-attention gives the same x0 as its literal reference path.

Demo config at its real sizes (4 blocks, d 192, 4 heads, window 20, 64 tokens) and the paper config reduced to
one block (d 768, 12 heads, dh 64, window 50, 77 tokens), gates randomised so the motion branch matters, rows
with different instructions and masks in one batch; plus the no-gate ablation (gate = nn.Identity).
"""

from dataclasses import replace

import pytest
import torch

pytest.importorskip("triton")

from instructavatar.engine.config import get_config  # noqa: E402
from instructavatar.engine.modules.denoiser import Denoiser  # noqa: E402
from instructavatar.kernels import cross_attention as ca  # noqa: E402
from instructavatar.kernels.dispatch import attention_mode  # noqa: E402

torch.set_num_threads(1)
DEVICE = "cpu" if ca.INTERPRETED else "cuda"
if DEVICE == "cuda" and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET is off and there is no CUDA device", allow_module_level=True)


def build(name: str, layers: int | None = None, **flags) -> tuple[Denoiser, int, int, int]:
    cfg = get_config(name)
    den = cfg.denoiser
    if layers is not None:
        den = replace(den, conformer=replace(den.conformer, layers=layers))
    model = Denoiser(replace(den, **flags), motion_dim=cfg.motion_dim, text_dim=cfg.text.width).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if ".gate." in pname:                          # trained-looking gates instead of zeros
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.to(DEVICE), cfg.stream.window_frames, cfg.text.context, cfg.text.width


def x0_both_ways(model: Denoiser, T: int, N: int, Dt: int, real_tokens: list[int]):
    B, M = len(real_tokens), model.in_proj.in_features
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(B, N)
    for b, n in enumerate(real_tokens):
        mask[b, :n] = 1.0
    r = lambda *s: torch.randn(*s, generator=g).to(DEVICE)     # noqa: E731
    x_t, audio, tokens, pooled, key = r(B, T, M), r(B, T, model.in_proj.out_features), r(B, N, Dt), r(B, Dt), r(B, M)
    t, known, mask = torch.arange(B, device=DEVICE) * 300 + 7, torch.zeros(B, T, device=DEVICE), mask.to(DEVICE)
    with torch.no_grad():
        const, keys, values = model.condition(tokens, pooled, key)
        with attention_mode("triton"):
            fused = model(x_t, t, audio, known, const, keys, values, mask)
        with attention_mode("sdpa"):
            sdpa = model(x_t, t, audio, known, const, keys, values, mask)
        reference = model.forward_reference(x_t, t, audio, tokens, mask, pooled, key, known)
    return fused.float().cpu(), sdpa.float().cpu(), reference.float().cpu()


def check(fused, sdpa, reference):
    scale = reference.abs().max().item()
    assert (fused - reference).abs().max().item() <= 1e-4 * max(1.0, scale)
    assert (sdpa - reference).abs().max().item() <= 1e-4 * max(1.0, scale)


def test_demo_denoiser_same_x0():
    model, T, N, Dt = build("demo")
    check(*x0_both_ways(model, T, N, Dt, real_tokens=[1, 64, 17]))


def test_demo_denoiser_without_gates_same_x0():
    model, T, N, Dt = build("demo", layers=2, zero_gates=False)        # gate = nn.Identity
    assert isinstance(model.layers[0].motion.gate, torch.nn.Identity)
    check(*x0_both_ways(model, T, N, Dt, real_tokens=[9, 64]))


def test_paper_denoiser_one_block_same_x0():
    model, T, N, Dt = build("paper", layers=1)
    check(*x0_both_ways(model, T, N, Dt, real_tokens=[77, 4]))
