"""Memory plan of generation from a config alone: what each device and the host hold at the peak.

Layout (MAGI-1's inference engine): every device holds the DiT weights (bf16 or fp8; with
``offload="blocks"`` the host holds the blocks and the device one block at a time); the tokens of a forward
are split across devices by context parallelism (Ulysses all-to-all over heads), and so is the KV cache of
the clean chunks, which ``sampler.kv_offload`` keeps on the host. Attention runs per chunk over its key
slice (no masks), so every term grows linearly with the tokens. The numbers count the dominant tensors of
the largest forward; they are an estimate, set beside measured peaks in docs/benchmarks.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from magi.config import RunConfig
from magi.presets import magi_vae

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
FLOAT32 = 4
# the published MAGI-1 VAE's decode tile (fps / 2 frames of 256 x 256 pixels) in tokens
MAGI_VAE_TILE_TOKENS = 3 * 32 * 32
# t5-v1_1-xxl's encoder, held in float32 where the text runs (the official keeps it on the 4.5B's CPU)
T5_XXL_ENCODER_PARAMS = 4_762_000_000
GIB = 2**30


@dataclass(frozen=True)
class Envelope:
    """A published memory target: the preset, its settings and the VRAM it must fit in."""

    preset: str
    overrides: tuple[str, ...]
    vram_gib: float
    what: str


ENVELOPES = (
    Envelope("magi-4.5b", ("video.height=720", "video.width=720", "video.num_frames=96"), 24.0,
             "magi-4.5b at 720x720, 96 frames, on one 24 GB GPU (T5 on the CPU, KV cache offloaded)"),
    Envelope("magi-4.5b-distill-fp8", ("video.height=720", "video.width=720", "video.num_frames=96",
                                       "sampler.window_size=1"), 12.0,
             "magi-4.5b-distill-fp8 with window 1 on one 12 GB GPU"),
)


@dataclass(frozen=True)
class MemoryPlan:
    devices: int
    dit_params: int
    tokens_per_chunk: int
    forward_rows: int  # batch rows of the largest forward (guidance branches)
    forward_chunks: int  # chunks in that forward (in flight, and the clean one fed to the cache)
    device: dict[str, int]  # what each device holds at the peak, bytes
    host: dict[str, int]  # what the host holds, bytes

    @property
    def device_bytes(self) -> int:
        return sum(self.device.values())

    @property
    def host_bytes(self) -> int:
        return sum(self.host.values())


def dit_parameter_count(cfg: RunConfig) -> int:
    import torch

    from magi.models.dit import DiT

    with torch.device("meta"):
        return sum(p.numel() for p in DiT(cfg.dit).parameters())


def dit_weight_bytes(cfg: RunConfig) -> tuple[int, int]:
    """(bytes of the whole DiT, bytes of its largest block) as built: fp8 linears at 1 byte (+ a float32
    scale per row), the modules a precision policy keeps in float32 at 4, the rest at the run's dtype."""
    import torch

    from magi.models.dit import DiT
    from magi.quant.fp8 import quantize_
    from magi.sampling.pipeline import apply_precision

    with torch.device("meta"):
        dit = quantize_(apply_precision(DiT(cfg.dit), cfg), cfg.quant)

    def size(module: torch.nn.Module) -> int:
        return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))

    return size(dit), max(size(block) for block in dit.blocks)


def plan(cfg: RunConfig, devices: int) -> MemoryPlan:
    if devices < 1:
        raise ValueError(f"--gpus must be >= 1, got {devices}")
    d, s, act = cfg.dit, cfg.sampler, BYTES[cfg.dtype]
    if d.num_heads % devices or (d.num_kv_heads % devices and devices % d.num_kv_heads):
        raise ValueError(f"{devices} devices cannot split {d.num_heads} query / {d.num_kv_heads} K/V heads evenly "
                         f"(Ulysses context parallelism)")
    official = s.procedure == "magi1"
    if official:  # text and null-text branches in one forward; distilled: one; the cache shared by the branches
        rows, cache_rows = (1 if s.distilled else 2), 1
        from magi.sampling.magi1 import cached_chunks as magi1_cached_chunks

        cached_chunks = magi1_cached_chunks(s)
    else:
        rows = {"none": 1, "text": 2, "text_and_prefix": 3}[s.guidance]
        cache_rows, cached_chunks = rows if s.guidance != "text_and_prefix" else 2, s.context_chunks
    h = cfg.video.height // cfg.vae.patch_hw // d.patch_size
    w = cfg.video.width // cfg.vae.patch_hw // d.patch_size
    tpc = d.chunk_frames * h * w
    chunks = s.window_size + 1  # in flight, and the clean chunk fed to the cache
    tokens = -(-rows * chunks * tpc // devices)  # token rows of the largest forward, this device's share
    q_dim, kv_dim = d.num_heads * d.head_dim, d.num_kv_heads * d.head_dim
    ffn = d.ffn_dim * (2 if d.gated_ffn else 1)
    # bytes per token at the block's two peaks: the attention (x, its norm, q k v before and after norm and
    # RoPE, cross q, self and cross outputs and their concatenation, the projection) and the FFN (x, its
    # norm, the hidden layer before and after the activation); with fp8 on a GPU the FFN's output linear also
    # holds its input (the hidden layer) as float32 and as fp8 while it quantizes it
    fp8_input = d.ffn_dim * (FLOAT32 + 1) if cfg.quant.mode == "fp8" else 0
    per_token_bytes = max((3 * d.dim + 2 * (q_dim + 2 * kv_dim) + 5 * q_dim) * act,
                          (3 * d.dim + 2 * ffn) * act + fp8_input)
    weights, block = dit_weight_bytes(cfg)
    params = dit_parameter_count(cfg)
    kv_per_chunk = tpc * d.depth * 2 * kv_dim * act // devices  # one row's K/V of one chunk, all layers
    kv_cache = cached_chunks * cache_rows * kv_per_chunk
    # attention per chunk: one layer's keys and values over the widest range (cache + forward, every row),
    # and the softmax statistics (float32) of one chunk's queries
    widest = cached_chunks + chunks
    attention = rows * widest * tpc * 2 * kv_dim * act // devices + rows * tpc * d.num_heads * FLOAT32 // devices
    text = rows * chunks * d.context_max_length * (d.context_dim * FLOAT32 + 2 * d.dim * act)
    published_vae = replace(cfg.vae, device="") == magi_vae()  # the magi-* presets' VAE, wherever it runs
    vae_params = _vae_params(cfg, published_vae)
    vae_tile = (MAGI_VAE_TILE_TOKENS if published_vae else cfg.vae.segment_frames * (cfg.video.height // 8) *
                (cfg.video.width // 8)) * cfg.vae.dim * 8 * act
    device = {
        "DiT weights" + (" (blocks on the host: one on the device)" if cfg.offload == "blocks" else ""):
            (weights - block * d.depth + block) if cfg.offload == "blocks" else weights,
        "activations (largest forward, one block)": tokens * per_token_bytes,
        "attention (keys of one layer, widest range)": attention,
        "KV cache" + (" (offloaded: one layer's visible part)" if s.kv_offload else ""):
            (widest * rows * tpc * 2 * kv_dim * act // devices) if s.kv_offload else kv_cache,
        "text": text,
        "VAE weights and one decode tile": vae_params * act + vae_tile,
    }
    host = {}
    if cfg.text.device == "cpu":
        host["text encoder (float32)"] = (T5_XXL_ENCODER_PARAMS if cfg.text.kind == "t5" else 0) * FLOAT32
    if s.kv_offload:  # pinned host blocks, one per layer, chunk and K or V, each rounded up to a power of two
        # by PyTorch's pinned-memory allocator (and reused as chunks come and go)
        block_bytes = cache_rows * tpc * kv_dim * act // devices
        host["KV cache (pinned, per-chunk blocks)"] = cached_chunks * d.depth * 2 * _power_of_two(block_bytes) * devices
    if cfg.offload == "blocks":  # one pinned buffer per block, rounded up to a power of two
        host["DiT blocks"] = _power_of_two(block) * d.depth
    return MemoryPlan(devices, params, tpc, rows, chunks, device, host)


def _power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _vae_params(cfg: RunConfig, published: bool) -> int:
    import torch

    from magi.models.magi_vae import MagiVAE, MagiVAEConfig
    from magi.models.vae import TransformerVAE

    with torch.device("meta"):
        vae = MagiVAE(MagiVAEConfig.magi()) if published else TransformerVAE(cfg.vae)
        return sum(p.numel() for p in vae.parameters())


def format_plan(cfg: RunConfig, p: MemoryPlan) -> str:
    width = max(len(name) for name in (*p.device, *p.host, "total per device"))
    lines = [f"{cfg.name} at {cfg.video.height}x{cfg.video.width}, {cfg.video.num_frames} frames, "
             f"{p.devices} device(s) ({cfg.dtype}" + (", fp8 weights" if cfg.quant.mode == "fp8" else "") + ")",
             f"layout: weights replicated; tokens and KV cache split by context parallelism (Ulysses over "
             f"{cfg.dit.num_heads} heads); largest forward: {p.forward_rows} row(s) x {p.forward_chunks} chunks "
             f"of {p.tokens_per_chunk:,} tokens; DiT {p.dit_params / 1e9:.2f} B parameters",
             "VRAM per device:",
             *[f"  {name:<{width}}  {value / GIB:7.2f} GiB" for name, value in p.device.items()],
             f"  {'total per device':<{width}}  {p.device_bytes / GIB:7.2f} GiB",
             "host RAM:",
             *[f"  {name:<{width}}  {value / GIB:7.2f} GiB" for name, value in p.host.items()],
             f"  {'total':<{width}}  {p.host_bytes / GIB:7.2f} GiB"]
    return "\n".join(lines)


def envelope_lines() -> list[str]:
    """Each published envelope: the plan's VRAM against the target."""
    from magi.config import apply_overrides
    from magi.presets import get_preset

    lines = []
    for envelope in ENVELOPES:
        cfg = apply_overrides(get_preset(envelope.preset), list(envelope.overrides))
        vram = plan(cfg, 1).device_bytes / GIB
        mark = "met" if vram <= envelope.vram_gib else "NOT met"
        lines.append(f"{envelope.what}: {vram:.1f} GiB of {envelope.vram_gib:g} GiB ({mark})")
    return lines
