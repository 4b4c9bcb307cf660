"""A real-size MAGI-1 DiT on this CPU: a random-weight checkpoint in the published sharded layout, loaded and
run, with the peak host memory against the plan.

    python benchmarks/real_size.py [--preset magi-4.5b] [--dir /tmp/magi-random] [--size 64] [--steps 4]
        [--shard-gib 2] [--device cpu] [--chunks 1] [--set dit.depth=2 ...]

1. Writes (once) random bf16 weights with the published key names, shapes and sharding
   (``model-0000N-of-0000M.safetensors`` + ``model.safetensors.index.json``), shard by shard.
2. In a fresh process: builds the DiT on the meta device and streams the shards onto the CPU in bf16
   (``pipeline.load_dit``), timing it and sampling the peak RSS; then generates one chunk at ``--size``
   pixels with the preset's procedure (``--steps`` steps), again with its peak RSS.
3. Prints a table: model bytes, largest shard, peak RSS while loading and its ratio to (largest shard +
   model), peak RSS while generating, and the plan's DiT weights at that size. With ``--device cuda``
   (scripts/gpu_check.sh) the DiT is streamed onto the GPU and the peak VRAM of generating ``--chunks``
   chunks (5 reach the plan's largest forward: 4 in flight and one fed to the cache) is set against the
   plan's VRAM for the DiT (weights, activations, attention, KV cache, text; the VAE is not loaded).

Random weights give noise, not a video: this measures memory and that the published layout loads and runs.
On the CPU, safetensors hands out tensors backed by the memory-mapped file where no conversion copies them,
so the weights are paged in as the forward first touches them: the peak over loading and generating
together is the figure to set against the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

GIB = 2**30


def write_random_checkpoint(preset: str, folder: Path, shard_bytes: int, overrides: list[str], device: str) -> None:
    from safetensors.torch import save_file

    from magi.config import apply_overrides
    from magi.io.reference import reference_manifest
    from magi.io.weights import SAFETENSORS_INDEX
    from magi.presets import get_preset

    if (folder / SAFETENSORS_INDEX).is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    manifest = reference_manifest(apply_overrides(get_preset(preset), overrides).dit)
    generator = torch.Generator(device).manual_seed(0)  # drawn on the run's device: minutes less on a GPU
    sizes = [0]
    names: list[list[str]] = [[]]
    for name, shape in manifest.items():  # plan the shards first (names only)
        size = 2 * int(torch.Size(shape).numel())
        if sizes[-1] and sizes[-1] + size > shard_bytes:
            names.append([])
            sizes.append(0)
        names[-1].append(name)
        sizes[-1] += size
    weight_map = {}
    for index, shard_names in enumerate(names):
        filename = f"model-{index + 1:05d}-of-{len(names):05d}.safetensors"
        tensors = {}
        for name in shard_names:
            shape = manifest[name]
            scale = 0.02 if len(shape) > 1 else 0.1
            tensors[name] = (torch.randn(shape, generator=generator, device=device) * scale).to(torch.bfloat16).cpu()
            weight_map[name] = filename
        save_file(tensors, str(folder / filename))
        del tensors
        print(f"wrote {filename} ({sizes[index] / GIB:.2f} GiB)", flush=True)
    index_json = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
    (folder / SAFETENSORS_INDEX).write_text(json.dumps(index_json, indent=1))


def child(preset: str, folder: Path, size: int, steps: int, device: str, chunks: int, overrides: list[str]) -> None:
    """Load and run in this process; print one JSON line of measurements."""
    sys.path.insert(0, str(Path(__file__).parent))
    from measure import _rss, peak_rss_growth

    from magi.config import apply_overrides
    from magi.offload import offload_blocks
    from magi.presets import get_preset
    from magi.sampling import magi1
    from magi.sampling.pipeline import load_dit

    cfg = apply_overrides(get_preset(preset), [f"video.height={size}", f"video.width={size}", f"device={device}",
                                               f"sampler.steps={steps}", "sampler.special_tokens=", *overrides])
    cfg = dataclasses.replace(cfg, weights=str(folder))
    holder = {}

    def load() -> None:
        dit = load_dit(cfg, folder, torch.device(device)).eval()  # with offload=blocks: the blocks on the host
        holder["dit"] = offload_blocks(dit, torch.device(device)) if cfg.offload == "blocks" else dit

    start = time.perf_counter()
    base = _rss()
    load_peak, load_seconds = peak_rss_growth(load)
    after_load = (_rss() - base) / 2**20
    dit = holder["dit"]
    model_bytes = sum(t.numel() * t.element_size() for t in (*dit.parameters(), *dit.buffers()))
    side = size // cfg.vae.patch_hw
    context = torch.randn(1, 16, cfg.dit.context_dim)
    mask = torch.ones(1, 16, dtype=torch.bool)

    def generate() -> None:
        holder["chunk"] = list(magi1.iter_generate(dit, cfg.sampler, context, mask, num_chunks=chunks,
                                                   latent_shape=(cfg.dit.latent_channels, side, side)))[-1]

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    run_peak, run_seconds = peak_rss_growth(generate)
    vram = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
    print(json.dumps({"load_peak_mib": load_peak, "load_s": load_seconds, "model_bytes": model_bytes,
                      "after_load_mib": after_load, "peak_mib": max(load_peak, after_load + run_peak),
                      "run_peak_mib": run_peak, "run_s": run_seconds, "total_s": time.perf_counter() - start,
                      "vram_peak": vram, "finite": bool(holder["chunk"].isfinite().all())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="magi-4.5b")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/magi-random"))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--shard-gib", type=float, default=2.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunks", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override (e.g. a smaller dit.depth for a smoke run)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.dir / args.preset
    if args.child:
        child(args.preset, folder, args.size, args.steps, args.device, args.chunks, args.set)
        return

    from magi.config import apply_overrides
    from magi.plan import plan
    from magi.presets import get_preset

    write_random_checkpoint(args.preset, folder, int(args.shard_gib * GIB), args.set, args.device)
    largest = max(p.stat().st_size for p in folder.glob("model-*.safetensors"))
    out = subprocess.run([sys.executable, __file__, "--child", "--preset", args.preset, "--dir", str(args.dir),
                          "--size", str(args.size), "--steps", str(args.steps), "--device", args.device,
                          "--chunks", str(args.chunks), *(f"--set={item}" for item in args.set)],
                         stdout=subprocess.PIPE, text=True, check=True).stdout  # its errors go to our stderr
    m = json.loads(out.strip().splitlines()[-1])
    cfg = apply_overrides(get_preset(args.preset), [f"video.height={args.size}", f"video.width={args.size}",
                                                    *args.set])
    planned_plan = plan(cfg, 1)
    planned = next(v for k, v in planned_plan.device.items() if k.startswith("DiT weights"))
    planned_dit = planned_plan.device_bytes - next(v for k, v in planned_plan.device.items() if k.startswith("VAE"))
    load_peak, peak = m["load_peak_mib"] * 2**20, m["peak_mib"] * 2**20
    print(f"# {args.preset}, random weights in the published layout, bf16, {args.device}, "
          f"{args.size}x{args.size}, {args.steps} steps, {args.chunks} chunk(s)")
    print()
    print("| measure | value |")
    print("|---|---:|")
    print(f"| DiT in memory | {m['model_bytes'] / GIB:.2f} GiB |")
    print(f"| plan: DiT weights | {planned / GIB:.2f} GiB |")
    print(f"| largest shard | {largest / GIB:.2f} GiB |")
    print(f"| peak RSS growth while loading | {load_peak / GIB:.2f} GiB |")
    print(f"| RSS growth after loading | {m['after_load_mib'] / 1024:.2f} GiB |")
    print(f"| load time | {m['load_s']:.0f} s |")
    print(f"| peak RSS growth while generating, over the loaded level | {m['run_peak_mib'] / 1024:.2f} GiB |")
    print(f"| peak RSS growth, loading and generating | {peak / GIB:.2f} GiB |")
    print(f"| ... beyond the model, in largest shards | {(peak - m['model_bytes']) / largest:.2f} |")
    print(f"| generation time | {m['run_s']:.0f} s |")
    if m["vram_peak"]:
        print(f"| peak VRAM (torch.cuda.max_memory_allocated) | {m['vram_peak'] / GIB:.2f} GiB |")
        print(f"| plan: VRAM of the DiT | {planned_dit / GIB:.2f} GiB |")
        kv_host = sum(v for k, v in planned_plan.host.items() if k.startswith("KV cache"))
        print(f"| plan: KV cache on the host (the preset's video length) | {kv_host / GIB:.2f} GiB |")
    print(f"| output finite | {m['finite']} |")


if __name__ == "__main__":
    main()
