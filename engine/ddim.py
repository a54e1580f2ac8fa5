"""DDIM sampling for an x0-predicting model. Knows nothing of the model and nothing of torch.

The training schedule is the discrete VP process of DDPM (linear betas 1e-4..0.02 over 1000 steps; the
VP SDE with beta 0.1..20 that the authors' code integrates is its continuous limit). `set_timesteps(n)`
precomputes everything for an n-step run once; `step()` is pure arithmetic on whatever array type the
caller uses (numpy arrays, torch tensors): it only multiplies and adds with Python floats.

    sampler = DDIMSampler(DiffusionConfig())
    sampler.set_timesteps(8)
    x = sampler.initial_noise(shape, rng)
    for i, t in enumerate(sampler.timesteps):
        x0 = model(x, t)
        x = sampler.step(x0, i, x, rng)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import DiffusionConfig


def vp_alphas_cumprod(cfg: DiffusionConfig) -> np.ndarray:
    """alpha_bar_t for t = 0 .. train_steps-1 (float64)."""
    betas = np.linspace(cfg.beta_start, cfg.beta_end, cfg.train_steps, dtype=np.float64)
    return np.cumprod(1.0 - betas)


@dataclass(frozen=True)
class StepCoefficients:
    """Per-step scalars of x_prev = c_x0 * x0 + c_eps * eps + sigma * z."""

    c_x0: float
    c_eps: float
    sigma: float
    sqrt_ab: float           # sqrt(alpha_bar_t) of the current step: eps = (x_t - sqrt_ab x0) / sqrt_1mab
    sqrt_1mab: float


class DDIMSampler:
    def __init__(self, cfg: DiffusionConfig):
        self.cfg = cfg
        self.alphas_cumprod = vp_alphas_cumprod(cfg)
        self.timesteps: np.ndarray = np.zeros(0, np.int64)
        self.coefficients: list[StepCoefficients] = []
        self.eta = cfg.eta

    def set_timesteps(self, num_steps: int, eta: float | None = None) -> None:
        """Precompute an n-step schedule ("trailing" spacing: the first step is t = T-1, pure noise)."""
        T = self.cfg.train_steps
        if not 1 <= int(num_steps) <= T:
            raise ValueError(f"steps must be between 1 and {T}, got {num_steps}")
        n = int(num_steps)
        self.eta = self.cfg.eta if eta is None else float(eta)
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        ts = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
        self.timesteps = ts
        ab = self.alphas_cumprod
        coeffs = []
        for i, t in enumerate(ts):
            ab_t = ab[t]
            ab_prev = ab[ts[i + 1]] if i + 1 < n else 1.0
            # DDIM (Song et al. 2020) eq. 12/16 with sigma scaled by eta.
            sigma = self.eta * np.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
            c_eps = np.sqrt(max(1 - ab_prev - sigma**2, 0.0))
            coeffs.append(StepCoefficients(c_x0=float(np.sqrt(ab_prev)), c_eps=float(c_eps), sigma=float(sigma),
                                           sqrt_ab=float(np.sqrt(ab_t)), sqrt_1mab=float(np.sqrt(1 - ab_t))))
        self.coefficients = coeffs

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def initial_noise(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    def add_noise(self, x0, noise, t: int):
        """q(x_t | x_0): the forward process at integer training step t (also used to pin a known prefix)."""
        ab = self.alphas_cumprod[int(t)]
        return float(np.sqrt(ab)) * x0 + float(np.sqrt(1 - ab)) * noise

    def noise_prefix(self, x0, noise, step_index: int):
        """The known clean prefix noised to the level of x_t at step `step_index` (inpainting-style pinning)."""
        c = self.coefficients[step_index]
        return c.sqrt_ab * x0 + c.sqrt_1mab * noise

    def step(self, x0_pred, step_index: int, sample, rng: np.random.Generator | None = None, noise=None):
        """One DDIM update from x_t (sample) to x_{t_prev}, given the model's x0 prediction."""
        c = self.coefficients[step_index]
        eps = (sample - c.sqrt_ab * x0_pred) * (1.0 / c.sqrt_1mab)
        prev = c.c_x0 * x0_pred + c.c_eps * eps
        if c.sigma > 0.0:
            if noise is None:
                if rng is None:
                    raise ValueError("eta > 0 needs an rng or explicit noise")
                noise = rng.standard_normal(tuple(sample.shape), dtype=np.float32)
                if not isinstance(sample, np.ndarray):          # torch tensor: match its type and device
                    noise = sample.new_tensor(noise)
            prev = prev + c.sigma * noise
        return prev
