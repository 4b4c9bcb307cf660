"""Shortcut models (Frans et al. 2024, as used by MAGI-1's distilled checkpoints), as pure functions.

A shortcut model s(x, t, d) predicts the average velocity over a step of size d, so that
x_{t + d} = x_t + d * s(x_t, t, d). Self-consistency ties step sizes together:

    s(x_t, t, d1 + d2) = (d1 * s(x_t, t, d1) + d2 * s(x_{t + d1}, t + d1, d2)) / (d1 + d2),
    x_{t + d1} = x_t + d1 * s(x_t, t, d1)

("one big step equals two small ones"). On the shifted grids of the sampler, the 2n-step grid refines the
n-step grid, so step k of the n-step grid is exactly steps 2k and 2k + 1 of the 2n-step grid.
As d -> 0 the target is the instantaneous flow velocity.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from magi.flow.schedule import time_grid

VelocityFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # (x, t, d) -> velocity, t and d per latent frame


def grid_steps(t: Tensor, steps: int, shift: float) -> tuple[Tensor, Tensor, Tensor]:
    """Snap ``t`` down onto the ``steps``-step grid; return (t_k, d1, d2) with d1, d2 the two half steps.

    t = 1 (clean frames) stays 1 with d1 = d2 = 0.
    """
    coarse, fine = time_grid(steps, shift).to(t.device), time_grid(2 * steps, shift).to(t.device)
    k = (torch.bucketize(t.double(), coarse, right=True) - 1).clamp(0, steps - 1)
    t_k, d1, d2 = fine[2 * k], fine[2 * k + 1] - fine[2 * k], fine[2 * k + 2] - fine[2 * k + 1]
    clean = t >= 1
    zero = torch.zeros_like(d1)
    return (torch.where(clean, torch.ones_like(t_k), t_k).to(t.dtype), torch.where(clean, zero, d1).to(t.dtype),
            torch.where(clean, zero, d2).to(t.dtype))


def broadcast(per_frame: Tensor) -> Tensor:
    """(B, T) -> (B, 1, T, 1, 1) against latents (B, C, T, H, W)."""
    return per_frame[:, None, :, None, None]


def two_step_target(velocity: VelocityFn, x: Tensor, t: Tensor, d1: Tensor, d2: Tensor) -> Tensor:
    """The velocity of one step of size d1 + d2 made of two shortcut steps (d1, then d2)."""
    v1 = velocity(x, t, d1)
    v2 = velocity(x + broadcast(d1) * v1, t + d1, d2)
    total = broadcast(d1 + d2)
    mixed = (broadcast(d1) * v1 + broadcast(d2) * v2) / total.clamp(min=1e-12)
    return torch.where(total > 0, mixed, v1)
