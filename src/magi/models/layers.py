"""Primitives shared by the VAE and the DiT: norms, feed-forward, timestep embedding, 3-D RoPE."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x * self.weight.float()).to(dtype)


class FeedForward(nn.Module):
    """SwiGLU when ``gated`` (w2(silu(w1 x) * w3 x)), else a GELU MLP."""

    def __init__(self, dim: int, hidden: int, gated: bool):
        super().__init__()
        self.gated = gated
        self.w1 = nn.Linear(dim, hidden * 2 if gated else hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.w1(x)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")
        return self.w2(h)


def softcap(x: Tensor, cap: float) -> Tensor:
    """cap * tanh(x / cap): smooth clamp to (-cap, cap) with slope 1 at 0."""
    return cap * torch.tanh(x / cap)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000 as in DiT). (...,) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_frequencies(head_dim: int, theta: float) -> tuple[int, int, int]:
    """Split of the rotary pairs between (t, h, w): time gets the remainder, h and w equal shares."""
    pairs = head_dim // 2
    hw = pairs // 4  # a quarter of the pairs each for h and w
    return pairs - 2 * hw, hw, hw


def rope_3d(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos/sin tables for 3-D rotary embeddings.

    positions: (N, 3) float (t, h, w) per token -> cos, sin of shape (N, head_dim // 2).
    """
    parts = []
    for axis, pairs in enumerate(rope_frequencies(head_dim, theta)):
        inv = 1.0 / (theta ** (torch.arange(pairs, dtype=torch.float64, device=positions.device) / max(pairs, 1)))
        parts.append(positions[:, axis, None].double() * inv)  # (N, pairs)
    angles = torch.cat(parts, dim=-1)  # (N, head_dim // 2)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate consecutive pairs of the last dim. x: (B, H, N, Dh); cos/sin: (N, Dh // 2)."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # (B, H, N, Dh/2) each
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)


def grid_positions(t: int, h: int, w: int, t_offset: int = 0, device: torch.device | None = None) -> Tensor:
    """(t*h*w, 3) integer-valued (t, h, w) coordinates in row-major (t, h, w) order."""
    tt, hh, ww = torch.meshgrid(
        torch.arange(t_offset, t_offset + t, device=device),
        torch.arange(h, device=device),
        torch.arange(w, device=device),
        indexing="ij",
    )
    return torch.stack([tt, hh, ww], dim=-1).reshape(-1, 3).float()
