"""Training objectives as closures ``(model, step) -> loss`` over in-memory data.

VAE: reconstruction MSE of random clip windows + a small KL term.
DiT: flow matching on cached latents with MAGI-1's autoregressive per-chunk noise levels, random clean
prefixes (t2v / i2v / v2v in one model) and caption dropout (for classifier-free guidance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from magi.config import RunConfig
from magi.flow.matching import autoregressive_times, flow_loss
from magi.training.loop import Objective, step_generator

if TYPE_CHECKING:
    from magi.models.dit import DiT
    from magi.models.vae import TransformerVAE


def frames_to_video(frames: Tensor) -> Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, 3, T, H, W) in [-1, 1]."""
    return frames.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def vae_objective(clips: Tensor, cfg: RunConfig) -> Objective:
    """clips: uint8 (N, T, H, W, 3) training videos."""
    tc, length = cfg.train, cfg.train.clip_frames
    if clips.shape[1] < length:
        raise ValueError(f"clips have {clips.shape[1]} frames, fewer than train.clip_frames={length}")

    def objective(vae: TransformerVAE, step: int) -> Tensor:
        g = step_generator(tc.seed, step)
        index = torch.randint(clips.shape[0], (tc.batch_size,), generator=g)
        start = torch.randint(clips.shape[1] - length + 1, (tc.batch_size,), generator=g)
        video = frames_to_video(torch.stack([clips[i, s:s + length] for i, s in zip(index, start)]))
        mean, logvar = vae.encode_distribution(video)  # (B, C, t, h, w) each
        z = mean + torch.randn(mean.shape, generator=g) * (0.5 * logvar).exp()
        recon = vae.decode(z * cfg.vae.scale_factor)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        return (recon - video).pow(2).mean() + tc.kl_weight * kl

    return objective


def dit_objective(latents: Tensor, contexts: Tensor, context_masks: Tensor, cfg: RunConfig) -> Objective:
    """latents: (N, C, T, h, w) scaled VAE latents; contexts (N, L, Dc) and masks (N, L) of the captions."""
    tc, F = cfg.train, cfg.dit.chunk_frames
    available = latents.shape[2] // F
    if available < tc.clip_chunks:
        raise ValueError(f"latents hold {available} whole chunks, fewer than train.clip_chunks={tc.clip_chunks}")
    frames = tc.clip_chunks * F

    def objective(dit: DiT, step: int) -> Tensor:
        g = step_generator(tc.seed, step)
        index = torch.randint(latents.shape[0], (tc.batch_size,), generator=g)
        start = torch.randint(available - tc.clip_chunks + 1, (tc.batch_size,), generator=g) * F
        data = torch.stack([latents[i, :, s:s + frames] for i, s in zip(index, start)])  # (B, C, K*F, h, w)
        context, mask = contexts[index], context_masks[index]
        drop = torch.rand(tc.batch_size, generator=g) < tc.caption_dropout
        null, null_mask = dit.unconditional_context(tc.batch_size, context.shape[1])
        context = torch.where(drop[:, None, None], null, context)
        mask = torch.where(drop[:, None], null_mask, mask)
        t = autoregressive_times(tc.batch_size, tc.clip_chunks, F, logit_std=tc.t_logit_std, shift=tc.t_shift,
                                 prefix_probs=tc.prefix_probs, generator=g)
        return flow_loss(lambda x, tt: dit(x, tt, context, mask), data, t, g)

    return objective
