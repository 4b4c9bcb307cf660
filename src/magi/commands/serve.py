"""``magi serve``: the local web page and HTTP API (magi.serve) over one loaded model, on loopback."""

from __future__ import annotations

import argparse

from magi.commands import add_placement_flags


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="a local web page (and HTTP API) to generate, stream and extend videos")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--preset", help="named configuration (default: the shipped model)")
    p.add_argument("--checkpoint", help="checkpoint directory, or builtin:<name>")
    p.add_argument("--steps", type=int, help="denoising steps per chunk")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--queue", type=int, default=4, help="jobs that may wait (more are refused with 429)")
    p.add_argument("--jobs_dir", help="where the jobs' videos go (default: a temporary folder, removed on exit)")
    add_placement_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile
    import time
    from pathlib import Path

    from magi.api import Magi
    from magi.commands.generate import resolve_config
    from magi.errors import InputError
    from magi.serve import Studio, serve

    if not 1 <= args.queue <= 1000:
        raise InputError(f"--queue {args.queue} is out of range: use 1 .. 1000")
    for name in ("cfg", "height", "width"):
        setattr(args, name, None)
    cfg = resolve_config(args)
    root = Path(args.jobs_dir) if args.jobs_dir else Path(tempfile.mkdtemp(prefix="magi-serve-"))
    studio = Studio(Magi(cfg), root, max_queue=args.queue)
    try:
        server = serve(studio, args.host, args.port)
    except OSError as error:
        raise InputError(f"cannot listen on {args.host}:{args.port} ({error.strerror})") from None
    print(f"magi serve: {cfg.name} on http://{args.host}:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.shutdown()
        if not args.jobs_dir:
            studio.close()
