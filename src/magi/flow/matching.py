"""Rectified-flow path and loss.

Convention (MAGI-1's, used everywhere in magi): t = 0 is pure noise, t = 1 is data.

    x_t = t * x_1 + (1 - t) * x_0,     x_0 ~ N(0, I) noise,  x_1 data
    v   = d x_t / d t = x_1 - x_0       (the velocity the DiT predicts)

so one Euler step is x_{t + dt} = x_t + dt * v, and integrating from t = 0 to 1 turns noise into data.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class PathSample:
    x_t: Tensor  # noisy input at time t
    velocity: Tensor  # regression target x_1 - x_0


def broadcast_time(t: Tensor, like: Tensor) -> Tensor:
    """t: (B, T) per latent frame -> (B, 1, T, 1, 1) against latents (B, C, T, H, W)."""
    return t.to(like.dtype)[:, None, :, None, None]


def interpolate(data: Tensor, noise: Tensor, t: Tensor) -> PathSample:
    """Point on the straight path between ``noise`` (t = 0) and ``data`` (t = 1); t: (B, T)."""
    tt = broadcast_time(t, data)
    return PathSample(x_t=tt * data + (1 - tt) * noise, velocity=data - noise)
