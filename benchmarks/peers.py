"""Peers from diffusers at matched size: SkyReels-V2 diffusion forcing (generation), Wan's VAE (decode).

    python benchmarks/peers.py [--preset physics-64] [--steps 16] [--chunks 4,8] [--guidance none,cfg]
        [--big dim=512,depth=8,...] [--vae-frames 6] [--vae-sizes 64,256] [--repeats 3]

Needs the ``bench`` extra (``pip install -e .[bench]``: diffusers). Random weights on both sides.

Generation, DiT only (no text encoder, no VAE decode). Ours: ``magi.sampling.sampler.generate`` (chunks
of ``chunk_frames`` latent frames, ``window_size`` chunks in flight, KV cache of clean chunks). Peer: the
real ``SkyReelsV2DiffusionForcingPipeline.__call__`` with ``prompt_embeds`` and ``output_type="latent"``,
around a ``SkyReelsV2Transformer3DModel`` with our DiT's heads, head size, depth, patch size, latent
channels and text width, and its FFN width fitted so that the parameter counts match. Same latent frames,
same random text embeddings (32 tokens), same steps. Diffusion forcing is asynchronous:
``causal_block_size`` = our chunk, ``ar_step`` = steps / window_size (our stagger between chunks), base
window = window_size chunks; longer videos use the pipeline's long-video mode (``overlap_history`` = one
block, ``addnoise_condition=20``). Guidance "none": one model evaluation per step on both sides; "cfg":
two on both (ours ``guidance="text"``, batched in one pass; SkyReels ``guidance_scale=6``, two passes).
Seconds per *video* frame: L latent frames decode to 4L frames with our VAE, to 4L - 3 with Wan's.

VAE decode: ``TransformerVAE.decode`` against ``AutoencoderKLWan.decode`` with decoders of matched
parameter count (Wan's width fitted to ours; ours scaled to Wan's default), same latent resolution
(16 channels, 8x spatial). Wan gets one latent frame more (its layout is 1 + 4k frames), so the output
frame counts differ by one; times are per output frame.

Each time is the minimum over ``--repeats`` runs, the two contenders interleaved (A, B, A, B ...) after
one warm-up run each; the ratio is peer / ours (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
import platform
import sys
from dataclasses import replace

import torch
from measure import peak_rss_growth, timed

from magi.config import DiTConfig, SamplerConfig, VAEConfig
from magi.models.dit import DiT
from magi.models.vae import TransformerVAE
from magi.presets import get_preset
from magi.sampling.sampler import generate

try:
    import diffusers
except ImportError:  # optional: the ``bench`` extra
    diffusers = None

TEXT_TOKENS = 32
CFG_SCALE = 6.0  # SkyReels-V2 T2V default; ours keeps the preset's text scales (timing depends on neither)
ADDNOISE_CONDITION = 20  # the pipeline's recommended value for long videos
WAN_DECODER = ("decoder", "post_quant_conv")  # parameter-name prefixes of each decoder
OUR_DECODER = ("decoder",)  # decoder_in, decoder (blocks), decoder_norm, decoder_out
BIG = "dim=512,depth=8,num_heads=8,num_kv_heads=4,head_dim=64,ffn_dim=1536"  # ~33 M parameters


def interleaved(fns: list, repeats: int, warmup=None, measure=timed) -> list[float]:
    """``warmup(fn)`` (default: a call) for each, then ``repeats`` rounds A, B, A, B ...; min of each."""
    for fn in fns:
        (warmup or (lambda f: f()))(fn)
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            ts.append(measure(fn))
    return [min(ts) for ts in times]


def count_params(module: torch.nn.Module, prefixes: tuple[str, ...] = ("",)) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if n.startswith(prefixes))


def count_calls(module: torch.nn.Module, fn) -> tuple[int, object]:
    """Run ``fn`` once: how many times ``module`` was called, and what ``fn`` returned."""
    calls = [0]
    handle = module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        out = fn()
    finally:
        handle.remove()
    return calls[0], out


# --- generation: our DiT vs the SkyReels-V2 diffusion-forcing pipeline ---------------------------------

def skyreels_transformer(dit_cfg: DiTConfig, target_params: int):
    """SkyReelsV2Transformer3DModel shaped like our DiT, FFN width (multiple of 32) fitted to
    ``target_params``. ``inject_sample_info``: the fps embedding of the diffusion-forcing checkpoints."""
    def build(ffn_dim: int, device: str = "cpu"):
        with torch.device(device):
            return diffusers.SkyReelsV2Transformer3DModel(
                patch_size=(1, dit_cfg.patch_size, dit_cfg.patch_size),
                num_attention_heads=dit_cfg.num_heads, attention_head_dim=dit_cfg.head_dim,
                in_channels=dit_cfg.in_channels, out_channels=dit_cfg.in_channels,
                text_dim=dit_cfg.context_dim, ffn_dim=ffn_dim, num_layers=dit_cfg.depth,
                inject_sample_info=True)

    a, b = (count_params(build(f, "meta")) for f in (32, 64))  # the count is linear in ffn_dim
    ffn_dim = 32 + (target_params - a) / ((b - a) / 32)
    return build(max(32, round(ffn_dim / 32) * 32)).eval()


def run_generation(name: str, dit_cfg: DiTConfig, sampler_cfg: SamplerConfig, latent_size: int,
                   chunks: int, guidance: str, repeats: int) -> None:
    torch.manual_seed(0)
    dit = DiT(dit_cfg).eval()
    ours_params = count_params(dit)
    peer = skyreels_transformer(dit_cfg, ours_params)
    scheduler = diffusers.UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                  flow_shift=sampler_cfg.shift)
    pipe = diffusers.SkyReelsV2DiffusionForcingPipeline(tokenizer=None, text_encoder=None, transformer=peer,
                                                        vae=None, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)

    F, W, p = dit_cfg.chunk_frames, sampler_cfg.window_size, dit_cfg.patch_size
    h = w = latent_size
    latent_frames = chunks * F
    base_latent = W * F  # the pipeline's window: as many frames as ours has in flight
    long_video = latent_frames > base_latent
    guided = guidance != "none"
    context = torch.randn(1, TEXT_TOKENS, dit_cfg.context_dim)
    negative = torch.randn(1, TEXT_TOKENS, dit_cfg.context_dim)
    mask = torch.ones(1, TEXT_TOKENS, dtype=torch.bool)
    sampler = replace(sampler_cfg, guidance="text" if guided else "none")
    peer_kwargs = dict(
        prompt=None, prompt_embeds=context, negative_prompt_embeds=negative if guided else None,
        height=h * 8, width=w * 8, num_frames=4 * (latent_frames - 1) + 1,
        base_num_frames=4 * (base_latent - 1) + 1, num_inference_steps=sampler.steps,
        guidance_scale=CFG_SCALE if guided else 1.0, ar_step=sampler.steps // W, causal_block_size=F,
        overlap_history=4 * (F - 1) + 1 if long_video else None,  # one block of latent frames
        addnoise_condition=ADDNOISE_CONDITION if long_video else 0, output_type="latent")

    def ours():
        return generate(dit, sampler, context, mask, num_chunks=chunks,
                        latent_shape=(dit_cfg.in_channels, h, w))

    def theirs():
        return pipe(**peer_kwargs, generator=torch.Generator().manual_seed(0)).frames

    seen = {}  # the warm-up run of each counts its DiT passes and keeps its output

    def warmup(fn):
        seen[fn] = count_calls(dit if fn is ours else peer, fn)

    t_ours, t_theirs = interleaved([ours, theirs], repeats, warmup)
    (passes_ours, out_ours), (passes_theirs, out_theirs) = seen[ours], seen[theirs]
    assert out_ours.shape == out_theirs.shape, (out_ours.shape, out_theirs.shape)
    frames_ours, frames_theirs = 4 * latent_frames, 4 * latent_frames - 3
    tokens = latent_frames * (h // p) * (w // p)
    s_ours, s_theirs = t_ours / frames_ours, t_theirs / frames_theirs
    print(f"| {name} | {ours_params / 1e6:.2f} / {count_params(peer) / 1e6:.2f} | "
          f"{latent_frames} x {h}x{w} ({tokens}) | {sampler.steps} | {guidance} | "
          f"{passes_ours} / {passes_theirs} | {frames_ours} / {frames_theirs} | {s_ours:.4f} | "
          f"{s_theirs:.4f} | {s_theirs / s_ours:.1f}x |", flush=True)


# --- VAE decode: our transformer VAE vs AutoencoderKLWan -----------------------------------------------

def wan_vae(target_params: int | None):
    """AutoencoderKLWan: its default, or its width fitted to ``target_params`` decoder parameters."""
    if target_params is None:
        return diffusers.AutoencoderKLWan().eval()  # the Wan 2.1 / SkyReels-V2 VAE architecture

    def decoder_params(width: int) -> int:
        with torch.device("meta"):
            wan = diffusers.AutoencoderKLWan(base_dim=width, decoder_base_dim=width)
        return count_params(wan, WAN_DECODER)

    width = min(range(4, 129), key=lambda d: abs(decoder_params(d) - target_params))
    return diffusers.AutoencoderKLWan(base_dim=width, decoder_base_dim=width).eval()


def our_vae_matching(base: VAEConfig, target_params: int, dim: int, heads: int) -> VAEConfig:
    """Our VAE at width ``dim``, its decoder depth fitted to ``target_params`` decoder parameters."""
    def config(depth: int) -> VAEConfig:
        return replace(base, dim=dim, num_heads=heads, encoder_depth=1, decoder_depth=depth)

    def decoder_params(depth: int) -> int:
        with torch.device("meta"):
            return count_params(TransformerVAE(config(depth)), OUR_DECODER)

    return config(min(range(1, 97), key=lambda d: abs(decoder_params(d) - target_params)))


def run_vae(name: str, ours_vae: TransformerVAE, wan, size: int, lf: int, repeats: int) -> None:
    z_ours = torch.randn(1, ours_vae.cfg.latent_channels, lf, size // 8, size // 8)
    z_wan = torch.randn(1, wan.config.z_dim, lf + 1, size // 8, size // 8)
    frames, peaks = {}, {}

    def decoder(key: str, fn):
        @torch.no_grad()
        def run() -> float:  # memory is sampled during every call; the time is fn's alone
            peaks[key], seconds = peak_rss_growth(lambda: frames.__setitem__(key, fn().shape[2]))
            return seconds
        return run

    ours = decoder("ours", lambda: ours_vae.decode(z_ours))
    theirs = decoder("wan", lambda: wan.decode(z_wan, return_dict=False)[0])
    t_ours, t_wan = interleaved([ours, theirs], repeats, measure=lambda fn: fn())
    s_ours, s_wan = t_ours / frames["ours"], t_wan / frames["wan"]
    mem = "n/a" if peaks["ours"] is None else f"{peaks['ours']:.0f} / {peaks['wan']:.0f}"
    print(f"| {name} | {size}x{size} | {count_params(ours_vae, OUR_DECODER) / 1e6:.2f} / "
          f"{count_params(wan, WAN_DECODER) / 1e6:.2f} | {lf} / {lf + 1} | "
          f"{frames['ours']} / {frames['wan']} | {s_ours:.4f} | {s_wan:.4f} | {s_wan / s_ours:.1f}x | "
          f"{mem} |", flush=True)


def parse_overrides(text: str) -> dict[str, int]:
    return {k.strip(): int(v) for k, v in (item.split("=") for item in text.split(",") if item.strip())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="physics-64")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    parser.add_argument("--chunks", default="4,8", help="generated chunks per video, comma-separated")
    parser.add_argument("--guidance", default="none,cfg",
                        help="none and/or cfg: the first for every --chunks, the others for the first only")
    parser.add_argument("--big", default=BIG,
                        help="a bigger matched DiT pair, as DiTConfig overrides ('' skips it); "
                             "first --chunks and --guidance only")
    parser.add_argument("--vae-frames", type=int, default=6,
                        help="our latent frames per decode (Wan gets one more)")
    parser.add_argument("--vae-sizes", default="64,256",
                        help="decode resolutions; the first also gets the Wan-default-size row")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    if diffusers is None:
        sys.exit("peers.py needs diffusers: pip install -e .[bench]")
    if not hasattr(diffusers, "SkyReelsV2DiffusionForcingPipeline"):
        sys.exit(f"peers.py needs diffusers >= 0.35 (SkyReels-V2), not {diffusers.__version__}: "
                 "pip install -e .[bench]")
    diffusers.utils.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)

    cfg = get_preset(args.preset)
    if cfg.video.height != cfg.video.width:
        sys.exit("peers.py: square videos only")
    sampler_cfg = replace(cfg.sampler, steps=args.steps or cfg.sampler.steps)
    latent_size = cfg.video.height // cfg.vae.patch_hw
    few = max(1, args.repeats - 1)  # the expensive rows
    W, F = sampler_cfg.window_size, cfg.dit.chunk_frames
    print(f"# {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"torch {torch.__version__}, diffusers {diffusers.__version__}; random weights, fp32; "
          f"min of {args.repeats} interleaved runs ({few} for the big DiT, Wan-default and larger-size rows)")
    print()
    print(f"Generation, DiT only (s per generated video frame; ours: window {W} chunks of {F} latent "
          f"frames; SkyReels-DF: ar_step {sampler_cfg.steps // W}, causal_block_size {F}, "
          f"base {W * F} latent frames)")
    print()
    print("| model | params M ours / SkyReels | latent frames x size (tokens) | steps | guidance | "
          "DiT passes ours / SkyReels | video frames ours / SkyReels | s / frame ours | "
          "s / frame SkyReels-DF | SkyReels / ours |")
    print("|---|---:|---|---:|---|---:|---:|---:|---:|---:|")
    chunk_list = [int(c) for c in args.chunks.split(",")]
    guidances = [g.strip() for g in args.guidance.split(",")]
    for guidance in guidances:  # the first guidance setting for every chunk count, others for the first
        for chunks in chunk_list if guidance == guidances[0] else chunk_list[:1]:
            run_generation(args.preset, cfg.dit, sampler_cfg, latent_size, chunks, guidance, args.repeats)
    if args.big:
        big = replace(cfg.dit, **parse_overrides(args.big))
        run_generation(f"{args.preset}, dim {big.dim} depth {big.depth}", big, sampler_cfg, latent_size,
                       chunk_list[0], guidances[0], few)

    print()
    print("VAE decode (s per output frame; peak RSS growth during a decode)")
    print()
    print("| decoder | resolution | decoder params M ours / Wan | latent frames ours / Wan | "
          "output frames ours / Wan | s / frame ours | s / frame Wan | Wan / ours | peak MiB ours / Wan |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    torch.manual_seed(0)
    ours_vae = TransformerVAE(cfg.vae).eval()
    matched = wan_vae(count_params(ours_vae, OUR_DECODER))
    for i, size in enumerate(int(s) for s in args.vae_sizes.split(",")):
        run_vae(f"{args.preset} vs Wan (matched)", ours_vae, matched, size, args.vae_frames,
                args.repeats if i == 0 else few)
        if i == 0:  # Wan's default size, against ours scaled to the same decoder parameter count
            default = wan_vae(None)
            scaled_cfg = our_vae_matching(cfg.vae, count_params(default, WAN_DECODER), dim=512, heads=8)
            scaled = TransformerVAE(scaled_cfg).eval()
            run_vae(f"ours dim {scaled_cfg.dim} depth {scaled_cfg.decoder_depth} vs Wan (default)", scaled,
                    default, size, args.vae_frames, few)
            del default, scaled


if __name__ == "__main__":
    main()
