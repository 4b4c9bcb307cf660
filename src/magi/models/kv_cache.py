"""KV cache of clean chunks for autoregressive generation.

A chunk that is fully denoised never changes again, so its keys and values are computed once (with
t = 1, "clean") and reused by every later chunk. The sampler decides *when* a chunk is clean: it calls
``admit(n)`` before a forward pass whose first ``n`` input chunks are clean; every attention layer then
stores their K/V while it runs (through its own ``LayerKV``), and ``commit()`` afterwards makes them
visible and drops the oldest chunks beyond ``max_chunks`` (MAGI-1's KV range), so memory stays bounded for
any video length.

Keys are stored *before* the rotary embedding; positions are re-based to the start of the visible
window at each forward, so generation far past the training length never sees unseen positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(eq=False)
class LayerKV:
    """One attention layer's cached keys and values, one (keys, values) pair (B, Hkv, tokens, Dh) per stored
    chunk, and the cache whose chunk counts they follow. A layer writes only its own chunks and reads the
    cache's counts (set by ``admit`` and ``commit``, never by a layer): blocks need no index into the cache (so
    every block can run one compiled graph). Chunk by chunk, a store copies only the new chunks and a drop
    copies nothing, and host memory (pinned blocks, reused as chunks come and go) stays at the kept chunks."""

    cache: ChunkKVCache = field(repr=False)
    chunks: list[tuple[Tensor, Tensor]] = field(default_factory=list)

    @property
    def keys(self) -> Tensor | None:
        return torch.cat([k for k, _ in self.chunks], dim=2) if self.chunks else None  # (B, Hkv, Nc, Dh)

    @property
    def values(self) -> Tensor | None:
        return torch.cat([v for _, v in self.chunks], dim=2) if self.chunks else None

    def extend(self, k: Tensor, v: Tensor, tokens_per_chunk: int) -> tuple[Tensor, Tensor]:
        """Return cached + new keys/values; stage the pending clean chunks for storage."""
        cache = self.cache  # read only: the cache's chunk counts say what is visible and what to store
        visible = self.chunks[: cache.num_chunks]
        if visible:
            reps = k.shape[0] // visible[0][0].shape[0]  # > 1: one cache read by every branch (writer_rows)
            k = self._with_cached([key for key, _ in visible], k, reps)
            v = self._with_cached([value for _, value in visible], v, reps)
        if cache.pending_chunks:  # copies: the chunks in flight behind them are not kept alive
            rows = slice(None) if cache.writer_rows is None else slice(*cache.writer_rows)
            starts = range(len(visible) * tokens_per_chunk, (len(visible) + cache.pending_chunks) * tokens_per_chunk,
                           tokens_per_chunk)
            self.chunks = visible + [tuple(cache.store(t[rows, :, s:s + tokens_per_chunk]) for t in (k, v))
                                     for s in starts]
        return k, v

    @staticmethod
    def _with_cached(cached: list[Tensor], new: Tensor, reps: int) -> Tensor:
        cached = [c.to(new.device, non_blocking=True) for c in cached]
        if reps > 1:
            cached = [torch.cat(cached, dim=2).repeat(reps, 1, 1, 1)]
        return torch.cat([*cached, new], dim=2)  # (B, Hkv, Nc + N, Dh)


@dataclass(eq=False)
class ChunkKVCache:
    num_layers: int
    max_chunks: int
    num_chunks: int = 0  # clean chunks visible to attention
    pending_chunks: int = 0  # leading input chunks of the next forward to store
    # None: every row of the batch keeps its own K/V. (start, end): only those rows' K/V are stored, and
    # every group of end - start rows reads them (MAGI-1: the null-text branch fills the one cache that the
    # text branch reads too)
    writer_rows: tuple[int, int] | None = None
    offload: bool = False  # keep the K/V in host memory (pinned when the model is on a GPU); each layer copies
    # its visible chunks to the device as it runs (MAGI-1's kv_offload)
    layers: list[LayerKV] = field(default_factory=list)  # one per attention layer, in order

    def __post_init__(self) -> None:
        if self.max_chunks < 1:
            raise ValueError(f"max_chunks={self.max_chunks} must be >= 1")
        self.reset()

    def admit(self, num_chunks: int) -> None:
        """Declare that the first ``num_chunks`` input chunks of the next forward are clean: store them."""
        self.pending_chunks = num_chunks

    def store(self, t: Tensor) -> Tensor:
        """A contiguous copy of ``t`` where the cache keeps its tensors."""
        if not self.offload or t.device.type == "cpu":
            return t.clone(memory_format=torch.contiguous_format)  # a copy even where the slice is contiguous
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=t.device.type == "cuda")
        return host.copy_(t)

    def commit(self) -> None:
        """Make the staged chunks visible and keep only the newest ``max_chunks``."""
        self.num_chunks += self.pending_chunks
        self.pending_chunks = 0
        drop = max(0, self.num_chunks - self.max_chunks)
        if drop:
            for layer in self.layers:
                layer.chunks = layer.chunks[drop:]  # the oldest
            self.num_chunks -= drop

    def reset(self) -> None:
        self.num_chunks = 0
        self.pending_chunks = 0
        self.layers = [LayerKV(self) for _ in range(self.num_layers)]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.layers for pair in layer.chunks for t in pair)
