import pytest
import torch

from magi.config import DiTConfig, SamplerConfig


def randomize_(module: torch.nn.Module, std: float = 0.05, seed: int = 0) -> torch.nn.Module:
    """Replace the (partly zero) init by random weights so that every path carries signal."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std + (1.0 if p.ndim == 1 else 0.0))
    return module


@pytest.fixture
def dit_cfg() -> DiTConfig:
    return DiTConfig(in_channels=4, dim=64, depth=2, num_heads=4, num_kv_heads=2, head_dim=16, ffn_dim=96,
                     context_dim=24, chunk_frames=2)


@pytest.fixture
def sampler_cfg() -> SamplerConfig:
    return SamplerConfig(steps=8, window_size=4, context_chunks=16)
