"""Time grids for sampling (pure functions). t = 0 is noise, t = 1 is clean data."""

from __future__ import annotations

import torch
from torch import Tensor


def shift_time(t: Tensor, shift: float) -> Tensor:
    """Resolution shift of the noise level: sigma = 1 - t becomes s * sigma / (1 + (s - 1) * sigma).

    With s > 1 the grid spends more of its steps at high noise, where the coarse layout of a video is
    decided (SD3 eq. 23, with MAGI-1's clean-is-one convention). t = 0 and t = 1 are fixed points.
    """
    sigma = 1.0 - t
    return 1.0 - shift * sigma / (1.0 + (shift - 1.0) * sigma)


def time_grid(steps: int, shift: float = 1.0) -> Tensor:
    """(steps + 1,) increasing float64 times from exactly 0 (noise) to exactly 1 (clean)."""
    return shift_time(torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64), shift)
