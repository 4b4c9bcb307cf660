"""The published MAGI-1 VAE (SandAI-org/MAGI-1 ``inference/model/vae``), written from its formulas.

A ViT autoencoder: one latent vector per (patch_t x patch_hw x patch_hw) pixel patch (published: 4x8x8 -> 16
channels). Parameter names equal the reference's state-dict names, so the published
``ckpt/vae/diffusion_pytorch_model.safetensors`` loads with ``load_state_dict(strict=True)``:

    encode: Conv3d patches -> [cls] + tokens + learned positions -> [Block] * depth -> LayerNorm -> Linear
            -> (mean, logvar);  ``encode`` returns mean * scale_factor (the posterior mean, as the pipeline)
    decode: latents / scale_factor -> Linear -> [cls] + tokens + learned positions -> [Block] * depth
            -> LayerNorm -> unpatchify to dim / (pt ph pw) channels at full resolution -> Conv3d 3x3x3 -> RGB
    Block:  x += proj(attention(norm(qkv(x)))) ; x += fc2(gelu(fc1(LayerNorm(x))))
            norm: q, k and v standardised per head without affine ("ln_in_attn"); or, without that option,
            a LayerNorm in front of qkv as usual

Unlike our ``TransformerVAE``, attention is global over the whole input, and the learned position table (one
entry per token of a ``train_frames x train_size x train_size`` clip, published 4 x 32 x 32 tokens) is
resized trilinearly to any other token grid. The reference pipeline does not run the network on a whole
video: it encodes and decodes tile by tile (12 frames x 256 x 256 pixels, a quarter spatial overlap blended
linearly), which ``tiled_encode`` / ``tiled_decode`` below do, and ``TiledVAE`` puts behind the
``encode`` / ``decode`` interface of ``TransformerVAE``.

Shapes: video (B, 3, T, H, W) in [-1, 1]; latents (B, C, T / pt, H / ph, W / ph).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from magi.errors import InputError
from magi.models.attention import attend

LOGVAR_RANGE = (-30.0, 20.0)  # the reference's DiagonalGaussianDistribution clamps the log-variance


@dataclass(frozen=True, kw_only=True)
class MagiVAEConfig:
    """Sizes and options of the reference ``ViTVAE`` (its ``ddconfig`` key in comments); ``magi()``: published."""

    in_channels: int = 3  # in_chans; the decoder outputs as many
    latent_channels: int = 4  # z_chans; the encoder outputs twice as many: mean and log-variance ("double_z")
    patch_t: int = 4  # patch_length: temporal compression
    patch_hw: int = 8  # patch_size: spatial compression
    train_frames: int = 8  # video_length: the position table covers train_frames / patch_t latent frames ...
    train_size: int = 32  # video_size: ... of (train_size / patch_hw)^2 latent pixels
    dim: int = 64  # embed_dim
    depth: int = 2  # depth, of the encoder and of the decoder each
    num_heads: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    cls_token: bool = True  # with_cls_token: one learned token in front of the patches, dropped at the output
    qkv_norm: bool = True  # ln_in_attn: standardise q, k, v per head instead of a LayerNorm before attention
    norm_eps: float = 1e-5  # torch.nn.LayerNorm's default (the reference's norm_layer)
    qkv_norm_eps: float = 1e-5  # the reference's ManualLayerNorm: (x - mean) / (std + eps)
    scale_factor: float = 0.18215  # run-level in the reference (runtime_config.scale_factor)

    def __post_init__(self) -> None:
        sizes = (self.in_channels, self.latent_channels, self.patch_t, self.patch_hw, self.train_frames,
                 self.train_size, self.dim, self.depth, self.num_heads)
        if min(sizes) <= 0:
            raise ValueError(f"magi vae sizes must be positive, got {self}")
        if self.dim % self.num_heads:
            raise ValueError(f"magi vae dim={self.dim} not divisible by num_heads={self.num_heads}")
        if self.dim % (self.patch_t * self.patch_hw**2):
            raise ValueError(f"magi vae dim={self.dim} not divisible by the patch volume "
                             f"{self.patch_t}x{self.patch_hw}x{self.patch_hw} (the decoder unpatchifies it)")
        if self.train_frames % self.patch_t or self.train_size % self.patch_hw:
            raise ValueError(f"magi vae train clip {self.train_frames}x{self.train_size}^2 is not divisible into "
                             f"{self.patch_t}x{self.patch_hw}x{self.patch_hw} patches")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def mlp_dim(self) -> int:
        return int(self.dim * self.mlp_ratio)

    @property
    def unpatch_channels(self) -> int:
        """Channels per pixel after the decoder's unpatchify, before its last Conv3d (published: 4)."""
        return self.dim // (self.patch_t * self.patch_hw**2)

    @property
    def train_grid(self) -> tuple[int, int, int]:
        """(t, h, w) token grid of the learned position table."""
        size = self.train_size // self.patch_hw
        return self.train_frames // self.patch_t, size, size

    @classmethod
    def magi(cls) -> MagiVAEConfig:
        """The published VAE (Hugging Face sand-ai/MAGI-1 ``ckpt/vae/config.json``; see the manifest test)."""
        return cls(in_channels=3, latent_channels=16, patch_t=4, patch_hw=8, train_frames=16, train_size=256,
                   dim=1024, depth=24, num_heads=16, mlp_ratio=4.0, qkv_bias=True, cls_token=True, qkv_norm=True,
                   scale_factor=0.18215)

    @classmethod
    def from_reference(cls, config: dict[str, Any], scale_factor: float) -> MagiVAEConfig:
        """A reference VAE ``config.json`` (``{"_class_name": "ViTVAE", "ddconfig": {...}, ...}``) -> ours.

        Keys it omits take the reference constructor's defaults; options the published VAE does not use
        (and the reference does not fully implement) raise one ``InputError`` line, as do unknown keys.
        """
        if config.get("_class_name") != "ViTVAE" or config.get("model_type", "vit") != "vit":
            raise InputError(f"not a MAGI-1 ViTVAE config (_class_name={config.get('_class_name')!r}, "
                             f"model_type={config.get('model_type', 'vit')!r})")
        ddconfig = config.get("ddconfig")
        if not isinstance(ddconfig, dict):
            raise InputError("the MAGI-1 VAE config has no 'ddconfig' object")
        unknown = sorted(set(ddconfig) - set(REFERENCE_DEFAULTS))
        if unknown:
            raise InputError(f"the MAGI-1 VAE config has unknown ddconfig key '{unknown[0]}'")
        d = REFERENCE_DEFAULTS | ddconfig
        for key, needed in UNSUPPORTED.items():
            if d[key] != needed:
                raise InputError(f"the MAGI-1 VAE option {key}={d[key]!r} is not supported (needs {needed!r})")
        for key in ("video_size", "video_length", "patch_size", "patch_length", "in_chans", "z_chans",
                    "embed_dim", "depth", "num_heads"):
            if not isinstance(d[key], int) or isinstance(d[key], bool):
                raise InputError(f"the MAGI-1 VAE config's {key}={d[key]!r} must be an integer")
        try:
            return cls(in_channels=d["in_chans"], latent_channels=d["z_chans"], patch_t=d["patch_length"],
                       patch_hw=d["patch_size"], train_frames=d["video_length"], train_size=d["video_size"],
                       dim=d["embed_dim"], depth=d["depth"], num_heads=d["num_heads"],
                       mlp_ratio=float(d["mlp_ratio"]), qkv_bias=bool(d["qkv_bias"]),
                       cls_token=bool(d["with_cls_token"]), qkv_norm=bool(d["ln_in_attn"]),
                       scale_factor=scale_factor)
        except (TypeError, ValueError) as error:
            raise InputError(f"the MAGI-1 VAE config is inconsistent: {error}") from None


# The keyword defaults of the reference ViTEncoder / ViTDecoder (vae_module.py): what an omitted key means.
# qk_scale and the dropout rates have no effect at inference (flash attention uses 1/sqrt(head_dim)).
REFERENCE_DEFAULTS: dict[str, Any] = {
    "video_size": 256, "video_length": 16, "patch_size": 8, "patch_length": 4, "in_chans": 3, "z_chans": 4,
    "double_z": True, "embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0, "qkv_bias": False,
    "qk_scale": None, "drop_rate": 0.0, "attn_drop_rate": 0.0, "drop_path_rate": 0.0, "with_cls_token": True,
    "norm_code": False, "ln_in_attn": False, "conv_last_layer": False, "use_rope": False, "use_final_proj": False,
}
# Options with a single supported value: the published one (the reference decoder asserts conv_last_layer;
# double_z=False or an RGB-less in_chans would not run through its DiagonalGaussianDistribution / decoder).
UNSUPPORTED: dict[str, Any] = {"double_z": True, "conv_last_layer": True, "norm_code": False, "use_rope": False,
                               "use_final_proj": False, "in_chans": 3}


def standardize(x: Tensor, eps: float) -> Tensor:
    """The reference's ManualLayerNorm over the last axis: (x - mean) / (population std + eps), no affine."""
    mean = x.mean(dim=-1, keepdim=True)
    return (x - mean) / (x.std(dim=-1, keepdim=True, correction=0) + eps)


def position_table(pos_embed: Tensor, num_cls: int, train_grid: tuple[int, int, int],
                   grid: tuple[int, int, int]) -> Tensor:
    """The learned (1, num_cls + t0 h0 w0, D) table for a (t, h, w) token grid: the patch part resized
    trilinearly (align_corners=False) when the grid differs from the training grid, the cls part kept."""
    if tuple(grid) == tuple(train_grid):
        return pos_embed
    t0, h0, w0 = train_grid
    table = rearrange(pos_embed[:, num_cls:], "1 (t h w) d -> 1 d t h w", t=t0, h=h0, w=w0)
    table = F.interpolate(table, size=tuple(grid), mode="trilinear", align_corners=False)  # (1, D, t, h, w)
    return torch.cat([pos_embed[:, :num_cls], rearrange(table, "1 d t h w -> 1 (t h w) d")], dim=1)


class Attention(nn.Module):
    def __init__(self, cfg: MagiVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x: Tensor) -> Tensor:
        qkv = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.cfg.num_heads)
        if self.cfg.qkv_norm:
            qkv = standardize(qkv, self.cfg.qkv_norm_eps)  # q, k and v alike, per head
        q, k, v = qkv.unbind(0)  # (B, H, N, Dh) each
        return self.proj(rearrange(attend(q, k, v), "b h n d -> b n (h d)"))


class MLP(nn.Module):
    def __init__(self, cfg: MagiVAEConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.dim, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact GELU (torch.nn.GELU's default)


class Block(nn.Module):
    def __init__(self, cfg: MagiVAEConfig):
        super().__init__()
        # with qkv_norm the reference's norm1 is an Identity: no parameters
        self.norm1 = nn.Identity() if cfg.qkv_norm else nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Trunk(nn.Module):
    """What the encoder and decoder share: cls token, learned positions, blocks and the final LayerNorm."""

    def __init__(self, cfg: MagiVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.num_cls = int(cfg.cls_token)
        t, h, w = cfg.train_grid
        if cfg.cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_cls + t * h * w, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if cfg.cls_token:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def run(self, tokens: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """(B, N, D) tokens in (t, h, w) order on ``grid`` -> (B, N, D) after the blocks and the norm."""
        if self.num_cls:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)  # (B, 1 + N, D)
        x = tokens + position_table(self.pos_embed, self.num_cls, self.cfg.train_grid, grid)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, self.num_cls:]  # (B, N, D)


class PatchEmbed(nn.Module):
    def __init__(self, cfg: MagiVAEConfig):
        super().__init__()
        kernel = (cfg.patch_t, cfg.patch_hw, cfg.patch_hw)
        self.proj = nn.Conv3d(cfg.in_channels, cfg.dim, kernel_size=kernel, stride=kernel)


class Encoder(Trunk):
    def __init__(self, cfg: MagiVAEConfig):
        super().__init__(cfg)
        self.patch_embed = PatchEmbed(cfg)
        self.last_layer = nn.Linear(cfg.dim, 2 * cfg.latent_channels)

    def forward(self, video: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> moments (B, 2C, t, h, w): mean channels first, then log-variance."""
        x = self.patch_embed.proj(video)  # (B, D, t, h, w)
        t, h, w = x.shape[2:]
        x = self.run(rearrange(x, "b d t h w -> b (t h w) d"), (t, h, w))  # (B, N, D)
        return rearrange(self.last_layer(x), "b (t h w) c -> b c t h w", t=t, h=h, w=w)


class Decoder(Trunk):
    def __init__(self, cfg: MagiVAEConfig):
        super().__init__(cfg)
        self.proj_in = nn.Linear(cfg.latent_channels, cfg.dim)
        self.last_layer = nn.Conv3d(cfg.unpatch_channels, cfg.in_channels, kernel_size=3, padding=1)

    def forward(self, latents: Tensor) -> Tensor:
        """Unscaled latents (B, C, t, h, w) -> video (B, 3, t * pt, h * ph, w * ph)."""
        cfg = self.cfg
        t, h, w = latents.shape[2:]
        x = self.run(self.proj_in(rearrange(latents, "b c t h w -> b (t h w) c")), (t, h, w))  # (B, N, D)
        x = rearrange(x, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)", t=t, h=h, w=w,
                      pt=cfg.patch_t, ph=cfg.patch_hw, pw=cfg.patch_hw)  # (B, D / (pt ph pw), T, H, W)
        return self.last_layer(x)


class MagiVAE(nn.Module):
    """The reference ``ViTVAE``: ``encoder`` and ``decoder`` under the reference's parameter names."""

    def __init__(self, cfg: MagiVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def encode_distribution(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, T, H, W) -> unscaled posterior mean and log-variance, each (B, C, T/pt, H/ph, W/ph).

        A single frame (T = 1) is repeated to one temporal patch, as the reference does for images.
        """
        cfg = self.cfg
        lone_frame = video.shape[2] == 1
        if lone_frame:
            video = video.expand(-1, -1, cfg.patch_t, -1, -1)
        if video.shape[2] % cfg.patch_t or video.shape[3] % cfg.patch_hw or video.shape[4] % cfg.patch_hw:
            raise ValueError(f"video of shape {tuple(video.shape)} is not divisible into "
                             f"{cfg.patch_t}x{cfg.patch_hw}x{cfg.patch_hw} patches")
        mean, logvar = self.encoder(video).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, video: Tensor) -> Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> scaled latents (B, C, T/pt, H/ph, W/ph) (posterior mean)."""
        return self.encode_distribution(video)[0] * self.cfg.scale_factor

    def decode(self, latents: Tensor) -> Tensor:
        """Scaled latents (B, C, t, h, w) -> video (B, 3, t * pt, h * ph, w * ph), unclamped; a single latent
        frame (t = 1, the image case) gives a single frame, as the published ``ViTVAE.decode`` does (its
        pipeline's tiles of 3 latent frames reach it: the official v2v's first chunk of 4 latents decodes
        to 3 * 4 + 1 = 13 frames)."""
        video = self.decoder(latents / self.cfg.scale_factor)
        return video[:, :, :1] if latents.shape[2] == 1 else video


# ---------------------------------------------------------------------------------------------------------
# Tiles: how the reference pipeline runs the network (inference/infra/parallelism/tile_parallel.py)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Tiling:
    """Tile sizes in pixels and frames. Defaults: the reference pipeline's (video_process.py), where
    ``frames`` is fps // 2 (12 at its 24 fps). Neighbouring tiles overlap by these fractions of a tile."""

    frames: int = 12
    height: int = 256
    width: int = 256
    spatial_overlap: float = 0.25
    temporal_overlap: float = 0.0

    def __post_init__(self) -> None:
        if min(self.frames, self.height, self.width) <= 0:
            raise ValueError(f"tile sizes must be positive, got {self}")
        if not (0 <= self.spatial_overlap < 1 and 0 <= self.temporal_overlap < 1):
            raise ValueError(f"tile overlaps must be in [0, 1), got {self}")


def blend(a: Tensor, b: Tensor, dim: int, extent: int) -> Tensor:
    """Cross-fade, in place, the first ``extent`` slices of ``b`` along ``dim`` from the last ones of ``a``:
    b[k] = a[-extent + k] * (1 - k / extent) + b[k] * k / extent (the reference's blend_t / blend_v / blend_h)."""
    extent = min(a.shape[dim], b.shape[dim], extent)
    if extent == 0:
        return b
    shape = [extent if d == dim else 1 for d in range(b.ndim)]
    weight = (torch.arange(extent, device=b.device, dtype=torch.float32) / extent).to(b.dtype).view(shape)
    head = b.narrow(dim, 0, extent)
    head.copy_(a.narrow(dim, a.shape[dim] - extent, extent) * (1 - weight) + head * weight)
    return b


def run_tiles(fn: Callable[[Tensor], Tensor], x: Tensor, tile: tuple[int, int, int], out_tile: tuple[int, int, int],
              overlap: tuple[float, float, float], chained: bool) -> Tensor:
    """Apply ``fn`` to overlapping (T, H, W) tiles of ``x`` (B, C, T, H, W) and stitch its outputs.

    Input tiles span ``tile`` positions and start every ``tile * (1 - overlap)``; ``fn`` makes ``out_tile``
    positions of one. Each output tile fades in from its predecessor along t, h and w over
    ``out_tile * overlap`` positions, is cropped to the rest, and the crops are concatenated (all products
    rounded down, as in the reference). ``chained``: blend into the outputs in place, so that later tiles
    fade from already blended neighbours (the reference's encoder does this; its decoder blends copies).
    """
    stride = [int(n * (1 - o)) for n, o in zip(tile, overlap, strict=True)]
    extent = [int(n * o) for n, o in zip(out_tile, overlap, strict=True)]
    keep = [n - e for n, e in zip(out_tile, extent, strict=True)]
    if min(stride) <= 0:
        raise ValueError(f"tiles of {tile} with overlap {overlap} do not advance: make them larger or overlap less")
    counts = [math.ceil(x.shape[2 + axis] / stride[axis]) for axis in range(3)]
    outputs: dict[tuple[int, ...], Tensor] = {}
    for index in itertools.product(*map(range, counts)):
        f, i, j = (n * s for n, s in zip(index, stride, strict=True))
        outputs[index] = fn(x[:, :, f:f + tile[0], i:i + tile[1], j:j + tile[2]])
    kept: dict[tuple[int, ...], Tensor] = {}
    for index in itertools.product(*map(range, counts)):  # raster order (t, h, w), as the reference
        out = outputs[index] if chained else outputs[index].clone()
        for axis in range(3):
            if index[axis] > 0:
                previous = tuple(n - (a == axis) for a, n in enumerate(index))
                blend(outputs[previous], out, dim=2 + axis, extent=extent[axis])
        kept[index] = out[:, :, :keep[0], :keep[1], :keep[2]]
    return torch.cat([
        torch.cat([torch.cat([kept[f, i, j] for j in range(counts[2])], dim=4) for i in range(counts[1])], dim=3)
        for f in range(counts[0])], dim=2)


def tiled_encode(vae: MagiVAE, video: Tensor, tiling: Tiling = Tiling()) -> Tensor:
    """``vae.encode`` tile by tile: (B, 3, T, H, W) -> scaled latents (B, C, T/pt, H/ph, W/ph)."""
    cfg = vae.cfg
    if tiling.frames % cfg.patch_t or tiling.height % cfg.patch_hw or tiling.width % cfg.patch_hw:
        raise ValueError(f"tiles of {tiling.frames}x{tiling.height}x{tiling.width} pixels are not whole "
                         f"{cfg.patch_t}x{cfg.patch_hw}x{cfg.patch_hw} patches")
    tile = (tiling.frames, tiling.height, tiling.width)  # pixels
    out_tile = (tiling.frames // cfg.patch_t, tiling.height // cfg.patch_hw, tiling.width // cfg.patch_hw)
    overlap = (tiling.temporal_overlap, tiling.spatial_overlap, tiling.spatial_overlap)
    return run_tiles(vae.encode, video, tile, out_tile, overlap, chained=True)


def tiled_decode(vae: MagiVAE, latents: Tensor, tiling: Tiling = Tiling()) -> Tensor:
    """``vae.decode`` tile by tile: scaled latents (B, C, t, h, w) -> video (B, 3, t * pt, h * ph, w * ph)."""
    cfg = vae.cfg
    tile = (tiling.frames // cfg.patch_t, tiling.height // cfg.patch_hw, tiling.width // cfg.patch_hw)  # latents
    out_tile = (tile[0] * cfg.patch_t, tile[1] * cfg.patch_hw, tile[2] * cfg.patch_hw)
    overlap = (tiling.temporal_overlap, tiling.spatial_overlap, tiling.spatial_overlap)
    return run_tiles(vae.decode, latents, tile, out_tile, overlap, chained=False)


class TiledVAE(nn.Module):
    """A ``MagiVAE`` behind the ``encode`` / ``decode`` interface of ``TransformerVAE``, run tile by tile as
    the reference pipeline runs it."""

    def __init__(self, vae: MagiVAE, tiling: Tiling = Tiling()):
        super().__init__()
        self.vae = vae
        self.tiling = tiling

    def encode(self, video: Tensor) -> Tensor:
        """In the VAE's dtype (the official runs it in bfloat16), returned as float32."""
        return tiled_encode(self.vae, video.to(self.dtype), self.tiling).float()

    def decode(self, latents: Tensor) -> Tensor:
        return tiled_decode(self.vae, latents.to(self.dtype), self.tiling).float()

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype
