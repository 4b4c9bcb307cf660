"""The training runs of a MAGI-1 model on a clip dataset: the VAE first, then the DiT on cached latents, and
optionally the first-frame model of image-first t2v (``train_image``) on the same latents.

A run directory holds ``config.json``, ``checkpoint/`` (exact resume), ``loss.csv``, ``samples/`` and,
once exported, ``export/``: a complete checkpoint directory (``config.json`` + ``vae.safetensors`` [+
``dit.safetensors``]) that ``magi generate --checkpoint`` loads. Exports use the EMA weights.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from magi.config import ImageConfig, RunConfig, TextConfig
from magi.devices import module_device, resolve_device
from magi.errors import InputError
from magi.io.atomic import atomic_write_text
from magi.io.video import tensor_to_frames, write_video
from magi.io.weights import (
    IMAGE_WEIGHTS,
    check_state_dict,
    load_state,
    load_weights,
    read_safetensors,
    save_weights,
)
from magi.models.dit import DiT
from magi.models.text import build_text_encoder
from magi.models.vae import TransformerVAE
from magi.parallel.data import DataParallelism, SingleProcess
from magi.training.loop import find_checkpoint, train
from magi.training.objectives import (
    distill_objective,
    dit_objective,
    frames_to_video,
    image_objective,
    motion_cells,
    vae_objective,
)

ENCODE_BATCH = 8


def load_clips(data: Path, split: str) -> tuple[np.ndarray, list[str]]:
    from magi.physics.dataset import load_split

    return load_split(Path(data), split)


def check_frame_rate(cfg: RunConfig, data: Path) -> None:
    """Refuse clips of another frame rate than the model's ``video.fps``: its videos would play too fast or slow."""
    from magi.physics.dataset import recorded_fps

    fps = recorded_fps(Path(data))
    if fps is not None and fps != cfg.video.fps:
        raise InputError(f"the clips of '{data}' are at {fps} fps but the model's video.fps is {cfg.video.fps} "
                         f"(train with --set video.fps={fps}, or write the clips with magi data --fps "
                         f"{cfg.video.fps})")


def usual_clips(cfg: RunConfig, data: Path) -> Tensor | None:
    """The train clips shown through the usual camera, where ``train.t2v_usual_camera`` or ``v2v_usual_camera``
    keeps some samples to them; None otherwise (every clip serves every sample)."""
    from magi.physics.dataset import usual_camera

    keep = cfg.train.t2v_usual_camera or cfg.train.v2v_usual_camera
    return torch.from_numpy(usual_camera(Path(data), "train")) if keep else None


@torch.no_grad()
def reconstruction_psnr(vae: TransformerVAE, clips: np.ndarray) -> float:
    """Mean PSNR (dB, pixels in [0, 255]) of encode -> decode over uint8 clips (N, T, H, W, 3)."""
    vae.eval()
    psnrs = []
    for start in range(0, len(clips), ENCODE_BATCH):
        video = frames_to_video(torch.from_numpy(clips[start:start + ENCODE_BATCH])).to(module_device(vae))
        recon = vae.decode(vae.encode(video)).clamp(-1, 1)
        mse = ((recon - video) * 127.5).pow(2).mean(dim=(1, 2, 3, 4))
        psnrs.extend((10 * torch.log10(255.0**2 / mse.clamp(min=1e-10))).tolist())
    return float(np.mean(psnrs))


@torch.no_grad()
def latent_std(vae: TransformerVAE, clips: np.ndarray) -> float:
    """Standard deviation of the unscaled posterior means (to set ``vae.scale_factor = 1 / std``)."""
    means = [vae.encode_distribution(frames_to_video(torch.from_numpy(clips[i:i + ENCODE_BATCH]))
                                     .to(module_device(vae)))[0].cpu() for i in range(0, len(clips), ENCODE_BATCH)]
    return float(torch.cat(means).std())


def whole_frames(clips: np.ndarray, stride: int) -> np.ndarray:
    return clips[:, : clips.shape[1] // stride * stride]


def train_vae(cfg: RunConfig, data: Path, run_dir: Path, *, progress: bool = True,
              parallel: DataParallelism | None = None, init: Path | None = None) -> float:
    """Train the VAE on ``data``/train, export it with a fitted scale factor; returns the dev PSNR.

    ``init``: an exported VAE (``export/`` of a run) to start a new run from (fine-tuning); its config's VAE
    replaces the preset's and its scale factor is kept, so that DiTs trained on its latents still fit. Under
    data parallelism the main process alone samples and writes."""
    parallel = parallel or SingleProcess()
    if init is not None:
        cfg = replace(cfg, vae=RunConfig.load(init / "config.json").vae)
    check_frame_rate(cfg, data)
    clips, _ = load_clips(data, "train")
    dev, _ = load_clips(data, "dev")
    dev = whole_frames(dev[:16], cfg.vae.patch_t)
    samples = run_dir / "samples"

    def on_sample(ema: TransformerVAE, step: int) -> None:
        psnr = reconstruction_psnr(ema, dev)
        with torch.no_grad():
            video = frames_to_video(torch.from_numpy(dev[:1])).to(module_device(ema))
            recon = ema.decode(ema.encode(video))
        ema.train()
        samples.mkdir(parents=True, exist_ok=True)
        with open(samples / "psnr.csv", "a") as log:
            log.write(f"{step},{psnr:.3f}\n")
        pair = torch.cat([video, recon], dim=4)[0]  # (3, T, H, 2W): truth | reconstruction
        write_video(samples / f"recon-{step:06d}.mp4", tensor_to_frames(pair), fps=cfg.video.fps)

    torch.manual_seed(cfg.train.seed)
    vae = TransformerVAE(cfg.vae)
    if init is not None and find_checkpoint(run_dir) is None:
        load_weights(vae, init / "vae.safetensors")
    ema, _ = train(vae, vae_objective(torch.from_numpy(clips), cfg, parallel.shard), cfg, run_dir,
                   on_sample=on_sample, progress=progress, parallel=parallel)
    weights = parallel.model_state(ema)  # full weights on the main process (a collective)
    if not parallel.is_main:
        return float("nan")
    full = TransformerVAE(cfg.vae)
    full.load_state_dict(weights, strict=True)
    return export_vae(cfg, run_dir, full, clips, dev, fit_scale=init is None)


def export_vae(cfg: RunConfig, run_dir: Path, ema: TransformerVAE, clips: np.ndarray, dev: np.ndarray,
               fit_scale: bool = True) -> float:
    """Write ``export/`` from the EMA weights, with ``scale_factor`` fitted so latents have unit std (or,
    without ``fit_scale``, the config's)."""
    ema.eval()
    scale = 1.0 / latent_std(ema, whole_frames(clips[:64], cfg.vae.patch_t)) if fit_scale else cfg.vae.scale_factor
    cfg = replace(cfg, vae=replace(cfg.vae, scale_factor=round(scale, 6)))
    ema.cfg = cfg.vae
    export = run_dir / "export"
    export.mkdir(exist_ok=True)
    save_weights(export / "vae.safetensors", ema.state_dict())
    cfg.save(export / "config.json")
    psnr = reconstruction_psnr(ema, dev)
    atomic_write_text(export / "metrics.json", json.dumps({"dev_psnr_db": psnr, "scale_factor": scale}) + "\n")
    return psnr


def _ema_from_checkpoint(run_dir: Path, module: torch.nn.Module) -> torch.nn.Module:
    found = find_checkpoint(run_dir)
    if found is None:
        raise InputError(f"run '{run_dir}' has no checkpoint")
    load_weights(module, found / "ema.safetensors")
    return module


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class LatentCache:
    """What the DiT trains on, encoded once per VAE: scaled latents (N, C, T', h, w), the still latents
    (N, C, 1, h, w) of each clip's frame ``patch_t - 1`` held for ``patch_t`` frames (the i2v image as ``magi
    generate`` encodes it) and where something moves on the latent grid (N, 1, T', h, w) bool."""

    latents: Tensor
    stills: Tensor
    motion: Tensor


LATENT_CACHE_VERSION = 2  # 2: with motion cells


@torch.no_grad()
def cached_latents(vae: TransformerVAE, clips: np.ndarray, cache: Path, key: str,
                   progress: bool = True) -> LatentCache:
    """Encode every clip once, reused while ``key`` (and the cache version) matches."""
    key = f"{key}-v{LATENT_CACHE_VERSION}"
    if cache.is_file():
        stored = read_safetensors(cache)
        if stored.get("key") is not None and bytes(stored["key"].tolist()).decode() == key:
            return LatentCache(stored["latents"], stored["stills"], stored["motion"].bool())
    vae.eval()
    stride = vae.cfg.patch_t
    clips = whole_frames(clips, stride)
    latents, stills, motion = [], [], []
    for i in tqdm(range(0, len(clips), ENCODE_BATCH), desc="encode latents", disable=not progress):
        frames = torch.from_numpy(clips[i:i + ENCODE_BATCH])
        video = frames_to_video(frames)  # (b, 3, T, H, W)
        latents.append(vae.encode(video))
        stills.append(vae.encode(video[:, :, stride - 1:stride].expand(-1, -1, stride, -1, -1)))
        motion.append(motion_cells(frames, stride, vae.cfg.patch_hw))
    cached = LatentCache(torch.cat(latents), torch.cat(stills), torch.cat(motion))
    save_weights(cache, {"latents": cached.latents, "stills": cached.stills, "motion": cached.motion.to(torch.uint8),
                         "key": torch.tensor(list(key.encode()), dtype=torch.uint8)})
    return cached


@torch.no_grad()
def encode_captions(text: TextConfig, captions: list[str], batch: int = 64) -> tuple[Tensor, Tensor]:
    """(N, max_length, dim) contexts and (N, max_length) masks of the encoder of ``text``, padded to its max
    length; each distinct caption is encoded once."""
    encoder = build_text_encoder(text)
    unique = sorted(set(captions))
    L = text.max_length
    table, table_mask = torch.zeros(len(unique), L, text.dim), torch.zeros(len(unique), L, dtype=torch.bool)
    for start in range(0, len(unique), batch):
        context, mask = encoder.encode(unique[start:start + batch])
        n = min(L, context.shape[1])
        table[start:start + len(context), :n], table_mask[start:start + len(context), :n] = context[:, :n], mask[:, :n]
    position = {caption: i for i, caption in enumerate(unique)}
    index = torch.tensor([position[c] for c in captions])
    return table[index], table_mask[index]


def prepare_dit_data(cfg: RunConfig, data: Path, vae_weights: Path, run_dir: Path, progress: bool,
                     parallel: DataParallelism | None = None
                     ) -> tuple[TransformerVAE, LatentCache, Tensor, Tensor]:
    """Copy the VAE into the run, then the (cached) latents and the caption contexts of the train split:
    (vae, latent cache, contexts, masks). With several processes the main one encodes and writes the cache,
    the others then read it."""
    parallel = parallel or SingleProcess()
    if parallel.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vae_weights, run_dir / "vae.safetensors")
        prepared = _dit_data(cfg, data, run_dir, progress)
    parallel.barrier()
    return prepared if parallel.is_main else _dit_data(cfg, data, run_dir, progress=False)


def _dit_data(cfg: RunConfig, data: Path, run_dir: Path, progress: bool
              ) -> tuple[TransformerVAE, LatentCache, Tensor, Tensor]:
    vae = TransformerVAE(cfg.vae)
    load_weights(vae, run_dir / "vae.safetensors")
    clips, captions = load_clips(data, "train")
    key = f"{_file_digest(run_dir / 'vae.safetensors')}-{len(clips)}-{clips.shape}"
    cache = cached_latents(vae, clips, run_dir / "latents.safetensors", key, progress)
    del clips
    contexts, masks = encode_captions(cfg.text, captions)
    return vae, cache, contexts, masks


def train_dit(cfg: RunConfig, data: Path, vae_run: Path, run_dir: Path, *, progress: bool = True,
              parallel: DataParallelism | None = None, init: Path | None = None) -> None:
    """Train the DiT on latents of ``data``/train encoded by the exported VAE of ``vae_run``; export all.

    ``init``: an exported DiT (``export/`` of a run, the same architecture) to start from when the run has no
    checkpoint yet. Under data parallelism the main process alone samples and writes."""
    parallel = parallel or SingleProcess()
    vae_export = vae_run / "export"
    if not (vae_export / "vae.safetensors").is_file():
        raise InputError(f"'{vae_run}' has no exported VAE (export/vae.safetensors); train the VAE first")
    cfg = replace(cfg, vae=RunConfig.load(vae_export / "config.json").vae)
    check_frame_rate(cfg, data)
    vae, cache, contexts, masks = prepare_dit_data(cfg, data, vae_export / "vae.safetensors", run_dir, progress,
                                                   parallel)
    dev, dev_captions = load_clips(data, "dev")

    def on_sample(ema: DiT, step: int) -> None:
        write_training_sample(cfg, vae, ema, dev[0], dev_captions[0], run_dir / "samples" / f"v2v-{step:06d}.mp4")
        ema.train()

    torch.manual_seed(cfg.train.seed)
    objective = dit_objective(cache.latents, contexts, masks, cfg, cache.stills, parallel.shard, cache.motion,
                              usual_clips(cfg, data))
    dit = DiT(cfg.dit)
    if init is not None and find_checkpoint(run_dir) is None:
        load_weights(dit, init / "dit.safetensors")  # a warm start: the same architecture, strictly
    train(dit, objective, cfg, run_dir, on_sample=on_sample, progress=progress, parallel=parallel)
    if parallel.is_main:
        export_dit(run_dir)


@torch.no_grad()
def write_training_sample(cfg: RunConfig, vae: TransformerVAE, dit: DiT, clip: np.ndarray, caption: str,
                          path: Path) -> None:
    """v2v from the first chunk of ``clip``: writes truth | generated side by side."""
    from magi.sampling.pipeline import Pipeline, Request, generate_frames

    dit.eval()
    prefix = cfg.frames_per_chunk
    pipe = Pipeline(cfg, vae, dit, build_text_encoder(cfg.text))
    request = Request(mode="v2v", prompt=caption, prefix_video=clip[:prefix], num_frames=len(clip) - prefix)
    generated = np.concatenate(list(generate_frames(pipe, request)))[: len(clip)]
    write_video(path, np.concatenate([clip[: len(generated)], generated], axis=2), fps=cfg.video.fps)


def export_dit(run_dir: Path, image_from: Path | None = None) -> Path:
    """Write ``export/`` (config + VAE + EMA DiT) from the latest checkpoint of a DiT run.

    Its t2v starts from noise, unless ``image_from`` is given: a checkpoint folder with a first-frame model,
    whose ``image.safetensors`` and image config go with it, t2v starting from its image (an InputError when
    it has none). That model draws latents of its checkpoint's VAE from its text encoder's prompts, so the run
    must have the same VAE and text encoder."""
    cfg = RunConfig.load(run_dir / "config.json")
    image_cfg, start = cfg.image, "noise"
    if image_from is not None:
        image_cfg, start = check_image_source(cfg, run_dir / "vae.safetensors", image_from), "image"
    dit = _ema_from_checkpoint(run_dir, DiT(cfg.dit))
    export = run_dir / "export"
    export.mkdir(exist_ok=True)
    save_weights(export / "dit.safetensors", dit.state_dict())
    shutil.copyfile(run_dir / "vae.safetensors", export / "vae.safetensors")
    if start == "image":
        shutil.copyfile(image_from / IMAGE_WEIGHTS, export / IMAGE_WEIGHTS)
    elif (export / IMAGE_WEIGHTS).is_file():  # left by an earlier export with an image model
        (export / IMAGE_WEIGHTS).unlink()
    replace(cfg, weights="", image=image_cfg, sampler=replace(cfg.sampler, t2v_start=start)).save(
        export / "config.json")
    return export


def check_image_source(cfg: RunConfig, vae_weights: Path, image_from: Path) -> ImageConfig:
    """The image config of the first-frame model in checkpoint ``image_from``, which a model of ``cfg`` with
    the VAE ``vae_weights`` can start its t2v from; an InputError naming the mismatch when it cannot."""
    if not ((image_from / IMAGE_WEIGHTS).is_file() and (image_from / "config.json").is_file()):
        raise InputError(f"--image_from '{image_from}' has no {IMAGE_WEIGHTS} and config.json (pass a checkpoint "
                         "with a first-frame model)")
    source = RunConfig.load(image_from / "config.json")
    if source.image is None:
        raise InputError(f"--image_from '{image_from}': its config.json has no image section")
    vae_from = image_from / "vae.safetensors"
    if source.vae != cfg.vae or not vae_from.is_file() or _file_digest(vae_from) != _file_digest(vae_weights):
        raise InputError(f"--image_from '{image_from}' has another VAE than this model: its first-frame model draws "
                         "that VAE's latents")
    if source.text != cfg.text:
        raise InputError(f"--image_from '{image_from}' has another text encoder than this model")
    return source.image


def train_image(cfg: RunConfig, data: Path, video: Path, run_dir: Path, *, progress: bool = True,
                parallel: DataParallelism | None = None, init: Path | None = None) -> Path:
    """Train the first-frame model ``cfg.image`` on the still latents of ``data``/train (each clip's i2v image),
    encoded by the VAE of the exported video model ``video``; export ``video``'s model with it, t2v starting
    from its image (``sampler.t2v_start = "image"``): ``run_dir/export`` is a complete checkpoint.

    ``init``: an export holding ``image.safetensors`` to start from when the run has no checkpoint yet."""
    parallel = parallel or SingleProcess()
    if cfg.image is None:
        raise InputError(f"preset {cfg.name} has no image model (the config's image section)")
    if not all((video / name).is_file() for name in ("config.json", "dit.safetensors", "vae.safetensors")):
        raise InputError(f"--video '{video}' is not an exported video model (config.json, dit.safetensors and "
                         "vae.safetensors)")
    video_cfg = RunConfig.load(video / "config.json")
    cfg = replace(cfg, vae=video_cfg.vae, text=video_cfg.text, video=video_cfg.video)  # its latents and texts
    check_frame_rate(cfg, data)
    _, cache, contexts, masks = prepare_dit_data(cfg, data, video / "vae.safetensors", run_dir, progress, parallel)
    torch.manual_seed(cfg.train.seed)
    image = DiT(cfg.image.dit)
    if init is not None and find_checkpoint(run_dir) is None:
        load_weights(image, init / IMAGE_WEIGHTS)
    objective = image_objective(cache.stills, contexts, masks, cfg, parallel.shard, cache.motion[:, :, :1])
    train(image, objective, cfg, run_dir, progress=progress, parallel=parallel)
    return export_image(run_dir, video) if parallel.is_main else run_dir / "export"


def export_image(run_dir: Path, video: Path) -> Path:
    """Write ``export/``: the video model of ``video`` with the EMA image model of run ``run_dir`` as its
    first-frame model."""
    cfg = RunConfig.load(run_dir / "config.json")
    assert cfg.image is not None
    image = _ema_from_checkpoint(run_dir, DiT(cfg.image.dit))
    video_cfg = RunConfig.load(video / "config.json")
    export = run_dir / "export"
    export.mkdir(exist_ok=True)
    save_weights(export / IMAGE_WEIGHTS, image.state_dict())
    for name in ("dit.safetensors", "vae.safetensors"):
        shutil.copyfile(video / name, export / name)
    replace(video_cfg, weights="", image=cfg.image,
            sampler=replace(video_cfg.sampler, t2v_start="image")).save(export / "config.json")
    return export


def student_config(teacher: RunConfig, train_cfg, steps: int = 8) -> RunConfig:
    """The shortcut student of ``teacher``: step-conditioned, guidance distilled, ``steps`` steps by default."""
    return replace(teacher, name=f"{teacher.name}-distill", weights="", train=train_cfg,
                   dit=replace(teacher.dit, step_conditioning=True),
                   sampler=replace(teacher.sampler, steps=steps, solver="shortcut", guidance="none"))


def init_student_from_teacher(student: DiT, teacher_state: dict[str, Tensor], source: str) -> None:
    """Copy every teacher weight; the only keys the teacher may lack are the new step embedding's."""
    expected = set(student.state_dict())
    new = {k for k in expected if k.startswith("step_embed.")}
    check_state_dict(student, {**teacher_state, **{k: student.state_dict()[k] for k in new}}, source)
    student.load_state_dict({**student.state_dict(), **teacher_state}, strict=True)


def distill_dit(teacher_dir: Path, data: Path, run_dir: Path, train_cfg, *, progress: bool = True,
                parallel: DataParallelism | None = None, device: str | None = None,
                dtype: str | None = None) -> Path:
    """Shortcut-distill the exported model in ``teacher_dir``; writes ``run_dir/export`` (student + VAE).

    Under data parallelism the student is sharded, the frozen teacher replicated; the main process writes."""
    parallel = parallel or SingleProcess()
    if not (teacher_dir / "config.json").is_file():
        raise InputError(f"teacher '{teacher_dir}' has no config.json")
    teacher_cfg = RunConfig.load(teacher_dir / "config.json")
    cfg = student_config(teacher_cfg, train_cfg)
    check_frame_rate(cfg, data)
    if device:
        resolve_device(device)
        cfg = replace(cfg, device=device)
    if dtype:
        cfg = replace(cfg, dtype=dtype)
    teacher = DiT(teacher_cfg.dit)
    teacher_state = read_safetensors(teacher_dir / "dit.safetensors")
    load_state(teacher, teacher_state, str(teacher_dir / "dit.safetensors"))
    teacher.to(resolve_device(cfg.device))  # beside the student (training.loop.train moves it there)
    _, cache, contexts, masks = prepare_dit_data(cfg, data, teacher_dir / "vae.safetensors", run_dir, progress,
                                                 parallel)
    student = DiT(cfg.dit)
    if find_checkpoint(run_dir) is None:
        init_student_from_teacher(student, teacher_state, str(teacher_dir / "dit.safetensors"))
    objective = distill_objective(cache.latents, contexts, masks, teacher, cfg, cache.stills, parallel.shard,
                                  cache.motion, usual_clips(cfg, data))
    train(student, objective, cfg, run_dir, progress=progress, parallel=parallel)
    if not parallel.is_main:
        return run_dir / "export"
    return export_dit(run_dir, image_from=teacher_dir if (teacher_dir / IMAGE_WEIGHTS).is_file() else None)
