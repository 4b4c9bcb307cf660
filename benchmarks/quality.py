"""Quality bars of a trained physics model (one run, one table).

    python benchmarks/quality.py --data DATA_ROOT [--checkpoint builtin:physics-64] [--cases 24] [--seed 0]
        [--set sampler.prefix_scales=2,2,2,1,1 ...]

* VAE: reconstruction PSNR over the held-out test split of `magi data` (DATA_ROOT/test).
* On Physics-IQ-mini cases (take 1; simulator positions known), v2v from the 24 conditioning frames and i2v
  from the switch frame: trajectory error of the 40 generated test frames against the simulator (objects
  located by their unique colour, see magi.eval.tracking), next to copying the switch frame; and, over 4
  generated chunks, the share of the conditioning's objects still visible at the end (count and colour
  kept) and their speed in the last chunk (motion does not stop).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from magi.config import RunConfig, apply_overrides
from magi.eval.tracking import locate, trajectory_error, visible_objects
from magi.io.weights import resolve_checkpoint_dir
from magi.physics.dataset import load_split
from magi.physics.mini import PROFILES, render_case
from magi.sampling.pipeline import Request, build_pipeline, generate_frames
from magi.training.runs import reconstruction_psnr, whole_frames

PREFIX = 24


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", default="builtin:physics-64")
    parser.add_argument("--cases", type=int, default=24, help="Physics-IQ-mini scenarios (take 1, center view)")
    parser.add_argument("--chunks", type=int, default=4, help="generated chunks for the persistence check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as in magi generate (e.g. sampler.steps=32)")
    args = parser.parse_args()

    folder = resolve_checkpoint_dir(args.checkpoint)
    cfg = apply_overrides(replace(RunConfig.load(folder / "config.json"), weights=args.checkpoint), args.set)
    pipe = build_pipeline(cfg)
    clips, _ = load_split(Path(args.data), "test")
    torch.manual_seed(args.seed)
    results: dict[str, float] = {"vae_psnr_db": reconstruction_psnr(pipe.vae, whole_frames(clips, cfg.vae.patch_t))}
    del clips

    _, prefix, horizon = PROFILES["mini"]
    generated_frames = args.chunks * cfg.frames_per_chunk
    table: dict[str, list[float]] = {k: [] for k in ("v2v", "i2v", "copy_last", "v2v_visible", "i2v_visible",
                                                      "v2v_motion", "i2v_motion", "truth_motion")}
    cases = 0
    for scenario in range(66):
        if cases == args.cases:
            break
        frames, side = render_case(scenario, 1, 1, seed=args.seed)
        objects = [o for o in side["objects"] if o.get("positions")]
        if not objects or mean_speed(frames[prefix:], objects) < 0.2:  # static scenes say nothing here
            continue
        cases += 1
        for mode in ("v2v", "i2v"):
            request = Request(mode=mode, prompt=side["caption"], seed=args.seed + scenario, include_prefix=False,
                              prefix_video=frames[:prefix] if mode == "v2v" else None,
                              image=frames[prefix - 1] if mode == "i2v" else None, num_frames=generated_frames)
            video = np.concatenate(list(generate_frames(pipe, request)))  # (generated_frames, H, W, 3)
            table[mode].append(trajectory_error(video[:horizon], objects, start=prefix))
            last_chunk = video[-cfg.frames_per_chunk:]
            table[f"{mode}_visible"].append(visible_objects(last_chunk[-1], objects) / len(objects))
            table[f"{mode}_motion"].append(mean_speed(last_chunk, objects))
        table["copy_last"].append(trajectory_error(np.repeat(frames[prefix - 1:prefix], horizon, 0), objects,
                                                   start=prefix))
        table["truth_motion"].append(mean_speed(frames[prefix:], objects))
    results.update({k: float(np.mean(v)) for k, v in table.items()})

    print(f"# {cfg.name} ({args.checkpoint}), {cases} moving Physics-IQ-mini cases, seed {args.seed}")
    print("| measure | value |\n|---|---:|")
    print(f"| VAE reconstruction PSNR (test, dB) | {results['vae_psnr_db']:.2f} |")
    print(f"| trajectory error v2v (px, {horizon} frames) | {results['v2v']:.2f} |")
    print(f"| trajectory error i2v (px) | {results['i2v']:.2f} |")
    print(f"| trajectory error copy-last (px) | {results['copy_last']:.2f} |")
    print(f"| objects still visible after {args.chunks} chunks, v2v / i2v | {results['v2v_visible']:.0%} / "
          f"{results['i2v_visible']:.0%} |")
    print(f"| speed in chunk {args.chunks}, v2v / i2v (px/frame; ground truth test window: "
          f"{results['truth_motion']:.2f}) | {results['v2v_motion']:.2f} / {results['i2v_motion']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def mean_speed(frames: np.ndarray, objects: list[dict]) -> float:
    """Mean centroid displacement per frame of the visible objects (0 if none is visible)."""
    speeds = []
    for obj in objects:
        centroids, visible = locate(frames, obj["color"])
        both = visible[1:] & visible[:-1]
        if both.any():
            speeds.append(float(np.linalg.norm(np.diff(centroids, axis=0), axis=-1)[both].mean()))
    return float(np.mean(speeds)) if speeds else 0.0


if __name__ == "__main__":
    main()
