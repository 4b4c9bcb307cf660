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


def magi1_time_grid(steps: int, shift: float = 3.0, shortcut_mode: str = "8,16,16") -> Tensor:
    """(steps + 1,) float32: the official MAGI-1 grid (video_generate.py ``init_t``, sd3 schedule).

    A uniform grid (12 steps: the distill grid of three steps per quarter, in ``shortcut_mode``'s pattern) is
    **squared**, then shifted as ``shift_time`` does, written as the official writes it
    (s' x / (1 + (s' - 1) x) with s' = 1 / shift) and in its precision, float32. At 16 steps the stage
    boundaries land on 0.0217, 0.1 and 0.3, the bounds of the published guidance ranges.
    """
    if steps == 12:
        quarter = torch.linspace(0, 1, 5, dtype=torch.float32) / 4  # 0, 1/16, 2/16, 3/16, 4/16
        starts = quarter[:3] if shortcut_mode == "16,16,8" else torch.cat([quarter[:1], quarter[2:4]])
        t = torch.cat([starts + offset for offset in torch.linspace(0, 1, 5, dtype=torch.float32)])[:steps + 1]
    else:
        t = torch.linspace(0, 1, steps + 1, dtype=torch.float32)
    t = t**2
    inv = 1.0 / shift
    return inv * t / (1 + (inv - 1) * t)


def magi1_step_intervals(steps: int, shortcut_mode: str = "8,16,16") -> list[int]:
    """Relative length of each step of a stage (``init_intervel``): 1 everywhere but for step counts
    divisible by 3, where the distill grid's pattern repeats (2, 1, 1) or, for "16,16,8", (1, 1, 2)."""
    if steps % 3:
        return [1] * steps
    return ([1, 1, 2] if shortcut_mode == "16,16,8" else [2, 1, 1]) * (steps // 3)
