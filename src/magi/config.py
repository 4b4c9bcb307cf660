"""Every configuration of magi as a frozen, typed dataclass.

Each component receives only its own dataclass (``DiT(cfg.dit)``, ``generate(..., cfg.sampler)``).
A ``RunConfig`` bundles them; it round-trips through JSON and is saved beside every output.
Named presets live in ``presets.py``; ``apply_overrides`` implements ``--set a.b=c``.

Conventions used everywhere (see docs/ARCHITECTURE.md):
* ``t`` is the flow time: t = 0 is pure noise, t = 1 is clean data (MAGI-1's convention).
* a *chunk* is ``DiTConfig.chunk_frames`` latent frames (6 latent frames = 24 video frames).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True, kw_only=True)
class VAEConfig:
    """Transformer VAE: 3-D patches of (patch_t, patch_hw, patch_hw) pixels become one latent vector."""

    in_channels: int = 3
    latent_channels: int = 16
    patch_t: int = 4  # temporal compression
    patch_hw: int = 8  # spatial compression
    dim: int = 128
    encoder_depth: int = 2
    decoder_depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    segment_frames: int = 6  # latent frames per attention segment; decode memory is bounded by one segment
    scale_factor: float = 1.0  # latents are multiplied by this after encoding (MAGI-1: 0.18215)
    norm_eps: float = 1e-6
    device: str = ""  # where the VAE runs; "" = the run's device (RunConfig.device)

    def __post_init__(self) -> None:
        _require(self.dim % self.num_heads == 0, f"vae.dim={self.dim} not divisible by num_heads={self.num_heads}")
        _require(min(self.patch_t, self.patch_hw, self.segment_frames, self.latent_channels) > 0,
                 "vae sizes must be positive")

    @property
    def patch_dim(self) -> int:
        return self.in_channels * self.patch_t * self.patch_hw * self.patch_hw


@dataclass(frozen=True, kw_only=True)
class DiTConfig:
    """Diffusion transformer over latent chunks (MAGI-1 model_config)."""

    in_channels: int = 16
    patch_size: int = 2  # spatial; a token is one latent frame in time (MAGI-1's t_patch_size 1)
    dim: int = 256
    depth: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2  # grouped-query attention: num_heads // num_kv_heads queries share one K/V head
    head_dim: int = 64
    ffn_dim: int = 1024
    gated_ffn: bool = True  # SwiGLU
    context_dim: int = 384  # text encoder width (T5: 4096)
    context_max_length: int = 64
    half_channel_vae: bool = False  # 24B: a 16-channel latent is fed twice to 32 input channels
    # adaLN text term: "pooled" (mean of the text) or "null_token" (MAGI-1: one of two learned tokens, the
    # null text's second-to-last for rows with text and its last for the unconditional rows)
    adaln_text: str = "pooled"
    null_text_tokens: int = 0  # tokens of the learned null text that are attended (0: all; MAGI-1: 50)
    cond_ratio: float = 0.25  # timestep-conditioning width = dim * cond_ratio
    modulation_softcap: float = 1.0  # adaLN gates are softcapped: c * tanh(x / c)
    x_rescale_factor: float = 1.0
    chunk_frames: int = 6  # latent frames per autoregressive chunk
    rope_theta: float = 10000.0
    step_conditioning: bool = False  # shortcut-distilled models also embed the step size d (flow/shortcut.py)
    # how d is embedded: "own" (a step_embed MLP of its own) or "time" (the timestep embedder again, as the
    # published MAGI-1 distill checkpoints do: cond = t_embed(t) + t_embed(d), no extra weights)
    step_embedder: Literal["own", "time"] = "own"
    norm_eps: float = 1e-6
    # Options that express the published MAGI-1 checkpoints exactly (io/reference.py); defaults are ours.
    norm: Literal["rms", "layernorm"] = "rms"  # "layernorm": LayerNorm with bias everywhere (reference)
    rope: Literal["interleaved", "magi"] = "interleaved"  # "magi": learnable bands, centred (t, h, w), rotate-half
    gelu_approximate: Literal["tanh", "none"] = "tanh"  # GELU MLP (gated_ffn=False); reference: exact ("none")

    def __post_init__(self) -> None:
        _require(self.num_heads % self.num_kv_heads == 0,
                 f"dit.num_heads={self.num_heads} not divisible by num_kv_heads={self.num_kv_heads}")
        _require(self.head_dim % 8 == 0, f"dit.head_dim={self.head_dim} must be divisible by 8 (3-D RoPE)")
        _require(not self.half_channel_vae or self.in_channels % 2 == 0, "dit.half_channel_vae needs even in_channels")
        _require(self.adaln_text in ("pooled", "null_token"), f"dit.adaln_text={self.adaln_text!r} is not "
                 "pooled|null_token")
        _require(self.adaln_text == "pooled" or self.context_max_length >= 2,
                 "dit.adaln_text=null_token needs context_max_length >= 2")
        _require(0 <= self.null_text_tokens <= self.context_max_length,
                 f"dit.null_text_tokens={self.null_text_tokens} must be in 0..context_max_length")
        _require(self.chunk_frames > 0 and self.depth > 0, "dit.chunk_frames and dit.depth must be positive")
        _require(self.norm in ("rms", "layernorm"), f"dit.norm={self.norm!r} is not rms|layernorm")
        _require(self.rope in ("interleaved", "magi"), f"dit.rope={self.rope!r} is not interleaved|magi")
        _require(self.gelu_approximate in ("tanh", "none"), f"dit.gelu_approximate={self.gelu_approximate!r}")
        _require(self.step_embedder in ("own", "time"), f"dit.step_embedder={self.step_embedder!r} is not own|time")

    @property
    def cond_dim(self) -> int:
        return int(self.dim * self.cond_ratio)

    @property
    def latent_channels(self) -> int:
        """Channels of the VAE latents the model denoises (half the input channels with half_channel_vae)."""
        return self.in_channels // 2 if self.half_channel_vae else self.in_channels


@dataclass(frozen=True, kw_only=True)
class TextConfig:
    """Which text encoder produces ``context``; weights always come from a local directory."""

    kind: Literal["minilm", "t5", "hash", "cache"] = "minilm"
    # local directory for "t5"; empty means the packaged model for "minilm"; the file of "cache" (magi text-cache)
    path: str = ""
    max_length: int = 64
    dim: int = 384
    # clean each prompt twice before tokenizing, as the published MAGI-1 models' T5 did in training
    # (magi.models.caption_cleaning; needs ftfy and beautifulsoup4)
    clean_captions: bool = False
    device: str = "cpu"  # where the text encoder runs (the official keeps the 4.5B's T5 on the CPU): see devices.py

    def __post_init__(self) -> None:
        _require(self.kind in ("minilm", "t5", "hash", "cache"), f"text.kind={self.kind!r} is not minilm|t5|hash|cache")
        _require(self.kind != "t5" or bool(self.path), "text.kind='t5' needs text.path (a local T5 directory)")
        _require(self.kind != "cache" or bool(self.path), "text.kind='cache' needs text.path (a magi text-cache file)")


@dataclass(frozen=True, kw_only=True)
class ImageConfig:
    """The first-frame model of image-first t2v (``sampler.t2v_start = "image"``): a DiT over one latent frame
    (``dit.chunk_frames`` = 1) that draws a still from the text, which the video DiT then continues as i2v
    (Emu Video's factorization of t2v). Its own sampler: ``steps`` steps on the grid of ``shift``, text guidance
    ``text_scale`` (1: none), DDIM's eta ``stochasticity`` (1: ancestral steps)."""

    dit: DiTConfig
    steps: int = 32
    shift: float = 3.0
    text_scale: float = 3.0
    stochasticity: float = 1.0

    def __post_init__(self) -> None:
        _require(self.dit.chunk_frames == 1, f"image.dit.chunk_frames={self.dit.chunk_frames} must be 1 (one still)")
        _require(self.steps > 0 and self.shift > 0, "image.steps and image.shift must be positive")
        _require(self.text_scale >= 0, f"image.text_scale={self.text_scale} must be >= 0")
        _require(0.0 <= self.stochasticity <= 1.0, f"image.stochasticity={self.stochasticity} is not in [0, 1]")


# MAGI-1's special conditioning tokens (see magi.sampling.special_tokens); DURATION stands for DURATION_1..8
SPECIAL_TOKEN_KEYS = ("CAPTION", "LOGO", "TRANS", "HQ", "STATIC_FIRST_FRAMES", "DYNAMIC_FIRST_FRAMES", "BORDERNESS",
                      "THREE_D_MODEL", "TWO_D_ANIME", "DURATION")


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """Autoregressive sampling (MAGI-1 runtime_config)."""

    steps: int = 16  # denoising steps per chunk; must be divisible by window_size
    window_size: int = 4  # chunks in flight, staggered by steps // window_size
    shift: float = 3.0  # time-schedule shift; > 1 spends more steps near noise
    context_chunks: int = 5  # clean chunks a noisy chunk attends to (MAGI-1 noise2clean_kvrange max)
    guidance: Literal["none", "text", "text_and_prefix"] = "text_and_prefix"
    cfg_t_range: tuple[float, ...] = (0.0, 0.0217, 0.1, 0.3, 0.999)
    text_scales: tuple[float, ...] = (7.5, 7.5, 7.5, 0.0, 0.0)
    prefix_scales: tuple[float, ...] = (1.5, 1.5, 1.5, 1.0, 1.0)
    solver: Literal["euler", "shortcut"] = "euler"
    # Noise re-drawn at each step (``solvers.stochastic_step``, DDIM's eta): 0 integrates the ODE (MAGI-1's
    # sampler), 1 is ancestral sampling; with solver=shortcut the step's velocity stands for the instantaneous one
    stochasticity: float = 0.0
    # MAGI-1 special tokens (magi.sampling.special_tokens): put in front of each chunk's caption, and of the
    # null text of the unconditional branches; the published run scripts use ("HQ", "DURATION") and none
    special_tokens: tuple[str, ...] = ()
    negative_special_tokens: tuple[str, ...] = ()
    # The procedure that walks the chunk plan: "native" (this project's: block-causal attention over the
    # last context_chunks clean chunks, the grid above) or "magi1", the official SandAI-org/MAGI-1 inference
    # procedure step for step (magi.sampling.magi1; docs/ARCHITECTURE.md lists its rules), which the magi-*
    # presets use. The fields below are read by "magi1" only (the official runtime/engine config names).
    procedure: Literal["native", "magi1"] = "native"
    # How t2v starts: "noise" (the first chunk from noise, as MAGI-1) or "image" (the run's image model draws
    # the first frame from the text, then the video continues it as i2v; RunConfig.image)
    t2v_start: Literal["noise", "image"] = "noise"
    kv_offload: bool = False  # the KV cache in host memory, each layer's visible part copied in as it runs
    noise2clean_kvrange: tuple[int, ...] = (5, 4, 3, 2)  # chunks a chunk in flight sees, per denoising stage
    clean_chunk_kvrange: int = 1  # chunks a clean chunk fed to the cache sees (itself)
    clean_t: float = 0.9999  # the noise level clean chunks are fed at
    distilled: bool = False  # cfg_number 1: one forward with text, the step count embedded (engine "distill")
    shortcut_mode: str = "8,16,16"  # the 12-step distill grid's step pattern (official engine_config)
    nearly_clean_threshold: float = 0.3  # distill: a first chunk in flight above this t is also run alone ...
    nearly_clean_weight: float = 0.7  # ... and mixed: weight * with the clean chunks + (1 - weight) * alone

    def __post_init__(self) -> None:
        _require(self.steps > 0 and self.window_size > 0, "sampler.steps and window_size must be positive")
        _require(self.steps % self.window_size == 0,
                 f"sampler.steps={self.steps} must be divisible by window_size={self.window_size}")
        _require(len(self.cfg_t_range) == len(self.text_scales) == len(self.prefix_scales),
                 "sampler.cfg_t_range, text_scales and prefix_scales must have equal lengths")
        _require(list(self.cfg_t_range) == sorted(self.cfg_t_range), "sampler.cfg_t_range must be ascending")
        _require(self.shift > 0, f"sampler.shift={self.shift} must be positive")
        _require(self.context_chunks >= 1, "sampler.context_chunks must be >= 1")
        _require(self.guidance in ("none", "text", "text_and_prefix"), f"bad sampler.guidance {self.guidance!r}")
        _require(self.solver in ("euler", "shortcut"), f"bad sampler.solver {self.solver!r}")
        _require(0.0 <= self.stochasticity <= 1.0, f"sampler.stochasticity={self.stochasticity} is not in [0, 1]")
        for key in (*self.special_tokens, *self.negative_special_tokens):
            _require(key in SPECIAL_TOKEN_KEYS,
                     f"unknown special token {key!r} (known: {', '.join(SPECIAL_TOKEN_KEYS)})")
        _require("DURATION" not in self.negative_special_tokens, "DURATION is not a negative special token")
        _require(self.procedure in ("native", "magi1"), f"sampler.procedure={self.procedure!r} is not native|magi1")
        _require(self.t2v_start in ("noise", "image"), f"sampler.t2v_start={self.t2v_start!r} is not noise|image")
        _require(self.procedure == "native" or self.t2v_start == "noise",
                 "sampler.t2v_start=image runs in the native procedure (the official has no image model)")
        if self.procedure == "magi1":
            stages = len(self.noise2clean_kvrange)
            _require(stages > 0 and self.steps % stages == 0 and min(self.noise2clean_kvrange) >= 1,
                     f"sampler.noise2clean_kvrange={self.noise2clean_kvrange}: one range >= 1 per stage, and "
                     f"sampler.steps={self.steps} divisible by their number")
            _require(self.clean_chunk_kvrange >= 1, "sampler.clean_chunk_kvrange must be >= 1")
            _require(0 < self.clean_t <= 1, f"sampler.clean_t={self.clean_t} must be in (0, 1]")
            _require(self.solver == "euler", "sampler.procedure=magi1 integrates with euler (solver=shortcut is "
                     "the native distilled sampler's)")
            _require(self.stochasticity == 0, "sampler.procedure=magi1 integrates the ODE (stochasticity is the "
                     "native sampler's)")
            _require(self.distilled or self.guidance == "text_and_prefix",
                     "sampler.procedure=magi1 guides with text_and_prefix (or is distilled)")
            _require(self.shortcut_mode in ("8,16,16", "16,16,8"),
                     f"sampler.shortcut_mode={self.shortcut_mode!r} is not 8,16,16|16,16,8")


@dataclass(frozen=True, kw_only=True)
class QuantConfig:
    """Weight quantization applied from outside the model (a module swap), recorded in checkpoints."""

    mode: Literal["none", "fp8"] = "none"
    keep_high_precision: tuple[str, ...] = ("patch_embed", "final_proj", "time_embed", "context_embed",
                                            "context_pool")
    keep_edge_blocks: bool = True  # first and last transformer blocks stay high precision (MAGI-1 fp8 recipe)

    def __post_init__(self) -> None:
        _require(self.mode in ("none", "fp8"), f"quant.mode={self.mode!r} is not none|fp8")


@dataclass(frozen=True, kw_only=True)
class VideoConfig:
    """What is generated: size and frame rate of the output video."""

    height: int = 64
    width: int = 64
    num_frames: int = 48
    fps: int = 8

    def __post_init__(self) -> None:
        _require(self.height > 0 and self.width > 0 and self.num_frames > 0 and self.fps > 0,
                 "video sizes must be positive")


ChunkLevels = Literal["sorted", "cascade"]  # TrainConfig.chunk_levels (magi.flow.matching.autoregressive_times)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run of the VAE or the DiT (the loop is the same; the objective differs)."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200
    sample_every: int = 500  # 0 disables periodic samples
    # VAE objective
    clip_frames: int = 24  # video frames per VAE training window
    kl_weight: float = 1e-6
    # Std of extra noise on the (scaled, unit-variance) latents the decoder sees in training: the DiT's latents
    # are never exact, and a decoder trained on exact ones turns small errors into visible texture
    latent_noise: float = 0.0
    # DiT objective (MAGI-1 autoregressive training)
    clip_chunks: int = 3  # chunks per DiT training window
    caption_dropout: float = 0.1  # probability of training on the null text (enables guidance)
    prefix_probs: tuple[float, ...] = (0.3, 0.2, 0.5)  # no prefix (t2v), one frame (i2v), whole chunks (v2v)
    t_logit_std: float = 1.0  # noise levels: sigmoid(N(0, std)) then shifted (see flow.matching)
    t_shift: float = 3.0
    # The noise levels of the samples without a clean prefix (t2v) alone, in place of t_logit_std and t_shift
    # (None: the same): t2v learns where things are from pure noise, while i2v and v2v keep theirs
    t2v_t_logit_std: float | None = None
    t2v_t_shift: float | None = None
    # How the chunks' noise levels are ordered (magi.flow.matching.autoregressive_times): "sorted" (chunk 0 the
    # cleanest draw) or "cascade" (the first chunk after the prefix keeps the distribution of one draw)
    chunk_levels: ChunkLevels = "sorted"
    # t2v samples (no clean prefix) drawn only from clips shown through the usual camera: with
    # ``magi data --camera-variation`` the i2v and v2v samples follow any framing, while generation from text
    # keeps the one it was trained on
    t2v_usual_camera: bool = False
    # v2v samples (a whole-chunk prefix) drawn only from those clips too: the other framings then reach only the
    # i2v samples, an image to continue as a drawn one, while v2v keeps its capacity for the usual view
    v2v_usual_camera: bool = False
    # Extra loss weight where something moves (1 + motion_weight there, 1 elsewhere; DiT: latent cells, VAE:
    # pixels): a plain mean counts every position alike, though the objects are a few percent of a frame
    motion_weight: float = 0.0
    # DiT training (not distillation): extra loss on how the velocity error changes from frame to frame within a
    # chunk (magi.flow.matching.frame_change_mse), which the plain mean hardly sees (docs/TRAINING.md)
    change_weight: float = 0.0
    # Exposure to its own outputs: the share of samples with a clean whole-chunk prefix whose prefix is
    # replaced by the DiT's own regeneration of it (no gradient) from a noise level drawn in
    # [own_context_from, 1], so that it learns to continue the context it makes at inference, flaws and all
    own_context: float = 0.0
    own_context_from: float = 0.5
    # Parameter-name prefixes that stay as they are (e.g. ("encoder",): a VAE decoder fine-tune that keeps the
    # latents, and so every DiT trained on them, unchanged)
    frozen: tuple[str, ...] = ()
    # Shortcut distillation (magi distill): step counts cycled through, finest first
    shortcut_steps: tuple[int, ...] = (64, 32, 16, 8)

    def __post_init__(self) -> None:
        _require(self.steps > 0 and self.batch_size > 0 and self.lr > 0, "train steps, batch_size, lr must be > 0")
        _require(len(self.prefix_probs) == 3 and abs(sum(self.prefix_probs) - 1) < 1e-6,
                 "train.prefix_probs must be 3 probabilities summing to 1")
        _require(0 <= self.caption_dropout < 1, "train.caption_dropout must be in [0, 1)")
        _require(self.clip_chunks >= 1, "train.clip_chunks must be >= 1")
        _require(self.motion_weight >= 0, "train.motion_weight must be >= 0")
        _require(self.change_weight >= 0, "train.change_weight must be >= 0")
        _require(all(v is None or v > 0 for v in (self.t_logit_std, self.t_shift, self.t2v_t_logit_std,
                                                   self.t2v_t_shift)),
                 "train.t_logit_std, t_shift, t2v_t_logit_std and t2v_t_shift must be > 0")
        _require(0 <= self.own_context <= 1 and 0 <= self.own_context_from < 1,
                 "train.own_context must be in [0, 1] and train.own_context_from in [0, 1)")
        _require(self.latent_noise >= 0, "train.latent_noise must be >= 0")
        _require(self.chunk_levels in typing.get_args(ChunkLevels),
                 f"train.chunk_levels={self.chunk_levels!r} is not {'|'.join(typing.get_args(ChunkLevels))}")


CompileScope = Literal["none", "dit", "blocks"]  # RunConfig.compile: nothing, the whole DiT, or each block


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    name: str = "custom"
    vae: VAEConfig = field(default_factory=VAEConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)
    text: TextConfig = field(default_factory=TextConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    image: ImageConfig | None = None  # the first-frame model of sampler.t2v_start = "image" (none: no such model)
    weights: str = ""  # "" = random init; "builtin:<name>" = packaged weights; else a directory
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "auto"  # where the DiT runs: auto (cuda, else mps, else cpu), cpu, cuda, cuda:N, mps
    # the DiT's blocks in host memory, each moved to the device for its forward (magi.offload): for GPUs too
    # small for the weights; "none" keeps everything on the device
    offload: Literal["none", "blocks"] = "none"
    # torch.compile of the DiT when a pipeline is built (magi.compilation): the whole forward, or each block
    compile: CompileScope = "none"

    def __post_init__(self) -> None:
        _require(self.dit.latent_channels == self.vae.latent_channels,
                 f"dit latent channels {self.dit.latent_channels} != vae.latent_channels={self.vae.latent_channels}")
        _require(self.dit.context_dim == self.text.dim,
                 f"dit.context_dim={self.dit.context_dim} != text.dim={self.text.dim}")
        space = self.vae.patch_hw * self.dit.patch_size
        _require(self.video.height % space == 0 and self.video.width % space == 0,
                 f"video size {self.video.height}x{self.video.width} must be divisible by {space}")
        _require(self.dtype in ("float32", "bfloat16", "float16"), f"bad dtype {self.dtype!r}")
        scopes = typing.get_args(CompileScope)
        _require(self.compile in scopes, f"compile={self.compile!r} is not {'|'.join(scopes)}")
        _require(self.offload in ("none", "blocks"), f"offload={self.offload!r} is not none|blocks")
        _require(self.sampler.t2v_start == "noise" or self.image is not None,
                 "sampler.t2v_start=image needs an image model (the config's image section)")
        if self.image is not None:
            image = self.image.dit
            _require(image.latent_channels == self.vae.latent_channels and image.context_dim == self.text.dim,
                     f"the image model's latent channels / text width ({image.latent_channels}, "
                     f"{image.context_dim}) are not the VAE's and the text encoder's ({self.vae.latent_channels}, "
                     f"{self.text.dim})")
            space = self.vae.patch_hw * image.patch_size
            _require(self.video.height % space == 0 and self.video.width % space == 0,
                     f"video size {self.video.height}x{self.video.width} must be divisible by {space} (image model)")

    @property
    def frames_per_chunk(self) -> int:
        """Video frames per chunk (MAGI-1: 6 latent frames x 4 = 24)."""
        return self.dit.chunk_frames * self.vae.patch_t

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one latent frame of the video: the DiT's latent channels, the frame size / the VAE's stride."""
        return (self.dit.latent_channels, self.video.height // self.vae.patch_hw, self.video.width // self.vae.patch_hw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return _build(cls, data, "")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read config '{path}': {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"config '{path}' is not a JSON object")
        try:
            return cls.from_dict(data)
        except (TypeError, AttributeError) as error:
            raise ValueError(f"config '{path}' does not describe a run: {error}") from None


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    _require(not unknown, f"unknown config key(s): {', '.join(prefix + k for k in sorted(unknown))}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        section = _optional_section(hint)
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        elif section is not None:  # an optional section: null, or its fields
            kwargs[name] = None if value is None else _build(section, value, f"{prefix}{name}.")
        elif typing.get_origin(hint) is tuple:
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _optional_section(hint: Any) -> type | None:
    """The dataclass of a ``Section | None`` annotation, else None."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return None
    sections = [arg for arg in typing.get_args(hint) if dataclasses.is_dataclass(arg)]
    return sections[0] if len(sections) == 1 else None


def _coerce(text: str, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        _require(text in typing.get_args(hint), f"{path}={text!r}: choose one of {typing.get_args(hint)}")
        return text
    if origin is tuple:
        (item, *_rest) = typing.get_args(hint)
        return tuple(_coerce(p.strip(), item, path) for p in text.split(",") if p.strip())
    if origin in (typing.Union, types.UnionType):
        return None if text.lower() == "none" else _coerce(text, typing.get_args(hint)[0], path)
    if hint is bool:
        _require(text.lower() in ("true", "false", "1", "0"), f"{path}={text!r} is not a boolean")
        return text.lower() in ("true", "1")
    try:
        value = hint(text)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{path}={text!r} is not a valid {getattr(hint, '__name__', hint)}") from None
    if hint is float and not math.isfinite(value):
        raise ValueError(f"{path}={text!r} is not a finite number")
    return value


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Apply ``["sampler.steps=8", "dit.depth=2"]`` to a config, type-checked against the annotations."""
    for item in overrides:
        _require("=" in item, f"override {item!r} must look like section.key=value")
        path, text = item.split("=", 1)
        cfg = _override(cfg, path.strip().split("."), text.strip(), path.strip())
    return cfg


def _override(obj: Any, keys: list[str], text: str, path: str) -> Any:
    names = {f.name for f in fields(obj)}
    _require(keys[0] in names, f"unknown config key {path!r}")
    hint = typing.get_type_hints(type(obj))[keys[0]]
    if _optional_section(hint) is not None:  # ``image=none`` drops the section; ``image.key=value`` needs it
        if len(keys) == 1:
            _require(text.lower() == "none", f"{path!r} is a section: set {path}=none or {path}.key=value")
            return replace(obj, **{keys[0]: None})
        _require(getattr(obj, keys[0]) is not None, f"{path!r}: the config has no {keys[0]} section")
    elif len(keys) == 1:
        _require(not dataclasses.is_dataclass(hint), f"{path!r} is a section, not a value")
        return replace(obj, **{keys[0]: _coerce(text, hint, path)})
    else:
        _require(dataclasses.is_dataclass(hint), f"unknown config key {path!r}")
    return replace(obj, **{keys[0]: _override(getattr(obj, keys[0]), keys[1:], text, path)})
