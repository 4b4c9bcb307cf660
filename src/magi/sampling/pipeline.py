"""From a prompt (and an image or a prefix video) to video frames: text encoder -> sampler -> VAE.

``generate_frames`` streams uint8 frames chunk by chunk, so memory does not grow with video length;
``generate_batch`` does the same for several requests in one sampler pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from magi.compilation import compile_dit
from magi.config import RunConfig
from magi.devices import module_device, resolve_device
from magi.errors import InputError
from magi.io.reference import (
    REFERENCE_VAE_WEIGHTS,
    find_reference_vae,
    find_reference_weights,
    load_reference_vae,
    stream_reference_state,
)
from magi.io.video import frames_to_tensor, resize_frames, tensor_to_frames
from magi.io.weights import IMAGE_WEIGHTS, LazyState, check_state_dict, load_weights, resolve_checkpoint_dir
from magi.models.dit import DiT
from magi.models.magi_vae import MagiVAE, MagiVAEConfig, TiledVAE, Tiling
from magi.models.text import TextEncoder, build_text_encoder
from magi.models.vae import TransformerVAE
from magi.offload import offload_blocks
from magi.quant.fp8 import FP8, Float8Linear, is_fp8_state, quantize_, quantize_weight
from magi.sampling import magi1
from magi.sampling.first_frame import generate_still
from magi.sampling.sampler import Prefix, iter_generate, num_steps
from magi.sampling.special_tokens import chunk_texts, load_special_tokens, negative_text

Mode = Literal["t2v", "i2v", "v2v"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Pipeline:
    cfg: RunConfig
    vae: TransformerVAE | TiledVAE  # ours, or the published MAGI-1 VAE run tile by tile
    dit: DiT
    text: TextEncoder
    special_tokens: dict[str, Tensor] = field(default_factory=dict)  # name -> (1, Dc), see special_tokens.py
    image: DiT | None = None  # the first-frame model of sampler.t2v_start = "image" (cfg.image)


def build_pipeline(cfg: RunConfig, context_parallel: bool = False) -> Pipeline:
    """The one builder of a runnable model: instantiate the networks of ``cfg`` on their devices
    (``cfg.device``, ``vae.device``, ``text.device``), load ``cfg.weights`` strictly, quantize, parallelize
    (``context_parallel``: under torchrun, the DiT's tokens and KV cache, and our VAE's segments, split over
    the process group, ``magi.parallel.context``), and compile the DiT as ``cfg.compile`` says, in that order.

    Without weights the networks keep a fixed-seed random init, so that a run is still reproducible. With
    weights the DiT is built on the meta device and filled tensor by tensor, each moved to its device and
    dtype as it is read (``load_streaming``): loading a checkpoint never holds a second copy of it.
    """
    device = resolve_device(cfg.device)
    vae_device = resolve_device(cfg.vae.device or cfg.device)
    folder = resolve_checkpoint_dir(cfg.weights) if cfg.weights else None
    our_vae = folder is None or (folder / "vae.safetensors").is_file()  # else the published MAGI-1 VAE
    if folder is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            vae, dit = TransformerVAE(cfg.vae), DiT(cfg.dit)
        dit = quantize_(apply_precision(dit, cfg), cfg.quant)  # the precision first: .to(dtype) would upcast fp8
    else:
        if our_vae:
            vae = TransformerVAE(cfg.vae)
            load_weights(vae, folder / "vae.safetensors")
        else:  # the published VAE, tiled like the reference pipeline (tiles of fps // 2 frames)
            # (at least 2 latent frames: a tile of one latent decodes to one frame, as the published VAE does)
            frames = max(2 * cfg.vae.patch_t, cfg.video.fps // 2 // cfg.vae.patch_t * cfg.vae.patch_t)
            # in the run's dtype: the official runs its VAE in bfloat16 (video_process.py VaeHelper)
            vae = TiledVAE(load_magi_vae(folder, cfg).to(DTYPES[cfg.dtype]), Tiling(frames=frames))
        dit = load_dit(cfg, folder, device)  # placed as it is read (the blocks on the host when offloaded)
    vae = vae.to(vae_device).eval()
    if folder is None:
        dit = dit.to(device if cfg.offload == "none" else "cpu")
    if cfg.offload == "blocks":
        dit = offload_blocks(_to_device_except_blocks(dit, device), device)
    dit = dit.eval()
    if context_parallel:
        from magi.parallel.context import parallelize_context, parallelize_vae

        parallelize_context(dit)  # DiT tokens (and KV cache heads) sharded over the ranks
        if isinstance(vae, TransformerVAE):  # the published VAE runs whole on every rank
            parallelize_vae(vae)  # each segment's encode / decode split over the ranks too
    compile_dit(dit, cfg.compile)
    keys = (*cfg.sampler.special_tokens, *cfg.sampler.negative_special_tokens)
    if keys and folder is None:
        raise InputError(f"the config uses special tokens {list(keys)}, which come with a checkpoint's weights")
    tokens = load_special_tokens(folder, keys) if keys else {}
    image = load_image_model(cfg, folder, device) if cfg.sampler.t2v_start == "image" else None
    return Pipeline(cfg, vae, dit, build_text_encoder(cfg.text), tokens, image)


def load_image_model(cfg: RunConfig, folder: Path | None, device: torch.device) -> DiT:
    """The first-frame model of ``cfg.image`` on ``device`` in the run's dtype: from ``folder``'s
    ``image.safetensors``, strictly, or a fixed-seed random init without weights."""
    assert cfg.image is not None  # RunConfig refuses t2v_start=image without it
    if folder is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            image = DiT(cfg.image.dit)
    else:
        path = folder / IMAGE_WEIGHTS
        if not path.is_file():
            raise InputError(f"'{folder}' has no {IMAGE_WEIGHTS}, the image model that sampler.t2v_start=image "
                             f"needs (or --set sampler.t2v_start=noise)")
        image = DiT(cfg.image.dit)
        load_weights(image, path)
    return image.to(device=device, dtype=DTYPES[cfg.dtype]).eval()


def load_dit(cfg: RunConfig, folder: Path, device: torch.device) -> DiT:
    """The DiT of checkpoint ``folder`` (ours: ``dit.safetensors``; or the published layout), streamed onto
    ``device`` in the run's precision; fp8 as the config says (an fp8 checkpoint needs quant.mode=fp8; high
    precision weights are quantized as they are read when it is set)."""
    with torch.device("meta"):
        dit = apply_precision(DiT(cfg.dit), cfg)
    ours = folder / "dit.safetensors"
    if ours.is_file():
        state = LazyState.open(ours)
        tensors, source = ((name, state[name]) for name in state), str(ours)
        fp8 = is_fp8_state(state)
    else:
        reference = find_reference_weights(folder)
        if reference is None:
            raise InputError(f"'{folder}' holds no DiT weights (dit.safetensors, or the published MAGI-1 layout)")
        tensors, source, fp8 = stream_reference_state(reference, cfg.dit), str(reference), False  # dequantized
    if fp8 and cfg.quant.mode != "fp8":
        raise InputError(f"'{folder}' holds fp8 weights but the config has quant.mode={cfg.quant.mode}")
    quantize_(dit, cfg.quant)  # on meta: the swap only
    host = torch.device("cpu")
    load_streaming(dit, tensors, lambda name: host if cfg.offload == "blocks" and name.startswith("blocks.")
                   else device, source, quantize_from=DTYPES[cfg.dtype])
    return dit


def _to_device_except_blocks(dit: DiT, device: torch.device) -> DiT:
    for name, module in dit.named_children():
        if name != "blocks":
            module.to(device)
    for param in dit.parameters(recurse=False):
        param.data = param.data.to(device)
    return dit


def load_streaming(module: nn.Module, tensors: Iterable[tuple[str, Tensor]],
                   device: torch.device | Callable[[str], torch.device], source: str,
                   quantize_from: torch.dtype | None = None) -> None:
    """Fill ``module`` (built on the meta device, in its final dtypes) from (name, tensor) pairs, each moved
    to ``device`` (or ``device(name)``) and its parameter's dtype as it arrives: the host never holds a second
    copy of the model.
    A high-precision weight meant for a ``Float8Linear`` is cast to ``quantize_from`` and quantized on the
    way, as ``quantize_`` would have done after a full load. Strict: every name once, every shape right."""
    expected = module.state_dict()  # meta tensors: names, shapes and dtypes
    fp8 = {f"{name}.weight" for name, m in module.named_modules() if isinstance(m, Float8Linear)}
    loaded: dict[str, Tensor] = {}
    device_of = device if callable(device) else (lambda name, fixed=device: fixed)
    for name, tensor in tensors:
        target = device_of(name)
        if name not in expected or name in loaded:
            raise InputError(f"checkpoint '{source}' does not match the config: unexpected key {name}")
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise InputError(f"checkpoint '{source}' does not match the config: {name} has shape "
                             f"{tuple(tensor.shape)}, the model {tuple(expected[name].shape)}")
        if name in fp8 and tensor.dtype != FP8:
            scale_name = name.removesuffix("weight") + "weight_scale"
            loaded[name], loaded[scale_name] = quantize_weight(tensor.to(target, quantize_from or tensor.dtype))
        else:
            loaded[name] = tensor.to(device=target, dtype=expected[name].dtype)
    missing = sorted(set(expected) - set(loaded))
    if missing:
        raise InputError(f"checkpoint '{source}' does not match the config: {len(missing)} missing "
                         f"(e.g. {missing[0]})")
    module.load_state_dict(loaded, strict=True, assign=True)


# What the official keeps in float32 under bfloat16 (dit_model.py ``_high_precision_promoter``): the x, t and
# caption embedders, the final linear and the RoPE bands, and the zero-centred norms of the self-attention's
# q and k, both post norms and the final norm (so that 1 + w is not rounded)
FLOAT32_MODULES = ("patch_embed", "time_embed", "context_embed", "context_pool", "final_proj", "rope")
FLOAT32_GAINS = ("q_norm", "k_norm", "attn_post_norm", "ffn_post_norm", "final_norm")


def apply_precision(dit: DiT, cfg: RunConfig) -> DiT:
    """Cast the DiT to ``cfg.dtype``; for the published layout (``dit.norm = "layernorm"``) keep in float32
    what the official keeps there (the DiT runs each embedder in its own dtype; our norms compute in float32
    whatever their weights' dtype)."""
    dit = dit.to(dtype=DTYPES[cfg.dtype])
    if cfg.dit.norm == "layernorm":
        for name, module in dit.named_modules():
            if name in FLOAT32_MODULES or name.rsplit(".", 1)[-1] in FLOAT32_GAINS:
                module.float()
        dit.null_context.data = dit.null_context.data.float()  # the caption embedder's null caption
    return dit


def load_magi_vae(folder: Path, cfg: RunConfig) -> MagiVAE:
    """The published MAGI-1 VAE that goes with checkpoint ``folder`` (``find_reference_vae``), loaded strictly.

    Its compression and latent channels must be those of ``cfg.vae`` (the DiT and the sampler use them);
    its latents are scaled by ``cfg.vae.scale_factor`` (run-level in the reference too). Weights stay in
    float32 whatever the file holds.
    """
    location = find_reference_vae(folder)
    if location is None:
        raise InputError(f"'{folder}' has no VAE: neither our vae.safetensors nor the published MAGI-1 VAE "
                         f"(a vae/ folder with config.json and {REFERENCE_VAE_WEIGHTS}) in it, beside it or "
                         f"two levels up")
    config, state = load_reference_vae(location)
    magi_cfg = MagiVAEConfig.from_reference(config, scale_factor=cfg.vae.scale_factor)
    ours = (cfg.vae.patch_t, cfg.vae.patch_hw, cfg.vae.latent_channels)
    theirs = (magi_cfg.patch_t, magi_cfg.patch_hw, magi_cfg.latent_channels)
    if ours != theirs:
        raise InputError(f"the MAGI-1 VAE in '{location}' compresses {theirs[0]}x{theirs[1]}x{theirs[1]} into "
                         f"{theirs[2]} channels, but the config has vae.patch_t={ours[0]}, vae.patch_hw={ours[1]}, "
                         f"vae.latent_channels={ours[2]}")
    with torch.device("meta"):  # no 2x memory for a 600M-parameter network: the tensors are assigned
        vae = MagiVAE(magi_cfg)
    check_state_dict(vae, state, str(location / REFERENCE_VAE_WEIGHTS))
    vae.load_state_dict(state, strict=True, assign=True)
    return vae.float()


@dataclass(frozen=True)
class Request:
    mode: Mode
    prompt: str
    image: np.ndarray | None = None  # (H, W, 3) uint8, for i2v
    prefix_video: np.ndarray | None = None  # (T, H, W, 3) uint8, for v2v
    num_frames: int = 48  # frames generated after the conditioning
    seed: int = 0
    include_prefix: bool = True  # output starts with the conditioning frames
    use_kv_cache: bool = True
    # MAGI-1's chunk-wise prompting: (first chunk, prompt) pairs; chunk c follows the last pair starting at or
    # before it, and ``prompt`` holds from chunk 0 until the first pair
    chunk_prompts: tuple[tuple[int, str], ...] = ()

    def prompt_of_chunk(self, num_chunks: int) -> list[str]:
        """The prompt of each generated chunk."""
        for start, text in self.chunk_prompts:
            if not 0 <= start < num_chunks:
                raise InputError(f"a prompt for chunk {start}, but the video has chunks 0 .. {num_chunks - 1}")
            if not text.strip():
                raise InputError(f"the prompt for chunk {start} is empty")
        prompts = [self.prompt] * num_chunks
        for start, text in sorted(self.chunk_prompts):
            prompts[start:] = [text] * (num_chunks - start)
        return prompts


def validate(request: Request, cfg: RunConfig) -> None:
    if not request.prompt.strip():
        raise InputError("the prompt is empty")
    if request.num_frames < 1:
        raise InputError(f"num_frames={request.num_frames} must be at least 1")
    if request.mode == "i2v" and request.image is None:
        raise InputError("mode i2v needs an image (--image_path)")
    if request.mode == "v2v" and request.prefix_video is None:
        raise InputError("mode v2v needs a prefix video (--prefix_video_path)")
    if request.mode == "v2v" and request.prefix_video is not None:
        frames = request.prefix_video.shape[0]
        if frames < cfg.frames_per_chunk:
            raise InputError(f"the prefix video has {frames} frames; v2v needs at least one chunk "
                             f"({cfg.frames_per_chunk} frames)")


def conditioning_length(request: Request, cfg: RunConfig) -> int:
    """How many frames ``conditioning_frames`` gives: 1 for an image, the prefix video cut to a multiple of
    the VAE's stride (procedure magi1: its first 32 frames, as the official reads it), 0 for text alone."""
    if request.mode == "i2v" and request.image is not None:
        return 1
    if request.mode == "v2v" and request.prefix_video is not None:
        frames = request.prefix_video.shape[0]
        if cfg.sampler.procedure == "magi1":
            frames = min(frames, magi1.V2V_PREFIX_FRAMES)
        return frames // cfg.vae.patch_t * cfg.vae.patch_t
    return 0


def conditioning_frames(request: Request, cfg: RunConfig) -> np.ndarray | None:
    """The conditioning frames at the model's size: (P, H, W, 3) uint8, P a multiple of the VAE's stride.
    Centre-cropped to the model's aspect ratio, or stretched to it (procedure magi1, as the official's
    ffmpeg ``scale``)."""
    height, width = cfg.video.height, cfg.video.width
    crop = cfg.sampler.procedure != "magi1"
    if request.mode == "i2v" and request.image is not None:
        return resize_frames(request.image[None], height, width, crop=crop)
    if request.mode == "v2v" and request.prefix_video is not None:
        return resize_frames(request.prefix_video[:conditioning_length(request, cfg)], height, width, crop=crop)
    return None


def read_conditioning_video(path: str | Path, cfg: RunConfig, whole: bool = False) -> tuple[np.ndarray, float]:
    """A video file as the model conditions on it: (T, H, W, 3) uint8 frames at the model's size (resized frame
    by frame: cropped, or stretched for procedure magi1) and frame rate (the nearest frame in time, as the
    official's ffmpeg filters), and the file's own frame rate. Procedure magi1 reads only the seconds its 32
    prefix frames cover, unless ``whole`` (a video to extend, whose tail is used)."""
    from magi.io.video import read_video, resample_fps

    official = cfg.sampler.procedure == "magi1"
    frames, fps = read_video(path, size=(cfg.video.height, cfg.video.width), crop=not official,
                             max_seconds=magi1.V2V_PREFIX_FRAMES / cfg.video.fps if official and not whole else None)
    return resample_fps(frames, fps, cfg.video.fps), fps


def batch_key(request: Request, cfg: RunConfig) -> tuple:
    """What requests generated together (``generate_batch``) must share: mode, num_frames, include_prefix,
    use_kv_cache and the number of conditioning frames."""
    return (request.mode, request.num_frames, request.include_prefix, request.use_kv_cache,
            conditioning_length(request, cfg))


def encode_prompts(pipe: Pipeline, requests: Sequence[Request], num_chunks: int) -> tuple[Tensor, Tensor]:
    """The requests' texts: (B, L, Dc) and mask (B, L) for one prompt each, or (B, num_chunks, L, Dc) and
    (B, num_chunks, L) with chunk-wise prompts (each distinct prompt encoded once)."""
    if not any(request.chunk_prompts for request in requests):
        return pipe.text.encode([request.prompt for request in requests])
    schedules = [request.prompt_of_chunk(num_chunks) for request in requests]
    distinct = sorted({prompt for schedule in schedules for prompt in schedule})
    context, mask = pipe.text.encode(distinct)  # (P, L, Dc), (P, L)
    index = torch.tensor([[distinct.index(prompt) for prompt in schedule] for schedule in schedules])
    return context[index], mask[index]  # (B, num_chunks, L, Dc), (B, num_chunks, L)


@torch.inference_mode()
def encode_conditioning(pipe: Pipeline, frames: np.ndarray) -> Tensor:
    """(P, H, W, 3) uint8 -> clean latents (1, C, ceil(P / stride), h, w); a lone image becomes a still clip."""
    video = frames_to_tensor(frames)[None].to(module_device(pipe.vae))  # (1, 3, P, H, W)
    stride = pipe.cfg.vae.patch_t
    if video.shape[2] % stride:
        video = torch.cat([video, video[:, :, -1:].expand(-1, -1, stride - video.shape[2] % stride, -1, -1)], 2)
    return pipe.vae.encode(video)


def decode(pipe: Pipeline, latents: Tensor) -> Tensor:
    """Latents (B, C, t, h, w) from the sampler -> video (B, 3, T, H, W) by the VAE, on the VAE's device."""
    return pipe.vae.decode(latents.float().to(module_device(pipe.vae)))


@torch.inference_mode()
def generate_frames(pipe: Pipeline, request: Request,
                    progress: Callable[[int, int], None] | None = None) -> Iterator[np.ndarray]:
    """Yield uint8 frame batches (n, H, W, 3): the conditioning frames first (if asked), then each chunk."""
    for (frames,) in generate_batch(pipe, [request], progress):
        yield frames


@torch.inference_mode()
def generate_batch(pipe: Pipeline, requests: Sequence[Request],
                   progress: Callable[[int, int], None] | None = None) -> Iterator[list[np.ndarray]]:
    """Several requests in one sampler pass: yield, per chunk, a list of uint8 frames (n, H, W, 3), one per
    request (the conditioning frames first, if asked). Each video is its own seed's, as if generated alone up
    to float rounding; B videos fill the matmuls that one leaves small. The requests
    must share their ``batch_key``."""
    cfg = pipe.cfg
    if not requests:
        raise InputError("no requests to generate")
    for request in requests:
        validate(request, cfg)
    first = requests[0]
    keys = {batch_key(request, cfg) for request in requests}
    if len(keys) > 1:
        raise InputError("requests generated together must agree on mode, num_frames, include_prefix, "
                         f"use_kv_cache and the number of conditioning frames; got {sorted(keys)}")
    stride, chunk_frames = cfg.vae.patch_t, cfg.dit.chunk_frames
    latent_shape = cfg.latent_shape

    conditions = [conditioning_frames(request, cfg) for request in requests]
    prefix = None if first.mode == "t2v" else Prefix(torch.cat([encode_conditioning(pipe, c) for c in conditions]))
    # image-first t2v: one latent frame, the image model's still, opens the first chunk as an i2v image does;
    # it is the video's first frame, so one frame fewer is generated after it
    image_first = first.mode == "t2v" and cfg.sampler.t2v_start == "image"
    if image_first and pipe.image is None:
        raise InputError("sampler.t2v_start=image, but the pipeline has no image model (build it with build_pipeline)")
    official = cfg.sampler.procedure == "magi1"
    if official:  # every chunk whole, as the official outputs them
        num_chunks, _ = magi1.chunk_counts(first.num_frames, stride, 0 if prefix is None else prefix.latents.shape[2],
                                           chunk_frames)
        opening = 0
    else:
        opening = 1 if image_first else 0 if prefix is None else prefix.latents.shape[2] % chunk_frames
        latent_frames = opening + math.ceil((first.num_frames - image_first) / stride)
        num_chunks = math.ceil(latent_frames / chunk_frames)

    context, mask = encode_prompts(pipe, requests, num_chunks)  # (B, L, Dc) or (B, num_chunks, L, Dc)
    if image_first:  # the still of chunk 0's text: (B, C, 1, h, w)
        text = (context[:, 0], mask[:, 0]) if context.dim() == 4 else (context, mask)
        prefix = Prefix(generate_still(pipe.image, cfg.image, *text, latent_shape=latent_shape,
                                       seed=[request.seed for request in requests]))
    sampler, max_length, negative = cfg.sampler, cfg.dit.context_max_length, None
    if sampler.special_tokens:  # one text per chunk: MAGI-1's special tokens in front of the caption
        context, mask = chunk_texts(context, mask, num_chunks, pipe.special_tokens, sampler.special_tokens,
                                    max_length)
    if sampler.negative_special_tokens:
        negative = negative_text(*pipe.dit.unconditional_context(len(requests)), pipe.special_tokens,
                                 sampler.negative_special_tokens, max_length)
    total = num_steps(num_chunks, sampler)
    seeds = [request.seed for request in requests]
    report = None if progress is None else (lambda done: progress(done, total))
    if official:  # the official output: every generated chunk decoded whole, pixels truncated
        chunks = magi1.iter_generate(pipe.dit, sampler, context, mask, num_chunks=num_chunks,
                                     latent_shape=latent_shape, prefix=None if prefix is None else prefix.latents,
                                     seed=seeds, use_kv_cache=first.use_kv_cache, progress=report,
                                     negative=negative)
        for latents in chunks:
            yield [tensor_to_frames(video, rounding="truncate") for video in decode(pipe, latents)]
        return
    chunks = iter_generate(pipe.dit, sampler, context, mask, num_chunks=num_chunks, latent_shape=latent_shape,
                           prefix=prefix, seed=seeds, use_kv_cache=first.use_kv_cache, progress=report,
                           negative=negative)
    if first.include_prefix and prefix is not None and not image_first:
        yield conditions
    # image-first: the still's last frame (the image the video continues) is the video's first
    skip, remaining = opening * stride - image_first, first.num_frames
    for latents in chunks:
        videos = decode(pipe, latents)  # (B, 3, n, H, W)
        frames = [tensor_to_frames(video)[skip:remaining + skip] for video in videos]  # (n, H, W, 3) each
        skip, remaining = 0, remaining - frames[0].shape[0]
        yield frames
