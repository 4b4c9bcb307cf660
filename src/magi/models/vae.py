"""Transformer VAE: (patch_t x patch_hw x patch_hw) pixel patches <-> one latent vector each (MAGI-1: 4x8x8).

Shapes: video (B, 3, T, H, W) in [-1, 1] with T a multiple of patch_t; latents (B, C, T / pt, H / ph, W / ph).

Attention runs inside *segments* of ``segment_frames`` latent frames (the DiT's chunk length), never across
them. So encoding or decoding a long video segment by segment gives exactly the same result as doing it at
once, and decode memory is bounded by one segment: generation decodes each chunk as soon as it is clean.

    encode: patches -> Linear -> [Block] * encoder_depth -> RMSNorm -> Linear -> (mean, logvar)
    decode: latents -> Linear -> [Block] * decoder_depth -> RMSNorm -> Linear -> patches

``encode`` returns ``mean * scale_factor`` (deterministic; the scale makes latents roughly unit variance
for the DiT), ``decode`` divides it back out. Training samples from (mean, logvar) via
``encode_distribution``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from einops import rearrange
from torch import Tensor, nn

from magi.config import VAEConfig
from magi.models.attention import attend
from magi.models.layers import FeedForward, RMSNorm, apply_rope, grid_positions, rope_3d


class Block(nn.Module):
    """Pre-norm self-attention (QK-norm, 3-D RoPE) and GELU MLP."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        head_dim = cfg.dim // cfg.num_heads
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.q_norm = RMSNorm(head_dim, cfg.norm_eps)
        self.k_norm = RMSNorm(head_dim, cfg.norm_eps)
        self.attn_out = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = FeedForward(cfg.dim, int(cfg.dim * cfg.mlp_ratio), gated=False)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
        q, k, v = rearrange(self.qkv(self.attn_norm(x)), "b n (three h d) -> three b h n d", three=3,
                            h=self.num_heads)  # (B, H, N, Dh) each
        q, k = apply_rope(self.q_norm(q), *rope), apply_rope(self.k_norm(k), *rope)
        x = x + self.attn_out(rearrange(attend(q, k, v), "b h n d -> b n (h d)"))
        return x + self.ffn(self.ffn_norm(x))


class TransformerVAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder_in = nn.Linear(cfg.patch_dim, cfg.dim)
        self.encoder = nn.ModuleList(Block(cfg) for _ in range(cfg.encoder_depth))
        self.encoder_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.encoder_out = nn.Linear(cfg.dim, 2 * cfg.latent_channels)
        self.decoder_in = nn.Linear(cfg.latent_channels, cfg.dim)
        self.decoder = nn.ModuleList(Block(cfg) for _ in range(cfg.decoder_depth))
        self.decoder_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.decoder_out = nn.Linear(cfg.dim, cfg.patch_dim)

    def _segments(self, tokens: Tensor, blocks: nn.ModuleList) -> Tensor:
        """Run ``blocks`` on (B, T, h, w, D) tokens, attending only within segments of latent frames."""
        B, T, h, w, D = tokens.shape
        outputs = []
        for start in range(0, T, self.cfg.segment_frames):
            segment = tokens[:, start:start + self.cfg.segment_frames]
            frames = segment.shape[1]
            rope = rope_3d(grid_positions(frames, h, w, device=tokens.device), D // self.cfg.num_heads, 10000.0)
            x = segment.reshape(B, frames * h * w, D)
            for block in blocks:
                x = block(x, rope)
            outputs.append(x.view(B, frames, h, w, D))
        return torch.cat(outputs, dim=1)

    def encode_distribution(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, T, H, W) -> unscaled posterior mean and log-variance, each (B, C, T/pt, H/ph, W/ph)."""
        cfg = self.cfg
        if video.shape[2] % cfg.patch_t or video.shape[3] % cfg.patch_hw or video.shape[4] % cfg.patch_hw:
            raise ValueError(f"video of shape {tuple(video.shape)} is not divisible into "
                             f"{cfg.patch_t}x{cfg.patch_hw}x{cfg.patch_hw} patches")
        patches = rearrange(video, "b c (t pt) (h ph) (w pw) -> b t h w (c pt ph pw)",
                            pt=cfg.patch_t, ph=cfg.patch_hw, pw=cfg.patch_hw)
        x = self._segments(self.encoder_in(patches), self.encoder)  # (B, T', h, w, D)
        mean, logvar = self.encoder_out(self.encoder_norm(x)).chunk(2, dim=-1)
        to_channels = "b t h w c -> b c t h w"
        return rearrange(mean, to_channels), rearrange(logvar.clamp(-30.0, 20.0), to_channels)

    def encode(self, video: Tensor) -> Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> scaled latents (B, C, T/pt, H/ph, W/ph) (posterior mean)."""
        return self.encode_distribution(video)[0] * self.cfg.scale_factor

    def decode(self, latents: Tensor) -> Tensor:
        """Scaled latents (B, C, T', h, w) -> video (B, 3, T' * pt, h * ph, w * ph), unclamped."""
        cfg = self.cfg
        x = self.decoder_in(rearrange(latents / cfg.scale_factor, "b c t h w -> b t h w c"))
        patches = self.decoder_out(self.decoder_norm(self._segments(x, self.decoder)))
        return rearrange(patches, "b t h w (c pt ph pw) -> b c (t pt) (h ph) (w pw)",
                         pt=cfg.patch_t, ph=cfg.patch_hw, pw=cfg.patch_hw)

    def iter_decode(self, latents: Tensor) -> Iterator[Tensor]:
        """Decode one segment at a time: yields (B, 3, segment_frames * pt, H, W) pieces, memory bounded."""
        for start in range(0, latents.shape[2], self.cfg.segment_frames):
            yield self.decode(latents[:, :, start:start + self.cfg.segment_frames])
