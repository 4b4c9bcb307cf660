"""Memory plan of generation from a config alone: weights, activations and KV cache per device.

Layout (MAGI-1's inference engine): every device holds the full DiT weights (bf16 or fp8); the tokens of the
chunks in flight are split across devices by context parallelism (Ulysses all-to-all over heads), and so is
the KV cache of the clean chunks; the VAE splits each segment's tokens the same way. The numbers are
estimates of the dominant tensors, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

from magi.config import RunConfig

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class MemoryPlan:
    devices: int
    dit_params: int
    weight_bytes: int  # per device (replicated)
    tokens_per_chunk: int
    tokens_per_device: int  # chunks in flight, this device's share
    activation_bytes: int  # peak transient activations of one block, per device
    kv_cache_bytes: int  # clean-chunk K/V of all layers, per device
    text_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes + self.kv_cache_bytes + self.text_bytes


def dit_parameter_count(cfg: RunConfig) -> int:
    import torch

    from magi.models.dit import DiT

    with torch.device("meta"):
        return sum(p.numel() for p in DiT(cfg.dit).parameters())


def plan(cfg: RunConfig, devices: int, batch_branches: int | None = None) -> MemoryPlan:
    """``batch_branches``: forward passes batched together (3 with text+prefix guidance, 1 distilled)."""
    if devices < 1:
        raise ValueError(f"--gpus must be >= 1, got {devices}")
    d, act = cfg.dit, BYTES[cfg.dtype]
    if d.num_heads % devices or (d.num_kv_heads % devices and devices % d.num_kv_heads):
        raise ValueError(f"{devices} devices cannot split {d.num_heads} query / {d.num_kv_heads} K/V heads evenly "
                         f"(Ulysses context parallelism)")
    branches = batch_branches or {"none": 1, "text": 2, "text_and_prefix": 3}[cfg.sampler.guidance]
    params = dit_parameter_count(cfg)
    weight_bytes = params * (1 if cfg.quant.mode == "fp8" else act)
    h = cfg.video.height // cfg.vae.patch_hw // d.patch_size
    w = cfg.video.width // cfg.vae.patch_hw // d.patch_size
    tokens_per_chunk = d.chunk_frames // d.t_patch_size * h * w
    in_flight = tokens_per_chunk * cfg.sampler.window_size * branches
    per_device = -(-in_flight // devices)
    ffn_width = d.ffn_dim * (2 if d.gated_ffn else 1)
    q_dim, kv_dim = d.num_heads * d.head_dim, d.num_kv_heads * d.head_dim
    # residual + normed input + [q, k, v, cross q] + attention output (self ; cross) + FFN hidden
    block = per_device * (2 * d.dim + 2 * q_dim + 2 * kv_dim + 2 * q_dim + ffn_width)
    kv_cache = cfg.sampler.context_chunks * tokens_per_chunk * branches * d.depth * 2 * kv_dim * act // devices
    text = branches * d.context_max_length * (d.context_dim + d.dim) * act
    return MemoryPlan(devices, params, weight_bytes, tokens_per_chunk, per_device, block * act, kv_cache, text)


def format_plan(cfg: RunConfig, p: MemoryPlan) -> str:
    gib = 2**30
    rows = [
        ("DiT parameters", f"{p.dit_params / 1e9:.2f} B"),
        ("weights per device" + (" (fp8)" if cfg.quant.mode == "fp8" else f" ({cfg.dtype})"),
         f"{p.weight_bytes / gib:.1f} GiB"),
        ("tokens per chunk", f"{p.tokens_per_chunk:,}"),
        ("tokens per device (window x guidance branches / devices)", f"{p.tokens_per_device:,}"),
        ("activations per device (one block)", f"{p.activation_bytes / gib:.2f} GiB"),
        (f"KV cache per device ({cfg.sampler.context_chunks} clean chunks)", f"{p.kv_cache_bytes / gib:.2f} GiB"),
        ("text context", f"{p.text_bytes / gib:.3f} GiB"),
        ("total per device", f"{p.total_bytes / gib:.1f} GiB"),
    ]
    layout = (f"layout: {p.devices} device(s); weights replicated; tokens and KV cache split by context "
              f"parallelism (Ulysses over {cfg.dit.num_heads} heads); VAE tokens split the same way")
    width = max(len(name) for name, _ in rows)
    return "\n".join([f"{cfg.name} at {cfg.video.height}x{cfg.video.width}, {p.devices} device(s)", layout,
                      *[f"  {name:<{width}}  {value}" for name, value in rows]])
