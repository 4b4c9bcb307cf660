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
        """x * rsqrt(mean(x^2) + eps) * weight, in float32 (one fused kernel)."""
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).to(x.dtype)


class LayerNorm(nn.Module):
    """LayerNorm with weight and bias, computed in float32 (MAGI-1's reference norm)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        out = F.layer_norm(x.float(), self.weight.shape, self.weight.float(), self.bias.float(), self.eps)
        return out.to(x.dtype)


NORMS: dict[str, type[nn.Module]] = {"rms": RMSNorm, "layernorm": LayerNorm}


class FeedForward(nn.Module):
    """SwiGLU when ``gated`` (w2(silu(w1 x) * w3 x)), else a GELU MLP (``approximate`` as in F.gelu)."""

    def __init__(self, dim: int, hidden: int, gated: bool, approximate: str = "tanh"):
        super().__init__()
        self.gated = gated
        self.approximate = approximate
        self.w1 = nn.Linear(dim, hidden * 2 if gated else hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.w1(x)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate=self.approximate)
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
    """Rotate consecutive pairs of the last dim. x: (B, H, N, Dh); cos/sin: (N, Dh // 2).

    Each pair (x1, x2) is a complex number x1 + i x2 multiplied by cos + i sin: one complex multiply
    instead of four real ones on strided halves (same values, several times faster on CPU). Under
    ``torch.compile`` the four real multiplies are written out: inductor generates no code for complex
    tensors, and fuses these with the norm before them.
    """
    if torch.compiler.is_compiling():
        x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # (B, H, N, Dh/2) each
        return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2).to(x.dtype)
    xf = x.float()
    if xf.stride(-1) != 1 or any(s % 2 for s in xf.stride()[:-1]):
        xf = xf.contiguous()  # view_as_complex needs pairs adjacent in memory
    pairs = torch.view_as_complex(xf.unflatten(-1, (-1, 2)))  # (B, H, N, Dh/2) complex
    return torch.view_as_real(pairs * torch.complex(cos, sin)).flatten(-2).to(x.dtype)


def grid_positions(t: int, h: int, w: int, t_offset: int = 0, device: torch.device | None = None) -> Tensor:
    """(t*h*w, 3) integer-valued (t, h, w) coordinates in row-major (t, h, w) order."""
    tt, hh, ww = torch.meshgrid(
        torch.arange(t_offset, t_offset + t, device=device),
        torch.arange(h, device=device),
        torch.arange(w, device=device),
        indexing="ij",
    )
    return torch.stack([tt, hh, ww], dim=-1).reshape(-1, 3).float()


# MAGI-1's rotary embedding ("LearnableRotaryEmbeddingCat" in the reference): head_dim // 8 learnable
# frequencies per axis, shared by t, h and w. Positions are t (frame index), and h, w measured from the
# centre of the frame and rescaled so that any frame spans the range of a 16x16 token grid. The angles of
# the three axes are concatenated (3 * head_dim // 8 of them) and rotate the first 2 * 3 * head_dim // 8
# channels in "rotate-half" pairs (x_i, x_{i + n}); the remaining channels carry no position.


def magi_rope_default_bands(head_dim: int, theta: float = 10000.0) -> Tensor:
    """The reference's initial bands: theta ** (-i / n) for i < n = head_dim // 8."""
    n = head_dim // 8
    return 1.0 / theta ** (torch.arange(n, dtype=torch.float32) / n)


def magi_rope_positions(t: int, h: int, w: int, device: torch.device | None = None) -> Tensor:
    """(t*h*w, 3) float32 positions in (t, h, w) order: frame index, then centred and rescaled h and w."""
    base = math.sqrt(h * w / (16 * 16))  # the reference's rescale to a 16x16 reference grid
    axes = []
    for axis, (size, ref) in enumerate(((t, t), (h, h / base), (w, w / base))):
        x = torch.arange(size, device=device, dtype=torch.float32)
        if axis > 0:
            x = x - (size - 1) / 2
        axes.append(x if size == 1 else x / (size - 1) * (ref - 1))
    grid = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(grid, dim=-1).reshape(-1, 3)


def magi_rope(positions: Tensor, bands: Tensor) -> tuple[Tensor, Tensor]:
    """cos, sin of shape (N, 3 * len(bands)): angles of axis 0 bands, then axis 1, then axis 2."""
    angles = (positions[:, :, None] * bands.float()).flatten(1)  # (N, 3 * n)
    return angles.cos(), angles.sin()


def apply_rope_half(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE on the first 2 * cos.shape[-1] channels; x: (B, H, N, Dh), cos/sin: (N, R)."""
    r = cos.shape[-1]
    xf = x.float()
    x1, x2, rest = xf[..., :r], xf[..., r:2 * r], xf[..., 2 * r:]
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, rest], dim=-1)
    return out.to(x.dtype)
