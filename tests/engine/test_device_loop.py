"""The torch backend's device path on a CPU: the whole-chunk loop (engine/modules/device_loop.py) against the
pipeline's numpy loop, the shape-keyed static-call cache with capture mocked (engine/modules/cuda_graphs.py),
half-precision casting (engine/modules/precision.py) and the backend's option errors. Real CUDA capture and
replay: tests/engine/test_gpu_paths.py (marked gpu)."""

import copy

import numpy as np
import pytest
import torch

from instructavatar.engine.config import get_config
from instructavatar.engine.loader import DEMO_WEIGHTS, build_model
from instructavatar.engine.modules.cuda_graphs import EagerCall, ShapeCache
from instructavatar.engine.modules.precision import PrecisionError, cast_for_inference, half_fraction
from instructavatar.engine.modules.torch_backend import TorchBackend
from instructavatar.engine.modules.vae import warp
from instructavatar.engine.pipeline import Pipeline
from instructavatar.engine.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def demo_model():
    cfg = get_config("demo")
    # the shipped checkpoint's trained gates make the instruction (and so guidance) matter
    return cfg, build_model(cfg, random_weights=not DEMO_WEIGHTS.is_file())


def run_two_sessions(cfg, backend, eta):
    """Two sessions batched (one guided, one not), two chunks each (the second with a prefix): motion."""
    pipe = Pipeline(cfg, backend, build_tokenizer(cfg.text), steps=2, eta=eta, guidance=2.0)
    pipe._decode = lambda motion, sessions: [None] * len(sessions)      # the loop only (decode: its own test)
    portrait = np.full((cfg.media.image_size,) * 2 + (3,), 128, np.uint8)
    portrait[20:40, 30:90] = 200
    sessions = [pipe.new_session(portrait, text, seed=i, keep_motion=True)[0]
                for i, text in enumerate(("look very sad", None))]
    rng = np.random.default_rng(0)
    for _ in range(2):
        chunks = [(0.2 * rng.standard_normal(pipe.chunk_samples)).astype(np.float32) for _ in sessions]
        pipe.step(sessions, chunks)
    return pipe, [np.concatenate(s.motion_log) for s in sessions]


@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_device_loop_equals_the_pipeline_loop(demo_model, eta):
    cfg, model = demo_model
    _, want = run_two_sessions(cfg, TorchBackend(model, threads=1), eta)
    made = []
    backend = TorchBackend(model, threads=1, device_loop=True)
    backend.runner.cache = ShapeCache(4, make=lambda fn, ex: made.append(1) or EagerCall(fn, ex))
    pipe, got = run_two_sessions(cfg, backend, eta)
    assert "denoise_chunk" in pipe.timings.samples and "denoise_step" not in pipe.timings.samples
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, atol=2e-5, rtol=0)
    assert np.abs(want[0] - want[1]).max() > 1e-3                 # the two sessions really differ
    # one loop per window shape: the first chunk (no prefix) and the second (with one)
    assert backend.runner.cache.misses == len(made) == 2
    assert [k[4] for k in backend.runner.cache.keys()] == [0, cfg.stream.prefix_frames]


def test_device_decode_equals_eager(demo_model):
    cfg, model = demo_model
    eager, device = TorchBackend(model, threads=1), TorchBackend(model, threads=1, device_loop=True)
    rng = np.random.default_rng(2)
    image = rng.uniform(-1, 1, (1, 3, cfg.media.image_size, cfg.media.image_size)).astype(np.float32)
    app = np.repeat(eager.encode_appearance(image), 2, 0)
    motion = rng.standard_normal((2, cfg.motion_dim)).astype(np.float32)
    np.testing.assert_allclose(device.decode(motion, app), eager.decode(motion, app), atol=1e-5, rtol=0)
    device.decode(motion, app)
    assert (device.runner.cache.misses, device.runner.cache.hits) == (1, 1)


def test_shape_cache_is_an_lru_of_built_calls():
    built = []

    def make(fn, examples):
        built.append(tuple(examples[0].shape))
        return EagerCall(fn, examples)

    cache = ShapeCache(capacity=2, make=make)
    double = lambda a: a * 2  # noqa: E731
    for n in (1, 2, 1, 3, 2):
        out = cache.run(("k", n), double, [torch.ones(n)], lambda o: o.clone())
        assert torch.equal(out, torch.full((n,), 2.0))
    assert built == [(1,), (2,), (3,), (2,)]                     # 2 was evicted by 3 (1 was used more recently)
    assert (cache.hits, cache.misses, cache.evictions) == (1, 4, 2)
    assert cache.keys() == [("k", 3), ("k", 2)]
    with pytest.raises(ValueError, match="capacity"):
        ShapeCache(0)


def test_static_call_refuses_another_shape():
    call = EagerCall(lambda a: a + 1, [torch.zeros(2, 3)])
    assert torch.equal(call(torch.ones(2, 3)), torch.full((2, 3), 2.0))
    with pytest.raises(ValueError, match=r"shape \(3, 3\) fed to a buffer of shape \(2, 3\)"):
        call(torch.ones(3, 3))


def test_half_cast_keeps_norms_and_buffers_fp32():
    cfg = get_config("demo")
    model = cast_for_inference(build_model(cfg, random_weights=True), "bf16")
    assert half_fraction(model.denoiser) > 0.9 and half_fraction(model.vae.decoder) > 0.9   # the FLOPs
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
            assert m.weight.dtype == torch.bfloat16
    for m in model.modules():
        if isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.Embedding)):
            assert all(p.dtype == torch.float32 for p in m.parameters())
    assert all(b.dtype != torch.bfloat16 for b in model.buffers())
    with pytest.raises(PrecisionError, match="fp32, fp16, bf16"):
        cast_for_inference(model, "fp8")


SLOW = pytest.mark.slow          # half-precision convolutions are slow on a CPU (no fast kernels): the decoder


@pytest.mark.parametrize("precision,part", [("bf16", "denoiser"), pytest.param("bf16", "decoder", marks=SLOW),
                                            pytest.param("fp16", "denoiser", marks=SLOW),
                                            pytest.param("fp16", "decoder", marks=SLOW)])
def test_half_precision_backend_stays_close_to_fp32(demo_model, precision, part):
    """Stated tolerances (demo checkpoint, CPU autocast) against fp32: x0 of one denoiser step (relative to its
    range) and one decoded frame (frames in [-1, 1]). Measured: docs/gpu.md."""
    cfg, model = demo_model
    ref = TorchBackend(model, threads=1)
    half = TorchBackend(copy.deepcopy(model), threads=1, precision=precision)
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, (1, 3, cfg.media.image_size, cfg.media.image_size)).astype(np.float32)
    if part == "decoder":
        motion = rng.standard_normal((1, cfg.motion_dim)).astype(np.float32)
        appearance = ref.encode_appearance(image)
        got = half.decode(motion, appearance)
        err = np.abs(got - ref.decode(motion, appearance))
        mean, p99 = {"bf16": (0.03, 0.15), "fp16": (0.005, 0.03)}[precision]
        assert got.dtype == np.float32 and err.mean() < mean and np.percentile(err, 99) < p99, \
            (err.mean(), np.percentile(err, 99))
        return
    ids = np.array([[101, 2298, 6517, 102]])
    mask = np.ones_like(ids)
    D, T = cfg.denoiser.conformer.d_model, 6
    args = (rng.standard_normal((1, T, cfg.motion_dim)).astype(np.float32), np.array([500]),
            rng.standard_normal((1, T, D)).astype(np.float32), np.zeros((1, T), np.float32))
    keyframe = ref.encode_keyframe(image)
    x0 = []
    for b in (ref, half):
        tokens, pooled = b.encode_text(ids, mask)
        x0.append(b.denoise(*args, b.condition(tokens, mask, pooled, keyframe)))
    assert x0[1].dtype == np.float32
    rel = np.abs(x0[1] - x0[0]).max() / np.abs(x0[0]).max()
    assert 0 < rel < {"bf16": 0.05, "fp16": 0.01}[precision], rel      # > 0: the half path really ran


def test_warp_grid_is_fp32_under_bf16():
    """Zero flow returns the input exactly, even for bf16 activations at 256 px (a bf16 grid cannot address it)."""
    x = torch.randn(1, 2, 256, 256).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        y = warp(x, torch.zeros(1, 2, 256, 256, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, x)


def test_backend_option_errors(demo_model):
    _, model = demo_model
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device"):
        TorchBackend(model, cuda_graphs=True)
    with pytest.raises(PrecisionError):
        TorchBackend(model, precision="half")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no usable CUDA"):
            TorchBackend(model, device="cuda")


def test_resident_handles_stack_like_numpy(demo_model):
    """On the device path `condition` returns tensors on the device; stacking pads tokens like the numpy handles."""
    cfg, model = demo_model
    cpu, dev = TorchBackend(model, threads=1), TorchBackend(model, threads=1, device_loop=True)
    rng = np.random.default_rng(3)
    args = []
    for n in (5, 8):
        tokens = rng.standard_normal((1, n, cfg.text.width)).astype(np.float32)
        mask = np.ones((1, n), np.int64)
        args.append((tokens, mask, rng.standard_normal((1, cfg.text.width)).astype(np.float32),
                     rng.standard_normal((1, cfg.motion_dim)).astype(np.float32)))
    want = cpu.stack_instructions([cpu.condition(*a) for a in args])
    handles = [dev.condition(*a) for a in args]
    assert all(isinstance(h.keys, torch.Tensor) and h.keys.device == dev.device for h in handles)
    got = dev.stack_instructions(handles)
    for f in ("const", "keys", "values", "mask"):
        np.testing.assert_allclose(getattr(got, f).cpu().numpy(), getattr(want, f), atol=1e-6, rtol=0)
    assert got.keys.shape[2] == 8 and float(got.mask[0, 5:].sum()) == 0.0


def test_backend_names_resolve_with_clear_errors_without_a_gpu(monkeypatch):
    from instructavatar.engine import backend

    monkeypatch.setattr(backend, "nvidia_gpu_present", lambda: False)
    for name in ("torch-cuda", "trt"):
        with pytest.raises(backend.BackendError, match="needs an NVIDIA GPU"):
            backend.resolve_backend(name)
    assert backend.resolve_backend("auto") in ("ort", "torch")     # GPU backends skipped here
    monkeypatch.setattr(backend, "nvidia_gpu_present", lambda: True)
    assert backend.resolve_backend("torch-cuda") == "torch-cuda"
    assert backend.resolve_backend("auto", usable=lambda n: n != "trt") == "torch-cuda"


@pytest.mark.slow          # torch.compile (inductor, C++ on the CPU): minutes on a shared 2-core machine
def test_compiled_loop_equals_eager():
    from instructavatar.benchmarks.bench_gpu import smoke_config
    from instructavatar.engine.backend import InstructionTensors
    from instructavatar.engine.ddim import DDIMSampler

    cfg = smoke_config()
    model = build_model(cfg, random_weights=True)
    with torch.no_grad():
        for m in model.modules():                      # open the zero gates: the instruction must matter
            if isinstance(m, torch.nn.Linear) and not m.weight.any():
                torch.nn.init.normal_(m.weight, std=0.05)
    sampler = DDIMSampler(cfg.diffusion)
    sampler.set_timesteps(3)
    rng = np.random.default_rng(0)
    T, M, D, L, N = 8, cfg.motion_dim, cfg.denoiser.conformer.d_model, cfg.denoiser.conformer.layers, cfg.text.context
    inst = InstructionTensors(*(rng.standard_normal(s).astype(np.float32) for s in ((2, L, D), (2, L, N, D),
                                                                                    (2, L, N, D))),
                              mask=np.ones((2, N), np.float32))
    x = rng.standard_normal((1, T, M)).astype(np.float32)
    args = (sampler, x, x[:, :4].copy(), rng.standard_normal((2, T, D)).astype(np.float32),
            np.zeros((2, T), np.float32), inst, np.array([0, 0]), np.array([0]), 1.5, None)
    eager = TorchBackend(model, threads=2, device_loop=True).denoise_chunk(*args)
    compiled = TorchBackend(model, threads=2, compile=True)
    assert compiled.runner.denoiser is not model.denoiser               # really wrapped
    np.testing.assert_allclose(compiled.denoise_chunk(*args), eager, atol=1e-5, rtol=0)
