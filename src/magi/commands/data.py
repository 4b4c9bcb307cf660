"""``magi data``: procedural physics clips (train/dev/test splits) or the Physics-IQ-mini benchmark set."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from magi.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="generate procedural physics video data")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="write train/dev/test splits here")
    target.add_argument("--physics-iq-mini", type=Path, metavar="DIR", help="write the Physics-IQ-mini set here")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--dev", type=int, default=100)
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--fps", type=int, default=None,
                   help="frames per second of every split or of Physics-IQ-mini (default: the simulator's own, 8): "
                        "the same scenes and motion, sampled more or less often; must divide the simulator's 128 "
                        "substeps per second")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--camera-variation", type=float, default=0.0, metavar="P",
                   help="share of the train clips shown with the view moved up or down and another background "
                        "(for i2v from images not framed like the simulator's); dev and test stay as usual")
    p.add_argument("--families", metavar="NAME[,NAME...]",
                   help="draw the clips from these scenario families only, equally often (default: the training mix "
                        "of the Physics-IQ-mini families); e.g. balls-drop, several balls falling at once, which is "
                        "in no default mix")
    p.add_argument("--append", action="store_true",
                   help="add the clips to the splits already in --out (same frames, size and fps) instead of "
                        "replacing them; a split asked for 0 clips is left as it is")
    p.add_argument("--profile", default="mini", help="Physics-IQ-mini profile: mini (64x64, 24+40) or tiny")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magi.io.atomic import atomic_write_text
    from magi.physics.dataset import write_split
    from magi.physics.mini import write_physics_iq_mini
    from magi.physics.world import FPS

    progress = not args.no_progress
    start = time.perf_counter()
    fps = FPS if args.fps is None else args.fps
    if args.physics_iq_mini is not None:
        root = write_physics_iq_mini(args.physics_iq_mini, seed=args.seed, profile=args.profile, progress=progress,
                                     fps=fps)
        print(f"wrote Physics-IQ-mini ({args.profile}, {fps} fps) to {root} in {time.perf_counter() - start:.1f}s")
        return 0
    counts = {"train": args.train, "dev": args.dev, "test": args.test}
    if any(n < 0 for n in counts.values()):
        raise InputError(f"clip counts must be >= 0, got {counts}")
    families = None if args.families is None else tuple(name.strip() for name in args.families.split(","))
    settings = {"seed": args.seed, "frames": args.frames, "size": args.size, "fps": fps,
                "workers": args.workers, "camera_variation": args.camera_variation, **counts}
    if families is not None:
        settings["families"] = list(families)
    for split, n in counts.items():
        if args.append and n == 0:
            continue
        write_split(args.out, split, n, seed=args.seed, frames=args.frames, size=args.size, workers=args.workers,
                    progress=progress, camera_variation=args.camera_variation if split == "train" else 0.0,
                    fps=fps, families=families, append=args.append)
    path = args.out / "settings.json"
    if args.append and path.is_file():  # the first write's settings, then every append's
        first = json.loads(path.read_text())
        settings = {**first, "appended": [*first.get("appended", []), settings]}
    atomic_write_text(path, json.dumps(settings, indent=2))
    done = "appended" if args.append else "wrote"
    print(f"{done} {sum(counts.values())} clips to {args.out} in {time.perf_counter() - start:.1f}s")
    return 0
