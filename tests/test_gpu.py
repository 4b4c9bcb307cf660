"""Checks that need a CUDA device (``pytest -m gpu``; scripts/gpu_check.sh runs them). Skipped elsewhere;
tests/test_devices.py keeps the device discipline checked on the CPU."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from magi.presets import get_preset
from magi.sampling.pipeline import Request, build_pipeline, generate_frames

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def tiny(**changes):
    """The tiny preset with the hash text encoder: these checks are about devices, and the GPU machine may lack
    the MiniLM package (scripts/gpu_check.sh runs with whatever Python the machine has)."""
    run = get_preset("tiny")
    return dataclasses.replace(run, text=dataclasses.replace(run.text, kind="hash"), **changes)


def video(run, **request) -> np.ndarray:
    return np.concatenate(list(generate_frames(build_pipeline(run), Request(**({"mode": "t2v", "prompt": "a ball",
                                                                                 "num_frames": 24} | request)))))


def test_native_generation_on_the_gpu_matches_the_cpu():
    cpu = video(tiny(device="cpu"))
    gpu = video(tiny(device="cuda"))
    assert np.abs(cpu.astype(int) - gpu.astype(int)).mean() < 2.0  # float rounding of another device


def test_offloads_on_the_gpu_give_the_same_video():
    run = tiny(device="cuda")
    plain = video(run)
    offloaded = video(dataclasses.replace(run, offload="blocks",
                                          sampler=dataclasses.replace(run.sampler, kv_offload=True)))
    assert np.array_equal(plain, offloaded)


def test_magi1_procedure_runs_on_the_gpu_with_the_cache_on_the_host():
    from magi.models.dit import DiT
    from magi.models.kv_cache import ChunkKVCache
    from magi.sampling import magi1

    cfg = dataclasses.replace(get_preset("tiny").dit, norm="layernorm", rope="magi", adaln_text="null_token",
                              null_text_tokens=4)
    torch.manual_seed(0)
    dit = DiT(cfg).cuda().eval()
    sampler = dataclasses.replace(get_preset("magi-4.5b").sampler, steps=8, special_tokens=())
    stored = []
    original = ChunkKVCache.store

    def store(self, t):
        out = original(self, t)
        stored.append(out.device.type)
        return out

    ChunkKVCache.store = store
    try:
        chunks = list(magi1.iter_generate(dit, sampler, torch.randn(1, 5, 384), torch.ones(1, 5, dtype=torch.bool),
                                          num_chunks=3, latent_shape=(8, 8, 8), prefix=torch.randn(1, 8, 1, 8, 8)))
    finally:
        ChunkKVCache.store = original
    assert all(c.is_cuda and c.isfinite().all() for c in chunks)
    assert stored and set(stored) == {"cpu"}


def test_fp8_on_the_gpu_within_a_bound_of_bf16():
    run = tiny(device="cuda", dtype="bfloat16")
    bf16 = video(run).astype(float)
    fp8 = video(dataclasses.replace(run, quant=dataclasses.replace(run.quant, mode="fp8"))).astype(float)
    assert np.abs(bf16 - fp8).mean() < 12.0
