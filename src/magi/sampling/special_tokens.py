"""MAGI-1's special conditioning tokens: learned vectors in text-embedding space put in front of a caption.

The published models were trained with them, and their run scripts switch two on (``PAD_HQ``,
``PAD_DURATION``). Each key in ``SamplerConfig.special_tokens`` is put in front of the text in turn, so
the last key ends up first: ``("HQ", "DURATION")`` gives every generated chunk the text

    [DURATION_n, HQ, caption tokens ...][:caption_max_length]      n = chunks still to come after it, 1..8

(clean chunks get the null text). ``SamplerConfig.negative_special_tokens`` (the reference's ``NEG_PROMPT``:
CAPTION, LOGO, TRANS, BORDERNESS) go in front of the null text of the unconditional guidance branches,
steering away from captions, logos, transitions and borders.

The vectors are the checkpoint's ``special_tokens.safetensors`` (name -> (1, Dc));
``magi convert --special_tokens`` writes it from the reference's ``example/assets/special_tokens.npz``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from magi.errors import InputError
from magi.io.weights import read_safetensors

MAX_DURATION = 8
# rows of the reference's ``other_tokens`` array (rows 5 and 6 are unused there)
REFERENCE_ROWS = {"TRANS": 0, "HQ": 1, "STATIC_FIRST_FRAMES": 2, "DYNAMIC_FIRST_FRAMES": 3, "BORDERNESS": 4,
                  **{f"DURATION_{n}": 6 + n for n in range(1, MAX_DURATION + 1)},
                  "THREE_D_MODEL": 15, "TWO_D_ANIME": 16}
NAMES = ("CAPTION", "LOGO", *REFERENCE_ROWS)
NEGATIVE = ("CAPTION", "LOGO", "TRANS", "BORDERNESS")
FILE = "special_tokens.safetensors"


def from_reference_npz(path: str | Path) -> dict[str, Tensor]:
    """The reference's special_tokens.npz as name -> (1, Dc) float32 tensors (no pickles are loaded)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            caption, logo, other = arrays["caption_token"], arrays["logo_token"], arrays["other_tokens"]
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"'{path}' is not the reference's special_tokens.npz ({error})") from None
    table = {"CAPTION": caption, "LOGO": logo, **{name: other[row:row + 1] for name, row in REFERENCE_ROWS.items()}}
    return {name: torch.from_numpy(np.asarray(v, dtype=np.float32).reshape(-1, v.shape[-1])).contiguous()
            for name, v in table.items()}


def load_special_tokens(folder: Path, keys: tuple[str, ...]) -> dict[str, Tensor]:
    """The vectors ``keys`` need, from ``folder/special_tokens.safetensors``; one clear line if absent."""
    path = Path(folder) / FILE
    if not path.is_file():
        raise InputError(f"the config uses special tokens {list(keys)} but '{path}' does not exist (write it "
                         f"with: magi convert --special_tokens example/assets/special_tokens.npz --out {folder})")
    table = read_safetensors(path)
    needed = [f"DURATION_{n}" for n in range(1, MAX_DURATION + 1)] if "DURATION" in keys else []
    missing = sorted({*needed, *(k for k in keys if k != "DURATION")} - set(table))
    if missing:
        raise InputError(f"'{path}' lacks special tokens {missing}")
    return table


def prepend(token: Tensor, context: Tensor, mask: Tensor, max_length: int) -> tuple[Tensor, Tensor]:
    """Put ``token`` (n, Dc) in front of (B, L, Dc) ``context`` and its mask; keep ``max_length`` tokens.
    The token is rounded to float16 first, as the official prompt processing holds its tokens."""
    B = context.shape[0]
    context = torch.cat([token.half().to(context)[None].expand(B, -1, -1), context], dim=1)[:, :max_length]
    mask = torch.cat([mask.new_ones(B, token.shape[0]), mask], dim=1)[:, :max_length]
    return context, mask


def chunk_texts(context: Tensor, mask: Tensor, num_chunks: int, table: dict[str, Tensor],
                keys: tuple[str, ...], max_length: int) -> tuple[Tensor, Tensor]:
    """(B, L, Dc) caption, or (B, num_chunks, L, Dc) one per chunk -> (B, num_chunks, L', Dc) per generated
    chunk, with ``keys`` put in front."""
    texts, masks = [], []
    for chunk in range(num_chunks):
        ctx, ctx_mask = (context[:, chunk], mask[:, chunk]) if context.dim() == 4 else (context, mask)
        for key in keys:
            name = f"DURATION_{min(num_chunks - chunk - 1, MAX_DURATION - 1) + 1}" if key == "DURATION" else key
            ctx, ctx_mask = prepend(table[name], ctx, ctx_mask, max_length)
        texts.append(ctx)
        masks.append(ctx_mask)
    return torch.stack(texts, 1), torch.stack(masks, 1)


def negative_text(null: Tensor, null_mask: Tensor, table: dict[str, Tensor], keys: tuple[str, ...],
                  max_length: int) -> tuple[Tensor, Tensor]:
    """The null text (B, L, Dc) with ``keys`` in front; the mask keeps its length (as in the reference,
    the first tokens are attended, prepended ones included)."""
    for key in keys:
        null = prepend(table[key], null, null_mask, max_length)[0]
    return null, null_mask
