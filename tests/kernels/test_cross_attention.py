"""The Triton cross-attention kernels against the torch definition (kernels/reference.py).

They run under TRITON_INTERPRET=1 (tests/kernels/conftest.py) on CPU tensors; with TRITON_INTERPRET=0 set on a
CUDA machine the same tests run compiled on the GPU (test_gpu.py, `-m gpu`, covers the paper sizes and autotuning).
Tolerances (max |kernel - float32 reference| <= atol + rtol * |reference|,
the reference computed in float32 from the same rounded inputs):
  float32: 1e-4 + 1e-4 |ref|;  float16: 6e-3 + 6e-3 |ref|;  bfloat16: 5e-2 + 2e-2 |ref|.
Measured on the demo shape (B 2, T 20, N 64, D 192): float32 1.4e-6, float16 3.4e-3, bfloat16 3.9e-2, at the
level of torch's own SDPA path in the same dtype (6.6e-7, 3.8e-3, 3.1e-2).
"""

import pytest
import torch

pytest.importorskip("triton")

from instructavatar.kernels import cross_attention as ca  # noqa: E402
from instructavatar.kernels.reference import gated_cross_attention  # noqa: E402

from .cases import make_inputs, make_weights, upcast  # noqa: E402

torch.set_num_threads(1)
DEVICE = "cpu" if ca.INTERPRETED else "cuda"
if DEVICE == "cuda" and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET is off and there is no CUDA device", allow_module_level=True)

TOLERANCE = {torch.float32: (1e-4, 1e-4), torch.float16: (6e-3, 6e-3), torch.bfloat16: (5e-2, 2e-2)}
SMALL_ATTENTION = {"BLOCK_T": 16, "BLOCK_D": 32}                  # smaller than every dimension below
SMALL_OUTPUT = {"BLOCK_M": 16, "BLOCK_O": 32, "BLOCK_K": 32}


def run_both(real_tokens, T, N, D, heads, dtype=torch.float32, attention_config=None, output_config=None, seed=0):
    w = make_weights(D, seed=seed, dtype=dtype, device=DEVICE)
    h, k, v, bias, const = make_inputs(real_tokens, T, N, D, seed=seed + 1, dtype=dtype, device=DEVICE)
    out = ca.fused_gated_cross_attention(h, w, k, v, bias, const, heads, attention_config=attention_config,
                                         output_config=output_config)
    f = lambda t: t.float().cpu()      # noqa: E731
    ref = gated_cross_attention(f(h), upcast(w), f(k), f(v), f(bias), f(const), heads, explicit=True)
    return f(out), ref


def assert_close(out, ref, dtype):
    atol, rtol = TOLERANCE[dtype]
    err = (out - ref).abs()
    worst = (err - rtol * ref.abs()).max().item()
    assert out.shape == ref.shape
    assert torch.isfinite(out).all()
    assert worst <= atol, f"{dtype}: max |err| {err.max().item():.3e} exceeds {atol} + {rtol} |ref|"


@pytest.mark.parametrize("real_tokens, T, N, D, heads", [
    ([1, 19, 7], 13, 19, 48, 2),           # one real token, all real, some; T, N, D, dh=24 off the block sizes
    ([5, 64], 20, 64, 64, 4),              # demo-like: 64 tokens, window 20, dh 16
])
def test_kernel_matches_reference_off_block_sizes(real_tokens, T, N, D, heads):
    out, ref = run_both(real_tokens, T, N, D, heads, attention_config=SMALL_ATTENTION, output_config=SMALL_OUTPUT)
    assert_close(out, ref, torch.float32)


@pytest.mark.parametrize("attention, output", list(zip(ca.ATTENTION_CONFIGS, ca.OUTPUT_CONFIGS)))
def test_every_autotune_config(attention, output):
    """Each block config the autotuner may pick on a GPU gives the reference result (77 tokens, dh 24)."""
    cfg = lambda c: {**c.kwargs, "num_warps": c.num_warps}    # noqa: E731
    out, ref = run_both([77, 3], 21, 77, 72, 3, attention_config=cfg(attention), output_config=cfg(output))
    assert_close(out, ref, torch.float32)


def test_rows_are_independent():
    """A row's result does not depend on the other rows of the batch (mixed instructions in one launch)."""
    w = make_weights(48, device=DEVICE)
    h, k, v, bias, const = make_inputs([2, 11, 6], 9, 11, 48, device=DEVICE)
    both = ca.fused_gated_cross_attention(h, w, k, v, bias, const, 2)
    alone = ca.fused_gated_cross_attention(h[1:2], w, k[1:2], v[1:2], bias[1:2], const[1:2], 2)
    assert torch.allclose(both[1:2], alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_dtypes(dtype):
    out, ref = run_both([3, 64], 20, 64, 96, 2, dtype=dtype)
    assert_close(out, ref, dtype)


def test_padding_masked_and_residual_kept():
    """Changing only masked keys/values changes nothing; the output is h + const + attention, not attention."""
    w = make_weights(32, device=DEVICE)
    h, k, v, bias, const = make_inputs([4, 9], 7, 9, 32, device=DEVICE)
    base = ca.fused_gated_cross_attention(h, w, k, v, bias, const, 2)
    k2, v2 = k.clone(), v.clone()
    k2[0, 4:] += 50.0
    v2[0, 4:] -= 50.0
    assert torch.allclose(ca.fused_gated_cross_attention(h, w, k2, v2, bias, const, 2), base, atol=1e-5, rtol=0)
    shifted = ca.fused_gated_cross_attention(h + 1.0, w, k, v, bias, const, 2)     # LayerNorm ignores the shift
    assert torch.allclose(shifted - base, torch.ones_like(base), atol=1e-4)


def test_bad_inputs_are_refused_with_a_clear_message():
    w = make_weights(32, device=DEVICE)
    h, k, v, bias, const = make_inputs([4, 9], 7, 9, 32, device=DEVICE)
    with pytest.raises(ValueError, match=r"bias must have shape \(2, 9\)"):
        ca.fused_gated_cross_attention(h, w, k, v, bias[:, :5], const, 2)
    with pytest.raises(ValueError, match="not divisible"):
        ca.fused_gated_cross_attention(h, w, k, v, bias, const, 5)
    with pytest.raises(TypeError, match="supports"):
        ca.fused_gated_cross_attention(h.double(), w, k, v, bias, const, 2)
