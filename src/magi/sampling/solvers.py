"""One solver step per function. t = 0 noise, t = 1 clean; ``v`` is the predicted velocity."""

from __future__ import annotations

from torch import Tensor


def euler_step(x: Tensor, v: Tensor, dt: Tensor) -> Tensor:
    """x_{t + dt} = x_t + dt * v(x_t, t); dt broadcasts against x (per latent frame)."""
    return x + dt * v
