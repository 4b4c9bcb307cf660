"""One attention entry point and the block-causal mask.

Block-causal attention is what makes MAGI-1 autoregressive: tokens are grouped into chunks of
``chunk_frames`` latent frames; a token of chunk i may attend to every token of chunks j <= i (its own
chunk bidirectionally, earlier chunks fully) and to nothing later. With ``window`` set, chunk i sees only
chunks i - window + 1 .. i, which bounds memory when generating arbitrarily long videos.

    keys ->   c0 c0 c1 c1 c2 c2
    q c0      1  1  0  0  0  0
    q c1      1  1  1  1  0  0
    q c2      1  1  1  1  1  1
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def block_causal_mask(query_chunks: Tensor, key_chunks: Tensor, window: int | None = None) -> Tensor:
    """Boolean (Nq, Nk) mask, True where attention is allowed, from per-token chunk indices."""
    q = query_chunks[:, None]
    k = key_chunks[None, :]
    allowed = k <= q
    if window is not None:
        allowed = allowed & (q - k < window)
    return allowed


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention with grouped K/V heads.

    q: (B, H, Nq, Dh); k, v: (B, Hkv, Nk, Dh) with H % Hkv == 0; mask: (Nq, Nk) or (B, 1, Nq, Nk), bool
    (True = attend) or additive in q's dtype (see ``additive_mask``); pass None rather than a mask that
    hides nothing: SDPA's fastest path (see ``full_mask_to_none``).
    Returns (B, H, Nq, Dh).
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=k.shape[1] != q.shape[1])


def full_mask_to_none(mask: Tensor) -> Tensor | None:
    """None when ``mask`` hides nothing. Checked once per forward, not in every layer: the check reads the
    whole mask and waits for it."""
    return None if bool(mask.all()) else mask


def additive_mask(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """0 where ``allowed``, -inf elsewhere: what SDPA adds to the scores (it converts a bool mask to this
    in every call). Every query must be allowed some key."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


def chunk_index_per_token(num_frames: int, tokens_per_frame: int, chunk_frames: int,
                          device: torch.device | None = None) -> Tensor:
    """(num_frames * tokens_per_frame,) chunk index of each token laid out in (t, h, w) order."""
    frame_chunk = torch.arange(num_frames, device=device) // chunk_frames
    return frame_chunk.repeat_interleave(tokens_per_frame)
