"""Peak memory against video length and size: chunked VAE decode and streamed generation stay flat, and
attention grows linearly with the tokens.

    python benchmarks/memory.py [--preset physics-64] [--decode-chunks 1,4,16,32] [--size 256]
        [--generate-chunks 2,8,32] [--steps 8] [--attention-sizes 128,256,512]

* Attention: one DiT forward of the ``tiny`` preset (random weights), 4 chunks in flight over 4 cached
  clean chunks, 3 rows (the guidance branches), at each size: peak memory against the tokens. Attention
  runs per chunk over its key slice (no dense masks), so 4x the tokens should cost about 4x the memory
  (before: 11.5x from 256 to 512 pixels, with the dense block-causal masks).

* VAE decode: random latents of N chunks (the preset's VAE, random weights, at ``--size`` pixels) decoded at
  once (``TransformerVAE.decode``) and one segment at a time (``iter_decode``, each piece turned into uint8
  frames and dropped, as ``magi generate`` hands them to the video writer).
* Generation: ``generate_frames`` with the preset's weights (t2v, ``--steps``), every yielded chunk of frames
  dropped as it comes: the KV cache holds at most ``sampler.context_chunks`` clean chunks and the VAE decodes one
  chunk at a time, so memory should not grow with the number of chunks.

Memory is the peak resident set above the level before each call (sampled every 5 ms, freed heap returned
first), so the rows of one table are comparable; "per chunk" columns divide by N.
"""

from __future__ import annotations

import argparse
import platform
from dataclasses import replace
from functools import partial

import torch
from measure import peak_rss_growth

from magi.io.video import tensor_to_frames
from magi.models.vae import TransformerVAE
from magi.presets import get_preset
from magi.sampling.pipeline import Request, build_pipeline, generate_frames


@torch.no_grad()
def decode_at_once(vae: TransformerVAE, latents: torch.Tensor) -> None:
    tensor_to_frames(vae.decode(latents)[0])


@torch.no_grad()
def decode_chunked(vae: TransformerVAE, latents: torch.Tensor) -> None:
    for piece in vae.iter_decode(latents):  # (1, 3, segment_frames * pt, H, W)
        tensor_to_frames(piece[0])


def drain(pipe, request: Request) -> None:
    for _ in generate_frames(pipe, request):  # each chunk of frames is dropped as it comes
        pass


def decode_rows(cfg, size: int, chunk_counts: list[int]) -> None:
    torch.manual_seed(0)
    vae = TransformerVAE(cfg.vae).eval()
    side, F = size // cfg.vae.patch_hw, cfg.dit.chunk_frames
    print(f"VAE decode at {size}x{size} ({cfg.vae.segment_frames}-latent-frame segments; peak RSS growth, MiB)")
    print()
    decode_at_once(vae, torch.randn(1, cfg.vae.latent_channels, F, side, side))  # warm-up: one-time allocations
    print("| chunks | frames | at once MiB | chunked MiB | at once / chunked | at once s | chunked s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in chunk_counts:
        latents = torch.randn(1, cfg.vae.latent_channels, n * F, side, side)
        whole, whole_s = peak_rss_growth(partial(decode_at_once, vae, latents))
        streamed, streamed_s = peak_rss_growth(partial(decode_chunked, vae, latents))
        frames = n * F * cfg.vae.patch_t
        print(f"| {n} | {frames} | {whole:.0f} | {streamed:.0f} | {whole / max(streamed, 1):.1f}x | "
              f"{whole_s:.2f} | {streamed_s:.2f} |", flush=True)


def generation_rows(cfg, chunk_counts: list[int]) -> None:
    pipe = build_pipeline(cfg)
    per_chunk = cfg.frames_per_chunk
    print(f"Generation, t2v, {cfg.sampler.steps} steps, streamed (weights {cfg.weights}; "
          f"KV cache of at most {cfg.sampler.context_chunks} clean chunks)")
    print()
    drain(pipe, Request(mode="t2v", prompt="warm-up", num_frames=per_chunk))  # one-time allocations
    print("| chunks | frames | peak MiB | s | s / chunk |")
    print("|---:|---:|---:|---:|---:|")
    for n in chunk_counts:
        request = Request(mode="t2v", prompt="a red ball falls and bounces on the floor", num_frames=n * per_chunk)
        peak, seconds = peak_rss_growth(partial(drain, pipe, request))
        print(f"| {n} | {n * per_chunk} | {peak:.0f} | {seconds:.1f} | {seconds / n:.2f} |", flush=True)


@torch.inference_mode()
def attention_rows(sizes: list[int]) -> None:
    from magi.models.dit import DiT
    from magi.models.kv_cache import ChunkKVCache

    cfg = get_preset("tiny").dit
    torch.manual_seed(0)
    dit = DiT(cfg).eval()
    print("DiT forward, tiny preset: 4 chunks in flight on 4 cached clean chunks, 3 rows (peak RSS growth, MiB)")
    print()
    print("| size | tokens in flight | tokens seen | peak MiB | MiB / previous | tokens / previous |")
    print("|---:|---:|---:|---:|---:|---:|")
    previous = None
    for size in sizes:
        side, F = size // get_preset("tiny").vae.patch_hw, cfg.chunk_frames
        cache = ChunkKVCache(cfg.depth, 4)
        context = torch.randn(3, 8, cfg.context_dim)
        cache.admit(4)
        dit(torch.randn(3, cfg.in_channels, 4 * F, side, side), torch.ones(3, 4 * F), context, kv_cache=cache)
        cache.commit()
        x, t = torch.randn(3, cfg.in_channels, 4 * F, side, side), torch.rand(3, 4 * F)
        peak, _ = peak_rss_growth(partial(dit, x, t, context, kv_cache=cache))
        tokens = 4 * F * (side // cfg.patch_size) ** 2
        ratios = "| - | - |" if previous is None else f"| {peak / previous[0]:.2f}x | {tokens / previous[1]:.0f}x |"
        print(f"| {size}x{size} | {tokens:,} | {2 * tokens:,} | {peak:.0f} {ratios}", flush=True)
        previous = (peak, tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="physics-64")
    parser.add_argument("--decode-chunks", default="1,4,16,32")
    parser.add_argument("--size", type=int, default=256, help="decode resolution (square)")
    parser.add_argument("--generate-chunks", default="2,8,32")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--attention-sizes", default="128,256,512", help="'' skips the attention table")
    args = parser.parse_args()

    cfg = get_preset(args.preset)
    cfg = replace(cfg, sampler=replace(cfg.sampler, steps=args.steps))
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, preset {cfg.name}")
    print()
    if args.attention_sizes:
        attention_rows([int(n) for n in args.attention_sizes.split(",")])
        print()
    decode_rows(cfg, args.size, [int(n) for n in args.decode_chunks.split(",")])
    print()
    generation_rows(cfg, [int(n) for n in args.generate_chunks.split(",")])


if __name__ == "__main__":
    main()
