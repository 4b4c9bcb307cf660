"""Reading and writing videos and images; conversion between uint8 frames and model tensors.

Frames on disk and in numpy are uint8 (T, H, W, 3); model tensors are float (3, T, H, W) in [-1, 1].
Every write goes to a temporary name in the target folder and is renamed when complete, so a crash
never leaves a half-written file behind.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from magi.errors import InputError
from magi.io.atomic import atomic_path


def frames_to_tensor(frames: np.ndarray) -> Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float32 in [-1, 1]."""
    return torch.tensor(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0


def tensor_to_frames(video: Tensor, rounding: Literal["round", "truncate"] = "round") -> np.ndarray:
    """(3, T, H, W) float in [-1, 1] -> (T, H, W, 3) uint8, clamped; rounded, or truncated as the official
    MAGI-1 pipeline does (``(x * 127.5 + 127.5).clamp(0, 255).to(uint8)``)."""
    video = video.detach().float()
    if rounding == "truncate":
        pixels = (video * 127.5 + 127.5).clamp(0, 255).to(torch.uint8)
    else:
        pixels = ((video.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return pixels.permute(1, 2, 3, 0).cpu().numpy()


def resize_frames(frames: np.ndarray, height: int, width: int, crop: bool = True) -> np.ndarray:
    """Center-crop to the target aspect ratio (or, ``crop=False``, stretch to it), then area-resize:
    (T, H, W, 3) uint8 -> (T, height, width, 3)."""
    _, H, W, _ = frames.shape
    if (H, W) == (height, width):
        return frames
    if not crop:
        pass
    elif H * width > W * height:  # too tall: crop rows
        crop = round(W * height / width)
        frames = frames[:, (H - crop) // 2:(H - crop) // 2 + crop]
    elif H * width < W * height:  # too wide: crop columns
        crop = round(H * width / height)
        frames = frames[:, :, (W - crop) // 2:(W - crop) // 2 + crop]
    video = torch.tensor(frames).permute(0, 3, 1, 2).float()  # (T, 3, H', W')
    video = F.interpolate(video, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return video.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: '{path}'")
    try:
        with Image.open(path) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: scaled to 8 bits, not clipped
                grey = np.asarray(image).astype(np.float64)
                scale = 65535.0 if image.mode.startswith("I;16") or grey.max() > 255 else 255.0
                return np.repeat((grey / scale * 255.0 + 0.5).clip(0, 255).astype(np.uint8)[..., None], 3, -1)
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputError(f"cannot read image '{path}': {error}") from None


def read_video(path: str | os.PathLike, max_frames: int | None = None, *, size: tuple[int, int] | None = None,
               crop: bool = True, max_seconds: float | None = None) -> tuple[np.ndarray, float]:
    """A video file as ((T, H, W, 3) uint8 frames, fps). ``.npz`` files hold a ``frames`` array (and
    optionally ``fps``; 8 if absent). With ``size`` (height, width) each frame is resized as it is decoded
    (``resize_frames``), so a long 4K clip never sits in memory at full size; only the first ``max_frames``
    frames, or the first ``max_seconds`` of video, are read."""
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"video not found: '{path}'")

    def fit(frames: np.ndarray) -> np.ndarray:
        return frames if size is None else resize_frames(frames, *size, crop=crop)

    if path.suffix == ".npz":
        frames, fps = _read_npz_video(path)
        limit = _frame_limit(max_frames, max_seconds, fps)
        return fit(frames[:limit]), fps
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 24.0
            limit = _frame_limit(max_frames, max_seconds, fps)
            frames = []
            for frame in container.decode(stream):
                frames.append(fit(frame.to_ndarray(format="rgb24")[None])[0])
                if limit is not None and len(frames) >= limit:
                    break
    except (av.error.FFmpegError, IndexError) as error:
        raise InputError(f"cannot read video '{path}': {error}") from None
    if not frames:
        raise InputError(f"video '{path}' has no frames")
    return np.stack(frames), fps


def _frame_limit(max_frames: int | None, max_seconds: float | None, fps: float) -> int | None:
    limits = [n for n in (max_frames, None if max_seconds is None else math.ceil(max_seconds * fps) + 1)
              if n is not None]
    return min(limits) if limits else None


def _read_npz_video(path: Path) -> tuple[np.ndarray, float]:
    """A ``.npz`` video, checked: a (T, H, W, 3) uint8 ``frames`` array and an optional positive ``fps``."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            if "frames" not in data:
                raise InputError(f"'{path}' has no 'frames' array")
            frames = data["frames"]
            fps = float(data["fps"]) if "fps" in data else 8.0
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"'{path}' is not a readable .npz video ({type(error).__name__})") from None
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"'{path}': frames must be a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"'{path}': fps {fps} is not a positive number")
    return frames, fps


def resample_fps(frames: np.ndarray, fps: float, target_fps: float) -> np.ndarray:
    """(T, H, W, 3) frames at ``fps`` -> the frames at ``target_fps`` over the same duration: output frame k
    is the input frame nearest its time k / target_fps (what ffmpeg's ``fps`` filter does, the official
    MAGI-1 reading of a prefix video)."""
    if fps <= 0 or target_fps <= 0:
        raise InputError(f"frame rates must be positive, got {fps} -> {target_fps}")
    if abs(fps - target_fps) < 1e-6:
        return frames
    count = max(1, round(frames.shape[0] * target_fps / fps))
    index = np.minimum(np.floor(np.arange(count) * fps / target_fps + 0.5).astype(int), frames.shape[0] - 1)
    return frames[index]


def partial_path(path: str | os.PathLike) -> Path:
    """Where ``stream_video`` grows a video before it is complete: ``out.partial.mp4`` beside ``out.mp4``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def stream_video(path: str | os.PathLike, batches: Iterable[np.ndarray], fps: float, crf: int = 12,
                 on_batch: Callable[[int], None] | None = None) -> int:
    """Write batches of (n, H, W, 3) uint8 frames (one per generated chunk) as a fragmented MP4 that grows as
    they come: ``partial_path(path)`` is playable after every batch (each starts with a keyframe; each frame
    is its own fragment, flushed at once); when the last batch is in, it is remuxed (not re-encoded) into a
    plain MP4 at ``path``, whose duration every player knows. If the
    batches raise, the frames written so far stay playable at the partial name (removed if there are none).
    ``on_batch(frames written)`` is called after each batch. Returns the frame count."""
    from fractions import Fraction

    import av

    partial = partial_path(path)
    partial.parent.mkdir(parents=True, exist_ok=True)
    count, stream = 0, None
    options = {"movflags": "frag_keyframe+empty_moov+default_base_moof+frag_every_frame"}
    try:
        with av.open(str(partial), mode="w", format="mp4", options=options,
                     container_options={"flush_packets": "1"}) as container:
            try:
                for batch in batches:
                    for i, frame in enumerate(batch):
                        if stream is None:
                            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                            stream.height, stream.width = frame.shape[:2]
                            stream.pix_fmt = "yuv420p"
                            stream.options = {"crf": str(crf), "tune": "zerolatency"}  # no lookahead: frames out now
                        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                        if i == 0:
                            picture.pict_type = av.video.frame.PictureType.I  # a chunk starts a fragment group
                        container.mux(stream.encode(picture))
                        count += 1
                    if on_batch is not None:
                        on_batch(count)
            finally:
                if stream is not None:
                    container.mux(stream.encode())  # flush the encoder: what was written stays playable
    except BaseException:
        if count == 0 and partial.exists():
            partial.unlink()
        raise
    if stream is None:
        partial.unlink(missing_ok=True)
        raise InputError("no frames to write")
    with atomic_path(path) as tmp:  # the finished video as a plain MP4 (index first): players know its duration
        remux(partial, tmp)
    partial.unlink()
    return count


def remux(source: Path, target: Path) -> None:
    """Copy the video stream of ``source`` into a non-fragmented MP4 at ``target`` (no re-encoding)."""
    import av

    with av.open(str(source)) as inp, av.open(str(target), mode="w", format="mp4",
                                              options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)


def write_video(path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], fps: float,
                crf: int = 12) -> int:
    """Write H.264 mp4 from (T, H, W, 3) uint8 frames or an iterable of such batches; returns the frame count.

    Batches may come from a generator (streaming generation): nothing is kept in memory, and if the
    generator raises, no file is left at ``path``.
    """
    from fractions import Fraction

    import av

    batches = [frames] if isinstance(frames, np.ndarray) else frames
    count = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = None
            for batch in batches:
                for frame in batch:
                    if stream is None:
                        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                        stream.height, stream.width = frame.shape[:2]
                        stream.pix_fmt = "yuv420p"
                        stream.options = {"crf": str(crf)}
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                                                           format="rgb24")))
                    count += 1
            if stream is None:
                raise InputError("no frames to write")
            container.mux(stream.encode())
    return count
