"""Progressive growing: a deeper DiT that starts as exactly a shallower one.

Block i of the shallower DiT becomes block ``i * k`` of the one ``k`` times deeper, and each of the ``k - 1``
blocks after it starts as a copy of block i with zero post-norm gains and biases (``attn_post_norm``,
``ffn_post_norm``): such a block adds nothing to the residual stream, so the deeper model computes exactly what
the shallower one did, and training grows the copies into refinements of the computation they were copied from.
"""

from __future__ import annotations

from torch import Tensor

POST_NORM = ("attn_post_norm.weight", "attn_post_norm.bias", "ffn_post_norm.weight", "ffn_post_norm.bias")  # zeroed


def block_depth(state: dict[str, Tensor]) -> int:
    """The number of blocks (``blocks.<i>.``) in a DiT state dict."""
    return 1 + max((int(key.split(".")[1]) for key in state if key.startswith("blocks.")), default=-1)


def grown_state(state: dict[str, Tensor], depth: int) -> dict[str, Tensor]:
    """``state`` of a DiT with ``depth / k`` blocks as the state of one with ``depth`` blocks (see above)."""
    old = block_depth(state)
    if old == 0 or depth % old or depth < old:
        raise ValueError(f"a DiT of {old} blocks grows only to a whole multiple of them, not to {depth}")
    stride = depth // old
    grown = {key: value.clone() for key, value in state.items() if not key.startswith("blocks.")}
    for key, value in state.items():
        if not key.startswith("blocks."):
            continue
        _, index, rest = key.split(".", 2)
        for copy in range(stride):
            new = value.clone()
            if copy > 0 and rest in POST_NORM:
                new.zero_()
            grown[f"blocks.{int(index) * stride + copy}.{rest}"] = new
    return grown
