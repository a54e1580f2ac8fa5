"""The same kernel checks compiled on a CUDA device, with the autotuner choosing the blocks (`-m gpu`).

Skipped cleanly without CUDA (and under TRITON_INTERPRET=1, where the default tests already run them).
"""

import pytest
import torch

pytestmark = pytest.mark.gpu

triton = pytest.importorskip("triton")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from instructavatar.kernels import cross_attention as ca  # noqa: E402
from instructavatar.kernels.dispatch import resolve  # noqa: E402
from instructavatar.kernels.reference import gated_cross_attention  # noqa: E402

from .cases import make_inputs, make_weights, upcast  # noqa: E402
from .test_cross_attention import assert_close  # noqa: E402

if ca.INTERPRETED:
    pytest.skip("TRITON_INTERPRET=1: the compiled GPU path is not what would run", allow_module_level=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("real_tokens, T, N, D, heads", [
    ([1, 64, 17, 40], 20, 64, 192, 4),                 # demo block, window 20
    ([77, 1, 30], 50, 77, 768, 12),                    # paper block, window 50
    ([3, 19], 13, 19, 48, 2),                          # nothing a multiple of the blocks
])
def test_compiled_kernel_matches_reference(real_tokens, T, N, D, heads, dtype):
    w = make_weights(D, dtype=dtype, device="cuda")
    h, k, v, bias, const = make_inputs(real_tokens, T, N, D, dtype=dtype, device="cuda")
    first = lambda c: {**c.kwargs, "num_warps": c.num_warps}     # noqa: E731  (one compile per dtype and D)
    out = ca.fused_gated_cross_attention(h, w, k, v, bias, const, heads,
                                         attention_config=first(ca.ATTENTION_CONFIGS[0]),
                                         output_config=first(ca.OUTPUT_CONFIGS[0]))
    f = lambda t: t.float().cpu()      # noqa: E731
    ref = gated_cross_attention(f(h), upcast(w), f(k), f(v), f(bias), f(const), heads, explicit=True)
    assert_close(f(out), ref, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autotuned_kernel_matches_reference(dtype):
    w = make_weights(768, dtype=dtype, device="cuda")
    for T, real_tokens in ((50, [77, 1, 30, 12]), (25, [5, 77])):     # two windows: the tuner keys on T
        h, k, v, bias, const = make_inputs(real_tokens, T, 77, 768, dtype=dtype, device="cuda")
        out = ca.fused_gated_cross_attention(h, w, k, v, bias, const, 12)
        f = lambda t: t.float().cpu()      # noqa: E731
        ref = gated_cross_attention(f(h), upcast(w), f(k), f(v), f(bias), f(const), 12, explicit=True)
        assert_close(f(out), ref, dtype)


def test_auto_mode_picks_triton_on_cuda_at_inference():
    h = torch.zeros(1, 2, 8, device="cuda")
    with torch.no_grad():
        assert resolve(h) == "triton"
    assert resolve(h.requires_grad_()) == "sdpa"


def test_denoiser_on_cuda_same_x0():
    from .test_denoiser_kernels import build, check, x0_both_ways

    model, T, N, Dt = build("demo")
    check(*x0_both_ways(model, T, N, Dt, real_tokens=[1, 64, 17]))
