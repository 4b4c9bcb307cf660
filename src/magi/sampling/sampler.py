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
from magi.models.dit import DiT, TextKV
from magi.models.kv_cache import ChunkKVCache
from magi.sampling.chunks import chunk_plan
from magi.sampling.guidance import piecewise_scale, text_and_prefix_guidance, text_guidance
from magi.sampling.solvers import euler_step


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


@torch.inference_mode()  # no_grad, and no autograd bookkeeping either: 1.3 ms less per physics-64 forward
def iter_generate(dit: DiT, cfg: SamplerConfig, context: Tensor, context_mask: Tensor, *, num_chunks: int,
                  latent_shape: tuple[int, int, int], prefix: Prefix | None = None, seed: int | Sequence[int] = 0,
                  use_kv_cache: bool = True, progress: Callable[[int], None] | None = None,
                  negative: tuple[Tensor, Tensor] | None = None,
                  reencode: Callable[[Tensor], Tensor] | None = None,
                  batch_guidance: bool = True) -> Iterator[Tensor]:
    """Yield the latents (B, C, F, H, W) of each generated chunk, in order, as it becomes clean.

    The first generated chunk includes the prefix frames that do not fill a whole chunk (for i2v: the
    image latent), which stay clean (t = 1) throughout. ``use_kv_cache=False`` recomputes the clean
    context at every step instead (same result; the baseline that the benchmarks compare against).
    ``progress`` is called with the number of forward steps done after each step. Video i's noise comes
    from seed ``seed + i``, or from the i-th of a sequence of B seeds.

    ``context`` (B, L, Dc) is the text of every chunk; (B, num_chunks, L, Dc) gives each generated chunk its
    own (MAGI-1's special tokens) and clean chunks the null text. ``negative`` (B, L, Dc) text and mask
    replace the null text in the unconditional guidance branches. With ``cfg.context_noise`` > 0 the clean
    context chunks are seen noised (``as_context``); the yielded chunks are not. ``reencode`` (latents ->
    latents, e.g. VAE decode then encode) is applied to each generated chunk before it enters the context;
    the yielded chunk is the re-encoded one, so the video shows what later chunks continue from.
    ``batch_guidance=False`` runs text_and_prefix guidance's unconditional branch as a forward of its own, as
    without the cache (same result; the benchmarks' baseline).
    """
    if cfg.procedure != "native":
        raise ValueError(f"sampler.procedure={cfg.procedure!r} runs in magi.sampling.magi1, not this sampler")
    B, F = context.shape[0], dit.cfg.chunk_frames
    C, H, W = latent_shape
    device, dtype = next(dit.parameters()).device, next(dit.parameters()).dtype
    context, context_mask = context.to(device), context_mask.to(device)
    grid = time_grid(cfg.steps, cfg.shift)
    seeds = [seed + i for i in range(B)] if isinstance(seed, int) else list(seed)
    if len(seeds) != B:
        raise ValueError(f"{len(seeds)} seeds for {B} videos")
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    prefix_chunks, opening = prefix.split(F) if prefix is not None else ([], torch.zeros(B, C, 0, H, W))
    prefix_chunks, opening = [chunk.to(device) for chunk in prefix_chunks], opening.to(device)
    num_open = opening.shape[2]

    guided = cfg.guidance != "none"
    per_chunk = context.dim() == 4  # (B, num_chunks, L, Dc): one text per generated chunk
    if per_chunk and context.shape[1] != num_chunks:
        raise ValueError(f"{context.shape[1]} per-chunk texts for {num_chunks} chunks")
    if guided or per_chunk:
        context, context_mask = pad_context(context, context_mask, dit.cfg.context_max_length)
        null, null_mask = dit.unconditional_context(B, context.shape[-2])
        null = null.to(context.dtype)
        neg, neg_mask = (null, null_mask) if negative is None else \
            pad_context(*(tensor.to(device) for tensor in negative), context.shape[-2])

    def texts(clean: int, chunks: list[int], branches: int) -> tuple[Tensor, Tensor]:
        """Text of a forward over ``clean`` clean chunks then ``chunks``, for ``branches`` groups of B rows:
        the text, then the negative (by default the null) text once or twice (guidance's branches).

        Per-chunk texts as in MAGI-1: clean chunks get the null text, chunk c its own text c."""
        if per_chunk:
            ctx = torch.stack([null] * clean + [context[:, c] for c in chunks], 1)  # (B, K, L, Dc)
            ctx_mask = torch.stack([null_mask] * clean + [context_mask[:, c] for c in chunks], 1)
        else:
            ctx, ctx_mask = context, context_mask
        if branches == 1:
            return ctx, ctx_mask
        no_text = neg[:, None].expand_as(ctx) if per_chunk else neg
        no_text_mask = neg_mask[:, None].expand_as(ctx_mask) if per_chunk else neg_mask
        return (torch.cat([ctx] + [no_text] * (branches - 1)),  # (branches * B, ..., L, Dc): [text ; no text ...]
                torch.cat([ctx_mask] + [no_text_mask] * (branches - 1)))

    encoded: dict[tuple, tuple[Tensor, Tensor, TextKV]] = {}  # texts -> them and their cross-attention K/V

    def text_of(clean: int, chunks: list[int], branches: int) -> tuple[Tensor, Tensor, TextKV]:
        """``texts(clean, chunks, branches)`` and the DiT's keys and values of them, computed once per
        distinct text (one for a single prompt; with per-chunk texts, one per set of chunks in flight)."""
        key = ((clean, tuple(chunks)) if per_chunk else ()) + (branches,)
        if key not in encoded:
            if len(encoded) >= 8:
                encoded.clear()
            ctx, ctx_mask = texts(clean, chunks, branches)
            encoded[key] = ctx, ctx_mask, dit.text_kv(ctx.to(dtype), ctx_mask)
        return encoded[key]

    clean_t = 1.0 - cfg.context_noise  # the level clean context is seen at

    def as_context(chunk: Tensor) -> Tensor:
        """A clean chunk as the context sees it: noised to ``clean_t`` once, as it enters (the same noise
        whether it is cached or recomputed at every step)."""
        if cfg.context_noise == 0:
            return chunk
        return clean_t * chunk + cfg.context_noise * per_sample_noise(chunk.shape[1:], generators).to(chunk)

    cache = ChunkKVCache(dit.cfg.depth, cfg.context_chunks, offload=cfg.kv_offload) if use_kv_cache else None
    # text_and_prefix guidance's third branch (no text, no earlier chunks): with the cache it rides in the same
    # forward as the other two, its rows told to attend to no clean chunk (one pass of 3B rows instead of 2B,
    # then B: 12-23% less time at one chunk in flight, docs/benchmarks.md); without, it is a forward of its own
    batched_uncond = batch_guidance and cfg.guidance == "text_and_prefix" and cache is not None
    neg_kv = dit.text_kv(neg.to(dtype), neg_mask) if cfg.guidance == "text_and_prefix" and not batched_uncond else None
    prefix_branches = 3 if batched_uncond else 2 if guided else 1  # forwards that see earlier chunks
    history = [as_context(c) for c in prefix_chunks[-cfg.context_chunks:]]  # still to be admitted / recomputed

    shortcut = cfg.solver == "shortcut"  # the model is told the step size it is predicting for

    def model(x: Tensor, t: Tensor, ctx: Tensor, ctx_mask: Tensor, text_kv: TextKV, kv: ChunkKVCache | None,
              d: Tensor | None = None, text: bool = True) -> Tensor:
        """One forward; ``ctx`` of B rows (``text`` says whether they are text rows), 2B: [text ; no text] or
        3B: [text ; no text ; no text, no earlier chunks]; ``text_kv`` the DiT's keys and values of it."""
        reps = ctx.shape[0] // x.shape[0]
        extra = {"step_size": d.repeat(reps, 1).to(dtype)} if shortcut and d is not None else {}
        if guided:  # which rows are guidance's no-text branch (MAGI-1's adaLN token depends on it)
            extra["unconditional"] = torch.arange(ctx.shape[0], device=device) >= (x.shape[0] if text else 0)
        if reps == 3:
            extra["context_free"] = x.shape[0]  # the last B rows
        v = dit(x.repeat(reps, 1, 1, 1, 1).to(dtype), t.repeat(reps, 1).to(dtype), ctx.to(dtype), ctx_mask, kv,
                text_kv=text_kv, **extra)
        return v.float()

    if cache is not None and history:  # admit the whole prefix chunks in one pass
        cache.admit(len(history))
        clean = torch.cat(history, dim=2)
        model(clean, torch.full((B, clean.shape[2]), clean_t, device=device),
              *text_of(len(history), [], prefix_branches), cache)
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
        t = torch.cat([grid[k].float().expand(B, F) for k in step.levels], dim=1).to(device)  # (B, K * F)
        dt = torch.cat([(grid[k + 1] - grid[k]).float().expand(B, F) for k in step.levels], dim=1).to(device)
        if step.chunks[0] == 0 and num_open:
            t[:, :num_open], dt[:, :num_open] = 1.0, 0.0

        if cache is not None:
            lead = [history.pop(0) for _ in step.admit]
            cache.admit(len(lead))
        else:
            lead = history
        n_lead = sum(chunk.shape[2] for chunk in lead)
        x_in = torch.cat([*lead, x], dim=2)
        t_in = torch.cat([torch.full((B, n_lead), clean_t, device=device), t], dim=1)
        d_in = torch.cat([torch.zeros(B, n_lead, device=device), dt], dim=1)
        has_prefix = n_lead > 0 or num_open > 0 or (cache is not None and cache.num_chunks > 0)
        branches = prefix_branches if has_prefix else 2 if guided else 1
        v_all = model(x_in, t_in, *text_of(len(lead), list(step.chunks), branches), cache, d_in)[:, :, n_lead:]
        if cache is not None:
            cache.commit()

        if guided:
            v_text, v_prefix = v_all[:B], v_all[B:2 * B]
            text_scale = piecewise_scale(t, cfg.cfg_t_range, cfg.text_scales)[:, None, :, None, None]
            if cfg.guidance == "text_and_prefix" and has_prefix:
                v_uncond = v_all[2 * B:] if batched_uncond else model(x, t, neg, neg_mask, neg_kv, None, dt,
                                                                       text=False)
                prefix_scale = piecewise_scale(t, cfg.cfg_t_range, cfg.prefix_scales)[:, None, :, None, None]
                v = text_and_prefix_guidance(v_text, v_prefix, v_uncond, text_scale, prefix_scale)
            else:
                v = text_guidance(v_text, v_prefix, text_scale)
        else:
            v = v_all

        x = euler_step(x, v, dt[:, None, :, None, None])
        for c, piece in zip(step.chunks, x.split(F, dim=2)):
            state[c] = piece
        for c in step.finished:
            done = state.pop(c)
            if reencode is not None:
                done = reencode(done)
                if c == 0 and num_open:  # the prefix frames stay as given
                    done[:, :, :num_open] = opening
            history = (history + [as_context(done)])[-cfg.context_chunks:]
            yield done
        if progress is not None:
            progress(index + 1)


def generate(dit: DiT, cfg: SamplerConfig, context: Tensor, context_mask: Tensor, *, num_chunks: int,
             latent_shape: tuple[int, int, int], prefix: Prefix | None = None, seed: int | Sequence[int] = 0,
             use_kv_cache: bool = True, negative: tuple[Tensor, Tensor] | None = None,
             reencode: Callable[[Tensor], Tensor] | None = None, batch_guidance: bool = True) -> Tensor:
    """All generated chunks concatenated: (B, C, num_chunks * F, H, W)."""
    chunks = iter_generate(dit, cfg, context, context_mask, num_chunks=num_chunks, latent_shape=latent_shape,
                           prefix=prefix, seed=seed, use_kv_cache=use_kv_cache, negative=negative,
                           reencode=reencode, batch_guidance=batch_guidance)
    return torch.cat(list(chunks), dim=2)


def num_steps(num_chunks: int, cfg: SamplerConfig) -> int:
    """Forward steps of the whole plan (for progress bars)."""
    return (num_chunks + cfg.window_size - 1) * (cfg.steps // cfg.window_size)
