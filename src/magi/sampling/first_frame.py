"""Image-first t2v: the image model (``RunConfig.image``) draws the first frame from the text as a still
latent, which the video sampler then continues as i2v (``sampler.t2v_start = "image"``).

A t2v first chunk from noise must settle where things are and how they move at once; the image model settles
the layout alone, from a loss spent on it alone, and the video model then continues an image, which it
learned to do from every training clip (docs/TRAINING.md, "Image-first t2v").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from magi.config import ImageConfig
from magi.flow.schedule import time_grid
from magi.models.dit import DiT
from magi.sampling.guidance import text_guidance
from magi.sampling.sampler import pad_context, per_sample_noise, seed_generators, seed_list
from magi.sampling.solvers import euler_step, stochastic_step

# The image's noise comes from its own stream of each seed (the seed with this bit flipped), not from the stream
# the video's chunks draw from, so that the first frame's noise is not the first chunk's again
IMAGE_STREAM = 1 << 62


def image_generators(seed: int | Sequence[int], batch: int) -> list[torch.Generator]:
    """Image i's (CPU) generator: its video's seed (``seed_list``) on the image stream."""
    return seed_generators([s ^ IMAGE_STREAM for s in seed_list(seed, batch)], batch)


@torch.inference_mode()
def generate_still(dit: DiT, cfg: ImageConfig, context: Tensor, context_mask: Tensor, *,
                   latent_shape: tuple[int, int, int], seed: int | Sequence[int] = 0) -> Tensor:
    """Still latents (B, C, 1, h, w) of the text ``context`` (B, L, Dc) with ``context_mask`` (B, L).

    ``cfg.steps`` steps on the grid of ``cfg.shift``; text guidance ``cfg.text_scale`` against the learned null
    text (1: one branch, no guidance); DDIM's eta ``cfg.stochasticity``. Image i's noise comes from its own
    generator (``image_generators``), so a seed gives one image at any batch size.
    """
    B, (C, H, W) = context.shape[0], latent_shape
    device, dtype = next(dit.parameters()).device, next(dit.parameters()).dtype
    generators = image_generators(seed, B)
    context, mask = pad_context(context.to(device), context_mask.to(device), dit.cfg.context_max_length)
    branches = 1 if cfg.text_scale == 1 else 2
    if branches == 2:  # rows: [text ; null text]
        null, null_mask = dit.unconditional_context(B, context.shape[1])
        context, mask = torch.cat([context, null.to(context)]), torch.cat([mask, null_mask])
    text_kv = dit.text_kv(context.to(dtype), mask)
    grid = time_grid(cfg.steps, cfg.shift).float()
    x = per_sample_noise((C, 1, H, W), generators, device)  # (B, C, 1, h, w)
    for k in range(cfg.steps):
        t = torch.full((B * branches, 1), grid[k].item(), device=device)  # (rows, T = 1)
        dt = torch.full((B, 1, 1, 1, 1), (grid[k + 1] - grid[k]).item(), device=device)
        v = dit(x.repeat(branches, 1, 1, 1, 1).to(dtype), t.to(dtype), context.to(dtype), mask,
                text_kv=text_kv).float()
        if branches == 2:
            v = text_guidance(v[:B], v[B:], cfg.text_scale)
        if cfg.stochasticity > 0:
            x = stochastic_step(x, v, t[:B, :, None, None, None], dt, cfg.stochasticity,
                                per_sample_noise((C, 1, H, W), generators, device))
        else:
            x = euler_step(x, v, dt)
    return x
