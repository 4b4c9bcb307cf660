"""Training objectives as closures ``(model, step) -> loss`` over in-memory data.

VAE: reconstruction MSE of random clip windows + a small KL term.
DiT: flow matching on cached latents with MAGI-1's autoregressive per-chunk noise levels, random clean
prefixes (t2v / i2v / v2v in one model) and caption dropout (for classifier-free guidance).
Distillation: shortcut self-consistency over 64/32/16/8-step grids with the guided teacher distilled in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from magi.config import RunConfig
from magi.flow.matching import autoregressive_times, flow_loss, interpolate, noisy_frame_mse
from magi.flow.shortcut import broadcast, grid_steps, two_step_target
from magi.parallel.data import BatchShard
from magi.sampling.guidance import piecewise_scale, text_guidance
from magi.sampling.sampler import pad_context
from magi.training.loop import Objective, step_generator

if TYPE_CHECKING:
    from magi.models.dit import DiT
    from magi.models.vae import TransformerVAE


def frames_to_video(frames: Tensor) -> Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, 3, T, H, W) in [-1, 1]."""
    return frames.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def vae_objective(clips: Tensor, cfg: RunConfig, shard: BatchShard = BatchShard()) -> Objective:
    """clips: uint8 (N, T, H, W, 3) training videos; ``shard``: this rank's rows of each batch."""
    tc, length = cfg.train, cfg.train.clip_frames
    if clips.shape[1] < length:
        raise ValueError(f"clips have {clips.shape[1]} frames, fewer than train.clip_frames={length}")

    def objective(vae: TransformerVAE, step: int) -> Tensor:
        g = step_generator(tc.seed, step)
        index = torch.randint(clips.shape[0], (tc.batch_size,), generator=g)
        start = torch.randint(clips.shape[1] - length + 1, (tc.batch_size,), generator=g)
        rows = shard.rows(tc.batch_size)
        video = frames_to_video(torch.stack([clips[i, s:s + length] for i, s in zip(index[rows], start[rows])]))
        mean, logvar = vae.encode_distribution(video)  # (b, C, t, h, w) each, b = this rank's rows
        noise = torch.randn((tc.batch_size, *mean.shape[1:]), generator=g)[rows]  # the global batch's draw
        z = mean + noise * (0.5 * logvar).exp()
        recon = vae.decode(z * cfg.vae.scale_factor)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        return (recon - video).pow(2).mean() + tc.kl_weight * kl

    return objective


def _dit_batches(latents: Tensor, contexts: Tensor, context_masks: Tensor, cfg: RunConfig,
                 stills: Tensor | None = None
                 ) -> Callable[[DiT, torch.Generator, float], tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Sampler of (data (B, C, K*F, h, w), context, mask, drop (B,), t (B, K*F)) windows with AR noise
    levels; ``drop`` marks the rows whose caption is dropped (the model swaps in its null text).

    ``stills`` (N, C, 1, h, w): the latent of each clip's last frame of latent frame 0 held still for a
    whole latent frame (how ``magi generate`` encodes the i2v image). When given, i2v samples (exactly one
    clean latent frame) condition on it instead of the moving frames, as at inference.
    """
    tc, F = cfg.train, cfg.dit.chunk_frames
    available = latents.shape[2] // F
    if available < tc.clip_chunks:
        raise ValueError(f"latents hold {available} whole chunks, fewer than train.clip_chunks={tc.clip_chunks}")
    frames = tc.clip_chunks * F

    def sample(dit: DiT, g: torch.Generator, caption_dropout: float):
        index = torch.randint(latents.shape[0], (tc.batch_size,), generator=g)
        start = torch.randint(available - tc.clip_chunks + 1, (tc.batch_size,), generator=g) * F
        data = torch.stack([latents[i, :, s:s + frames] for i, s in zip(index, start)])  # (B, C, K*F, h, w)
        context, mask = pad_context(contexts[index], context_masks[index], dit.cfg.context_max_length)
        drop = torch.rand(tc.batch_size, generator=g) < caption_dropout  # (B,) rows trained without text
        t = autoregressive_times(tc.batch_size, tc.clip_chunks, F, logit_std=tc.t_logit_std, shift=tc.t_shift,
                                 prefix_probs=tc.prefix_probs, generator=g)
        if stills is not None:
            image = (t[:, 0] == 1) & (t[:, 1] < 1) & (start == 0)  # i2v samples at the start of a clip
            data[:, :, :1] = torch.where(image[:, None, None, None, None], stills[index], data[:, :, :1])
        return data, context, mask, drop, t

    return sample


def dit_objective(latents: Tensor, contexts: Tensor, context_masks: Tensor, cfg: RunConfig,
                  stills: Tensor | None = None, shard: BatchShard = BatchShard()) -> Objective:
    """latents: (N, C, T, h, w) scaled VAE latents; contexts (N, L, Dc) and masks (N, L) of the captions;
    ``shard``: this rank's rows of each batch."""
    batches = _dit_batches(latents, contexts, context_masks, cfg, stills)

    def objective(dit: DiT, step: int) -> Tensor:
        g = step_generator(cfg.train.seed, step)
        data, context, mask, drop, t = batches(dit, g, cfg.train.caption_dropout)
        rows = shard.rows(cfg.train.batch_size)
        return flow_loss(lambda x, tt: dit(x, tt, context[rows], mask[rows], drop_context=drop[rows]), data, t, g,
                         rows)

    return objective


def distill_objective(latents: Tensor, contexts: Tensor, context_masks: Tensor, teacher: DiT,
                      cfg: RunConfig, stills: Tensor | None = None, shard: BatchShard = BatchShard()
                      ) -> Objective:
    """Shortcut + guidance distillation of ``teacher`` into a step-conditioned student.

    Training step i uses n = train.shortcut_steps[i % len] steps. At the finest n the student matches the
    text-guided teacher velocity (guidance distilled in: one pass instead of two); at coarser n it matches
    two of its own steps of the 2n-step grid (self-consistency). Noise levels are snapped to the n-step grid
    of the sampler's shifted schedule, so training sees exactly the (t, d) pairs the sampler will use.
    """
    tc, sampler = cfg.train, cfg.sampler
    batches = _dit_batches(latents, contexts, context_masks, cfg, stills)
    finest = max(tc.shortcut_steps)
    teacher.eval().requires_grad_(False)

    def objective(student: DiT, step: int) -> Tensor:
        g = step_generator(tc.seed, step)
        data, context, mask, _, t = batches(student, g, 0.0)
        n = tc.shortcut_steps[step % len(tc.shortcut_steps)]
        t_all, d1, d2 = grid_steps(t, n, sampler.shift)  # (B, T) each
        noise = torch.randn(data.shape, generator=g)  # the global batch's draw, then this rank's rows
        rows = shard.rows(tc.batch_size)
        x = interpolate(data, noise, t_all).x_t[rows]
        t_k, d1, d2, context, mask = t_all[rows], d1[rows], d2[rows], context[rows], mask[rows]
        with torch.no_grad():
            if n == finest:
                null, null_mask = teacher.unconditional_context(x.shape[0], context.shape[1])
                scale = broadcast(piecewise_scale(t_k, sampler.cfg_t_range, sampler.text_scales))
                target = text_guidance(teacher(x, t_k, context, mask), teacher(x, t_k, null, null_mask), scale)
            else:
                student_was_training = student.training
                student.eval()
                target = two_step_target(lambda xx, tt, dd: student(xx, tt, context, mask, step_size=dd),
                                         x, t_k, d1, d2)
                student.train(student_was_training)
        prediction = student(x, t_k, context, mask, step_size=d1 + d2)
        return noisy_frame_mse(prediction, target, t_all, rows)  # ranks average it (see magi.parallel.data)

    return objective
