"""Quality bars of a trained physics model (one run, one table).

    python benchmarks/quality.py --data DATA_ROOT [--checkpoint builtin:physics-64] [--cases 24] [--seed 0]
        [--set sampler.prefix_scales=2,2,2,1,1 ...]

* VAE: reconstruction PSNR over the held-out test split of `magi data` (DATA_ROOT/test).
* On Physics-IQ-mini cases at the model's frame rate (take 1; simulator positions known; the scene simulated
  for as long as the generated video), v2v from the 3 s of conditioning frames (24 at 8 fps) and i2v from the
  switch frame generate 4 chunks.
  Each measure is shown for v2v, i2v, copying the switch frame, the simulator's frames through the VAE
  (encode + decode: what a perfect DiT would give) and the simulator itself, on the same frames:
  trajectory error against the simulator (objects located by their unique colour, see magi.eval.tracking)
  over the 5 s of test frames (40 at 8 fps) and over all generated chunks; the share of objects still visible at the end
  (count and colour kept) and still intact (at least half the pixel area they had in the switch frame: not
  dissolved), also per generated chunk; their speed in the last chunk (motion does not stop).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from magi.config import apply_overrides
from magi.eval.tracking import intact_objects, locate, trajectory_error, visible_objects
from magi.io.video import frames_to_tensor, tensor_to_frames
from magi.io.weights import load_checkpoint_config
from magi.physics.dataset import load_split
from magi.physics.mini import profile_frames, render_case
from magi.sampling.pipeline import Request, build_pipeline, generate_frames
from magi.training.runs import reconstruction_psnr, whole_frames

SOURCES = ("v2v", "i2v", "copy_last", "vae_round_trip", "simulator")  # table columns
MIN_SPEED = 1.6  # px per second: cases whose objects move slower over the test frames say nothing


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

    cfg = apply_overrides(load_checkpoint_config(args.checkpoint), args.set)
    pipe = build_pipeline(cfg)
    clips, _ = load_split(Path(args.data), "test")
    torch.manual_seed(args.seed)
    results: dict[str, float] = {"vae_psnr_db": reconstruction_psnr(pipe.vae, whole_frames(clips, cfg.vae.patch_t))}
    del clips

    fps = cfg.video.fps
    _, prefix, horizon = profile_frames("mini", fps)
    generated_frames = args.chunks * cfg.frames_per_chunk
    table: dict[str, list[float]] = defaultdict(list)  # "{source}_{measure}" -> one value per case
    cases = 0
    for scenario in range(66):
        if cases == args.cases:
            break
        # simulated for as long as the generated video, so every measure compares the same frames
        frames, side = render_case(scenario, 1, 1, seed=args.seed, test_frames=max(horizon, generated_frames),
                                   fps=fps)
        objects = [o for o in side["objects"] if o.get("positions")]
        if not objects or mean_speed(frames[prefix:prefix + horizon], objects) * fps < MIN_SPEED:  # static
            continue
        cases += 1
        switch = frames[prefix - 1]
        truth = frames[prefix:prefix + generated_frames]
        with torch.no_grad():  # the best the DiT can do: the truth through the VAE
            round_trip = tensor_to_frames(pipe.vae.decode(pipe.vae.encode(frames_to_tensor(truth)[None]))[0])
        videos = {"simulator": truth, "vae_round_trip": round_trip,
                  "copy_last": np.repeat(frames[prefix - 1:prefix], generated_frames, 0)}
        for mode in ("v2v", "i2v"):
            request = Request(mode=mode, prompt=side["caption"], seed=args.seed + scenario, include_prefix=False,
                              prefix_video=frames[:prefix] if mode == "v2v" else None,
                              image=switch if mode == "i2v" else None, num_frames=generated_frames)
            videos[mode] = np.concatenate(list(generate_frames(pipe, request)))  # (generated_frames, H, W, 3)
        for source, video in videos.items():
            last_chunk = video[-cfg.frames_per_chunk:]
            table[f"{source}_error"].append(trajectory_error(video[:horizon], objects, start=prefix))
            table[f"{source}_error_all"].append(trajectory_error(video, objects, start=prefix))
            table[f"{source}_visible"].append(visible_objects(last_chunk[-1], objects) / len(objects))
            table[f"{source}_intact"].append(intact_objects(last_chunk[-1], switch, objects) / len(objects))
            intact = np.array([intact_objects(frame, switch, objects) for frame in video]) / len(objects)
            table[f"{source}_intact_all"].append(float(intact.mean()))
            for chunk, share in enumerate(intact.reshape(args.chunks, -1).mean(axis=1), 1):
                table[f"{source}_intact_chunk{chunk}"].append(float(share))
            table[f"{source}_speed"].append(mean_speed(last_chunk, objects))
    results.update({k: float(np.mean(v)) for k, v in table.items()})

    n = args.chunks
    print(f"# {cfg.name} ({args.checkpoint}), {cases} moving Physics-IQ-mini cases at {fps} fps, seed {args.seed}")
    print(f"VAE reconstruction PSNR (test split): {results['vae_psnr_db']:.2f} dB\n")
    print("| measure | v2v | i2v | copy last frame | VAE round trip of the truth | simulator |\n"
          "|---|---:|---:|---:|---:|---:|")
    rows = [("error", f"trajectory error, {min(horizon, generated_frames)} test frames (px)", "{:.2f}"),
            ("error_all", f"trajectory error, all {n} chunks (px)", "{:.2f}"),
            ("visible", f"objects visible after {n} chunks", "{:.0%}"),
            ("intact", f"objects intact after {n} chunks (>= half their area)", "{:.0%}"),
            ("intact_all", "objects intact, mean over all generated frames", "{:.0%}"),
            ("speed", f"speed in chunk {n} (px/frame)", "{:.2f}")]
    for key, label, fmt in rows:
        cells = [fmt.format(results[f"{source}_{key}"]) for source in SOURCES]
        print(f"| {label} | " + " | ".join(cells) + " |")
    cells = [" / ".join(f"{results[f'{source}_intact_chunk{c}']:.0%}" for c in range(1, n + 1)) for source in SOURCES]
    print(f"| objects intact in chunk 1 / ... / {n} (mean over its frames) | " + " | ".join(cells) + " |")
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
