"""Streaming: time to the first chunk and frames per second after it, against the time of the whole video.

    python benchmarks/streaming.py [--preset physics-64] [--chunks 2,4,8] [--steps N] [--repeats 3]

Each row generates a t2v video of N chunks with the Python API's ``stream`` (decoded chunks as they become
clean: what ``magi generate`` writes into its growing file and ``magi serve`` shows), best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from magi.api import Magi


def run(magi: Magi, chunks: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    first, frames = None, 0
    for batch in magi.stream("a red ball falls and bounces five times on the floor", num_frames=chunks
                             * magi.frames_per_chunk):
        frames += batch.shape[0]
        if first is None:
            first = time.perf_counter() - start
    return first, time.perf_counter() - start, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="physics-64")
    parser.add_argument("--chunks", default="2,4,8")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    magi = Magi.load(args.preset, device="cpu", steps=args.steps)
    run(magi, 1)  # warm-up
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {magi.cfg.name}, "
          f"{magi.cfg.sampler.steps} steps, {magi.frames_per_chunk} frames per chunk at {magi.fps} fps")
    print()
    print("| chunks | frames | first chunk s | whole video s | first / whole | frames/s after the first | "
          "real-time factor after the first |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for chunks in (int(n) for n in args.chunks.split(",")):
        first, total, frames = min((run(magi, chunks) for _ in range(args.repeats)), key=lambda r: r[1])
        after = (frames - magi.frames_per_chunk) / max(total - first, 1e-9)  # 0 for a one-chunk video
        rate = f"{after:.0f} | {magi.fps / after:.3f}" if after else "- | -"
        print(f"| {chunks} | {frames} | {first:.2f} | {total:.2f} | {first / total:.2f} | {rate} |", flush=True)


if __name__ == "__main__":
    main()
