"""The ``magi`` command: parse, dispatch to one library call, turn bad input into one clear line."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from magi.errors import InputError

# Each module in magi.commands exposes ``register(subparsers)`` that adds its subcommand and sets ``func``.
COMMANDS = ("generate", "extend", "serve", "config", "plan", "data", "train", "distill", "eval", "quantize", "convert",
            "text_cache")


class OneLineParser(argparse.ArgumentParser):
    """Bad flags get one line too (argparse prints its usage first): ``magi generate: error: ...``, exit 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="magi", description="MAGI-1 autoregressive video generation")
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


class Terminated(BaseException):
    """SIGTERM (timeout, docker stop, Slurm) raised in the main thread, so that every ``finally`` runs: outputs
    being written are removed (``io.atomic``), nothing half-written is left."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate) if _in_main_thread() else None
    try:
        return int(args.func(args) or 0)
    except (InputError, ValueError, FileNotFoundError) as error:
        print(f"magi {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"magi {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"magi {args.command}: terminated", file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
