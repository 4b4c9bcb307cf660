"""Autoregressive sampling: walk the chunk plan, call the DiT, guide, take solver steps, cache clean chunks.

Inputs and outputs are latents; turning prompts, images and videos into them (and back) is the
pipeline's job. ``iter_generate`` yields each chunk as soon as it is clean, so a caller can decode and
write it while later chunks are still being denoised: memory stays bounded for any number of chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from magi.config import SamplerConfig
from magi.flow.schedule import time_grid
from magi.models.dit import DiT, TextKV, UncachedRows
from magi.models.kv_cache import ChunkKVCache
from magi.sampling.chunks import chunk_plan
from magi.sampling.guidance import piecewise_scale, text_and_prefix_guidance, text_guidance
from magi.sampling.solvers import euler_step, stochastic_step


@dataclass(frozen=True)
class Prefix:
    """Clean latents the video continues from: (B, C, P, H, W); P = 1 for an image (i2v)."""

    latents: Tensor

    def split(self, chunk_frames: int) -> tuple[list[Tensor], Tensor]:
        """Whole clean chunks, and the remaining frames that open the first generated chunk."""
        whole = self.latents.shape[2] // chunk_frames
        chunks = [self.latents[:, :, i * chunk_frames:(i + 1) * chunk_frames] for i in range(whole)]
        return chunks, self.latents[:, :, whole * chunk_frames:]


def per_sample_noise(shape: tuple[int, ...], generators: list[torch.Generator],
                     device: torch.device | None = None) -> Tensor:
    """One independent stream per sample, so a seed gives the same video at any batch size (drawn on the
    CPU: the same noise whatever the device), on ``device``."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)


def pad_context(context: Tensor, mask: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Zero-pad (..., L, Dc) context and its (..., L) mask to at least ``length`` tokens (padding masked out)."""
    extra = length - context.shape[-2]
    if extra <= 0:
        return context, mask
    return (torch.cat([context, context.new_zeros(*context.shape[:-2], extra, context.shape[-1])], -2),
            torch.cat([mask, mask.new_zeros(*mask.shape[:-1], extra)], -1))


class TextRows:
    """The text of each forward's rows, and the DiT's cross-attention keys and values of it.

    ``context`` (B, L, Dc) is every chunk's text, or (B, num_chunks, L, Dc) one per generated chunk (clean
    chunks then read the null text, as in MAGI-1). A forward's rows come in groups of B: the text, then the
    negative text (by default the learned null text) once or twice for guidance's unconditional branches.
    Keys and values are computed once per distinct text: one for a single prompt; with per-chunk texts, one
    per set of chunks in flight."""

    def __init__(self, dit: DiT, cfg: SamplerConfig, context: Tensor, mask: Tensor, num_chunks: int,
                 negative: tuple[Tensor, Tensor] | None, dtype: torch.dtype):
        self.dit, self.dtype = dit, dtype
        self.per_chunk = context.dim() == 4
        if self.per_chunk and context.shape[1] != num_chunks:
            raise ValueError(f"{context.shape[1]} per-chunk texts for {num_chunks} chunks")
        if cfg.guidance != "none" or self.per_chunk:
            context, mask = pad_context(context, mask, dit.cfg.context_max_length)
            null, null_mask = dit.unconditional_context(context.shape[0], context.shape[-2])
            self.null, self.null_mask = null.to(context.dtype), null_mask
            self.neg, self.neg_mask = (self.null, null_mask) if negative is None else \
                pad_context(*(tensor.to(context.device) for tensor in negative), context.shape[-2])
        self.context, self.mask = context, mask
        self.memo: dict[tuple, tuple[Tensor, Tensor, TextKV]] = {}

    def rows(self, clean: int, chunks: Sequence[int], branches: int) -> tuple[Tensor, Tensor, TextKV]:
        """Text, mask and keys/values of a forward over ``clean`` clean chunks then ``chunks``, for
        ``branches`` groups of rows."""
        key = ((clean, tuple(chunks)) if self.per_chunk else ()) + (branches,)
        if key not in self.memo:
            if len(self.memo) >= 8:
                self.memo.clear()
            ctx, mask = self._rows(clean, chunks, branches)
            self.memo[key] = ctx, mask, self.dit.text_kv(ctx.to(self.dtype), mask)
        return self.memo[key]

    def _rows(self, clean: int, chunks: Sequence[int], branches: int) -> tuple[Tensor, Tensor]:
        if self.per_chunk:  # (B, K, L, Dc)
            ctx = torch.stack([self.null] * clean + [self.context[:, c] for c in chunks], 1)
            mask = torch.stack([self.null_mask] * clean + [self.mask[:, c] for c in chunks], 1)
        else:
            ctx, mask = self.context, self.mask
        if branches == 1:
            return ctx, mask
        neg = self.neg[:, None].expand_as(ctx) if self.per_chunk else self.neg
        neg_mask = self.neg_mask[:, None].expand_as(mask) if self.per_chunk else self.neg_mask
        return torch.cat([ctx] + [neg] * (branches - 1)), torch.cat([mask] + [neg_mask] * (branches - 1))

    def negative_kv(self) -> tuple[Tensor, Tensor, TextKV]:
        """The negative text alone (the unconditional branch run as a forward of its own)."""
        if "negative" not in self.memo:
            self.memo["negative"] = self.neg, self.neg_mask, self.dit.text_kv(self.neg.to(self.dtype), self.neg_mask)
        return self.memo["negative"]


def guide(cfg: SamplerConfig, v: Tensor, t: Tensor, B: int, uncond: Tensor | None) -> Tensor:
    """Guidance of a forward's velocities ``v`` (rows [text ; no text ...]) at each latent frame's t (B, T);
    ``uncond``: the no-text, no-context branch, or None where text guidance alone applies (no earlier chunk
    to guide towards)."""
    if cfg.guidance == "none":
        return v
    v_text, v_null = v[:B], v[B:2 * B]
    text_scale = piecewise_scale(t, cfg.cfg_t_range, cfg.text_scales)[:, None, :, None, None]
    if cfg.guidance == "text" or uncond is None:
        return text_guidance(v_text, v_null, text_scale)
    prefix_scale = piecewise_scale(t, cfg.cfg_t_range, cfg.prefix_scales)[:, None, :, None, None]
    return text_and_prefix_guidance(v_text, v_null, uncond, text_scale, prefix_scale)


@torch.inference_mode()  # no_grad, and no autograd bookkeeping either
def iter_generate(dit: DiT, cfg: SamplerConfig, context: Tensor, context_mask: Tensor, *, num_chunks: int,
                  latent_shape: tuple[int, int, int], prefix: Prefix | None = None, seed: int | Sequence[int] = 0,
                  use_kv_cache: bool = True, progress: Callable[[int], None] | None = None,
                  negative: tuple[Tensor, Tensor] | None = None) -> Iterator[Tensor]:
    """Yield the latents (B, C, F, H, W) of each generated chunk, in order, as it becomes clean.

    The first generated chunk includes the prefix frames that do not fill a whole chunk (for i2v: the
    image latent), which stay clean (t = 1) throughout. ``use_kv_cache=False`` recomputes the clean
    context at every step instead (same result; the baseline that the benchmarks compare against).
    ``progress`` is called with the number of forward steps done after each step. Video i's noise comes
    from seed ``seed + i``, or from the i-th of a sequence of B seeds. ``context``: see ``TextRows``;
    ``negative`` (B, L, Dc) text and mask replace the null text in the unconditional guidance branches.

    With the cache, text_and_prefix guidance's third branch (no text, no earlier chunks) rides in the same
    forward as the other two, its rows attending to no clean chunk (``DiT.forward(uncached_rows=...)``);
    without it, it is a forward of its own.
    """
    if cfg.procedure != "native":
        raise ValueError(f"sampler.procedure={cfg.procedure!r} runs in magi.sampling.magi1, not this sampler")
    B, F, (C, H, W) = context.shape[0], dit.cfg.chunk_frames, latent_shape
    device, dtype = next(dit.parameters()).device, next(dit.parameters()).dtype
    grid, generators = time_grid(cfg.steps, cfg.shift), seed_generators(seed, B)
    prefix_chunks, opening = prefix.split(F) if prefix is not None else ([], torch.zeros(B, C, 0, H, W))
    prefix_chunks, opening, num_open = [c.to(device) for c in prefix_chunks], opening.to(device), opening.shape[2]
    texts = TextRows(dit, cfg, context.to(device), context_mask.to(device), num_chunks, negative, dtype)
    cache = ChunkKVCache(dit.cfg.depth, cfg.context_chunks, offload=cfg.kv_offload) if use_kv_cache else None
    guided, batched_uncond = cfg.guidance != "none", cfg.guidance == "text_and_prefix" and cache is not None
    with_context = 3 if batched_uncond else 2 if guided else 1  # row groups of a forward that sees earlier chunks
    shortcut = cfg.solver == "shortcut"  # the model is told the step size it is predicting for

    def model(x: Tensor, t: Tensor, ctx: Tensor, mask: Tensor, text_kv: TextKV, kv: ChunkKVCache | None,
              d: Tensor | None = None, text: bool = True, lead_chunks: int = 0) -> Tensor:
        """One forward of x (B rows) repeated for every row group of ``ctx``; ``text``: the first group has it;
        ``lead_chunks``: the clean chunks that lead x (admitted to the cache)."""
        reps = ctx.shape[0] // x.shape[0]
        extra = {"step_size": d.repeat(reps, 1).to(dtype)} if shortcut and d is not None else {}
        if guided:  # which rows are guidance's no-text branch (MAGI-1's adaLN token depends on it)
            extra["no_text"] = torch.arange(ctx.shape[0], device=device) >= (x.shape[0] if text else 0)
        if reps == 3:  # the last B rows: the chunks in flight among themselves, the admitted ones block-causal
            extra["uncached_rows"] = UncachedRows(x.shape[0], tuple(
                (0 if i < lead_chunks else lead_chunks, i + 1) for i in range(x.shape[2] // F)))
        v = dit(x.repeat(reps, 1, 1, 1, 1).to(dtype), t.repeat(reps, 1).to(dtype), ctx.to(dtype), mask, kv,
                text_kv=text_kv, **extra)
        return v.float()

    history = prefix_chunks[-cfg.context_chunks:]  # clean chunks still to be admitted (or recomputed)
    if cache is not None and history:  # admit the whole prefix chunks in one pass
        cache.admit(len(history))
        clean = torch.cat(history, dim=2)
        model(clean, torch.full((B, clean.shape[2]), 1.0, device=device), *texts.rows(len(history), [], with_context),
              cache, lead_chunks=len(history))
        cache.commit()
        history = []
    state: dict[int, Tensor] = {}
    for index, step in enumerate(chunk_plan(num_chunks, cfg.steps, cfg.window_size)):
        for c in step.chunks:
            if c not in state:
                state[c] = per_sample_noise((C, F, H, W), generators, device)
                if c == 0 and num_open:
                    state[c][:, :, :num_open] = opening
        x = torch.cat([state[c] for c in step.chunks], dim=2)  # (B, C, K * F, H, W)
        t, dt = step_times(grid, step.levels, B, F, device)  # (B, K * F) each
        if step.chunks[0] == 0 and num_open:
            t[:, :num_open], dt[:, :num_open] = 1.0, 0.0
        lead = [history.pop(0) for _ in step.admit] if cache is not None else history  # clean, fed first
        if cache is not None:
            cache.admit(len(lead))
        n_lead = sum(chunk.shape[2] for chunk in lead)
        t_in = torch.cat([torch.ones(B, n_lead, device=device), t], dim=1)
        d_in = torch.cat([torch.zeros(B, n_lead, device=device), dt], dim=1)
        has_context = n_lead > 0 or num_open > 0 or (cache is not None and cache.num_chunks > 0)
        branches = with_context if has_context else 2 if guided else 1
        v = model(torch.cat([*lead, x], dim=2), t_in, *texts.rows(len(lead), step.chunks, branches), cache,
                  d_in, lead_chunks=len(lead))[:, :, n_lead:]
        if cache is not None:
            cache.commit()
        uncond = None  # text_and_prefix guidance's third branch, once there is context to guide towards
        if cfg.guidance == "text_and_prefix" and has_context:
            uncond = v[2 * B:] if batched_uncond else model(x, t, *texts.negative_kv(), None, dt, text=False)
        v = guide(cfg, v, t, B, uncond)
        if cfg.stochasticity > 0:  # fresh noise from each video's own stream, drawn every step
            x = stochastic_step(x, v, t[:, None, :, None, None], dt[:, None, :, None, None], cfg.stochasticity,
                                per_sample_noise(tuple(x.shape[1:]), generators, device))
        else:
            x = euler_step(x, v, dt[:, None, :, None, None])
        for c, piece in zip(step.chunks, x.split(F, dim=2)):
            state[c] = piece
        for c in step.finished:
            done = state.pop(c)
            history = (history + [done])[-cfg.context_chunks:]
            yield done
        if progress is not None:
            progress(index + 1)


def seed_list(seed: int | Sequence[int], batch: int) -> list[int]:
    """Video i's seed: ``seed + i``, or the i-th of ``batch`` seeds."""
    seeds = [seed + i for i in range(batch)] if isinstance(seed, int) else list(seed)
    if len(seeds) != batch:
        raise ValueError(f"{len(seeds)} seeds for {batch} videos")
    return seeds


def seed_generators(seed: int | Sequence[int], batch: int) -> list[torch.Generator]:
    """Video i's (CPU) generator, seeded by ``seed_list``."""
    return [torch.Generator().manual_seed(s) for s in seed_list(seed, batch)]


def step_times(grid: Tensor, levels: Sequence[int], B: int, F: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Each latent frame's noise level and step, (B, K * F) each, for chunks at grid ``levels``."""
    t = torch.cat([grid[k].float().expand(B, F) for k in levels], dim=1)
    dt = torch.cat([(grid[k + 1] - grid[k]).float().expand(B, F) for k in levels], dim=1)
    return t.to(device), dt.to(device)


def generate(dit: DiT, cfg: SamplerConfig, context: Tensor, context_mask: Tensor, *, num_chunks: int,
             latent_shape: tuple[int, int, int], prefix: Prefix | None = None, seed: int | Sequence[int] = 0,
             use_kv_cache: bool = True, negative: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """All generated chunks concatenated: (B, C, num_chunks * F, H, W)."""
    chunks = iter_generate(dit, cfg, context, context_mask, num_chunks=num_chunks, latent_shape=latent_shape,
                           prefix=prefix, seed=seed, use_kv_cache=use_kv_cache, negative=negative)
    return torch.cat(list(chunks), dim=2)


def num_steps(num_chunks: int, cfg: SamplerConfig) -> int:
    """Forward steps of the whole plan (for progress bars)."""
    return (num_chunks + cfg.window_size - 1) * (cfg.steps // cfg.window_size)
