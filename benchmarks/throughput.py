"""Model FLOPs utilisation and real-time factor of generation, against the machine's measured matmul peak.

    python benchmarks/throughput.py [--presets tiny,physics-64] [--steps 8,16] [--chunks 4] [--batch 1,8]
        [--samplers "preset;window_size=4,context_chunks=4"] [--threads N] [--compile dit,blocks] ...

FLOPs are counted exactly by torch's FlopCounterMode during one generation (matmuls, and attention through
the formula that benchmarks/measure.py registers for the CPU kernel); the peak is the best of large fp32
matmuls on this machine with the same threads, timed alternately with each row's generations (the speed of
a shared machine drifts: MFU divides two bests of the same minutes). Real-time factor = compute seconds per second of
generated video (< 1 is faster than real time). Random weights: timing does not depend on them. DiT only
(the VAE decode is timed separately in the last column). ``--batch B`` generates B videos (seeds) in one
pass (the sampler takes a batch): per-frame numbers are over the frames of all B videos. ``--rebuild_tables``
adds, beside every row, the same generation with the DiT's per-shape RoPE tables and mask rebuilt in every
forward (as before they were kept), and ``--text_every_forward`` with the text's cross-attention keys and
values projected again in every forward (as before the sampler computed them once), and ``--no_grad``
with the sampler under ``torch.no_grad`` instead of
``torch.inference_mode`` (autograd's bookkeeping kept, as before), timed alternately with it; the MFU of
these rows counts the FLOPs of the shipped generation. ``--overhead`` adds the same generation at one token
per latent frame (the same operations on almost no data: the time that does not shrink with the tokens, per-op
dispatch and Python; no MFU). ``--kernels`` adds the time of the generation's matmul and attention calls, each
run on its own on tensors of its shapes (operands in cache; the other operators and Python left out): the MFU
of that row bounds what any implementation built on these kernels reaches on this machine. ``--compile
dit,blocks`` adds the same generation with the DiT compiled (``magi.compilation``, inductor: the whole
forward, each block); its first run in each row compiles the shapes it meets for the first time and is timed
apart (printed after the table), the row is the best of the runs after it. ``--samplers`` lists sampler
variants, each ``preset`` or comma-separated overrides of the preset's sampler (e.g. MAGI-1's 4 chunks in
flight on 4 clean chunks against physics-64's 1 on 2): one row each.
"""

from __future__ import annotations

import argparse
import copy
import resource
from dataclasses import replace

import torch
from measure import KernelCalls, count_flops, kernels_alone_seconds, timed

from magi.compilation import compile_dit
from magi.config import apply_overrides
from magi.models.dit import DiT
from magi.models.vae import TransformerVAE
from magi.presets import get_preset
from magi.sampling import sampler as sampler_module
from magi.sampling.sampler import generate

FLOOR = "1 token per frame"
KERNELS = "matmuls + attention alone"


def matmul_peak(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", default="tiny,physics-64")
    parser.add_argument("--steps", default="8,16")
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--batch", default="1", help="videos generated together (comma-separated)")
    parser.add_argument("--samplers", default="preset",
                        help='";"-separated sampler variants: "preset", or comma-separated overrides such as '
                             '"window_size=4,context_chunks=4"')
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rebuild_tables", action="store_true",
                        help="also time each generation with the shape tables rebuilt in every forward")
    parser.add_argument("--text_every_forward", action="store_true",
                        help="also time each generation with the text projected in every forward")
    parser.add_argument("--no_grad", action="store_true",
                        help="also time each generation under no_grad instead of inference_mode")
    parser.add_argument("--overhead", action="store_true",
                        help="also time each generation at one token per latent frame (the per-op floor)")
    parser.add_argument("--kernels", action="store_true",
                        help="also time the generation's matmul and attention calls each on its own (a bound on MFU)")
    parser.add_argument("--compile", default="",
                        help='also time each generation with the DiT compiled: "dit", "blocks" or "dit,blocks"')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# peak fp32 matmul: {matmul_peak() / 1e9:.1f} GFLOP/s on {torch.get_num_threads()} threads at the start")
    print("| preset | sampler | videos | steps | guidance | variant | DiT GFLOP / frame | attention share | "
          "s / frame | peak GFLOP/s beside | MFU | real-time factor | VAE decode s / frame | peak RSS MiB |")
    print("|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    sampler_variants = args.samplers.split(";")
    compiling = []  # the compiled variants' first runs
    for name in args.presets.split(","):
        cfg = get_preset(name)
        torch.manual_seed(0)
        dit, vae = DiT(cfg.dit).eval(), TransformerVAE(cfg.vae).eval()
        compiled = {f"compiled ({scope})": compile_dit(copy.deepcopy(dit), scope)  # compiles on first use
                    for scope in args.compile.split(",") if scope}
        shape = cfg.latent_shape
        for batch in [int(b) for b in args.batch.split(",")]:
            context = torch.randn(batch, cfg.dit.context_max_length, cfg.dit.context_dim)
            mask = torch.ones(batch, cfg.dit.context_max_length, dtype=torch.bool)
            frames = batch * args.chunks * cfg.frames_per_chunk  # of all the videos together
            runs = [(int(s), v, g) for s in args.steps.split(",") for v in sampler_variants
                    for g in ("none", cfg.sampler.guidance)]
            for steps, variant_name, guidance in runs:
                overrides = [] if variant_name == "preset" else variant_name.split(",")
                sampler = replace(apply_overrides(cfg.sampler, overrides), steps=steps, guidance=guidance)

                def run(dit=dit, sampler=sampler, context=context, mask=mask, shape=shape):
                    # (the compiled variant passes its own DiT)
                    return generate(dit, sampler, context, mask, num_chunks=args.chunks, latent_shape=shape)

                flops, by_op, latents = count_flops(run)  # also the warm-up
                attention = by_op.get("_scaled_dot_product_flash_attention_for_cpu", 0) / flops
                variants = {"shipped": run}
                if args.rebuild_tables:
                    variants["tables rebuilt"] = lambda run=run, dit=dit: rebuilding_tables(dit, run)
                if args.text_every_forward:
                    variants["text every forward"] = lambda run=run, dit=dit: projecting_text_every_forward(dit, run)
                if args.no_grad:
                    variants["no_grad"] = lambda run=run: under_no_grad(run)
                if args.overhead:
                    p = cfg.dit.patch_size
                    variants[FLOOR] = lambda run=run, c=shape[0], p=p: run(shape=(c, p, p))
                for label, model in compiled.items():
                    variants[label] = lambda run=run, model=model: run(dit=model)
                    compiling.append(f"{name} {variant_name} {batch} {steps} {guidance} {label}: "
                                     f"{timed(variants[label]):.1f} s")
                if args.kernels:
                    with KernelCalls() as kernels:
                        run()
                best = dict.fromkeys([*variants, *[KERNELS] * args.kernels], float("inf"))
                peak = 0.0
                for _ in range(2 if len(best) == 1 else 6):  # alternate: same machine state for all
                    best.update({v: min(best[v], timed(f)) for v, f in variants.items()})
                    if args.kernels:
                        best[KERNELS] = min(best[KERNELS], kernels_alone_seconds(kernels.calls))
                    peak = max(peak, matmul_peak(repeats=2))
                with torch.no_grad():
                    decode = timed(lambda vae=vae, latents=latents: list(vae.iter_decode(latents)))
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                for variant, seconds in best.items():
                    print(f"| {name} | {variant_name} | {batch} | {steps} | {guidance} | {variant} | "
                          f"{flops / frames / 1e9:.3f} | {attention:.0%} | {seconds / frames:.4f} | "
                          f"{peak / 1e9:.1f} | {'-' if variant == FLOOR else f'{flops / seconds / peak:.0%}'} | "
                          f"{seconds / frames * cfg.video.fps:.3f} | {decode / frames:.4f} | {rss:.0f} |",
                          flush=True)
    if compiling:
        print("# first runs of the compiled variants (preset, sampler, videos, steps, guidance), which compile "
              "the shapes not met before:\n# " + "\n# ".join(compiling))


def rebuilding_tables(dit: DiT, run):
    """``run()`` with the DiT's per-shape RoPE tables and mask dropped before every forward."""
    hook = dit.register_forward_pre_hook(lambda *_: dit._shape_tables.clear())
    try:
        return run()
    finally:
        hook.remove()


def projecting_text_every_forward(dit: DiT, run):
    """``run()`` with no text keys and values handed to the DiT: every forward projects the text again."""
    dit.text_kv = lambda context, mask: None  # an instance attribute shadows the method
    try:
        return run()
    finally:
        del dit.text_kv


def under_no_grad(run):
    """``run()`` with the sampler under ``torch.no_grad`` (autograd still tracks versions and views) instead of
    the ``torch.inference_mode`` it is decorated with."""
    shipped = sampler_module.iter_generate
    sampler_module.iter_generate = torch.no_grad()(shipped.__wrapped__)  # generate() looks it up in the module
    try:
        return run()
    finally:
        sampler_module.iter_generate = shipped


if __name__ == "__main__":
    main()
