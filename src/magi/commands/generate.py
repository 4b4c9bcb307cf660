"""``magi generate``: text/image/video to video with a MAGI-1 model (reference flags kept verbatim)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from magi.commands import add_placement_flags, placement_overrides
from magi.config import RunConfig, apply_overrides
from magi.errors import InputError
from magi.presets import DEFAULT_PRESET


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="generate a video (t2v, i2v or v2v)")
    p.add_argument("--mode", choices=["t2v", "i2v", "v2v"], default="t2v")
    p.add_argument("--prompt", required=True, help="the prompt (of every chunk, or of chunk 0 with --chunk_prompt)")
    p.add_argument("--chunk_prompt", action="append", default=[], metavar="N:PROMPT",
                   help="chunk-wise prompting: PROMPT from chunk N on (repeatable)")
    p.add_argument("--image_path", help="conditioning image (i2v)")
    p.add_argument("--prefix_video_path", help="video to continue (v2v)")
    p.add_argument("--output_path", required=True, help="where to write the .mp4")
    p.add_argument("--preset", help=f"named configuration (default: {DEFAULT_PRESET})")
    p.add_argument("--checkpoint", help="checkpoint directory (config.json + safetensors), or builtin:<name>")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_frames", type=int, help="frames to generate after the conditioning")
    p.add_argument("--height", type=int, help="video height in pixels (a multiple of 16; default: the config's)")
    p.add_argument("--width", type=int, help="video width in pixels (a multiple of 16; default: the config's)")
    p.add_argument("--steps", type=int, help="denoising steps per chunk")
    p.add_argument("--cfg", type=float, help="text guidance scale (all noise levels)")
    p.add_argument("--no_prefix_in_output", action="store_true", help="write only the generated frames")
    p.add_argument("--no_kv_cache", action="store_true", help="recompute the clean context at every step")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    add_placement_flags(p)
    p.set_defaults(func=run)


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """``api.resolve_run`` (the resolution every command shares) with generate's flags as overrides."""
    from magi.api import resolve_run

    overrides = list(args.set) + placement_overrides(args)
    for side in ("height", "width"):
        if getattr(args, side, None) is not None:
            overrides.append(f"video.{side}={getattr(args, side)}")
    cfg = resolve_run(args.preset, args.checkpoint, args.steps, overrides)
    if args.cfg is not None:
        cfg = apply_overrides(cfg, ["sampler.text_scales=" + ",".join([str(args.cfg)] * len(cfg.sampler.text_scales))])
    return cfg


MAX_FRAMES = 100_000  # over an hour at 24 fps: a longer request is a typo, not a video
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit seed


def check_flags(args: argparse.Namespace) -> None:
    """Every flag checked before any model is built (one line naming the flag and what is wrong)."""
    import math

    try:
        args.prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("--prompt is not valid UTF-8 text") from None
    if not 0 <= args.seed <= MAX_SEED:
        raise InputError(f"--seed {args.seed} is out of range: use 0 .. {MAX_SEED}")
    if args.num_frames is not None and not 1 <= args.num_frames <= MAX_FRAMES:
        raise InputError(f"--num_frames {args.num_frames} is out of range: use 1 .. {MAX_FRAMES}")
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps {args.steps} must be at least 1")
    if args.cfg is not None and not math.isfinite(args.cfg):
        raise InputError(f"--cfg {args.cfg} is not a finite number")
    for side in ("height", "width"):
        value = getattr(args, side, None)
        if value is not None and not 16 <= value <= 16384:
            raise InputError(f"--{side} {value} is out of range: use 16 .. 16384 (a multiple of 16)")
    if args.mode != "i2v" and args.image_path:
        raise InputError(f"--image_path is only used with --mode i2v (got --mode {args.mode})")
    if args.mode != "v2v" and args.prefix_video_path:
        raise InputError(f"--prefix_video_path is only used with --mode v2v (got --mode {args.mode})")
    if args.mode == "i2v" and not args.image_path:
        raise InputError("--mode i2v needs --image_path")
    if args.mode == "v2v" and not args.prefix_video_path:
        raise InputError("--mode v2v needs --prefix_video_path")
    if not args.prompt.strip():
        raise InputError("--prompt is empty")
    if Path(args.output_path).suffix.lower() != ".mp4":
        raise InputError(f"--output_path must end in .mp4, got '{args.output_path}'")
    check_writable(Path(args.output_path))


def parse_chunk_prompts(items: list[str]) -> tuple[tuple[int, str], ...]:
    """``["2:the ball stops", ...]`` -> ((2, "the ball stops"), ...); one clear line for a malformed one."""
    pairs = []
    for item in items:
        chunk, sep, text = item.partition(":")
        if not sep or not chunk.strip().isdigit() or not text.strip():
            raise InputError(f"--chunk_prompt {item!r} must look like N:PROMPT (N a chunk number, from 0)")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"--chunk_prompt {chunk}: the prompt is not valid UTF-8 text") from None
        pairs.append((int(chunk), text.strip()))
    return tuple(pairs)


def check_writable(output: Path) -> None:
    """The output can be written: not a directory, under directories (made if missing) where a file can be
    created; found out by creating and removing a probe file, before any work."""
    import os
    import tempfile

    if output.is_dir():
        raise InputError(f"--output_path '{output}' is a directory")
    folder = output.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"--output_path '{output}': '{folder}' is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".magi-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        raise InputError(f"--output_path '{output}': cannot write in '{folder}' ({error.strerror})") from None


def run(args: argparse.Namespace) -> int:
    check_flags(args)
    import sys

    from magi.io.video import read_image
    from magi.sampling.pipeline import Request, read_conditioning_video, validate

    cfg = resolve_config(args)
    image = read_image(args.image_path) if args.image_path else None
    prefix = None
    if args.prefix_video_path:  # at the model's size and frame rate, as the official reads it (ffmpeg filters)
        prefix, fps = read_conditioning_video(args.prefix_video_path, cfg)
        if abs(fps - cfg.video.fps) > 1e-6:
            print(f"note: the prefix video runs at {fps:g} fps; resampled to the model's {cfg.video.fps} fps "
                  f"({prefix.shape[0]} frames)", file=sys.stderr)
    request = Request(mode=args.mode, prompt=args.prompt, image=image, prefix_video=prefix,
                      num_frames=cfg.video.num_frames if args.num_frames is None else args.num_frames, seed=args.seed,
                      include_prefix=not args.no_prefix_in_output, use_kv_cache=not args.no_kv_cache,
                      chunk_prompts=parse_chunk_prompts(args.chunk_prompt))
    validate(request, cfg)
    import os

    from magi.parallel.runtime import init_from_env, shutdown

    world = init_from_env(os.environ)  # under torchrun: context parallelism over all ranks
    try:
        return _generate(args, cfg, request, world)
    finally:
        shutdown(world)


def _generate(args: argparse.Namespace, cfg: RunConfig, request, world) -> int:
    import sys
    import time

    from tqdm import tqdm

    from magi.io.atomic import atomic_write_text
    from magi.io.video import partial_path, stream_video
    from magi.sampling.pipeline import build_pipeline, generate_frames

    pipe = build_pipeline(cfg, context_parallel=world.world_size > 1)
    if not world.is_main:  # every rank takes part in the collectives; rank 0 writes
        for _ in generate_frames(pipe, request):
            pass
        return 0
    output = Path(args.output_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    start, batches = time.perf_counter(), []
    conditioning = request.include_prefix and request.mode != "t2v" and cfg.sampler.procedure == "native"
    with tqdm(desc=f"{args.mode} {cfg.name}", unit="step", leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        def on_batch(frames: int) -> None:
            batches.append(frames)
            if len(batches) == 1 + conditioning:  # the first generated chunk is in the growing file
                tqdm.write(f"first chunk after {time.perf_counter() - start:.1f} s: {partial_path(output)} "
                           f"plays its {frames} frames while the rest is generated")

        try:
            stream_video(output, generate_frames(pipe, request, progress), fps=cfg.video.fps, on_batch=on_batch)
        except BaseException:
            if partial_path(output).exists():
                print(f"note: the frames made so far are in {partial_path(output)}", file=sys.stderr)
            raise
    run_record = {"config": cfg.to_dict(), "request": {k: v for k, v in vars(args).items() if k != "func"}}
    atomic_write_text(output.with_suffix(".json"), json.dumps(run_record, indent=2) + "\n")
    print(f"wrote {output} ({args.mode}, {cfg.name}, seed {args.seed})")
    return 0
