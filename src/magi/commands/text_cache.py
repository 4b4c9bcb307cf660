"""``magi text-cache``: the text contexts of a fixed set of prompts, for a machine without the text encoder.

Train or generate there with ``--set text.kind=cache --set text.path=FILE`` (``magi.models.text``); a prompt that is
not in the file is refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from magi.config import TextConfig
from magi.errors import InputError

SPLITS = ("train", "dev", "test")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("text-cache", help="encode a fixed set of prompts once, for a machine without the "
                                                 "text encoder")
    p.add_argument("--out", type=Path, required=True, help="the file to write (.safetensors)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", help="whose text encoder (default: the default preset)")
    source.add_argument("--checkpoint", help="checkpoint directory or builtin:<name> whose text encoder")
    p.add_argument("--data", type=Path, help="a `magi data` root: the captions of all its splits")
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    p.add_argument("--prompts-file", type=Path, help="a text file, one prompt per line")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.set_defaults(func=run)


def write(cfg: TextConfig, prompts: list[str], path: Path) -> int:
    """Encode the distinct ``prompts`` with the encoder of ``cfg`` and save their contexts (float16, padded to
    ``cfg.max_length``) for ``magi.models.text.CachedTextEncoder``; returns how many were written."""
    import torch

    from magi.io.weights import save_weights
    from magi.training.runs import encode_captions

    unique = sorted(set(prompts))
    context, mask = encode_captions(cfg, unique)  # (N, max_length, dim), (N, max_length)
    save_weights(path, {"context": context.half(), "mask": mask.to(torch.uint8),
                        "prompts": torch.tensor(list(json.dumps(unique).encode()), dtype=torch.uint8)})
    return len(unique)


def run(args: argparse.Namespace) -> int:
    from magi.api import resolve_run

    prompts = list(args.prompt)
    if args.prompts_file is not None:
        if not args.prompts_file.is_file():
            raise InputError(f"prompts file '{args.prompts_file}' not found")
        prompts += [line for line in args.prompts_file.read_text().splitlines() if line.strip()]
    if args.data is not None:
        files = [args.data / split / "captions.json" for split in SPLITS if (args.data / split).is_dir()]
        if not files:
            raise InputError(f"'{args.data}' has no train, dev or test split (write one with magi data --out)")
        for file in files:
            prompts += json.loads(file.read_text())
    if not prompts:
        raise InputError("no prompts: give --data, --prompt or --prompts-file")
    cfg = resolve_run(args.preset, args.checkpoint, None, args.set)
    if cfg.text.kind == "cache":
        raise InputError("the text encoder to cache from is itself a cache (text.kind=cache)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = write(cfg.text, prompts, args.out)
    print(f"wrote the contexts of {count} prompts ({cfg.text.kind}, {cfg.text.dim} wide) to {args.out}")
    return 0
