"""Training objectives as closures ``(model, step) -> loss`` over in-memory data.

VAE: reconstruction MSE of random clip windows + a small KL term.
DiT: flow matching on cached latents with MAGI-1's autoregressive per-chunk noise levels, random clean
prefixes (t2v / i2v / v2v in one model) and caption dropout (for classifier-free guidance).
Distillation: shortcut self-consistency over 64/32/16/8-step grids with the guided teacher distilled in.
Image (the first-frame model of image-first t2v): flow matching on each clip's still latent and its caption.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from magi.config import RunConfig
from magi.devices import module_device
from magi.flow.matching import autoregressive_times, flow_loss, interpolate, noisy_frame_mse
from magi.flow.schedule import shift_time
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
    """clips: uint8 (N, T, H, W, 3) training videos; ``shard``: this rank's rows of each batch.

    With ``train.motion_weight`` > 0 the squared error of the pixels that move (``moving_pixels``) counts
    1 + motion_weight times: the objects are 2% of the pixels, and what the DiT has to get right. With
    ``train.latent_noise`` > 0 the decoder sees latents off by that much noise and must still give the clip.
    """
    tc, length = cfg.train, cfg.train.clip_frames
    if clips.shape[1] < length:
        raise ValueError(f"clips have {clips.shape[1]} frames, fewer than train.clip_frames={length}")
    backgrounds = None
    if tc.motion_weight > 0:  # (N, 1, H, W, 3), a few clips at a time
        backgrounds = torch.cat([clip_background(clips[i:i + 64]) for i in range(0, len(clips), 64)])

    def objective(vae: TransformerVAE, step: int) -> Tensor:
        g = step_generator(tc.seed, step)
        index = torch.randint(clips.shape[0], (tc.batch_size,), generator=g)
        start = torch.randint(clips.shape[1] - length + 1, (tc.batch_size,), generator=g)
        rows = shard.rows(tc.batch_size)
        frames = torch.stack([clips[i, s:s + length] for i, s in zip(index[rows], start[rows])])  # (b, T, H, W, 3)
        video = frames_to_video(frames).to(module_device(vae))
        mean, logvar = vae.encode_distribution(video)  # (b, C, t, h, w) each, b = this rank's rows
        noise = torch.randn((tc.batch_size, *mean.shape[1:]), generator=g)[rows].to(mean)  # the global batch's
        z = (mean + noise * (0.5 * logvar).exp()) * cfg.vae.scale_factor
        if tc.latent_noise > 0:  # drawn after the posterior's noise: runs without it keep their streams
            z = z + tc.latent_noise * torch.randn((tc.batch_size, *mean.shape[1:]), generator=g)[rows].to(z)
        recon = vae.decode(z)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        squared = (recon - video).pow(2)  # (b, 3, T, H, W)
        if backgrounds is not None:
            moving = moving_pixels(frames, backgrounds[index[rows]])[:, None].to(squared)
            squared = squared * (1.0 + tc.motion_weight * moving)
        return squared.mean() + tc.kl_weight * kl

    return objective


MOTION_THRESHOLD = 32  # uint8 levels a pixel must differ from its clip's background to count as moving


def clip_background(frames: Tensor) -> Tensor:
    """The static background of each clip, its temporal median: uint8 (B, T, H, W, 3) -> (B, 1, H, W, 3)."""
    return frames.median(dim=1, keepdim=True).values


def moving_pixels(frames: Tensor, background: Tensor, threshold: int = MOTION_THRESHOLD) -> Tensor:
    """Pixels that differ from the background by more than ``threshold`` in some channel: uint8 frames
    (B, T, H, W, 3) and backgrounds (B, 1, H, W, 3) -> bool (B, T, H, W)."""
    return (frames.to(torch.int16) - background.to(torch.int16)).abs().amax(dim=-1) > threshold


def motion_cells(frames: Tensor, patch_t: int, patch_hw: int) -> Tensor:
    """Where something moves, on the latent grid: uint8 (B, T, H, W, 3) clips -> bool (B, 1, T', h, w).

    A latent cell (``patch_t`` x ``patch_hw`` x ``patch_hw`` pixels) moves when any of its pixels does
    (``moving_pixels`` against the clip's ``clip_background``).
    """
    moving = moving_pixels(frames, clip_background(frames))  # (B, T, H, W)
    cells = torch.nn.functional.max_pool3d(moving[:, None].float(), (patch_t, patch_hw, patch_hw))
    return cells > 0  # (B, 1, T', h, w)


@dataclass(frozen=True)
class DiTBatch:
    """One training window: data (B, C, K*F, h, w), caption context (B, L, Dc) and mask (B, L), ``drop``
    (B,) rows whose caption is dropped (the model swaps in its null text), AR noise levels t (B, K*F) (1 =
    clean, outside the loss), and the loss weights (B, 1, K*F, h, w) or None for a plain mean."""

    data: Tensor
    context: Tensor
    mask: Tensor
    drop: Tensor
    t: Tensor
    weight: Tensor | None

    def to(self, device: torch.device) -> DiTBatch:
        """The batch on the model's device."""
        values = (getattr(self, field.name) for field in dataclasses.fields(self))
        return DiTBatch(*(None if value is None else value.to(device) for value in values))


def _dit_batches(latents: Tensor, contexts: Tensor, context_masks: Tensor, cfg: RunConfig,
                 stills: Tensor | None = None, motion: Tensor | None = None, usual_clips: Tensor | None = None
                 ) -> Callable[[DiT, torch.Generator, float], DiTBatch]:
    """Sampler of training windows with AR noise levels (see ``DiTBatch``).

    ``stills`` (N, C, 1, h, w): the latent of each clip's last frame of latent frame 0 held still for a
    whole latent frame (how ``magi generate`` encodes the i2v image). When given, i2v samples (exactly one
    clean latent frame) condition on it instead of the moving frames, as at inference.
    ``motion`` (N, 1, T, h, w) bool (``motion_cells``): with ``train.motion_weight`` > 0 the loss weights
    are 1 + motion_weight where something moves, 1 elsewhere.
    ``usual_clips`` (N,) bool: the clips shown through the usual camera, which alone serve the samples without a
    clean prefix (t2v) with ``train.t2v_usual_camera``, and those with a whole-chunk prefix (v2v) with
    ``train.v2v_usual_camera`` (None: every clip serves every sample).
    """
    tc, F = cfg.train, cfg.dit.chunk_frames
    available = latents.shape[2] // F
    if available < tc.clip_chunks:
        raise ValueError(f"latents hold {available} whole chunks, fewer than train.clip_chunks={tc.clip_chunks}")
    if tc.motion_weight > 0 and motion is None:
        raise ValueError("train.motion_weight > 0 needs the motion cells of the clips")
    frames = tc.clip_chunks * F
    usual_pool = None if usual_clips is None else usual_clips.nonzero().flatten()
    if usual_pool is not None and len(usual_pool) == 0:
        raise ValueError("no clip is shown through the usual camera (usual_clips is all False)")

    def sample(dit: DiT, g: torch.Generator, caption_dropout: float) -> DiTBatch:
        index = torch.randint(latents.shape[0], (tc.batch_size,), generator=g)
        start = torch.randint(available - tc.clip_chunks + 1, (tc.batch_size,), generator=g) * F
        drop = torch.rand(tc.batch_size, generator=g) < caption_dropout  # (B,) rows trained without text
        t = autoregressive_times(tc.batch_size, tc.clip_chunks, F, logit_std=tc.t_logit_std, shift=tc.t_shift,
                                 prefix_probs=tc.prefix_probs, generator=g, levels=tc.chunk_levels,
                                 t2v_logit_std=tc.t2v_t_logit_std, t2v_shift=tc.t2v_t_shift)
        if usual_pool is not None:  # drawn last: without usual_clips every draw is as it was
            redrawn = usual_pool[torch.randint(len(usual_pool), (tc.batch_size,), generator=g)]
            usual = torch.zeros(tc.batch_size, dtype=torch.bool)
            if tc.t2v_usual_camera:
                usual |= t[:, 0] < 1  # rows with no clean prefix
            if tc.v2v_usual_camera:
                usual |= t[:, 1] == 1  # rows with more than one clean frame: a whole-chunk prefix
            index = torch.where(usual, redrawn, index)
        data = torch.stack([latents[i, :, s:s + frames] for i, s in zip(index, start)])  # (B, C, K*F, h, w)
        context, mask = pad_context(contexts[index], context_masks[index], dit.cfg.context_max_length)
        if stills is not None:
            image = (t[:, 0] == 1) & (t[:, 1] < 1) & (start == 0)  # i2v samples at the start of a clip
            data[:, :, :1] = torch.where(image[:, None, None, None, None], stills[index], data[:, :, :1])
        weight = None
        if tc.motion_weight > 0:
            moving = torch.stack([motion[i, :, s:s + frames] for i, s in zip(index, start)])  # (B, 1, K*F, h, w)
            weight = 1.0 + tc.motion_weight * moving.float()
        return DiTBatch(data, context, mask, drop, t, weight).to(module_device(dit))

    return sample


OWN_CONTEXT_STEPS = 2  # Euler steps of the regeneration of a prefix (train.own_context)


def with_own_context(dit: DiT, b: DiTBatch, g: torch.Generator, share: float, lowest: float,
                     chunk_frames: int) -> DiTBatch:
    """``b`` with the clean whole-chunk prefix of a ``share`` of its rows regenerated by ``dit`` itself.

    At inference the clean chunks a chunk continues are the model's own, with its flaws (blur, smears, a ball
    drawn twice); in training they are the data. Each picked row's prefix frames are noised to a level drawn in
    [``lowest``, 1] and integrated back to t = 1 in ``OWN_CONTEXT_STEPS`` Euler steps of the DiT's velocity,
    with the row's own text and without gradient; the layout stays the data's (the later chunks' targets still
    follow from it), the detail becomes the model's. The other frames and rows, and every level in ``b.t``,
    are unchanged. Rows with a one-frame prefix (i2v: the image is exact at inference too) or none are left.
    """
    B = b.t.shape[0]
    prefix = b.t == 1  # (B, T): the clean frames
    picked = prefix[:, :chunk_frames].all(dim=1) & (torch.rand(B, generator=g) < share)
    start = lowest + (1 - lowest) * torch.rand(B, generator=g)  # (B,) the level each row's prefix starts from
    noise = torch.randn(b.data.shape, generator=g).to(b.data)
    rows = picked.nonzero().flatten().to(b.data.device)
    if len(rows) == 0:
        return b
    data, t, clean = b.data[rows], b.t[rows], prefix[rows]
    start = start.to(t)[rows, None].expand_as(t)
    level = torch.where(clean, start, t)  # (b, T): the prefix at its start level; the rest as it was
    x = interpolate(data, noise[rows], level).x_t
    with torch.no_grad():  # in the DiT's training mode: caption-dropped rows get the null text, as in the loss
        for k in range(OWN_CONTEXT_STEPS):
            now = torch.where(clean, start + (1 - start) * k / OWN_CONTEXT_STEPS, t)
            step = torch.where(clean, (1 - start) / OWN_CONTEXT_STEPS, torch.zeros_like(t))
            v = dit(x, now, b.context[rows], b.mask[rows], no_text=b.drop[rows])
            x = x + broadcast(step) * v  # only the prefix frames move
    clean_frames = broadcast(clean)  # (b, 1, T, 1, 1)
    own = b.data.clone()
    own[rows] = torch.where(clean_frames, x.to(data.dtype), data)
    return dataclasses.replace(b, data=own)


def dit_objective(latents: Tensor, contexts: Tensor, context_masks: Tensor, cfg: RunConfig,
                  stills: Tensor | None = None, shard: BatchShard = BatchShard(),
                  motion: Tensor | None = None, usual_clips: Tensor | None = None) -> Objective:
    """latents: (N, C, T, h, w) scaled VAE latents; contexts (N, L, Dc) and masks (N, L) of the captions;
    ``shard``: this rank's rows of each batch; ``motion``, ``usual_clips``: see ``_dit_batches``."""
    batches = _dit_batches(latents, contexts, context_masks, cfg, stills, motion, usual_clips)

    def objective(dit: DiT, step: int) -> Tensor:
        g = step_generator(cfg.train.seed, step)
        b = batches(dit, g, cfg.train.caption_dropout)
        if cfg.train.own_context > 0:  # drawn after the batch: without it every draw is as it was
            b = with_own_context(dit, b, g, cfg.train.own_context, cfg.train.own_context_from, cfg.dit.chunk_frames)
        rows = shard.rows(cfg.train.batch_size)
        return flow_loss(lambda x, tt: dit(x, tt, b.context[rows], b.mask[rows], no_text=b.drop[rows]),
                         b.data, b.t, g, rows, b.weight, cfg.train.change_weight, cfg.dit.chunk_frames)

    return objective


def distill_objective(latents: Tensor, contexts: Tensor, context_masks: Tensor, teacher: DiT,
                      cfg: RunConfig, stills: Tensor | None = None, shard: BatchShard = BatchShard(),
                      motion: Tensor | None = None, usual_clips: Tensor | None = None) -> Objective:
    """Shortcut + guidance distillation of ``teacher`` into a step-conditioned student.

    Training step i uses n = train.shortcut_steps[i % len] steps. At the finest n the student matches the
    text-guided teacher velocity (guidance distilled in: one pass instead of two); at coarser n it matches
    two of its own steps of the 2n-step grid (self-consistency). Noise levels are snapped to the n-step grid
    of the sampler's shifted schedule, so training sees exactly the (t, d) pairs the sampler will use.
    """
    tc, sampler = cfg.train, cfg.sampler
    batches = _dit_batches(latents, contexts, context_masks, cfg, stills, motion, usual_clips)
    finest = max(tc.shortcut_steps)
    teacher.eval().requires_grad_(False)

    def objective(student: DiT, step: int) -> Tensor:
        g = step_generator(tc.seed, step)
        b = batches(student, g, 0.0)
        data, context, mask, t = b.data, b.context, b.mask, b.t
        n = tc.shortcut_steps[step % len(tc.shortcut_steps)]
        t_all, d1, d2 = grid_steps(t, n, sampler.shift)  # (B, T) each
        noise = torch.randn(data.shape, generator=g).to(data)  # the global batch's draw, then this rank's rows
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
        weight = None if b.weight is None else b.weight[rows]
        return noisy_frame_mse(prediction, target, t_all, rows, weight)  # ranks average it (see magi.parallel.data)

    return objective


def image_objective(stills: Tensor, contexts: Tensor, context_masks: Tensor, cfg: RunConfig,
                    shard: BatchShard = BatchShard(), motion: Tensor | None = None) -> Objective:
    """Text-to-image flow matching for the first-frame model (``RunConfig.image``): each clip's still latent
    (N, C, 1, h, w), the i2v image as ``magi generate`` encodes it, with its caption (N, L, Dc) and mask (N, L).
    Noise levels shift(sigmoid(N(0, train.t_logit_std)), train.t_shift); caption dropout as the DiT's.
    ``motion`` (N, 1, 1, h, w) bool, the motion cells of each clip's first latent frame: with
    ``train.motion_weight`` > 0 the loss weighs 1 + motion_weight there (where the things that will move start)."""
    tc = cfg.train
    if tc.motion_weight > 0 and motion is None:
        raise ValueError("train.motion_weight > 0 needs the motion cells of the first latent frames")

    def objective(dit: DiT, step: int) -> Tensor:
        g = step_generator(tc.seed, step)
        index = torch.randint(len(stills), (tc.batch_size,), generator=g)
        drop = torch.rand(tc.batch_size, generator=g) < tc.caption_dropout  # (B,) rows trained without text
        t = shift_time(torch.sigmoid(torch.randn(tc.batch_size, 1, generator=g) * tc.t_logit_std), tc.t_shift)
        context, mask = pad_context(contexts[index], context_masks[index], dit.cfg.context_max_length)
        device, rows = module_device(dit), shard.rows(tc.batch_size)
        context, mask, drop = context[rows].to(device), mask[rows].to(device), drop[rows].to(device)
        weight = None if tc.motion_weight == 0 else (1.0 + tc.motion_weight * motion[index].float()).to(device)
        return flow_loss(lambda x, tt: dit(x, tt, context, mask, no_text=drop), stills[index].to(device),
                         t.to(device), g, rows, weight)

    return objective
