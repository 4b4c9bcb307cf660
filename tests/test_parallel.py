"""Context parallelism on 2 gloo CPU processes equals the single-process result."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from conftest import randomize_
from magi.config import DiTConfig, SamplerConfig
from magi.models.dit import DiT
from magi.sampling.sampler import generate

CFG = DiTConfig(in_channels=4, dim=64, depth=3, num_heads=4, num_kv_heads=2, head_dim=16, ffn_dim=96,
                context_dim=24, context_max_length=8, chunk_frames=2)
SAMPLER = SamplerConfig(steps=4, window_size=2, context_chunks=2, guidance="text")


def run_generation(use_kv_cache: bool) -> torch.Tensor:
    torch.manual_seed(0)
    dit = randomize_(DiT(CFG), seed=0).eval()
    g = torch.Generator().manual_seed(1)
    context, mask = torch.randn(1, 5, CFG.context_dim, generator=g), torch.ones(1, 5, dtype=torch.bool)
    if dist.is_initialized():
        from magi.parallel.context import parallelize_context

        parallelize_context(dit)
    return generate(dit, SAMPLER, context, mask, num_chunks=3, latent_shape=(CFG.in_channels, 4, 4),
                    use_kv_cache=use_kv_cache)


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        results = {f"kv{int(kv)}": run_generation(kv) for kv in (True, False)}
        if rank == 0:
            save_file({k: v.contiguous() for k, v in results.items()}, out)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def test_context_parallel_generation_matches_single_process(tmp_path):
    out = str(tmp_path / "latents.safetensors")
    mp.spawn(worker, args=(2, free_port(), out), nprocs=2, join=True)
    parallel = load_file(out)
    for kv in (True, False):
        single = run_generation(kv)
        torch.testing.assert_close(parallel[f"kv{int(kv)}"], single, atol=1e-5, rtol=1e-5)
