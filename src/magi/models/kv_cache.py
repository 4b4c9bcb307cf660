"""KV cache of clean chunks for autoregressive generation.

A chunk that is fully denoised never changes again, so its keys and values are computed once (with
t = 1, "clean") and reused by every later chunk. The sampler decides *when* a chunk is clean: it calls
``admit(n)`` before a forward pass whose first ``n`` input chunks are clean; every attention layer then
stores their K/V while it runs, and ``commit()`` afterwards makes them visible and drops the oldest
chunks beyond ``max_chunks`` (MAGI-1's KV range), so memory stays bounded for any video length.

Keys are stored *before* the rotary embedding; positions are re-based to the start of the visible
window at each forward, so generation far past the training length never sees unseen positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class ChunkKVCache:
    num_layers: int
    max_chunks: int
    num_chunks: int = 0  # clean chunks visible to attention
    pending_chunks: int = 0  # leading input chunks of the next forward to store
    keys: list[Tensor | None] = field(default_factory=list)  # per layer (B, Hkv, N, Dh)
    values: list[Tensor | None] = field(default_factory=list)
    tokens_per_chunk: int = 0

    def __post_init__(self) -> None:
        if self.max_chunks < 1:
            raise ValueError(f"max_chunks={self.max_chunks} must be >= 1")
        self.keys = [None] * self.num_layers
        self.values = [None] * self.num_layers

    def admit(self, num_chunks: int) -> None:
        """Declare that the first ``num_chunks`` input chunks of the next forward are clean: store them."""
        self.pending_chunks = num_chunks

    def extend(self, layer: int, k: Tensor, v: Tensor, tokens_per_chunk: int) -> tuple[Tensor, Tensor]:
        """Return cached + new keys/values for this layer; stage the pending clean chunks for storage."""
        self.tokens_per_chunk = tokens_per_chunk
        old_k, old_v = self.keys[layer], self.values[layer]
        visible = self.num_chunks * tokens_per_chunk
        if old_k is not None and old_v is not None:
            full_k = torch.cat([old_k[:, :, :visible], k], dim=2)  # (B, Hkv, Nc + N, Dh)
            full_v = torch.cat([old_v[:, :, :visible], v], dim=2)
        else:
            full_k, full_v = k, v
        if self.pending_chunks:
            stored = visible + self.pending_chunks * tokens_per_chunk
            self.keys[layer] = full_k[:, :, :stored]
            self.values[layer] = full_v[:, :, :stored]
        return full_k, full_v

    def commit(self) -> None:
        """Make the staged chunks visible and keep only the newest ``max_chunks``."""
        self.num_chunks += self.pending_chunks
        self.pending_chunks = 0
        drop = max(0, self.num_chunks - self.max_chunks)
        if drop:
            start = drop * self.tokens_per_chunk
            self.keys = [None if k is None else k[:, :, start:].contiguous() for k in self.keys]
            self.values = [None if v is None else v[:, :, start:].contiguous() for v in self.values]
            self.num_chunks -= drop

    def reset(self) -> None:
        self.num_chunks = 0
        self.pending_chunks = 0
        self.keys = [None] * self.num_layers
        self.values = [None] * self.num_layers

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)
