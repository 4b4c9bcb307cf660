"""Teacher vs shortcut-distilled student at 64 / 32 / 16 / 8 steps, and fp8 vs full-precision weights.

    python benchmarks/distill.py [--teacher builtin:physics-64] [--student builtin:physics-64-distill] [--cases 6]

v2v continuations of Physics-IQ-mini conditioning clips at the teacher's frame rate (3 s -> 2 chunks generated;
at 8 fps 24 frames -> 48), same seeds everywhere.
Quality is measured against the 64-step teacher (per-frame PSNR of the decoded video) and against the
simulator (trajectory error of the located objects). Time is wall-clock seconds of compute per second of
generated video (text encoding excluded). fp8: weight bytes, peak RSS growth while generating, and the
difference of the output from the full-precision model.
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import replace

import numpy as np

from magi.config import QuantConfig, RunConfig
from magi.eval.tracking import trajectory_error
from magi.io.weights import load_checkpoint_config, state_dict_bytes
from magi.physics.mini import profile_frames, render_case
from magi.sampling.pipeline import Request, build_pipeline, generate_frames

GENERATED_CHUNKS = 2


def load(location: str, **changes) -> RunConfig:
    cfg = load_checkpoint_config(location)
    return replace(cfg, **changes)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def run(pipe, cases, seed: int, prefix: int, generated: int) -> tuple[list[np.ndarray], float]:
    videos, seconds = [], 0.0
    for frames, side in cases:
        request = Request(mode="v2v", prompt=side["caption"], prefix_video=frames[:prefix], num_frames=generated,
                          seed=seed, include_prefix=False)
        start = time.perf_counter()
        videos.append(np.concatenate(list(generate_frames(pipe, request))))
        seconds += time.perf_counter() - start
    return videos, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teacher", default="builtin:physics-64")
    parser.add_argument("--student", default="builtin:physics-64-distill")
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    teacher = load(args.teacher)
    fps, generated = teacher.video.fps, GENERATED_CHUNKS * teacher.frames_per_chunk
    _, prefix, test = profile_frames("mini", fps)
    cases = [render_case(s, 1, 1, seed=args.seed, fps=fps)
             for s in range(0, 66, max(1, 66 // args.cases))][: args.cases]
    video_seconds = len(cases) * generated / fps
    rows, reference, base_time = [], None, None
    for steps in (64, 32, 16, 8):
        for who, location in (("teacher", args.teacher), ("student", args.student)):
            cfg = load(location)
            pipe = build_pipeline(replace(cfg, sampler=replace(cfg.sampler, steps=steps)))
            pipe.text.encode(["warm up"])
            videos, seconds = run(pipe, cases, args.seed, prefix, generated)
            if reference is None:
                reference, base_time = videos, seconds
            quality = np.mean([psnr(v, r) for v, r in zip(videos, reference)])
            trajectory = np.mean([trajectory_error(v[:test], [o for o in side["objects"] if o.get("positions")],
                                                   start=prefix) for v, (_, side) in zip(videos, cases)])
            rows.append((who, steps, seconds / video_seconds, base_time / seconds, quality, trajectory))
            print(f"  {who} {steps} steps: {seconds:.1f} s", flush=True)

    print(f"\n# v2v on {len(cases)} Physics-IQ-mini cases at {fps} fps, {generated} generated frames each; "
          "reference = teacher at 64 steps")
    print("| model | steps | s compute / s video | speedup vs teacher-64 | PSNR vs teacher-64 (dB) | "
          "trajectory error (px) |")
    print("|---|---:|---:|---:|---:|---:|")
    for who, steps, rtf, speedup, quality, trajectory in rows:
        shown = "ref" if who == "teacher" and steps == 64 else f"{quality:.2f}"
        print(f"| {who} | {steps} | {rtf:.3f} | {speedup:.1f}x | {shown} | {trajectory:.2f} |")

    print("\n# fp8 (e4m3, per-channel scales, edge layers kept) vs fp32 weights, teacher at its default steps")
    print("| weights | DiT weight MiB | peak RSS growth MiB | PSNR vs fp32 output (dB) |")
    print("|---|---:|---:|---:|")
    outputs = {}
    for name, quant in (("fp32", QuantConfig()), ("fp8", QuantConfig(mode="fp8"))):
        pipe = build_pipeline(load(args.teacher, quant=quant))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        outputs[name], _ = run(pipe, cases[:2], args.seed, prefix, generated)
        growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        weight_mib = state_dict_bytes(pipe.dit.state_dict()) / 2**20
        mean_psnr = np.mean([psnr(a, b) for a, b in zip(outputs[name], outputs["fp32"])])
        quality = "ref" if name == "fp32" else f"{mean_psnr:.2f}"
        print(f"| {name} | {weight_mib:.2f} | {growth:.0f} | {quality} |")
    bf16 = sum(p.numel() for p in build_pipeline(load(args.teacher)).dit.parameters()) * 2 / 2**20
    print(f"(bf16 weights would be {bf16:.2f} MiB)")


if __name__ == "__main__":
    main()
