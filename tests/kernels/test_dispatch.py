"""The dispatcher's choice of implementation, and the output-projection + gate fold that every path reads."""

import pytest
import torch
from torch import nn

from instructavatar.engine.config import ConformerConfig, get_config
from instructavatar.engine.modules.denoiser import DenoiserLayer
from instructavatar.kernels import dispatch
from instructavatar.kernels.dispatch import FoldCache, attention_mode, resolve
from instructavatar.kernels.reference import fold_output_gate

torch.set_num_threads(1)


def small_layer(zero_gates: bool = True) -> DenoiserLayer:
    from dataclasses import replace

    cfg = replace(get_config("demo").denoiser, zero_gates=zero_gates,
                  conformer=ConformerConfig(d_model=32, layers=1, heads=4, ffn_dim=64, kernel=5, dropout=0.0))
    layer = DenoiserLayer(cfg).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if ".gate." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return layer


def layer_inputs(B=2, T=5, N=6, D=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, N)
    mask[0, 3:] = 0
    bias = ((mask - 1.0) * 1e4)[:, None, None, :]
    return (torch.randn(B, T, D, generator=g), torch.randn(B, D, generator=g), torch.randn(B, N, D, generator=g),
            torch.randn(B, N, D, generator=g), bias)


def test_auto_is_sdpa_on_cpu_and_settings_force_a_mode(monkeypatch):
    h = torch.zeros(1, 2, 8)
    monkeypatch.delenv(dispatch.ENV, raising=False)
    assert resolve(h) == "sdpa"
    monkeypatch.setenv(dispatch.ENV, "reference")
    assert resolve(h) == "reference"
    with attention_mode("triton"):                     # the context manager wins over the environment
        assert resolve(h) == "triton"
    assert resolve(h) == "reference"


def test_bad_mode_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv(dispatch.ENV, "cuda")
    with pytest.raises(ValueError, match="INSTRUCTAVATAR_ATTENTION: expected one of auto, triton, sdpa, reference"):
        resolve(torch.zeros(1))
    with pytest.raises(ValueError, match="attention_mode: expected one of"):
        with attention_mode("fast"):
            pass


def test_triton_refused_when_a_gradient_is_needed():
    h = torch.zeros(1, 2, 8, requires_grad=True)
    with attention_mode("triton"), pytest.raises(RuntimeError, match="no backward"):
        resolve(h)
    with attention_mode("triton"), torch.no_grad():
        assert resolve(h) == "triton"


def test_tracing_never_reaches_triton(monkeypatch):
    """Forced to triton, a jit trace (as ONNX export does) still records the torch path, and it matches."""
    layer = small_layer()
    x = layer_inputs()

    def boom(*a, **k):
        raise AssertionError("the Triton kernel was called while tracing")

    import instructavatar.kernels.cross_attention as ca_mod
    monkeypatch.setattr(ca_mod, "fused_gated_cross_attention", boom, raising=False)
    with torch.no_grad(), attention_mode("triton"):
        traced = torch.jit.trace(layer, x, check_trace=False)
    with torch.no_grad(), attention_mode("sdpa"):
        want = layer(*x)
    with torch.no_grad():
        assert torch.allclose(traced(*x), want, atol=1e-6)


@pytest.mark.parametrize("zero_gates", [True, False])
def test_fold_equals_out_proj_then_gate(zero_gates):
    layer = small_layer(zero_gates)
    out, gate = layer.motion.out, layer.motion.gate
    assert isinstance(gate, nn.Identity) != zero_gates
    y = torch.randn(3, 4, 32)
    w, b = fold_output_gate(out, gate)
    with torch.no_grad():
        assert torch.allclose(nn.functional.linear(y, w, b), gate(out(y)), atol=1e-5)


@pytest.mark.parametrize("mode", ["sdpa", "reference"])
def test_layer_matches_the_unfolded_layer(mode):
    """DenoiserLayer.forward (folded, dispatched) == the pre-fold computation written out module by module."""
    from instructavatar.kernels.reference import gated_cross_attention_unfused

    layer = small_layer()
    h, const, k, v, bias = layer_inputs()
    with torch.no_grad(), attention_mode(mode):
        got = layer(h, const, k, v, bias)
        hh = layer._backbone_head(h)
        want = layer._backbone_tail(gated_cross_attention_unfused(
            hh, layer.cond_norm, layer.motion.q, k, v, bias.flatten(1), const, layer.heads, layer.motion.out,
            layer.motion.gate))
    assert torch.allclose(got, want, atol=1e-5)


def test_fold_is_cached_and_follows_weight_changes():
    layer = small_layer()
    saved = {k: v.clone() for k, v in layer.state_dict().items()}
    with torch.no_grad():
        first = layer.cross_attention_weights()
        assert layer.cross_attention_weights() is first                  # no refold per step
        layer.motion.gate.weight.add_(0.5)                                  # an in-place update (optimizer step)
        second = layer.cross_attention_weights()
        assert second is not first and not torch.equal(second.out_weight, first.out_weight)
        layer.load_state_dict(saved)                                         # loading refolds
        assert torch.equal(layer.cross_attention_weights().out_weight, first.out_weight)
        half = layer.half().cross_attention_weights()                       # a dtype change refolds
        assert half.out_weight.dtype == torch.float16


def test_fold_is_differentiable_while_training():
    layer = small_layer().train()
    h, const, k, v, bias = layer_inputs()
    layer(h, const, k, v, bias).square().mean().backward()
    assert layer.motion.gate.weight.grad is not None and layer.motion.gate.weight.grad.abs().sum() > 0
    assert layer.motion.out.weight.grad is not None and layer.motion.out.weight.grad.abs().sum() > 0


def test_fold_cache_is_per_instance():
    a, b = FoldCache(), FoldCache()
    la, lb = small_layer(), small_layer()
    with torch.no_grad():
        lb.motion.gate.bias.add_(1.0)
        wa = a.get(la.cond_norm, la.motion.q, la.motion.out, la.motion.gate)
        wb = b.get(lb.cond_norm, lb.motion.q, lb.motion.out, lb.motion.gate)
    assert not torch.equal(wa.out_bias, wb.out_bias)


def test_auto_falls_back_to_sdpa_once_when_the_kernels_fail(monkeypatch):
    """auto: a kernel that cannot run (e.g. no binary for this GPU) warns once, then SDPA; forced: it raises."""
    ca_mod = pytest.importorskip("instructavatar.kernels.cross_attention")

    def broken(*a, **k):
        raise RuntimeError("no kernel image is available for execution on the device")

    monkeypatch.setattr(ca_mod, "fused_gated_cross_attention", broken)
    monkeypatch.setattr(dispatch, "resolve", lambda *a: "triton")
    monkeypatch.setattr(dispatch, "_triton_failure", None)
    monkeypatch.delenv(dispatch.ENV, raising=False)
    layer = small_layer()
    h, const, k, v, bias = layer_inputs()
    w = layer.cross_attention_weights()
    with torch.no_grad():
        want = dispatch.torch_gated_cross_attention(h, w, k, v, bias.flatten(1), const, layer.heads)
        with pytest.warns(UserWarning, match="no kernel image"):
            got = dispatch.gated_cross_attention(h, w, k, v, bias.flatten(1), const, layer.heads)
        assert torch.equal(got, want)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")                         # no second warning
            dispatch.gated_cross_attention(h, w, k, v, bias.flatten(1), const, layer.heads)
        with attention_mode("triton"), pytest.raises(RuntimeError, match="no kernel image"):
            dispatch.gated_cross_attention(h, w, k, v, bias.flatten(1), const, layer.heads)


def test_onnx_export_with_triton_forced_runs_in_onnx_runtime(tmp_path):
    """The exported graph is the torch path with the fold (Triton does not travel into ONNX) and matches eager."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    layer = small_layer()
    x = layer_inputs()
    path = tmp_path / "layer.onnx"
    names = ["h", "const", "k", "v", "bias"]
    with torch.no_grad(), attention_mode("triton"):
        torch.onnx.export(layer, x, str(path), input_names=names, output_names=["out"], opset_version=17,
                          dynamo=False)
    other = layer_inputs(seed=2)                       # not the traced values: a graph of baked constants fails
    with torch.no_grad():
        want = layer(*other).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {n: a.numpy() for n, a in zip(names, other)})[0]
    assert abs(got - want).max() < 1e-5
