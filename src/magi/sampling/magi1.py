"""The official MAGI-1 inference procedure, step for step (``SamplerConfig.procedure = "magi1"``).

This is what the published checkpoints were released with (SandAI-org/MAGI-1 at 6ff822e:
``inference/pipeline/video_generate.py``, VG, and ``inference/model/dit/dit_model.py``, DM), and what the
``magi-*`` presets run. Each rule is one named piece below; docs/ARCHITECTURE.md maps them to the official
lines:

* ``magi1_time_grid`` (flow/schedule.py): the uniform grid squared, then shifted (VG ``init_t``).
* The chunk plan is ours (``chunk_plan``, the same stages as VG ``generate_sequences``); a chunk that has
  just finished is fed again at ``clean_t`` (0.9999) as the first input chunk and enters the cache.
* ``key_ranges``: a chunk in flight at stage s sees the last ``noise2clean_kvrange[s]`` chunks up to
  itself, a clean chunk fed to the cache (and each prefix chunk) only itself (VG
  ``generate_noise2clean_kvrange``). With 4 in flight every chunk in flight sees exactly one clean chunk.
* Guidance (base models, DM ``forward_3cfg``): per forward, the text branch and the null-text branch over
  the same chunks and ranges; **one** KV cache, written by the null-text branch and read by both; then the
  null text with every chunk in flight alone (no cache, no other chunk). Per chunk
  ``(1 - p) u + (p - s) c_prefix + s c_text`` with (p, s) from the chunk's t (``guidance_scales``), at every
  step, also before any chunk is clean.
* Distilled models (DM ``forward_dispatcher`` cfg_number 1): one forward with text, which writes the cache;
  the timestep embedder also embeds the step count (``distill_step``); a first chunk in flight still
  above ``nearly_clean_threshold`` in t is run alone too and mixed 0.7 / 0.3.
* Prefix (i2v / v2v): whole prefix chunks enter the cache in one forward; the frames that do not fill a
  chunk overwrite the first generated chunk before every forward and keep its noisy t; its output keeps
  them for i2v (the image latent with the last step's drift) and drops them for v2v (VG
  ``try_pad_prefix_video``, ``integrate_velocity``).
* Noise: one draw of the whole latent video, prefix slots included, from a generator on the model's
  device seeded with the seed (the official's ``torch.randn`` after ``torch.manual_seed``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from einops import rearrange
from torch import Tensor

from magi.config import SamplerConfig
from magi.devices import generator_device
from magi.flow.schedule import magi1_step_intervals, magi1_time_grid
from magi.models.dit import DiT
from magi.models.kv_cache import ChunkKVCache
from magi.sampling.chunks import chunk_plan
from magi.sampling.sampler import pad_context, seed_list

CFG_RANGE_EPS = 1e-7  # DM get_cfg_scale: searchsorted(cfg_t_range - 1e-7, t) - 1
V2V_PREFIX_FRAMES = 32  # v2v conditions on the prefix video's first 32 frames (video_process.py prefix_frame)


def chunk_counts(num_frames: int, frames_per_latent: int, prefix_latents: int, chunk_frames: int) -> tuple[int, int]:
    """(chunks generated, whole prefix chunks) for ``num_frames`` asked (VG ``extract_feature_for_inference``):
    ceil((num_frames // 4 + P) / 6) chunks in all, of which P // 6 are the prefix's. Every generated chunk
    is output whole: t2v 96 frames -> 4 chunks (96 frames), i2v 96 -> 5 chunks (120 frames)."""
    total = math.ceil((num_frames // frames_per_latent + prefix_latents) / chunk_frames)
    offset = prefix_latents // chunk_frames
    return total - offset, offset


def kv_range_of(level: int | None, cfg: SamplerConfig) -> int:
    """Chunks (itself included) that a chunk at grid ``level`` attends to; None = a clean chunk."""
    if level is None:
        return cfg.clean_chunk_kvrange
    return cfg.noise2clean_kvrange[level // (cfg.steps // len(cfg.noise2clean_kvrange))]


def cached_chunks(cfg: SamplerConfig) -> int:
    """Clean chunks before a chunk that any chunk sees: what the KV cache must keep."""
    return max(max(cfg.noise2clean_kvrange), cfg.clean_chunk_kvrange) - 1


def key_ranges(chunks: Sequence[int], levels: Sequence[int | None], first_key: int,
               cfg: SamplerConfig) -> list[tuple[int, int]]:
    """Per input chunk (absolute index ``chunks[i]`` at grid ``levels[i]``, None = clean), the [start, end)
    of the key chunks it sees, counted from the key sequence's first chunk (absolute ``first_key``)."""
    ranges = []
    for chunk, level in zip(chunks, levels, strict=True):
        start = max(0, chunk + 1 - kv_range_of(level, cfg))
        if start < first_key:
            raise ValueError(f"chunk {chunk} must see chunk {start}, which is no longer cached")
        ranges.append((start - first_key, chunk + 1 - first_key))
    return ranges


def guidance_scales(t: Tensor, cfg: SamplerConfig) -> tuple[Tensor, Tensor]:
    """(prefix scale p, text scale s) for noise levels ``t``, as the official looks them up (float32)."""
    bounds = torch.tensor(cfg.cfg_t_range, dtype=torch.float32, device=t.device) - CFG_RANGE_EPS
    index = torch.searchsorted(bounds, t.float().contiguous()) - 1
    if index.min() < 0 or index.max() >= len(cfg.cfg_t_range):
        raise ValueError(f"noise level outside sampler.cfg_t_range {cfg.cfg_t_range}")
    prefix = torch.tensor(cfg.prefix_scales, dtype=torch.float32, device=t.device)
    text = torch.tensor(cfg.text_scales, dtype=torch.float32, device=t.device)
    return prefix[index], text[index]


def distill_step(cfg: SamplerConfig, step_in_stage: int) -> float:
    """The number the distilled models' timestep embedder also sees (DM 176-185): steps / 4 * 2, or for
    the 12-step grid 4 / interval * 2 with the step's interval (1 or 2)."""
    if cfg.steps == 12:
        return 4 / magi1_step_intervals(cfg.steps, cfg.shortcut_mode)[step_in_stage] * 2
    return cfg.steps / 4 * 2


def _per_chunk(values: Tensor, frames: int) -> Tensor:
    """(B, K) one value per chunk -> (B, K * frames), one per latent frame."""
    return values.repeat_interleave(frames, dim=1)


@torch.inference_mode()
def iter_generate(dit: DiT, cfg: SamplerConfig, context: Tensor, context_mask: Tensor, *, num_chunks: int,
                  latent_shape: tuple[int, int, int], prefix: Tensor | None = None, seed: int | Sequence[int] = 0,
                  use_kv_cache: bool = True, progress: Callable[[int], None] | None = None,
                  negative: tuple[Tensor, Tensor] | None = None) -> Iterator[Tensor]:
    """Yield each generated chunk's latents (B, C, F', H, W) as the official returns it, as it becomes clean.

    ``context`` (B, num_chunks, L, Dc) is each generated chunk's text (or (B, L, Dc), one for all);
    ``prefix`` (B, C, P, H, W) the clean conditioning latents (P = 1 for an image). ``negative`` replaces
    the learned null text (the official ``NEG_PROMPT``). The first generated chunk is yielded with the
    prefix frames it holds for i2v (P = 1) and without them otherwise. ``use_kv_cache=False`` feeds the
    clean chunks again in every forward (distilled models only: the base models' text branch reads the
    null-text branch's cache, which no recomputation reproduces); it gives the same video.
    """
    if cfg.procedure != "magi1":
        raise ValueError(f"magi1.iter_generate runs sampler.procedure=magi1, not {cfg.procedure!r}")
    if not use_kv_cache and not cfg.distilled:
        raise ValueError("procedure magi1 with guidance needs the KV cache: its text branch reads the clean "
                         "chunks as the null-text branch cached them")
    B, F = context.shape[0], dit.cfg.chunk_frames
    C, H, W = latent_shape
    device = dit.patch_embed.weight.device
    dtype = torch.float32  # inputs as the official feeds them; the DiT casts for each of its parts
    seeds = seed_list(seed, B)
    grid_host = magi1_time_grid(cfg.steps, cfg.shift, cfg.shortcut_mode)  # decisions are taken on the host
    grid = grid_host.to(device)
    stage_steps = cfg.steps // cfg.window_size

    P = 0 if prefix is None else prefix.shape[2]
    offset, opening = P // F, P % F  # whole prefix chunks; prefix frames inside the first generated chunk
    where = generator_device(device)  # the model's device: the official draws it there
    noise = torch.cat([torch.randn((1, C, (offset + num_chunks) * F, H, W), device=where,
                                   generator=torch.Generator(where).manual_seed(s)) for s in seeds]).to(device)

    # texts: a generated chunk's own, and the null (or negative) text, for clean chunks and the null branches
    if context.dim() == 3:
        context, context_mask = context[:, None].expand(-1, num_chunks, -1, -1), context_mask[:, None].expand(
            -1, num_chunks, -1)
    if context.shape[1] != num_chunks:
        raise ValueError(f"{context.shape[1]} per-chunk texts for {num_chunks} chunks")
    length = max(context.shape[2], dit.cfg.context_max_length)
    context, context_mask = pad_context(context, context_mask, length)
    null, null_mask = dit.unconditional_context(B, length) if negative is None else pad_context(*negative, length)
    null, context = null.to(device, dtype), context.to(device, dtype)
    null_mask, context_mask = null_mask.to(device), context_mask.to(device)

    def texts(chunks: Sequence[int | None], with_text: bool) -> tuple[Tensor, Tensor]:
        """(B, K, L, Dc) and mask for input chunks (generated index, None = clean): own text or null."""
        ctx = [context[:, c] if with_text and c is not None else null for c in chunks]
        mask = [context_mask[:, c] if with_text and c is not None else null_mask for c in chunks]
        return torch.stack(ctx, 1), torch.stack(mask, 1)

    def forward(x: Tensor, t: Tensor, ctx: Tensor, ctx_mask: Tensor, no_text: int, cache: ChunkKVCache | None,
                ranges: list[tuple[int, int]] | None, step: float | None) -> Tensor:
        """One forward of x (R, C, K * F, H, W) at per-chunk levels t (R, K), the last ``no_text`` rows marked
        as the null-text branch (MAGI-1's adaLN token); the velocity in float32."""
        R = x.shape[0]
        extra = {} if step is None else {"step_size": torch.full((R, t.shape[1] * F), step, device=device)}
        v = dit(x.to(dtype), _per_chunk(t, F).to(dtype), ctx, ctx_mask, cache, key_ranges=ranges,
                no_text=torch.arange(R, device=device) >= R - no_text, **extra)
        return v.float()

    def two_branches(x: Tensor, t: Tensor, ctx: Tensor, ctx_mask: Tensor,
                     ranges: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """The text and the null-text branch in one forward of 2B rows (the cache keeps the null-text rows'
        K/V and both read them, ``ChunkKVCache.writer_rows``): their velocities."""
        null_ctx, null_ctx_mask = texts([None] * ctx.shape[1], with_text=False)
        v = forward(torch.cat([x, x]), torch.cat([t, t]), torch.cat([ctx, null_ctx]),
                    torch.cat([ctx_mask, null_ctx_mask]), B, cache, ranges, None)
        return v[:B], v[B:]

    needed = cached_chunks(cfg)
    cache = ChunkKVCache(dit.cfg.depth, max(1, needed), writer_rows=None if cfg.distilled else (B, 2 * B),
                         offload=cfg.kv_offload) if use_kv_cache else None
    clean: list[tuple[int, Tensor]] = []  # (absolute index, latents) of clean chunks not in a cache
    if offset:  # the whole prefix chunks, each seeing itself, into the cache (or kept to be fed again)
        chunks = list(range(offset))
        if cache is None:
            clean = [(c, prefix[:, :, c * F:(c + 1) * F]) for c in chunks][-needed:] if needed else []
        else:
            x = prefix[:, :, :offset * F].to(device)
            t = torch.full((B, offset), cfg.clean_t, device=device)
            ranges = key_ranges(chunks, [None] * offset, 0, cfg)
            ctx, ctx_mask = texts([None] * offset, with_text=False)
            cache.admit(offset)
            if cfg.distilled:
                forward(x, t, ctx, ctx_mask, 0, cache, ranges, distill_step(cfg, 0))
            else:  # both branches, as the official runs them; the null-text one fills the cache
                two_branches(x, t, ctx, ctx_mask, ranges)
            cache.commit()

    state = {c: noise[:, :, (offset + c) * F:(offset + c + 1) * F].clone() for c in range(num_chunks)}
    done: dict[int, Tensor] = {}

    def with_prefix(c: int, x: Tensor) -> Tensor:
        """Generated chunk c with the prefix frames that fall inside it written in (VG try_pad_prefix_video)."""
        if c == 0 and opening:
            x = x.clone()
            x[:, :, :opening] = prefix[:, :, offset * F:].to(x)
        return x

    for index, step in enumerate(chunk_plan(num_chunks, cfg.steps, cfg.window_size)):
        j = index % stage_steps
        for c in step.chunks:
            state[c] = with_prefix(c, state[c])
        admitted = [(offset + c, with_prefix(c, done.pop(c))) for c in step.admit]
        if cache is None:
            clean = (clean + admitted)[-max(needed, len(admitted)):]
            lead = clean
        else:
            lead = admitted
            cache.admit(len(lead))
        first_key = (offset + step.chunks[0]) - len(lead) - (cache.num_chunks if cache is not None else 0)
        absolute = [a for a, _ in lead] + [offset + c for c in step.chunks]
        levels = [None] * len(lead) + list(step.levels)
        ranges = key_ranges(absolute, levels, first_key, cfg)
        x = torch.cat([latents for _, latents in lead] + [state[c] for c in step.chunks], dim=2).to(device)
        t_chunks = grid[list(step.levels)].expand(B, -1)  # (B, K) the chunks in flight
        t = torch.cat([torch.full((B, len(lead)), cfg.clean_t, device=device), t_chunks], dim=1)
        n = len(lead) * F  # leading clean frames, whose output is dropped
        ctx, ctx_mask = texts([None] * len(lead) + list(step.chunks), with_text=True)

        if cfg.distilled:
            d = distill_step(cfg, j)
            v = forward(x, t, ctx, ctx_mask, 0, cache, ranges, d)[:, :, n:]
            # the first chunk in flight, still noisy, also alone, mixed in (float32 0.3 counts as above 0.3)
            if float(grid_host[step.levels[0]]) > cfg.nearly_clean_threshold:  # as the official: .item() > 0.3
                alone = forward(x[:, :, n:n + F], t_chunks[:, :1], ctx[:, len(lead):len(lead) + 1],
                                ctx_mask[:, len(lead):len(lead) + 1], 0, None, None, d)
                w = cfg.nearly_clean_weight
                v = torch.cat([v[:, :, :F] * w + alone * (1 - w), v[:, :, F:]], dim=2)
        else:
            v_text, v_prefix = two_branches(x, t, ctx, ctx_mask, ranges)
            v_text, v_prefix = v_text[:, :, n:], v_prefix[:, :, n:]
            K = len(step.chunks)  # the null text, each chunk in flight alone: K * B rows of one chunk
            alone = rearrange(x[:, :, n:], "b c (k f) h w -> (k b) c f h w", k=K)
            v_alone = forward(alone, rearrange(t_chunks, "b k -> (k b) 1"), null[:, None].repeat(K, 1, 1, 1),
                              null_mask[:, None].repeat(K, 1, 1), K * B, None, None, None)
            v_uncond = rearrange(v_alone, "(k b) c f h w -> b c (k f) h w", k=K)
            scales = guidance_scales(grid_host[list(step.levels)], cfg)  # (K,) each
            p, s = (_per_chunk(scale.to(device).expand(B, -1), F)[:, None, :, None, None] for scale in scales)
            v = (1 - p) * v_uncond + (p - s) * v_prefix + s * v_text
        if cache is not None:
            cache.commit()

        dt = _per_chunk((grid[[k + 1 for k in step.levels]] - grid[list(step.levels)]).expand(B, -1), F)
        x = torch.cat([state[c] for c in step.chunks], dim=2) + v * dt[:, None, :, None, None]
        for c, piece in zip(step.chunks, x.split(F, dim=2)):
            state[c] = piece
        for c in step.finished:
            done[c] = state.pop(c)
            yield done[c] if c or P == 1 else done[c][:, :, opening:]  # VG real_start
        if progress is not None:
            progress(index + 1)

