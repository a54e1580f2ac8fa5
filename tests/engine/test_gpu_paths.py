"""Real CUDA (and TensorRT) runs of the GPU paths; every test is marked gpu and skips cleanly without a device.

  pytest -m gpu tests/engine/test_gpu_paths.py
Torch on CUDA: the chunk loop and the decoder replayed as CUDA graphs equal the eager per-step pipeline (fp32),
stay within stated tolerances in fp16/bf16, replay again without recapture, and the LRU evicts real graphs.
TensorRT (only where tensorrt and cuda-python are installed): engines built from a reduced paper export run a
pipeline within tolerance of torch. None of these ran when they were written (no GPU was available).
"""

import importlib.util

import numpy as np
import pytest
import torch

from instructavatar.engine.config import get_config
from instructavatar.engine.loader import DEMO_WEIGHTS, build_model
from instructavatar.engine.modules.torch_backend import TorchBackend
from instructavatar.engine.pipeline import Pipeline
from instructavatar.engine.tokenizer import build_tokenizer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def demo():
    cfg = get_config("demo")
    return cfg, build_model(cfg, random_weights=not DEMO_WEIGHTS.is_file())


def motion(cfg, backend, chunks=3, steps=4, eta=0.0):
    pipe = Pipeline(cfg, backend, build_tokenizer(cfg.text), steps=steps, eta=eta, guidance=2.0)
    portrait = np.full((cfg.media.image_size,) * 2 + (3,), 120, np.uint8)
    sessions = [pipe.new_session(portrait, t, seed=i, keep_motion=True)[0] for i, t in enumerate(("look sad", None))]
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(chunks):
        frames.append(pipe.step(sessions, [(0.2 * rng.standard_normal(pipe.chunk_samples)).astype(np.float32)
                                           for _ in sessions]))
    return pipe, np.stack([np.concatenate(s.motion_log) for s in sessions]), frames


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_cuda_graphs_equal_the_eager_pipeline_fp32(demo, eta):
    cfg, model = demo
    _, want, want_frames = motion(cfg, TorchBackend(model.cpu(), threads=2), eta=eta)
    backend = TorchBackend(model, device="cuda", cuda_graphs=True)
    pipe, got, frames = motion(cfg, backend, eta=eta)
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=0)             # TF32 off by default in torch matmul
    for w, g in zip(want_frames, frames):
        assert np.abs(np.stack(w).astype(int) - np.stack(g).astype(int)).max() <= 2
    cache = backend.runner.cache
    assert cache.misses == len(cache) and cache.hits > 0                  # replayed, not recaptured
    model.cpu()


@pytest.mark.parametrize("precision,tol", [("fp16", 0.05), ("bf16", 0.15)])
def test_half_precision_graphs_within_tolerance(demo, precision, tol):
    import copy

    cfg, model = demo
    _, want, _ = motion(cfg, TorchBackend(copy.deepcopy(model), device="cuda", cuda_graphs=True))
    _, got, _ = motion(cfg, TorchBackend(copy.deepcopy(model), device="cuda", precision=precision, cuda_graphs=True))
    assert np.abs(got - want).max() / np.abs(want).max() < tol


def test_graph_lru_evicts_real_graphs(demo):
    cfg, model = demo
    backend = TorchBackend(model, device="cuda", cuda_graphs=True, graph_cache=2)
    rng = np.random.default_rng(1)
    app = backend.encode_appearance(rng.uniform(-1, 1, (1, 3, cfg.media.image_size, cfg.media.image_size))
                                    .astype(np.float32))
    for n in (1, 2, 3, 1):
        m = rng.standard_normal((n, cfg.motion_dim)).astype(np.float32)
        eager = TorchBackend(model, device="cuda").model.vae.decode
        with torch.inference_mode():
            want = eager(torch.from_numpy(m).cuda(), torch.from_numpy(np.repeat(app, n, 0)).cuda()).cpu().numpy()
        np.testing.assert_allclose(backend.decode(m, np.repeat(app, n, 0)), want, atol=1e-4, rtol=0)
    assert backend.runner.cache.evictions == 2 and len(backend.runner.cache) == 2
    model.cpu()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="needs tensorrt>=10 and cuda-python")
def test_tensorrt_engines_match_torch(tmp_path):
    from instructavatar.benchmarks.bench_gpu import smoke_config
    from instructavatar.engine.trt_backend import load_trt_backend
    from instructavatar.export.onnx_export import export_onnx
    from instructavatar.export.trt_build import build_folder

    cfg = smoke_config()                  # the paper architecture at tiny sizes
    model = build_model(cfg, random_weights=True)
    export_onnx(model, cfg, tmp_path, weights=None, feed_weights=False, check=False, log=print)
    build_folder(tmp_path, cfg, "fp16", log=print)
    backend = load_trt_backend(tmp_path, cfg, "fp16")
    assert hasattr(backend, "denoise_chunk")
    _, want, _ = motion(cfg, TorchBackend(model, threads=2), chunks=2)
    _, got, _ = motion(cfg, backend, chunks=2)
    assert np.abs(got - want).max() / np.abs(want).max() < 0.05
