"""DDIM sampler: schedule values and update arithmetic pinned to numbers computed by hand / DDPM."""

import numpy as np
import pytest

from instructavatar.engine.config import DiffusionConfig
from instructavatar.engine.ddim import DDIMSampler, vp_alphas_cumprod


def test_vp_schedule_matches_ddpm_linear():
    ab = vp_alphas_cumprod(DiffusionConfig())
    assert ab.shape == (1000,)
    assert ab[0] == pytest.approx(1 - 1e-4)
    assert ab[499] == pytest.approx(0.07858724288, rel=1e-9)
    assert ab[999] == pytest.approx(4.035829765e-05, rel=1e-8)      # DDPM's well-known final alpha_bar
    assert np.all(np.diff(ab) < 0)


@pytest.mark.parametrize("n, first, last", [(1, [999], [999]), (2, [999, 499], [999, 499]),
                                            (4, [999, 749, 499, 249], [749, 499, 249]),
                                            (8, [999, 874, 749, 624, 499], [374, 249, 124]),
                                            (50, [999, 979, 959, 939, 919], [59, 39, 19]),
                                            (1000, [999, 998, 997, 996, 995], [2, 1, 0])])
def test_trailing_timesteps(n, first, last):
    s = DDIMSampler(DiffusionConfig())
    s.set_timesteps(n)
    assert s.num_steps == n
    assert list(s.timesteps[:5]) == first and list(s.timesteps[-3:]) == last


def test_deterministic_step_pinned():
    s = DDIMSampler(DiffusionConfig())
    s.set_timesteps(4)
    coeff = [(c.c_x0, c.c_eps, c.sigma) for c in s.coefficients]
    np.testing.assert_allclose(coeff, [(0.05788394, 0.99832332, 0), (0.28033416, 0.95990247, 0),
                                       (0.72393741, 0.68986566, 0), (1.0, 0.0, 0)], atol=1e-8)
    x, x0 = np.ones((2, 3), np.float32), np.full((2, 3), 0.5, np.float32)
    # step 0: eps = (1 - sqrt(ab999) * .5) / sqrt(1 - ab999); prev = sqrt(ab749) * .5 + sqrt(1 - ab749) * eps
    ab = s.alphas_cumprod
    eps = (1 - np.sqrt(ab[999]) * 0.5) / np.sqrt(1 - ab[999])
    expect = np.sqrt(ab[749]) * 0.5 + np.sqrt(1 - ab[749]) * eps
    assert s.step(x0, 0, x)[0, 0] == pytest.approx(expect, rel=1e-6)
    assert s.step(x0, 0, x)[0, 0] == pytest.approx(1.0241143, rel=1e-6)
    assert s.step(x0, 3, x)[0, 0] == pytest.approx(0.5)                # last step returns x0


def test_eta_one_is_ddpm_posterior_and_seeded():
    s = DDIMSampler(DiffusionConfig())
    s.set_timesteps(4, eta=1.0)
    sig = [c.sigma for c in s.coefficients]
    np.testing.assert_allclose(sig, [0.99231259, 0.94079438, 0.66261206, 0.0], atol=1e-7)
    x, x0 = np.ones((2, 3), np.float32), np.full((2, 3), 0.5, np.float32)
    a = s.step(x0, 1, x, rng=np.random.default_rng(0))
    b = s.step(x0, 1, x, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a[0], [1.3769894, -0.97946244, -0.07577929], rtol=1e-5)
    with pytest.raises(ValueError, match="rng"):
        s.step(x0, 1, x)


def test_works_on_torch_tensors_identically():
    torch = pytest.importorskip("torch")
    s = DDIMSampler(DiffusionConfig())
    s.set_timesteps(8)
    x = np.random.default_rng(1).standard_normal((1, 5, 4)).astype(np.float32)
    x0 = np.zeros_like(x)
    for i in range(s.num_steps):
        out_np = s.step(x0, i, x)
        out_t = s.step(torch.from_numpy(x0), i, torch.from_numpy(x))
        np.testing.assert_allclose(out_t.numpy(), out_np, rtol=1e-6)


@pytest.mark.parametrize("bad", [0, 1001, -3])
def test_step_count_range(bad):
    with pytest.raises(ValueError, match="between 1 and 1000"):
        DDIMSampler(DiffusionConfig()).set_timesteps(bad)


def test_single_step_from_noise_returns_x0():
    s = DDIMSampler(DiffusionConfig())
    s.set_timesteps(1)
    noise = s.initial_noise((3, 2), np.random.default_rng(0))
    x0 = np.full((3, 2), 0.25, np.float32)
    np.testing.assert_allclose(s.step(x0, 0, noise), x0, atol=1e-6)
