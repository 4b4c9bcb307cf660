"""The ``magi`` command: parse, dispatch to one library call, turn bad input into one clear line."""

from __future__ import annotations

import argparse
import importlib
import sys

from magi.errors import InputError

# Each module in magi.commands exposes ``register(subparsers)`` that adds its subcommand and sets ``func``.
COMMANDS = ("generate", "config", "plan", "data", "train", "distill", "eval", "quantize", "convert")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magi", description="MAGI-1 autoregressive video generation")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"magi.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"magi.commands.{name}":
                raise
            continue  # command not built yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InputError, ValueError, FileNotFoundError) as error:
        print(f"magi {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"magi {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
