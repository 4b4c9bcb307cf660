"""Classifier-free guidance as pure functions of the model outputs.

MAGI-1 combines three velocities: v_u without text and without the previous chunks (the prefix),
v_p with the prefix but without text, and v_c with both:

    v = v_u + s_prefix * (v_p - v_u) + s_text * (v_c - v_p)

so s_prefix = s_text = 1 gives v_c. Scales are piecewise constant in the chunk's noise level t: the
value at index i applies for cfg_t_range[i] <= t < cfg_t_range[i + 1] (the last one above the last bound).
"""

from __future__ import annotations

import torch
from torch import Tensor


def piecewise_scale(t: Tensor, bounds: tuple[float, ...], values: tuple[float, ...]) -> Tensor:
    """Per-element scale for noise levels ``t`` (any shape)."""
    edges = torch.tensor(bounds, dtype=torch.float64, device=t.device)
    index = (torch.bucketize(t.double(), edges, right=True) - 1).clamp(0, len(values) - 1)
    return torch.tensor(values, dtype=t.dtype, device=t.device)[index]


def text_guidance(v_text: Tensor, v_null: Tensor, text_scale: Tensor) -> Tensor:
    return v_null + text_scale * (v_text - v_null)


def text_and_prefix_guidance(v_text: Tensor, v_prefix: Tensor, v_uncond: Tensor,
                             text_scale: Tensor, prefix_scale: Tensor) -> Tensor:
    return v_uncond + prefix_scale * (v_prefix - v_uncond) + text_scale * (v_text - v_prefix)
