"""The Python API: load a model once, then call it for t2v, i2v or v2v, stream its chunks, prompt each chunk,
extend a video. The same code as ``magi generate`` (``sampling.pipeline``).

    from magi import Magi

    magi = Magi.load("physics-64")                       # a preset, builtin:<name>, or a checkpoint folder
    video = magi("a red ball falls and bounces")         # (T, H, W, 3) uint8
    video = magi("a ball", image="ball.png")             # i2v (an image path or an (H, W, 3) array)
    video = magi("a ball", video="clip.mp4")             # v2v (a video path or a (T, H, W, 3) array)
    for frames in magi.stream({0: "a ball falls", 2: "the ball rolls right"}, num_frames=96):
        ...                                              # each chunk's frames as soon as it is clean
    longer = magi.extend(video, "the ball stops", num_frames=48)   # the input, then 48 new frames
    Magi.save(longer, "out.mp4", fps=magi.fps)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from magi.config import RunConfig, apply_overrides
from magi.errors import InputError

Prompt = str | Mapping[int, str] | Sequence[str]  # one prompt, {first chunk: prompt}, or one per chunk
Media = str | os.PathLike | np.ndarray


def resolve_run(preset: str | None = None, checkpoint: str | None = None, steps: int | None = None,
                overrides: Sequence[str] = ()) -> RunConfig:
    """The one config resolution of every command: a preset (the architecture), a checkpoint (its config,
    or with a preset only its weights), or the shipped model; one rule for ``steps``: without a preset or a
    checkpoint, fewer steps than the shipped teacher's pick its distilled student; then ``steps`` and the
    overrides."""
    from magi.presets import default_preset, get_preset

    if checkpoint and not preset:
        from magi.io.reference import find_reference_weights
        from magi.io.weights import resolve_checkpoint_dir

        folder = resolve_checkpoint_dir(str(checkpoint))  # a folder, or builtin:<name>; it exists
        if not (folder / "config.json").is_file() and find_reference_weights(folder) is not None:
            raise InputError(f"checkpoint '{checkpoint}' is in the MAGI-1 reference layout: pass its architecture "
                             "with --preset (magi-4.5b or magi-24b)")
    if preset or not checkpoint:
        cfg = get_preset(preset or default_preset(steps))  # an unknown name: one line listing the presets
    else:
        from magi.io.weights import load_checkpoint_config

        cfg = load_checkpoint_config(str(checkpoint))
    if checkpoint:
        cfg = dataclasses.replace(cfg, weights=str(checkpoint))
    return apply_overrides(cfg, [*([f"sampler.steps={steps}"] if steps is not None else []), *overrides])


class Magi:
    """A loaded model. ``Magi.load(...)`` builds it; calls generate (see the module docstring)."""

    def __init__(self, cfg: RunConfig):
        from magi.sampling.pipeline import build_pipeline

        self.cfg = cfg
        self.pipe = build_pipeline(cfg)

    @classmethod
    def load(cls, model: str | None = None, *, device: str | None = None, dtype: str | None = None,
             steps: int | None = None, overrides: Sequence[str] = ()) -> Magi:
        """``model``: a preset (default: the shipped one, or its student for fewer steps), ``builtin:<name>`` or a
        checkpoint folder; resolved as every command resolves its config (``resolve_run``)."""
        from magi.presets import PRESETS

        preset = model if model is None or model in PRESETS else None
        extra = [f"device={device}"] * bool(device) + [f"dtype={dtype}"] * bool(dtype)
        return cls(resolve_run(preset, None if preset or model is None else model, steps, [*extra, *overrides]))

    @property
    def fps(self) -> int:
        return self.cfg.video.fps

    @property
    def frames_per_chunk(self) -> int:
        return self.cfg.frames_per_chunk

    def __call__(self, prompt: Prompt, *, image: Media | None = None, video: Media | None = None,
                 num_frames: int | None = None, seed: int = 0, include_prefix: bool = True) -> np.ndarray:
        """The whole video (T, H, W, 3) uint8: t2v, or i2v with ``image``, or v2v with ``video``."""
        return np.concatenate(list(self.stream(prompt, image=image, video=video, num_frames=num_frames,
                                               seed=seed, include_prefix=include_prefix)))

    def stream(self, prompt: Prompt, *, image: Media | None = None, video: Media | None = None,
               num_frames: int | None = None, seed: int = 0, include_prefix: bool = True) -> Iterator[np.ndarray]:
        """Yield (n, H, W, 3) uint8 frames chunk by chunk, each as soon as it is clean (the conditioning
        frames first, when ``include_prefix``)."""
        from magi.sampling.pipeline import generate_frames

        yield from generate_frames(self.pipe, self.request(prompt, image=image, video=video, num_frames=num_frames,
                                                           seed=seed, include_prefix=include_prefix))

    def extend(self, video: Media, prompt: Prompt, *, num_frames: int | None = None, seed: int = 0) -> np.ndarray:
        """``video`` followed by ``num_frames`` new frames continuing it. Any length: the model conditions on
        the last chunks it attends to (``context_frames``)."""
        frames = self.load_video(video, whole=True)
        tail = frames[-self.context_frames():]
        new = np.concatenate(list(self.stream(prompt, video=tail, num_frames=num_frames, seed=seed,
                                              include_prefix=False)))
        return np.concatenate([frames, new])

    def context_frames(self) -> int:
        """How many of a video's last frames a continuation conditions on: the clean chunks the sampler
        attends to (the official procedure: its 32 prefix frames)."""
        from magi.sampling.magi1 import V2V_PREFIX_FRAMES

        sampler = self.cfg.sampler
        if sampler.procedure == "magi1":
            return V2V_PREFIX_FRAMES
        return sampler.context_chunks * self.frames_per_chunk

    def request(self, prompt: Prompt, *, image: Media | None = None, video: Media | None = None,
                num_frames: int | None = None, seed: int = 0, include_prefix: bool = True):
        """The pipeline request for these arguments (checked: one clear ``InputError`` if anything is off)."""
        from magi.sampling.pipeline import Request, validate

        if image is not None and video is not None:
            raise InputError("give an image (i2v) or a video (v2v), not both")
        first, chunk_prompts = split_prompt(prompt)
        mode = "i2v" if image is not None else "v2v" if video is not None else "t2v"
        request = Request(mode=mode, prompt=first, image=None if image is None else self._image(image),
                          prefix_video=None if video is None else self.load_video(video),
                          num_frames=self.cfg.video.num_frames if num_frames is None else num_frames, seed=seed,
                          include_prefix=include_prefix, chunk_prompts=chunk_prompts)
        validate(request, self.cfg)
        return request

    def _image(self, image: Media) -> np.ndarray:
        from magi.io.video import read_image

        return image if isinstance(image, np.ndarray) else read_image(image)

    def load_video(self, video: Media, whole: bool = False) -> np.ndarray:
        """A video path as the model conditions on it (``pipeline.read_conditioning_video``; ``whole``: all of
        it, for extending); an array is taken as it is."""
        from magi.sampling.pipeline import read_conditioning_video

        return video if isinstance(video, np.ndarray) else read_conditioning_video(video, self.cfg, whole)[0]

    @staticmethod
    def save(frames: np.ndarray, path: str | os.PathLike, fps: float) -> Path:
        """Write (T, H, W, 3) uint8 frames as an mp4 (atomically); returns the path."""
        from magi.io.video import write_video

        write_video(path, frames, fps=fps)
        return Path(path)


def split_prompt(prompt: Prompt) -> tuple[str, tuple[tuple[int, str], ...]]:
    """A prompt as (chunk 0's prompt, the later (first chunk, prompt) pairs) for ``Request``."""
    if isinstance(prompt, str):
        return prompt, ()
    pairs = sorted(prompt.items()) if isinstance(prompt, Mapping) else list(enumerate(prompt))
    if not pairs or pairs[0][0] != 0:
        raise InputError("chunk-wise prompts must give chunk 0 a prompt")
    if any(not isinstance(chunk, int) or not isinstance(text, str) for chunk, text in pairs):
        raise InputError("chunk-wise prompts map chunk numbers (int) to prompts (str)")
    return pairs[0][1], tuple(pairs[1:])


__all__ = ["Magi", "resolve_run", "split_prompt"]
