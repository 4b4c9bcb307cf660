"""Ulysses context (sequence) parallelism for the DiT, applied as a module swap.

Each of P ranks holds N / P consecutive tokens of the residual stream through the whole block stack:
every per-token operation (norms, linears, FFN, adaLN gates, cross-attention on the text) runs on the
local tokens only. Self-attention needs all tokens, so around it an all-to-all trades the token shard for
a head shard (DeepSpeed-Ulysses):

    q, k, v  (B, H, N/P, Dh) on rank r   --all_to_all-->   (B, H/P, N, Dh): heads r*H/P .. (r+1)*H/P - 1
    attention on the full sequence for those heads, then the inverse all_to_all back to (B, H, N/P, Dh)

The KV cache of clean chunks is sharded the same way: each rank's ``ChunkKVCache`` stores all tokens of
its own K/V heads (the cache code is unchanged; it sees the head-sharded tensors). The first block
scatters the tokens, the last gathers them, and the network file knows nothing of any of this:
``parallelize_context(dit, group)`` swaps each ``Block`` for a ``ContextParallelBlock`` that shares its
parameters. Requirements: N, num_heads and num_kv_heads divisible by P.

The VAE is split across ranks the same way (``parallelize_vae``): inside each segment of latent frames
every rank encodes / decodes its N / P tokens and trades them for heads around the attention; the pixels
are gathered after the last block. Each rank's activation memory is 1 / P of the segment's.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from magi.models.attention import attend
from magi.models.dit import Block, DiT, SelfAttentionMasks, TextChunks
from magi.models.kv_cache import LayerKV
from magi.models.layers import apply_rope, softcap
from magi.models.vae import Block as VAEBlock
from magi.models.vae import TransformerVAE


def _all_to_all(x: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    """x: (P, ...) -> (P, ...) with piece j sent to rank j and piece i received from rank i."""
    x = x.contiguous()
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    dist.all_to_all_single(out, x, group=group)
    return out


def tokens_to_heads(x: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    """(B, H, N/P, Dh) token shard -> (B, H/P, N, Dh) head shard."""
    P = dist.get_world_size(group)
    x = rearrange(x, "b (p h) n d -> p b h n d", p=P)
    return rearrange(_all_to_all(x, group), "p b h n d -> b h (p n) d")


def heads_to_tokens(x: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    """(B, H/P, N, Dh) head shard -> (B, H, N/P, Dh) token shard."""
    P = dist.get_world_size(group)
    x = rearrange(x, "b h (p n) d -> p b h n d", p=P)
    return rearrange(_all_to_all(x, group), "p b h n d -> b (p h) n d")


def gather_tokens(x: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    """(B, N/P, D) on every rank -> (B, N, D) on every rank."""
    x = x.contiguous()
    pieces = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(pieces, x, group=group)
    return torch.cat(pieces, dim=1)


class ContextParallelBlock(nn.Module):
    """A DiT ``Block`` run on this rank's token shard; same parameters (``self.block``), same result."""

    def __init__(self, block: Block, group: dist.ProcessGroup | None, first: bool, last: bool):
        super().__init__()
        self.block, self.group, self.first, self.last = block, group, first, last

    def text_keys_values(self, text: Tensor) -> tuple[Tensor, Tensor]:
        return self.block.text_keys_values(text)  # every rank holds all text tokens

    def forward(self, x: Tensor, cond: Tensor, text: Tensor | tuple[Tensor, Tensor], cross_mask: Tensor | None,
                rope: tuple[Tensor, Tensor], masks: SelfAttentionMasks, layer_kv: LayerKV | None,
                tokens_per_chunk: int, text_chunks: TextChunks | None = None) -> Tensor:
        blk, P, rank = self.block, dist.get_world_size(self.group), dist.get_rank(self.group)
        if self.first:
            if x.shape[1] % P:
                raise ValueError(f"context parallelism needs the token count {x.shape[1]} divisible by {P}")
            x = x.chunk(P, dim=1)[rank]  # (B, N/P, D)
        n_local, frames = x.shape[1], cond.shape[1]
        tokens_per_frame = n_local * P // frames
        frame = (torch.arange(n_local, device=x.device) + rank * n_local) // tokens_per_frame
        gate_a, gate_f = softcap(blk.modulation(F.silu(cond)), blk.cap).chunk(2, dim=-1)  # (B, T, D)
        gate_a, gate_f = gate_a[:, frame], gate_f[:, frame]  # (B, N/P, D) one gate per local token
        if text_chunks is not None:  # per-chunk texts: this rank's tokens start at rank * n_local
            text_chunks = dataclasses.replace(text_chunks, offset=rank * n_local)
        h = blk.attn_norm(x)
        a = torch.cat([self.self_attention(h, rope, masks, layer_kv, tokens_per_chunk),
                       blk.cross_attention(h, text, cross_mask, text_chunks)], dim=-1)
        x = x + blk.attn_post_norm(blk.attn_out(a) * gate_a)
        x = x + blk.ffn_post_norm(blk.ffn(blk.ffn_norm(x)) * gate_f)
        return gather_tokens(x, self.group) if self.last else x

    def self_attention(self, h: Tensor, rope: tuple[Tensor, Tensor], masks: SelfAttentionMasks,
                       layer_kv: LayerKV | None, tokens_per_chunk: int) -> Tensor:
        blk, g = self.block, self.group
        H, Hkv, Dh = blk.num_heads, blk.num_kv_heads, blk.head_dim
        q, k, v = blk.qkv(h).split([H * Dh, Hkv * Dh, Hkv * Dh], dim=-1)
        q = rearrange(blk.q_norm(q.unflatten(-1, (H, Dh))), "b n h d -> b h n d")
        k = rearrange(blk.k_norm(k.unflatten(-1, (Hkv, Dh))), "b n h d -> b h n d")
        v = rearrange(v, "b n (h d) -> b h n d", h=Hkv)
        q, k, v = tokens_to_heads(q, g), tokens_to_heads(k, g), tokens_to_heads(v, g)  # (B, H/P, N, Dh)
        # the cache holds this rank's heads of all tokens
        out = heads_to_tokens(blk.attend_cached(q, k, v, rope, masks, layer_kv, tokens_per_chunk), g)  # (B, H, N/P, Dh)
        return rearrange(out, "b h n d -> b n (h d)")


def parallelize_context(dit: DiT, group: dist.ProcessGroup | None = None) -> DiT:
    """Swap every block of ``dit`` for its context-parallel version over ``group`` (in place)."""
    P = dist.get_world_size(group)
    if P == 1:
        return dit
    cfg = dit.cfg
    if cfg.num_heads % P or cfg.num_kv_heads % P:
        raise ValueError(f"context parallelism over {P} ranks needs num_heads={cfg.num_heads} and "
                         f"num_kv_heads={cfg.num_kv_heads} divisible by {P}")
    depth = len(dit.blocks)
    for i, block in enumerate(list(dit.blocks)):
        dit.blocks[i] = ContextParallelBlock(block, group, first=i == 0, last=i == depth - 1)
    return dit


class ContextParallelVAEBlock(nn.Module):
    """A VAE ``Block`` run on this rank's token shard of a segment; same parameters, same result."""

    def __init__(self, block: VAEBlock, group: dist.ProcessGroup | None, first: bool, last: bool):
        super().__init__()
        self.block, self.group, self.first, self.last = block, group, first, last

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
        blk, g, P = self.block, self.group, dist.get_world_size(self.group)
        if self.first:
            if x.shape[1] % P:
                raise ValueError(f"splitting the VAE over {P} ranks needs the tokens of a segment "
                                 f"({x.shape[1]}) divisible by {P}")
            x = x.chunk(P, dim=1)[dist.get_rank(g)]  # (B, N/P, D)
        q, k, v = rearrange(blk.qkv(blk.attn_norm(x)), "b n (three h d) -> three b h n d", three=3,
                            h=blk.num_heads)  # (B, H, N/P, Dh) each
        q, k, v = (tokens_to_heads(y, g) for y in (blk.q_norm(q), blk.k_norm(k), v))  # (B, H/P, N, Dh)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = heads_to_tokens(attend(q, k, v), g)  # (B, H, N/P, Dh)
        x = x + blk.attn_out(rearrange(out, "b h n d -> b n (h d)"))
        x = x + blk.ffn(blk.ffn_norm(x))
        return gather_tokens(x, g) if self.last else x


def parallelize_vae(vae: TransformerVAE, group: dist.ProcessGroup | None = None) -> TransformerVAE:
    """Split the encoder and the decoder of ``vae`` over the ranks of ``group`` (in place)."""
    P = dist.get_world_size(group)
    if P == 1:
        return vae
    if vae.cfg.num_heads % P:
        raise ValueError(f"splitting the VAE over {P} ranks needs num_heads={vae.cfg.num_heads} divisible by {P}")
    for blocks in (vae.encoder, vae.decoder):
        depth = len(blocks)
        for i, block in enumerate(list(blocks)):
            blocks[i] = ContextParallelVAEBlock(block, group, first=i == 0, last=i == depth - 1)
    return vae
