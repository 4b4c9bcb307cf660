"""KV cache vs full recompute, and the pipelined window vs one chunk at a time (one run, side by side).

    python benchmarks/kv_cache.py [--preset physics-64] [--chunks 2,4,8,16] [--steps 8] [--context full]
        [--window 4] [--repeats 5]

Random weights (timing only). "recompute" re-runs the clean context chunks at every step, which is what an
implementation without a KV cache does; "window 1" denoises one chunk at a time (no pipelining) with the
same number of steps per chunk (its own recompute/cached ratio is shown too: with one chunk in flight every
step runs a single chunk, so the history is the larger share of the work). ``--context`` is the number of
clean chunks a noisy chunk attends to: the preset's ``sampler.context_chunks`` by default, ``full`` for
every earlier chunk (what a port that recomputes the whole video so far at each step does). ``--window`` is
the pipelined runs' chunks in flight (MAGI-1's 4 by default, whatever the preset samples with). Each time
is the best of ``--repeats`` rounds, each round running every configuration once in turn.
"""

from __future__ import annotations

import argparse
import platform
from dataclasses import replace

import torch
from measure import count_flops, timed
from tqdm import tqdm

from magi.models.dit import DiT
from magi.presets import get_preset
from magi.sampling.sampler import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="physics-64")
    parser.add_argument("--chunks", default="2,4,8,16")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--window", type=int, default=4,
                        help="chunks in flight of the pipelined runs (MAGI-1: 4), against 1")
    parser.add_argument("--context", default="preset", help="clean chunks attended: preset | full | N")
    parser.add_argument("--repeats", type=int, default=5, help="each time is the best of this many rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = get_preset(args.preset)
    sampler = replace(cfg.sampler, steps=args.steps, guidance="none")
    torch.manual_seed(0)
    dit = DiT(cfg.dit).eval()
    latent_shape = cfg.latent_shape
    context = torch.randn(1, 16, cfg.dit.context_dim)
    mask = torch.ones(1, 16, dtype=torch.bool)

    def job(chunks: int, cache: bool, window: int):
        context_chunks = {"preset": sampler.context_chunks, "full": chunks}.get(args.context) or int(args.context)
        s = replace(sampler, window_size=window, context_chunks=max(1, context_chunks))
        return lambda: generate(dit, s, context, mask, num_chunks=chunks, latent_shape=latent_shape,
                                use_kv_cache=cache)

    def flops(chunks: int, cache: bool, window: int) -> int:
        return count_flops(job(chunks, cache, window))[0]

    timed(job(1, True, args.window))  # warm-up
    print(f"# {args.preset}: DiT {sum(p.numel() for p in dit.parameters()) / 1e6:.1f}M params, "
          f"{args.steps} steps/chunk, context {args.context} ({sampler.context_chunks} in the preset), "
          f"{platform.processor() or platform.machine()}, {args.threads} threads")
    counts = [int(c) for c in args.chunks.split(",")]
    print("| chunks | cached s | recompute s | recompute/cached | FLOPs recompute/cached | "
          f"cached vs {counts[0]} chunks | cached FLOPs vs {counts[0]} chunks | window 1 s | "
          f"window 1/window {args.window} | window 1 recompute/cached | window 1 FLOPs recompute/cached | "
          f"window 1 vs {counts[0]} chunks | window 1 FLOPs vs {counts[0]} chunks |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    # Every run of every configuration in turn, repeats times: a drift of the machine's speed lands on all
    # of them alike instead of on the ratios between chunk counts timed minutes apart
    runs = [(chunks, cache, window) for chunks in counts for window in (args.window, 1) for cache in (True, False)]
    best = dict.fromkeys(runs, float("inf"))
    for _ in tqdm(range(args.repeats), desc="rounds over all configurations", leave=False):
        for key in runs:
            best[key] = min(best[key], timed(job(*key)))
    base = base_flops = single_base = single_base_flops = None
    for chunks in counts:
        cached, recompute = best[chunks, True, args.window], best[chunks, False, args.window]
        single, single_recompute = best[chunks, True, 1], best[chunks, False, 1]
        cached_flops = flops(chunks, True, args.window)
        base, base_flops = base or cached, base_flops or cached_flops
        work = flops(chunks, False, args.window) / cached_flops  # the most the cache can save
        single_flops = flops(chunks, True, 1)
        single_base, single_base_flops = single_base or single, single_base_flops or single_flops
        single_work = flops(chunks, False, 1) / single_flops
        print(f"| {chunks} | {cached:.2f} | {recompute:.2f} | {recompute / cached:.2f}x | {work:.2f}x | "
              f"{cached / base:.2f}x | {cached_flops / base_flops:.2f}x | {single:.2f} | {single / cached:.2f}x | "
              f"{single_recompute / single:.2f}x | "
              f"{single_work:.2f}x | {single / single_base:.2f}x | {single_flops / single_base_flops:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
