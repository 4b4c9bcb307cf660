"""Named configurations. Each preset is a function returning a RunConfig; variants derive from a base.

The MAGI-1 presets carry the published architectures (SandAI-org/MAGI-1 ``example/*/`` configs);
``tiny`` runs on a laptop CPU in seconds and is what the tests use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from magi.config import (
    DiTConfig,
    ImageConfig,
    QuantConfig,
    RunConfig,
    SamplerConfig,
    TextConfig,
    TrainConfig,
    VAEConfig,
    VideoConfig,
)

T5_DIM = 4096  # t5-v1_1-xxl encoder width, what the published checkpoints use


def tiny() -> RunConfig:
    """Random-weight toy model: 64x64 video at 8 fps, runs end to end on a CPU in seconds."""
    return RunConfig(
        name="tiny",
        vae=VAEConfig(latent_channels=8, dim=32, encoder_depth=1, decoder_depth=1, num_heads=2),
        dit=DiTConfig(in_channels=8, dim=64, depth=2, num_heads=4, num_kv_heads=2, head_dim=16, ffn_dim=128,
                      context_dim=384, context_max_length=32),
        text=TextConfig(kind="minilm", dim=384, max_length=32),
        sampler=SamplerConfig(steps=8, window_size=4, shift=3.0, context_chunks=4,
                              text_scales=(2.0, 2.0, 2.0, 1.0, 1.0), prefix_scales=(1.5, 1.5, 1.5, 1.0, 1.0)),
        video=VideoConfig(height=64, width=64, num_frames=48, fps=8),
        # a first-frame model for image-first t2v (sampler.t2v_start=image), off by default
        image=ImageConfig(dit=DiTConfig(in_channels=8, patch_size=1, dim=32, depth=1, num_heads=2, num_kv_heads=1,
                                        head_dim=16, ffn_dim=64, context_dim=384, context_max_length=32,
                                        chunk_frames=1), steps=4),
    )


def physics_64() -> RunConfig:
    """The model trained by this project on simulated physics (64x64, 8 fps) and shipped in the package.

    Weights: ``builtin:physics-64`` (see docs/TRAINING.md for the exact commands that produced them).
    """
    return RunConfig(
        name="physics-64",
        vae=VAEConfig(latent_channels=16, dim=128, encoder_depth=2, decoder_depth=3, num_heads=4,
                      scale_factor=1.084629),  # 1 / std of the trained VAE's latents (fitted at export)
        dit=DiTConfig(in_channels=16, dim=192, depth=4, num_heads=6, num_kv_heads=2, head_dim=32, ffn_dim=512,
                      context_dim=384, context_max_length=32),
        text=TextConfig(kind="minilm", dim=384, max_length=32),
        # One chunk in flight on 2 clean chunks: every forward spans 3 chunks, the length of the training
        # clips (train.clip_chunks); MAGI-1's 4 in flight on 4 spans up to 8 and lost more objects by the
        # 4th generated chunk. Text guidance 2 while t < 0.3: with the cascade fine-tune's weights it beats 4
        # on the caption benchmark and on Physics-IQ-mini (docs/TRAINING.md, "Does the default show ...").
        # Ancestral steps (stochasticity 1) instead of the ODE, on the cascade fine-tune's weights: over 32
        # seeds, t2v count accuracy 48% instead of 38% and the main command's ball one ball in 57% of frames
        # instead of 44%; Physics-IQ-mini 50.91 / 40.25 instead of 48.30 / 39.43 (same document, "Ancestral
        # steps", "How noisy the caption benchmark is")
        sampler=SamplerConfig(steps=16, window_size=1, shift=3.0, context_chunks=2,
                              text_scales=(2.0, 2.0, 2.0, 1.0, 1.0), prefix_scales=(1.5, 1.5, 1.5, 1.0, 1.0),
                              stochasticity=1.0, t2v_start="image"),
        video=VideoConfig(height=64, width=64, num_frames=48, fps=8),
        # the first-frame model of image-first t2v: the DiT's width over one latent frame, one token per latent
        # cell (docs/TRAINING.md, "Image-first t2v")
        image=ImageConfig(dit=DiTConfig(in_channels=16, patch_size=1, dim=192, depth=4, num_heads=6, num_kv_heads=2,
                                        head_dim=32, ffn_dim=512, context_dim=384, context_max_length=32,
                                        chunk_frames=1)),
        weights="builtin:physics-64",
    )


def physics_64_distill() -> RunConfig:
    """The shortcut-distilled physics-64 (guidance distilled in): 8 to 64 steps, one pass per step."""
    base = physics_64()
    return replace(base, name="physics-64-distill", weights="builtin:physics-64-distill",
                   dit=replace(base.dit, step_conditioning=True),
                   # text_scales: the guidance distilled in (the teacher's)
                   sampler=replace(base.sampler, steps=8, solver="shortcut", guidance="none"))


# Training recipes: (preset, phase) -> TrainConfig used by ``magi train <phase> --preset <preset>``.
TRAINING: dict[tuple[str, str], Callable[[], TrainConfig]] = {
    ("physics-64", "vae"): lambda: TrainConfig(steps=1500, batch_size=8, lr=1e-3, warmup_steps=100,
                                               clip_frames=24, kl_weight=1e-6, ema_decay=0.995,
                                               checkpoint_every=100, sample_every=250),
    ("physics-64", "dit"): lambda: TrainConfig(steps=3000, batch_size=16, lr=1e-3, warmup_steps=100,
                                               clip_chunks=3, ema_decay=0.998, checkpoint_every=100,
                                               sample_every=500, caption_dropout=0.1,
                                               prefix_probs=(0.2, 0.3, 0.5)),
    ("physics-64", "image"): lambda: TrainConfig(steps=4000, batch_size=64, lr=1e-3, warmup_steps=100, t_shift=1.0,
                                                 ema_decay=0.998, checkpoint_every=250, sample_every=0,
                                                 caption_dropout=0.1, motion_weight=9.0),
    ("physics-64", "distill"): lambda: TrainConfig(steps=800, batch_size=8, lr=2e-4, warmup_steps=20,
                                                   clip_chunks=3, ema_decay=0.99, checkpoint_every=100,
                                                   sample_every=0, prefix_probs=(0.2, 0.3, 0.5)),
}


def training_config(preset: str, phase: str) -> RunConfig:
    """The preset with its training recipe for ``phase`` (vae or dit); the plain preset if none."""
    cfg = get_preset(preset)
    recipe = TRAINING.get((preset, phase))
    return replace(cfg, weights="", train=recipe()) if recipe else replace(cfg, weights="")


def magi_vae() -> VAEConfig:
    """The published MAGI-1 VAE's config (the magi-* presets')."""
    return VAEConfig(latent_channels=16, dim=1024, encoder_depth=24, decoder_depth=24, num_heads=16,
                     segment_frames=6, scale_factor=0.18215)


def magi_4p5b() -> RunConfig:
    return RunConfig(
        name="magi-4.5b",
        vae=magi_vae(),
        dit=DiTConfig(in_channels=16, dim=3072, depth=34, num_heads=24, num_kv_heads=8, head_dim=128,
                      ffn_dim=12288, gated_ffn=False, context_dim=T5_DIM, context_max_length=800,
                      x_rescale_factor=1.0, norm="layernorm", rope="magi", gelu_approximate="none",
                      adaln_text="null_token", null_text_tokens=50),
        text=TextConfig(kind="t5", path="ckpt/t5", dim=T5_DIM, max_length=800, clean_captions=True),
        # the official procedure (magi.sampling.magi1) with example/4.5B/4.5B_base_config.json's runtime_config;
        # special tokens: the run scripts' PAD_HQ=1 PAD_DURATION=1
        sampler=SamplerConfig(procedure="magi1", steps=64, window_size=4, shift=3.0, context_chunks=5,
                              noise2clean_kvrange=(5, 4, 3, 2), clean_chunk_kvrange=1, clean_t=0.9999,
                              kv_offload=True,  # engine_config kv_offload
                              special_tokens=("HQ", "DURATION")),
        video=VideoConfig(height=720, width=720, num_frames=96, fps=24),
        dtype="bfloat16",
    )


def magi_24b() -> RunConfig:
    base = magi_4p5b()
    return replace(
        base,
        name="magi-24b",
        dit=replace(base.dit, in_channels=32, half_channel_vae=True, dim=6144, depth=48, num_heads=48,
                    num_kv_heads=8, ffn_dim=16384, gated_ffn=True, x_rescale_factor=0.1),
        sampler=replace(base.sampler, steps=32),
        video=replace(base.video, height=720, width=1280),
    )


def distilled(base: RunConfig, steps: int) -> RunConfig:
    """The published distilled variant (``*_distill_config.json``): guidance distilled into one pass, the
    step count embedded by the timestep embedder itself (engine_config distill, cfg_number 1)."""
    return replace(base, name=f"{base.name}-distill",
                   dit=replace(base.dit, step_conditioning=True, step_embedder="time"),
                   sampler=replace(base.sampler, steps=steps, guidance="none", distilled=True))


def fp8(base: RunConfig) -> RunConfig:
    return replace(base, name=f"{base.name}-fp8", quant=QuantConfig(mode="fp8"))


PRESETS: dict[str, Callable[[], RunConfig]] = {
    "tiny": tiny,
    "physics-64": physics_64,
    "physics-64-distill": physics_64_distill,
    "magi-4.5b": magi_4p5b,
    # the official distill configs' num_steps: 64 for the 4.5B, 16 for the 24B
    "magi-4.5b-distill": lambda: distilled(magi_4p5b(), steps=64),
    "magi-4.5b-distill-fp8": lambda: fp8(distilled(magi_4p5b(), steps=64)),
    "magi-24b": magi_24b,
    "magi-24b-distill": lambda: distilled(magi_24b(), steps=16),
    "magi-24b-distill-fp8": lambda: fp8(distilled(magi_24b(), steps=16)),
}

# Published parameter counts of the DiT, for the tests and ``magi config``.
PUBLISHED_DIT_PARAMS = {"magi-4.5b": 4.5e9, "magi-24b": 24e9}


def get_preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]()
DEFAULT_PRESET = "physics-64"  # trained here; weights in magi/weights/physics-64


def default_preset(steps: int | None = None) -> str:
    """The preset ``magi generate`` uses without --preset/--checkpoint: the shipped model, or its
    distilled student when fewer steps than the teacher's are asked for and the student ships too."""
    from magi.io.weights import builtin_available

    student = f"{DEFAULT_PRESET}-distill"
    if steps is not None and student in PRESETS and steps < get_preset(DEFAULT_PRESET).sampler.steps \
            and builtin_available(get_preset(student).weights):
        return student
    return DEFAULT_PRESET
