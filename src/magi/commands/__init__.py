"""One module per ``magi`` subcommand, each with ``register(subparsers)``."""

from __future__ import annotations

import argparse

from magi.devices import DEVICE_HELP


def add_placement_flags(parser: argparse.ArgumentParser, dtype: bool = True) -> None:
    """--device (and --dtype): where the DiT runs and in what precision (config keys device, dtype)."""
    parser.add_argument("--device", help=f"where the model runs: {DEVICE_HELP} (default: the config's, auto)")
    if dtype:
        parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                            help="the DiT's precision (default: the config's)")


def placement_overrides(args: argparse.Namespace) -> list[str]:
    """The --device / --dtype flags as config overrides, checked (one clear line for a device not here)."""
    overrides = []
    if getattr(args, "device", None):
        from magi.devices import resolve_device

        resolve_device(args.device)
        overrides.append(f"device={args.device}")
    if getattr(args, "dtype", None):
        overrides.append(f"dtype={args.dtype}")
    return overrides
