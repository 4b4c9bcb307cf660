"""One solver step per function. t = 0 noise, t = 1 clean; ``v`` is the predicted velocity."""

from __future__ import annotations

import torch
from torch import Tensor


def euler_step(x: Tensor, v: Tensor, dt: Tensor) -> Tensor:
    """x_{t + dt} = x_t + dt * v(x_t, t); dt broadcasts against x (per latent frame)."""
    return x + dt * v


def stochastic_step(x: Tensor, v: Tensor, t: Tensor, dt: Tensor, eta: float, noise: Tensor) -> Tensor:
    """DDIM's step with noise, on the straight path x_t = t x_1 + (1 - t) x_0.

    From x_t and v: the clean estimate x_1 = x_t + (1 - t) v and the noise estimate x_0 = x_t - t v. The next
    point, at t' = t + dt, is t' x_1 + sqrt((1 - t')^2 - s^2) x_0 + s * noise, where s = eta * s_max and s_max
    is the spread of x_t' given x_t and x_1 under the Markov path with these marginals (DDPM's posterior):
    s_max^2 = (1 - t')^2 (1 - r^2), r = t (1 - t') / (t' (1 - t)). eta = 0 is the Euler step of the ODE; eta = 1
    is ancestral sampling, which re-draws the noise a step's share at a time: both sample the same marginals as
    the steps get small. Frames with dt = 0 (clean ones) stay as they are. t, dt broadcast against x;
    ``noise`` ~ N(0, I) like x.
    """
    t_next = t + dt
    clean, old_noise = x + (1 - t) * v, x - t * v
    r = (t * (1 - t_next) / (t_next * (1 - t)).clamp(min=1e-12)).clamp(max=1.0)
    spread = eta * (1 - t_next) * (1 - r ** 2).sqrt()
    step = t_next * clean + ((1 - t_next) ** 2 - spread ** 2).clamp(min=0).sqrt() * old_noise + spread * noise
    return torch.where(dt > 0, step, x)
