"""MAGI-1 diffusion transformer: predicts the flow velocity of latent video chunks.

Shapes (see docs/ARCHITECTURE.md): latents (B, C, T, H, W) with T latent frames, tokens (B, N, D) with
N = T * (H / p) * (W / p) in (t, h, w) order, context (B, L, Dc) text embeddings.

One block (parallel attention, sandwich-normed FFN, softcapped adaLN gates), as in MAGI-1:

    h   = RMSNorm(x)
    a   = W_o [SelfAttn(h) ; CrossAttn(h, text)]          # self and cross attention side by side
    x   = x + RMSNorm(gate_a * a)
    f   = FFN(RMSNorm(x))                                  # SwiGLU (or GELU MLP for the 4.5B model)
    x   = x + RMSNorm(gate_f * f)

with (gate_a, gate_f) = softcap(Linear(SiLU(c_t))) per latent frame, where c_t embeds that frame's noise
level t (constant within a chunk; clean prefix frames have t = 1) plus the pooled text. The post-norm
gains start at zero, so every block starts as the identity.
Self-attention is block-causal over chunks, uses QK-norm, grouped K/V heads and 3-D RoPE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from magi.config import DiTConfig
from magi.models.attention import (
    additive_mask,
    attend,
    block_causal_mask,
    chunk_index_per_token,
    full_mask_to_none,
)
from magi.models.kv_cache import ChunkKVCache, LayerKV
from magi.models.layers import (
    NORMS,
    FeedForward,
    apply_rope,
    apply_rope_half,
    grid_positions,
    magi_rope,
    magi_rope_default_bands,
    magi_rope_positions,
    rope_3d,
    softcap,
    timestep_embedding,
)

TIME_FREQ_DIM = 256
APPLY_ROPE = {"interleaved": apply_rope, "magi": apply_rope_half}  # DiTConfig.rope -> how q, k are rotated


@dataclass(frozen=True)
class TextKV:
    """The text as the blocks' cross-attention reads it: per block, normed keys and values (B, Hkv, K * L, Dh),
    and which of its tokens are padding: ``mask`` (B, 1, 1, K * L) additive, or None when there is none.

    They depend only on the text, which stays the same over a whole generation: ``DiT.text_kv`` computes
    them once and every forward can take them (``forward(..., text_kv=...)``) instead of projecting the
    text again in every block, and without asking in every forward whether the text is padded (a check
    that waits for its result, and a graph break under ``torch.compile``).
    """

    layers: tuple[tuple[Tensor, Tensor], ...]
    mask: Tensor | None = None

    @property
    def batch(self) -> int:
        return self.layers[0][0].shape[0]

    @property
    def length(self) -> int:
        return self.layers[0][0].shape[2]


@dataclass(frozen=True)
class SelfAttentionMasks:
    """What the queries of one forward attend to, additive (0 or -inf) or None for every key.

    ``keys`` (N, Nc + N): the input tokens against the cached and input tokens (block-causal), for an input
    that ends inside a chunk. ``ranges`` replaces the mask: for each input chunk, the [start, end) slice of
    key *tokens* (over the cached and input tokens) that its queries attend to, every key inside it (MAGI-1's
    kv ranges). Each chunk then runs one unmasked attention over its slice: no (N, Nc + N) mask is ever built.

    The last ``free_rows`` rows of the batch (``UncachedRows``) attend over ``free_ranges``, slices of the
    input tokens alone, and their keys and values never enter the KV cache.
    """

    keys: Tensor | None
    ranges: tuple[tuple[int, int], ...] | None = None
    free_rows: int = 0
    free_ranges: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class UncachedRows:
    """The last ``rows`` rows of a batch, which see neither the KV cache nor write to it: input chunk i attends
    to the input chunks ``ranges[i]`` = [start, end) only (chunk units). text_and_prefix guidance's third
    branch (no text, no earlier chunks) rides in the forward of the other two this way."""

    rows: int
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class TextChunks:
    """Which text the cross-attention of each token reads: with ``count`` > 1 texts (one per chunk, MAGI-1),
    token j reads text (j + offset) // tokens_per_chunk only; ``offset`` is the global index of the first
    token held (context parallelism holds a slice of them)."""

    count: int
    tokens_per_chunk: int
    offset: int = 0


def text_padding_mask(mask: Tensor, dtype: torch.dtype) -> Tensor | None:
    """(B, L) bool, True for the text's real tokens -> the cross-attention mask (B, 1, 1, L) additive, or None
    when nothing is padding (SDPA's unmasked path)."""
    allowed = full_mask_to_none(mask)
    return None if allowed is None else additive_mask(allowed[:, None, None, :], dtype)


def own_dtype(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` in the module's own dtype: MAGI-1 keeps its embedders and final linear in float32 when
    the blocks run in bfloat16 (a precision policy applied from outside, ``pipeline.apply_precision``)."""
    return module(x.to(next(module.parameters()).dtype))


def attend_ranges(q: Tensor, k: Tensor, v: Tensor, ranges: Sequence[tuple[int, int]], tokens_per_chunk: int) -> Tensor:
    """Query chunk i (``tokens_per_chunk`` rows of q (B, H, N, Dh)) attends to keys ``ranges[i]`` = [start,
    end) of k, v (B, Hkv, Nk, Dh), every one of them: one unmasked attention per chunk. -> (B, H, N, Dh)"""
    return torch.cat([attend(q[:, :, i * tokens_per_chunk:(i + 1) * tokens_per_chunk], k[:, :, start:end],
                             v[:, :, start:end]) for i, (start, end) in enumerate(ranges)], dim=2)


def gated(x: Tensor, gate: Tensor, frames: int) -> Tensor:
    """x: (B, N, D) tokens of ``frames`` latent frames; gate: (B, frames, D), one gate per frame."""
    B, N, D = x.shape
    return (x.view(B, frames, N // frames, D) * gate[:, :, None]).view(B, N, D)


class Block(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.cap = cfg.modulation_softcap
        self.apply_rope = APPLY_ROPE[cfg.rope]
        Norm = NORMS[cfg.norm]
        d, q_dim, kv_dim = cfg.dim, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        self.modulation = nn.Linear(cfg.cond_dim, 2 * d)
        self.attn_norm = Norm(d, cfg.norm_eps)
        self.qkv = nn.Linear(d, q_dim + 2 * kv_dim, bias=False)
        self.q_norm = Norm(cfg.head_dim, cfg.norm_eps)
        self.k_norm = Norm(cfg.head_dim, cfg.norm_eps)
        self.cross_q = nn.Linear(d, q_dim, bias=False)
        self.cross_kv = nn.Linear(d, 2 * kv_dim, bias=False)
        self.cross_q_norm = Norm(cfg.head_dim, cfg.norm_eps)
        self.cross_k_norm = Norm(cfg.head_dim, cfg.norm_eps)
        self.attn_out = nn.Linear(2 * q_dim, d, bias=False)
        self.attn_post_norm = Norm(d, cfg.norm_eps)
        self.ffn_norm = Norm(d, cfg.norm_eps)
        self.ffn = FeedForward(d, cfg.ffn_dim, cfg.gated_ffn, cfg.gelu_approximate)
        self.ffn_post_norm = Norm(d, cfg.norm_eps)

    def self_attention(self, h: Tensor, rope: tuple[Tensor, Tensor], masks: SelfAttentionMasks,
                       layer_kv: LayerKV | None, tokens_per_chunk: int) -> Tensor:
        H, Hkv, Dh = self.num_heads, self.num_kv_heads, self.head_dim
        q, k, v = self.qkv(h).split([H * Dh, Hkv * Dh, Hkv * Dh], dim=-1)
        q = rearrange(self.q_norm(q.unflatten(-1, (H, Dh))), "b n h d -> b h n d")  # (B, H, N, Dh)
        k = rearrange(self.k_norm(k.unflatten(-1, (Hkv, Dh))), "b n h d -> b h n d")  # (B, Hkv, N, Dh)
        v = rearrange(v, "b n (h d) -> b h n d", h=Hkv)
        return rearrange(self.attend_cached(q, k, v, rope, masks, layer_kv, tokens_per_chunk), "b h n d -> b n (h d)")

    def attend_cached(self, q: Tensor, k: Tensor, v: Tensor, rope: tuple[Tensor, Tensor], masks: SelfAttentionMasks,
                      layer_kv: LayerKV | None, tokens_per_chunk: int) -> Tensor:
        """Self-attention of the input tokens' q (B, H, N, Dh), k, v (B, Hkv, N, Dh), before RoPE, over the
        cached clean chunks and themselves; the context-free rows over themselves only. -> (B, H, N, Dh)"""
        cos, sin = rope  # (Nc + N, R)
        n, free = q.shape[2], masks.free_rows
        q = self.apply_rope(q, cos[-n:], sin[-n:])
        if free:  # the last rows: keys of the input tokens only, outside the cache
            q, q_free = q[:-free], q[-free:]
            k, k_free = k[:-free], self.apply_rope(k[-free:], cos[-n:], sin[-n:])
            v, v_free = v[:-free], v[-free:]
        if layer_kv is not None:
            k, v = layer_kv.extend(k, v, tokens_per_chunk)  # (B, Hkv, Nc + N, Dh)
        k = self.apply_rope(k, cos, sin)
        out = attend(q, k, v, masks.keys) if masks.ranges is None else \
            attend_ranges(q, k, v, masks.ranges, tokens_per_chunk)
        if not free:
            return out
        return torch.cat([out, attend_ranges(q_free, k_free, v_free, masks.free_ranges, tokens_per_chunk)])

    def text_keys_values(self, text: Tensor) -> tuple[Tensor, Tensor]:
        """text: (B, L, D) embedded text -> normed keys and values (B, Hkv, L, Dh) of the cross-attention."""
        Hkv, Dh = self.num_kv_heads, self.head_dim
        k, v = self.cross_kv(text).chunk(2, dim=-1)
        k = rearrange(self.cross_k_norm(k.unflatten(-1, (Hkv, Dh))), "b l h d -> b h l d")
        return k, rearrange(v, "b l (h d) -> b h l d", h=Hkv)

    def cross_attention(self, h: Tensor, text: Tensor | tuple[Tensor, Tensor], cross_mask: Tensor | None,
                        chunks: TextChunks | None = None) -> Tensor:
        """h: (B, N, D) tokens; text: (B, K * L, D) embedded text, or its keys and values from
        ``text_keys_values``; cross_mask: (B, 1, 1, K * L) additive padding, or None; ``chunks``: which of the
        K texts each token reads (None: all of it)."""
        H, Dh = self.num_heads, self.head_dim
        q = rearrange(self.cross_q_norm(self.cross_q(h).unflatten(-1, (H, Dh))), "b n h d -> b h n d")
        k, v = self.text_keys_values(text) if isinstance(text, Tensor) else text  # (B, Hkv, K * L, Dh)
        if chunks is None or chunks.count == 1:
            return rearrange(attend(q, k, v, cross_mask), "b h n d -> b n (h d)")
        L, n, per = k.shape[2] // chunks.count, q.shape[2], chunks.tokens_per_chunk
        outs, start = [], 0
        while start < n:  # the run of tokens of one chunk, over that chunk's text
            c = (start + chunks.offset) // per
            end = min(n, (c + 1) * per - chunks.offset)
            texts = slice(c * L, (c + 1) * L)
            outs.append(attend(q[:, :, start:end], k[:, :, texts], v[:, :, texts],
                               None if cross_mask is None else cross_mask[..., texts]))
            start = end
        return rearrange(torch.cat(outs, dim=2), "b h n d -> b n (h d)")

    def forward(self, x: Tensor, cond: Tensor, text: Tensor | tuple[Tensor, Tensor], cross_mask: Tensor | None,
                rope: tuple[Tensor, Tensor], masks: SelfAttentionMasks, layer_kv: LayerKV | None,
                tokens_per_chunk: int, text_chunks: TextChunks | None = None) -> Tensor:
        frames = cond.shape[1]
        gate_a, gate_f = softcap(self.modulation(F.silu(cond)), self.cap).chunk(2, dim=-1)  # (B, T, D) each
        h = self.attn_norm(x)
        a = torch.cat([self.self_attention(h, rope, masks, layer_kv, tokens_per_chunk),
                       self.cross_attention(h, text, cross_mask, text_chunks)], dim=-1)  # (B, N, 2 * H * Dh)
        x = x + self.attn_post_norm(gated(self.attn_out(a), gate_a, frames))
        f = self.ffn(self.ffn_norm(x))
        return x + self.ffn_post_norm(gated(f, gate_f, frames))


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        p, d = cfg.patch_size, cfg.dim
        self.patch_embed = nn.Linear(cfg.in_channels * p * p, d, bias=False)
        self.time_embed = nn.Sequential(nn.Linear(TIME_FREQ_DIM, cfg.cond_dim), nn.SiLU(),
                                        nn.Linear(cfg.cond_dim, cfg.cond_dim))
        self.context_embed = nn.Sequential(nn.Linear(cfg.context_dim, d), nn.SiLU())
        self.context_pool = nn.Linear(cfg.context_dim, cfg.cond_dim)
        if cfg.step_conditioning and cfg.step_embedder == "own":  # shortcut models: d is a second "timestep"
            self.step_embed = nn.Sequential(nn.Linear(TIME_FREQ_DIM, cfg.cond_dim), nn.SiLU(),
                                            nn.Linear(cfg.cond_dim, cfg.cond_dim))
        self.null_context = nn.Parameter(torch.zeros(cfg.context_max_length, cfg.context_dim))  # learned null text
        if cfg.rope == "magi":  # learnable frequencies (state key ``rope.bands``)
            self.rope = nn.ParameterDict({"bands": nn.Parameter(magi_rope_default_bands(cfg.head_dim))})
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.final_norm = NORMS[cfg.norm](d, cfg.norm_eps)
        self.final_proj = nn.Linear(d, cfg.in_channels * p * p, bias=False)
        self._shape_tables: dict[tuple, tuple] = {}  # see positions()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier linears; post-norm gains and the output projection start at zero (identity blocks)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.null_context, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.attn_post_norm.weight)
            nn.init.zeros_(block.ffn_post_norm.weight)
        nn.init.zeros_(self.final_proj.weight)
        if self.cfg.step_conditioning and self.cfg.step_embedder == "own":  # a fresh step embedding adds nothing
            nn.init.zeros_(self.step_embed[2].weight)

    def block_dtype(self) -> torch.dtype:
        """The dtype the blocks compute in: their first norm's (norms are never quantized, and those that
        MAGI-1 keeps in float32 come later)."""
        norms = tuple(NORMS.values())
        return next(m.weight.dtype for m in self.blocks[0].modules() if isinstance(m, norms))

    def unconditional_context(self, batch: int, length: int | None = None) -> tuple[Tensor, Tensor]:
        """The learned null text (context_max_length tokens, as in MAGI-1) padded to ``length``.

        Returns context (B, length, Dc) and mask (B, length); ``length`` defaults to context_max_length.
        """
        n = self.cfg.context_max_length
        length = n if length is None else length
        if length < n:
            raise ValueError(f"null context needs length >= context_max_length={n}, got {length}")
        context = self.null_context.new_zeros(batch, length, self.cfg.context_dim)
        context[:, :n] = self.null_context
        mask = torch.zeros(batch, length, dtype=torch.bool, device=context.device)
        mask[:, :self.cfg.null_text_tokens or n] = True  # MAGI-1 attends its first 50 null tokens only
        return context, mask

    def text_kv(self, context: Tensor, context_mask: Tensor | None = None) -> TextKV:
        """Every block's cross-attention keys and values of ``context`` (B, L, Dc) or (B, K, L, Dc), and the
        padding mask of ``context_mask`` (B, L) or (B, K, L) (None: no padding)."""
        text = own_dtype(self.context_embed, context.flatten(1, 2) if context.dim() == 4 else context)  # (B, K*L, D)
        text = text.to(self.block_dtype())
        mask = None if context_mask is None else text_padding_mask(context_mask.flatten(1), text.dtype)
        return TextKV(tuple(block.text_keys_values(text) for block in self.blocks), mask)

    def positions(self, frames: int, query_frames: int, h: int, w: int, device: torch.device,
                  dtype: torch.dtype) -> tuple[tuple[Tensor, Tensor], Tensor | None]:
        """RoPE tables of ``frames`` latent frames of h x w tokens, cos and sin (Nc + N, R), and the
        block-causal mask of the last ``query_frames`` against all of them, (N, Nc + N) additive
        (0 or -inf, in ``dtype``) or None; only an input that ends inside a chunk needs the mask (whole chunks
        attend per chunk over key ranges).

        What depends only on the shape is kept per shape (a few dozen shapes while sampling: one per
        number of cached and in-flight chunks) instead of being rebuilt in every forward.
        A compiled forward builds them in its graph instead, where its shapes are fixed: looking them up
        would add a guard on the kept shapes, and a second graph for the first call of every shape.
        MAGI-1's learnable frequencies are applied in every forward.
        """
        key = (frames, query_frames, h, w, device, dtype)
        if torch.compiler.is_compiling():
            table, mask = self._shape_tables_for(*key)
        else:
            if key not in self._shape_tables:
                if len(self._shape_tables) >= 64:
                    self._shape_tables.clear()
                self._shape_tables[key] = self._shape_tables_for(*key)
            table, mask = self._shape_tables[key]
        return (magi_rope(table, self.rope["bands"]) if self.cfg.rope == "magi" else table), mask

    def _shape_tables_for(self, frames: int, query_frames: int, h: int, w: int, device: torch.device,
                          dtype: torch.dtype) -> tuple[Tensor | tuple[Tensor, Tensor], Tensor | None]:
        """What ``positions`` keeps per shape: the RoPE table (MAGI-1's positions before its learnable
        frequencies) and the block-causal mask."""
        cfg = self.cfg
        if cfg.rope == "magi":
            table = magi_rope_positions(frames, h, w, device=device)  # (Nc + N, 3)
        else:
            table = rope_3d(grid_positions(frames, h, w, device=device), cfg.head_dim, cfg.rope_theta)
        mask = None  # every query sees every key when the queries lie in the last chunk (or there are none)
        if query_frames and (frames - query_frames) // cfg.chunk_frames != (frames - 1) // cfg.chunk_frames:
            chunks = chunk_index_per_token(frames, h * w, cfg.chunk_frames, device=device)  # (Nc + N,)
            mask = additive_mask(block_causal_mask(chunks[-query_frames * h * w:], chunks), dtype)
        return table, mask

    def conditioning(self, t: Tensor, context: Tensor, context_mask: Tensor, no_text: Tensor | None,
                     step_size: Tensor | None) -> Tensor:
        """The adaLN input (B, T, Dcond) per latent frame: its noise level, the text (the pooled text of its
        chunk, or MAGI-1's has-text token) and, for shortcut models, the step size."""
        cfg, (B, T) = self.cfg, t.shape
        K = context.shape[1]
        cond = own_dtype(self.time_embed, timestep_embedding(t, TIME_FREQ_DIM))  # (B, T, Dcond)
        if cfg.adaln_text == "null_token":
            no_text = torch.zeros(B, dtype=torch.bool, device=t.device) if no_text is None else no_text
            token = torch.where(no_text[:, None], self.null_context[-1], self.null_context[-2])  # (B, Dc)
            cond = cond + own_dtype(self.context_pool, token)[:, None]
        else:
            weights = context_mask.unsqueeze(-1).to(context.dtype)
            pooled = (context * weights).sum(2) / weights.sum(2).clamp(min=1.0)  # (B, K, Dc)
            cond = cond + own_dtype(self.context_pool, pooled).repeat_interleave(T // K, dim=1)  # its chunk's text
        if cfg.step_conditioning:
            d = torch.zeros_like(t) if step_size is None else step_size
            step_embed = self.step_embed if cfg.step_embedder == "own" else self.time_embed
            cond = cond + own_dtype(step_embed, timestep_embedding(d, TIME_FREQ_DIM))
        elif step_size is not None:
            raise ValueError("step_size given to a DiT without step_conditioning")
        return cond

    def attention_layout(self, cached_frames: int, T: int, h: int, w: int, x: Tensor,
                         key_ranges: Sequence[tuple[int, int]] | None,
                         uncached_rows: UncachedRows | None) -> tuple[tuple[Tensor, Tensor], SelfAttentionMasks]:
        """RoPE tables and what the queries of T input latent frames after ``cached_frames`` attend to (see
        ``forward``): key ranges in tokens for whole chunks (block-causal when none are given), else the dense
        block-causal mask."""
        F = self.cfg.chunk_frames
        tokens_per_chunk = F * h * w
        input_chunks, cached_chunks = T // F, cached_frames // F

        def valid(ranges: Sequence[tuple[int, int]], key_chunks: int) -> bool:  # one non-empty range per input chunk
            return T % F == 0 and len(ranges) == input_chunks and all(0 <= s < e <= key_chunks for s, e in ranges)

        if key_ranges is not None and not valid(key_ranges, cached_chunks + input_chunks):
            raise ValueError(f"key_ranges {list(key_ranges)} for {input_chunks} input chunks over "
                             f"{cached_chunks + input_chunks} key chunks (one non-empty range each)")
        if uncached_rows is not None and not (0 < uncached_rows.rows < x.shape[0] and
                                              valid(uncached_rows.ranges, input_chunks)):
            raise ValueError(f"uncached_rows {uncached_rows} for {x.shape[0]} rows of {input_chunks} input chunks "
                             "(fewer rows than the batch, one non-empty range of whole input chunks each)")
        if T % F:  # a partial last chunk: the dense block-causal mask
            rope, mask = self.positions(cached_frames + T, T, h, w, x.device, x.dtype)
            return rope, SelfAttentionMasks(mask)
        if key_ranges is None:  # block-causal: chunk i sees every cached chunk and the input up to i
            key_ranges = [(0, cached_chunks + i + 1) for i in range(input_chunks)]
        rope, _ = self.positions(cached_frames + T, 0, h, w, x.device, x.dtype)  # query_frames 0: no mask
        ranges = tuple((s * tokens_per_chunk, e * tokens_per_chunk) for s, e in key_ranges)
        if uncached_rows is None:
            return rope, SelfAttentionMasks(None, ranges)
        free = tuple((s * tokens_per_chunk, e * tokens_per_chunk) for s, e in uncached_rows.ranges)
        return rope, SelfAttentionMasks(None, ranges, uncached_rows.rows, free)

    def forward(self, latents: Tensor, t: Tensor, context: Tensor, context_mask: Tensor | None = None,
                kv_cache: ChunkKVCache | None = None, step_size: Tensor | None = None,
                no_text: Tensor | None = None, text_kv: TextKV | None = None,
                key_ranges: Sequence[tuple[int, int]] | None = None,
                uncached_rows: UncachedRows | None = None) -> Tensor:
        """Velocity of ``latents`` (B, C, T, H, W) at noise levels ``t`` (B, T), one per latent frame.

        ``t`` is constant within each chunk (per-chunk timestep conditioning); clean prefix frames inside the
        first chunk have t = 1. With ``kv_cache``, the input continues the cached clean chunks and must start
        at a chunk boundary. Shortcut models (``cfg.step_conditioning``) also take the step size
        ``step_size`` (B, T) that the prediction is for; None means d = 0, the instantaneous velocity.

        ``context`` is (B, L, Dc), one text for every chunk, or (B, K, L, Dc), one per chunk of the input
        (T = K * chunk_frames): MAGI-1 gives each chunk its own caption (special tokens such as the number
        of chunks still to come, null text for clean chunks); a chunk's tokens then attend to its text only.
        ``text_kv``: ``self.text_kv(context)`` computed beforehand (a sampler does it once per text); the same
        result as without it.

        ``no_text`` (B,) bool: the rows without text, MAGI-1's ``caption_dropout_mask``. In training mode their
        text is the learned null text (caption dropout, here so that sharded weights are gathered); in every
        mode, with ``cfg.adaln_text == "null_token"``, their adaLN text term is the no-text token.

        ``key_ranges``: instead of block-causal attention, input chunk i attends to exactly the chunks
        [start_i, end_i) of the key sequence (the cached chunks, then the input chunks), one (start, end) per
        input chunk (MAGI-1's ``noise2clean_kvrange`` / ``clean_chunk_kvrange``, see ``magi.sampling.magi1``).
        ``uncached_rows``: the last rows attend among the input chunks only, outside the cache (see
        ``UncachedRows``). Whole chunks attend per chunk over their key slice; no dense mask is built.
        """
        cfg, p = self.cfg, self.cfg.patch_size
        B, C, T, H, W = latents.shape
        h, w = H // p, W // p
        if context_mask is None:
            context_mask = torch.ones(context.shape[:-1], dtype=torch.bool, device=context.device)
        if context.dim() == 3:  # one text for all chunks: K = 1
            context, context_mask = context[:, None], context_mask[:, None]
        K, L = context.shape[1], context.shape[2]  # context (B, K, L, Dc), mask (B, K, L)
        if K > 1 and T != K * cfg.chunk_frames:
            raise ValueError(f"{K} per-chunk texts for {T} latent frames (chunks of {cfg.chunk_frames})")
        dropout = self.training and no_text is not None
        if text_kv is not None and (dropout or (text_kv.batch, text_kv.length) != (B, K * L)):
            raise ValueError(f"text_kv of {text_kv.batch} texts of {text_kv.length} tokens given for {B} of "
                             f"{K * L}" + (" with caption dropout (no_text in training)" if dropout else ""))
        if dropout:
            null, null_mask = self.unconditional_context(B, L)
            context = torch.where(no_text[:, None, None, None], null[:, None].to(context.dtype), context)
            context_mask = torch.where(no_text[:, None, None], null_mask[:, None], context_mask)
        latents = latents * cfg.x_rescale_factor
        if cfg.half_channel_vae:  # (B, C/2, ...) latents fill both halves of the input channels
            latents = torch.cat([latents, latents], dim=1)
        x = rearrange(latents, "b c t (h p) (w q) -> b (t h w) (c p q)", p=p, q=p)
        dtype = self.block_dtype()  # the embedders may be kept in float32
        x = own_dtype(self.patch_embed, x).to(dtype)  # (B, N, D)
        cond = self.conditioning(t, context, context_mask, no_text, step_size).to(dtype)  # (B, T, Dcond)
        # (B, K * L, D) embedded text, projected in each block (inside its forward: sharded weights are gathered
        # there), or each block's keys and values computed beforehand
        if text_kv is None:
            texts = [own_dtype(self.context_embed, context).to(dtype).flatten(1, 2)] * len(self.blocks)
            cross_mask = text_padding_mask(context_mask.flatten(1), x.dtype)  # (B, 1, 1, K * L) or None
        else:
            texts, cross_mask = text_kv.layers, text_kv.mask
        text_chunks = TextChunks(K, x.shape[1] // K) if K > 1 else None  # token of chunk k -> text k
        cached_frames = kv_cache.num_chunks * cfg.chunk_frames if kv_cache is not None else 0
        tokens_per_chunk = cfg.chunk_frames * h * w
        rope, masks = self.attention_layout(cached_frames, T, h, w, x, key_ranges, uncached_rows)
        layers = [None] * len(self.blocks) if kv_cache is None else kv_cache.layers
        for block, text, layer_kv in zip(self.blocks, texts, layers, strict=True):
            x = block(x, cond, text, cross_mask, rope, masks, layer_kv, tokens_per_chunk, text_chunks)

        x = own_dtype(self.final_proj, self.final_norm(x))  # (B, N, C * p * p)
        x = rearrange(x, "b (t h w) (c p q) -> b c t (h p) (w q)", t=T, h=h, w=w, p=p, q=p)
        if cfg.half_channel_vae:
            x = x[:, :cfg.latent_channels]  # the velocity is the first half
        return x if cfg.x_rescale_factor == 1.0 else x / cfg.x_rescale_factor  # back to latent units
