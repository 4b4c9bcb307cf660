"""``magi plan``: per-device memory and parallel layout of generation, from the config alone."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plan", help="memory per device and parallel layout for a preset")
    p.add_argument("--preset", default="magi-24b")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--envelopes", action="store_true", help="also check the published memory targets")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magi.config import apply_overrides
    from magi.plan import envelope_lines, format_plan, plan
    from magi.presets import get_preset

    cfg = apply_overrides(get_preset(args.preset), args.set)
    print(format_plan(cfg, plan(cfg, args.gpus)))
    if args.envelopes:
        print("published targets:")
        for line in envelope_lines():
            print(f"  {line}")
    return 0
