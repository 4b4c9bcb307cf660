"""``magi distill``: shortcut + guidance distillation of a trained model into a few-step student."""

from __future__ import annotations

import argparse
from pathlib import Path

from magi.commands import add_placement_flags
from magi.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("distill", help="distill a checkpoint into a 64/32/16/8-step shortcut model")
    p.add_argument("--teacher", required=True, help="exported checkpoint directory of the teacher")
    p.add_argument("--data", required=True, help="dataset root written by `magi data`")
    p.add_argument("--out", required=True, help="run directory (resumes if it has a checkpoint)")
    p.add_argument("--recipe", default="physics-64", help="training recipe name (presets.TRAINING[(name, 'distill')])")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="train config override")
    p.add_argument("--no_progress", action="store_true")
    add_placement_flags(p)  # --dtype bfloat16: mixed precision, float32 weights
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from magi.config import RunConfig, apply_overrides
    from magi.parallel.data import data_parallelism_from_env
    from magi.presets import TRAINING
    from magi.training.runs import distill_dit

    if not Path(args.data).is_dir():
        raise InputError(f"dataset '{args.data}' not found (create it with `magi data`)")
    if (args.recipe, "distill") not in TRAINING:
        raise InputError(f"no distillation recipe named {args.recipe!r}")
    holder = RunConfig(train=TRAINING[(args.recipe, "distill")]())
    overrides = list(args.set) + ([f"train.steps={args.steps}"] if args.steps is not None else [])
    train_cfg = apply_overrides(holder, overrides).train
    with data_parallelism_from_env(os.environ) as parallel:  # under torchrun: FSDP2 over all processes
        export = distill_dit(Path(args.teacher), Path(args.data), Path(args.out), train_cfg,
                             progress=not args.no_progress, parallel=parallel, device=args.device,
                             dtype=args.dtype)
        if parallel.is_main:
            print(f"student exported to {export} (use: magi generate --checkpoint {export} --steps 8)")
    return 0
