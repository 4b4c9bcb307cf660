"""``magi eval physics-iq`` (score generated folders against the real benchmark) and ``magi eval physics-iq-mini``
(build the synthetic set, generate with a model, score it beside the baselines)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from magi.commands import add_placement_flags
from magi.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate a model (Physics-IQ, Physics-IQ-mini)")
    benchmarks = p.add_subparsers(dest="benchmark", required=True)

    q = benchmarks.add_parser("physics-iq", help="score a folder of generated videos against Physics-IQ")
    q.add_argument("--real", type=Path, required=True, help="benchmark root (split-videos/, switch-frames/, ...)")
    q.add_argument("--generated", type=Path, required=True, help="one 5 s clip per take-1 case, named '<ID>_...'")
    q.add_argument("--mode", choices=["i2v", "v2v"], help="which track the videos were generated for (a label)")
    q.add_argument("--out", type=Path, help="report folder (default: <generated>-physics-iq)")
    q.add_argument("--masks", choices=["auto", "real", "mini"], default="auto",
                   help="mask settings: real (5x5, /4) or mini (3x3, /1); auto picks mini for a Physics-IQ-mini root")
    q.add_argument("--previews", type=int, default=3, help="side-by-side mp4s to write")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=run_physics_iq)

    m = benchmarks.add_parser("physics-iq-mini", help="generate on Physics-IQ-mini and score beside baselines")
    m.add_argument("--data", type=Path, help="the set (built here if missing or empty; "
                                              "default: runs/physics-iq-mini-<profile>-seed<seed>, "
                                              "with -<fps>fps for a model not at 8 fps)")
    source = m.add_mutually_exclusive_group()
    source.add_argument("--preset", help="named configuration (default: the default preset)")
    source.add_argument("--checkpoint", type=Path,
                        help="checkpoint directory (config.json + safetensors), or builtin:<name>")
    m.add_argument("--steps", type=int, help="denoising steps per chunk (default: the config's)")
    m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, as in magi generate (e.g. sampler.text_scales=7.5,7.5,7.5,0,0)")
    m.add_argument("--modes", default="i2v,v2v", help="comma-separated: i2v, v2v")
    m.add_argument("--seed", type=int, default=0, help="seed of the set (when built) and of generation")
    m.add_argument("--out", type=Path, default=Path("runs/eval-physics-iq-mini"), help="report folder")
    m.add_argument("--profile", choices=["mini", "tiny"], default="mini")
    m.add_argument("--limit", type=int, help="only the first N scenarios (x 3 views)")
    m.add_argument("--previews", type=int, default=2, help="side-by-side mp4s per submission")
    m.add_argument("--batch", type=int, default=1,
                   help="cases generated together in one sampler pass (same videos up to float rounding; "
                        "faster for small models, more memory)")
    m.add_argument("--no-progress", action="store_true")
    add_placement_flags(m)
    m.set_defaults(func=run_physics_iq_mini)


def _mask_params(choice: str, real: Path):
    from magi.eval.physics_iq import MASK_PRESETS

    if choice == "auto":
        choice = "mini" if (real / "physics_iq_mini.json").is_file() else "real"
    return MASK_PRESETS[choice]


def _progress(enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda items: tqdm(items, desc=desc, unit="case", leave=False)


def _finish(results, cache, folders: dict, out: Path, meta: dict, previews: int) -> None:
    from magi.eval.report import summary_table, write_previews, write_report

    paths = write_report(results, out, meta, cache.params)
    videos = []
    for result in results:
        if previews > 0:
            videos += write_previews(cache, result, folders[result.name], out / "previews", previews)
    print(summary_table(results))
    print(f"wrote {paths['json']}, {paths['markdown']}, {len(paths) - 2} plots and {len(videos)} previews "
          f"to {out}")


def run_physics_iq(args: argparse.Namespace) -> int:
    from magi.eval.benchmark import RealCache, score_folder

    if not args.real.is_dir():
        raise InputError(f"--real '{args.real}' is not a folder")
    params = _mask_params(args.masks, args.real)
    cache = RealCache(args.real, params)
    name = f"generated ({args.mode})" if args.mode else "generated"
    result = score_folder(cache, args.generated, name, progress=_progress(not args.no_progress, "physics-iq"))
    out = args.out or args.generated.with_name(args.generated.name + "-physics-iq")
    meta = {"real": str(args.real), "generated": str(args.generated), "mode": args.mode, "fps": result.fps,
            "cases": result.summary.samples}
    _finish([result], cache, {name: args.generated}, out, meta, args.previews)
    return 0


def _resolve_config(args: argparse.Namespace):
    """The model as ``magi generate`` resolves it: a checkpoint, a preset, or the shipped model (its distilled
    student when fewer steps than the teacher's are asked for and it ships)."""
    from magi.api import resolve_run

    return resolve_run(args.preset, args.checkpoint, getattr(args, "steps", None), [])


def run_physics_iq_mini(args: argparse.Namespace) -> int:
    from magi.eval.benchmark import RealCache, score_folder
    from magi.eval.mini import MODES, ensure_data, generate_predictions, settings, write_baselines
    from magi.eval.physics_iq import MINI

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise InputError(f"--modes must be a comma-separated subset of {','.join(MODES)}, got '{args.modes}'")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}")
    if args.batch < 1:
        raise InputError(f"--batch must be at least 1, got {args.batch}")
    from magi.commands import placement_overrides
    from magi.config import apply_overrides

    cfg = apply_overrides(_resolve_config(args), args.set + placement_overrides(args))
    if args.steps is not None:
        cfg = apply_overrides(cfg, [f"sampler.steps={args.steps}"])
        cfg = dataclasses.replace(cfg, name=f"{cfg.name}-{args.steps}steps")
    from magi.physics.world import FPS

    rate = "" if cfg.video.fps == FPS else f"-{cfg.video.fps}fps"  # a set per frame rate
    data = args.data or Path(f"runs/physics-iq-mini-{args.profile}-seed{args.seed}{rate}")
    data = ensure_data(data, seed=args.seed, profile=args.profile, scenarios=args.limit,
                       progress=not args.no_progress, fps=cfg.video.fps)
    info = settings(data)
    if cfg.video.fps != info["fps"]:
        raise InputError(f"the model makes {cfg.video.fps} fps video but '{data}' is {info['fps']} fps "
                         f"(a set at {cfg.video.fps} fps: magi data --physics-iq-mini DIR --fps {cfg.video.fps})")
    if "v2v" in modes and info["conditioning_frames"] < cfg.frames_per_chunk:
        raise InputError(f"v2v needs {cfg.frames_per_chunk} conditioning frames (one chunk) but the "
                         f"{info['profile']} profile has {info['conditioning_frames']}; use --modes i2v")
    folders = write_baselines(data, args.out / "baselines", args.limit, _progress(not args.no_progress, "baselines"))

    from magi.sampling.pipeline import build_pipeline

    pipe = build_pipeline(cfg)
    predictions = generate_predictions(pipe, data, args.out / "generated", modes, args.seed, args.limit,
                                       _progress(not args.no_progress, "generate"), batch=args.batch)
    submissions = {f"{cfg.name} {mode}": folder for mode, folder in predictions.items()} | folders
    cache = RealCache(data, MINI, scenarios=args.limit)
    results = [score_folder(cache, folder, name, _progress(not args.no_progress, f"score {name}"))
               for name, folder in submissions.items()]
    meta = {"data": str(data), "profile": info["profile"], "data_seed": info["seed"], "model": cfg.name,
            "weights": cfg.weights or "random init", "seed": args.seed, "modes": ",".join(modes),
            "fps": info["fps"], "cases": results[0].summary.samples}
    _finish(results, cache, submissions, args.out, meta, args.previews)
    from magi.io.atomic import atomic_write_text

    atomic_write_text(args.out / "config.json", cfg.to_json() + "\n")  # the configuration the model ran with
    print(f"resolved config: {args.out / 'config.json'}")
    return 0
