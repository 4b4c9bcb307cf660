"""Context parallelism on 2 gloo CPU processes equals the single-process result: the DiT (with and without
KV cache), the VAE encode / decode, and ``magi generate`` launched by torchrun."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from conftest import randomize_
from magi.config import DiTConfig, SamplerConfig, VAEConfig
from magi.models.dit import DiT
from magi.models.vae import TransformerVAE
from magi.sampling.sampler import generate

pytestmark = pytest.mark.slow  # torchrun / gloo processes: run by .ci/run; `pytest -m 'not slow'` skips it

CFG = DiTConfig(in_channels=4, dim=64, depth=3, num_heads=4, num_kv_heads=2, head_dim=16, ffn_dim=96,
                context_dim=24, context_max_length=8, chunk_frames=2)
SAMPLER = SamplerConfig(steps=4, window_size=2, context_chunks=2, guidance="text_and_prefix")  # all 3 branches
VAE = VAEConfig(latent_channels=4, dim=32, num_heads=4, encoder_depth=2, decoder_depth=2, segment_frames=3)


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


@torch.no_grad()
def run_vae() -> dict[str, torch.Tensor]:
    """Encode and decode 5 latent frames: two segments (3 + 2 frames) of 8x8 tokens."""
    vae = randomize_(TransformerVAE(VAE), seed=2).eval()
    if dist.is_initialized():
        from magi.parallel.context import parallelize_vae

        parallelize_vae(vae)
    g = torch.Generator().manual_seed(3)
    video = torch.rand(1, 3, 5 * VAE.patch_t, 8 * VAE.patch_hw, 8 * VAE.patch_hw, generator=g) * 2 - 1
    latents = torch.randn(1, VAE.latent_channels, 5, 8, 8, generator=g)
    return {"encode": vae.encode(video), "decode": vae.decode(latents)}


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        results = {f"kv{int(kv)}": run_generation(kv) for kv in (True, False)} | run_vae()
        if rank == 0:
            save_file({k: v.contiguous() for k, v in results.items()}, out)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



@pytest.fixture(scope="module")
def parallel_results(tmp_path_factory):
    """One 2-process run computes everything the tests below compare against one process."""
    out = str(tmp_path_factory.mktemp("parallel") / "results.safetensors")
    mp.spawn(worker, args=(2, free_port(), out), nprocs=2, join=True)
    return load_file(out)


def test_context_parallel_generation_matches_single_process(parallel_results):
    for kv in (True, False):
        single = run_generation(kv)
        torch.testing.assert_close(parallel_results[f"kv{int(kv)}"], single, atol=1e-5, rtol=1e-5)


def test_vae_split_over_ranks_matches_single_process(parallel_results):
    single = run_vae()
    for name in ("encode", "decode"):
        torch.testing.assert_close(parallel_results[name], single[name], atol=1e-5, rtol=1e-5)


def test_generate_under_torchrun_matches_one_process(tmp_path):
    """``torchrun --nproc_per_node 2 -m magi generate`` (DiT and VAE split over 2 gloo processes) writes the
    video that one process writes, and only rank 0 writes."""
    import subprocess
    import sys

    import numpy as np

    from magi.io.video import read_video, write_video

    rng = np.random.default_rng(0)
    write_video(tmp_path / "prefix.mp4", rng.integers(0, 256, (24, 64, 64, 3), dtype=np.uint8), fps=8)
    args = ["generate", "--mode", "v2v", "--prefix_video_path", str(tmp_path / "prefix.mp4"), "--prompt", "a ball",
            "--num_frames", "24", "--preset", "tiny", "--set", "text.kind=hash", "--steps", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "magi", *args, "--output_path", str(tmp_path / "one.mp4")],
                         capture_output=True, text=True, env=env)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(free_port()), "-m", "magi", *args,
                          "--output_path", str(tmp_path / "two.mp4")], capture_output=True, text=True, env=env)
    assert one.returncode == 0 and two.returncode == 0, one.stderr[-2000:] + two.stderr[-2000:]
    assert two.stdout.count("wrote ") == 1
    a, b = read_video(tmp_path / "one.mp4")[0], read_video(tmp_path / "two.mp4")[0]
    assert a.shape == b.shape == (48, 64, 64, 3)
    np.testing.assert_array_equal(a, b)
