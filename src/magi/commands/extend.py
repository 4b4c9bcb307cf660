"""``magi extend VIDEO``: continue any video (an earlier output, or any clip) by more frames; the output is the
whole video, the input first. The model conditions on the input's last chunks that it attends to."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from magi.commands import add_placement_flags
from magi.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("extend", help="continue a video (the output is the input followed by new frames)")
    p.add_argument("video", help="the video to continue (.mp4, or .npz frames)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--chunk_prompt", action="append", default=[], metavar="N:PROMPT",
                   help="PROMPT from new chunk N on (repeatable)")
    p.add_argument("--num_frames", type=int, help="new frames (default: the config's num_frames)")
    p.add_argument("--output_path", required=True, help="where to write the .mp4 (input + new frames)")
    p.add_argument("--preset", help="named configuration (default: the shipped model)")
    p.add_argument("--checkpoint", help="checkpoint directory, or builtin:<name>")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="denoising steps per chunk")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    add_placement_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magi.commands.generate import check_flags, parse_chunk_prompts, resolve_config

    for name in ("cfg", "height", "width", "image_path"):  # generate's flags that extend does not take
        setattr(args, name, None)
    args.mode, args.prefix_video_path = "v2v", args.video
    check_flags(args)
    chunk_prompts = parse_chunk_prompts(args.chunk_prompt)
    cfg = resolve_config(args)

    import numpy as np

    from magi.api import Magi
    from magi.io.atomic import atomic_write_text
    from magi.io.video import stream_video

    magi = Magi(cfg)
    frames = magi.load_video(args.video, whole=True)
    if frames.shape[0] < magi.frames_per_chunk:
        raise InputError(f"'{args.video}' has {frames.shape[0]} frames; extending needs at least one chunk "
                         f"({magi.frames_per_chunk} frames)")
    tail = frames[-magi.context_frames():]
    prompt = {0: args.prompt, **dict(chunk_prompts)}
    new = magi.stream(prompt, video=tail, num_frames=args.num_frames, seed=args.seed, include_prefix=False)
    output = Path(args.output_path)
    count = stream_video(output, (batch for batches in ([frames], new) for batch in batches), fps=magi.fps)
    record = {"config": cfg.to_dict(), "request": {k: v for k, v in vars(args).items() if k != "func"},
              "input_frames": int(frames.shape[0]), "conditioning_frames": int(tail.shape[0])}
    atomic_write_text(output.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    print(f"wrote {output}: {frames.shape[0]} frames of '{args.video}' and {count - frames.shape[0]} new "
          f"({np.round(count / magi.fps, 1)} s)")
    return 0
