"""``magi data``: write the procedural physics clip dataset (train / dev / test splits)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="simulate and render the physics clip dataset")
    p.add_argument("--out", required=True, help="dataset root (one folder per split)")
    p.add_argument("--train", type=int, default=3000, help="clips in the train split")
    p.add_argument("--dev", type=int, default=64)
    p.add_argument("--test", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=72, help="frames per clip (8 fps)")
    p.add_argument("--size", type=int, default=64, help="frame width and height in pixels")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magi.world.dataset import write_split

    root = Path(args.out)
    for split in ("train", "dev", "test"):
        count = getattr(args, split)
        if count:
            write_split(root, split, count, seed=args.seed, frames=args.frames, size=args.size,
                        workers=args.workers)
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    (root / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    print(f"wrote {root} ({args.train} train, {args.dev} dev, {args.test} test clips)")
    return 0
