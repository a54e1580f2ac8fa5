"""The DDIM step graph (export/ddim_graph.py) that keeps a TensorRT chunk loop on the device, run on ONNX Runtime
(CPU) against the pipeline's own loop (engine/chunk_loop.py `denoise_chunk`): guided and unguided, with and
without a prefix, eta 0 and > 0."""

import numpy as np
import onnxruntime as ort
import pytest

from instructavatar.engine.chunk_loop import denoise_chunk, draw_step_noise
from instructavatar.engine.config import DiffusionConfig
from instructavatar.engine.ddim import DDIMSampler
from instructavatar.export.ddim_graph import ddim_step_model, step_coefficients


def fake_denoiser(R, steps, M, seed=0):
    """A deterministic stand-in for the denoiser: nonlinear in x, different per step and per row."""
    rng = np.random.default_rng(seed)
    w, c = rng.uniform(0.5, 1.5, steps), rng.standard_normal((R, 1, M)).astype(np.float32)
    return lambda xr, i: (np.tanh(xr * w[i]) + c[:len(xr)]).astype(np.float32)


@pytest.mark.parametrize("guided,P,eta", [(False, 0, 0.0), (True, 3, 0.0), (True, 3, 0.6), (False, 2, 1.0)])
def test_step_graph_loop_equals_denoise_chunk(guided, P, eta):
    B, T, M, steps, g = 3, 7, 5, 6, 1.7
    sampler = DDIMSampler(DiffusionConfig())
    sampler.set_timesteps(steps, eta)
    rng = np.random.default_rng(1)
    g_idx = np.array([0, 2], np.int64) if guided else None
    rows = np.r_[np.arange(B), [] if g_idx is None else g_idx].astype(np.int64)
    denoise = fake_denoiser(len(rows), steps, M)
    x_init = rng.standard_normal((B, T, M)).astype(np.float32)
    prefix = rng.standard_normal((B, P, M)).astype(np.float32) if P else None
    noises = draw_step_noise(sampler, lambda: rng.standard_normal((B, T, M)).astype(np.float32))
    want = denoise_chunk(sampler, denoise, x_init.copy(), prefix, rows if guided else None, g_idx, g, noises)

    sess = ort.InferenceSession(ddim_step_model(guided).SerializeToString(), providers=["CPUExecutionProvider"])
    coef = step_coefficients(sampler)
    prefix_full = np.zeros((B, T, M), np.float32)
    known = np.zeros((B, T, 1), np.float32)
    if P:
        prefix_full[:, :P], known[:, :P] = prefix, 1.0
    x = x_init.copy()
    x[:, :P] = prefix_full[:, :P]
    x_rows = x[rows]
    for i in range(steps):
        feed = {"x": x, "out": denoise(x_rows, i), "coef": coef[i], "prefix": prefix_full, "known": known,
                "rows": rows, "noise": np.zeros_like(x) if noises is None or noises[i] is None else noises[i]}
        if guided:
            feed.update(guided=g_idx, guidance=np.array([g], np.float32))
        x, x_rows = sess.run(["x_next", "x_rows"], feed)
    np.testing.assert_allclose(x[:, P:], want[:, P:], atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(x[:, :P], prefix_full[:, :P])
    assert np.abs(want[:, P:]).max() > 0.1
