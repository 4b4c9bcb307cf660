"""Rectified-flow path and loss.

Convention (MAGI-1's, used everywhere in magi): t = 0 is pure noise, t = 1 is data.

    x_t = t * x_1 + (1 - t) * x_0,     x_0 ~ N(0, I) noise,  x_1 data
    v   = d x_t / d t = x_1 - x_0       (the velocity the DiT predicts)

so one Euler step is x_{t + dt} = x_t + dt * v, and integrating from t = 0 to 1 turns noise into data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from magi.config import ChunkLevels
from magi.flow.schedule import shift_time


@dataclass(frozen=True)
class PathSample:
    x_t: Tensor  # noisy input at time t
    velocity: Tensor  # regression target x_1 - x_0


def broadcast_time(t: Tensor, like: Tensor) -> Tensor:
    """t: (B, T) per latent frame -> (B, 1, T, 1, 1) against latents (B, C, T, H, W)."""
    return t.to(like.dtype)[:, None, :, None, None]


def interpolate(data: Tensor, noise: Tensor, t: Tensor) -> PathSample:
    """Point on the straight path between ``noise`` (t = 0) and ``data`` (t = 1); t: (B, T)."""
    tt = broadcast_time(t, data)
    return PathSample(x_t=tt * data + (1 - tt) * noise, velocity=data - noise)


def autoregressive_times(batch: int, num_chunks: int, chunk_frames: int, *, logit_std: float, shift: float,
                         prefix_probs: tuple[float, float, float], generator: torch.Generator,
                         levels: ChunkLevels = "sorted", t2v_logit_std: float | None = None,
                         t2v_shift: float | None = None) -> Tensor:
    """Per-frame noise levels (B, K * F) for MAGI-1-style autoregressive training.

    Each chunk draws t = shift(sigmoid(N(0, logit_std))), and later chunks are kept noisier than earlier ones
    (as in the sampler's pipelined window). A clean prefix (t = 1) is drawn per sample with ``prefix_probs`` =
    (none: t2v, one latent frame: i2v, 1..K-1 whole chunks: v2v), so one model learns all three modes.

    ``levels``: how the draws are ordered. "sorted": sorted, chunk 0 the cleanest of the K draws, so the first
    chunk of a t2v or i2v sample is rarely very noisy (P(t < 0.1) is about 0.14**3 at shift 3).
    "cascade": a running minimum from the first chunk after the prefix on, so that chunk keeps the plain
    distribution of one draw, as the first chunk generated from noise at inference has.

    ``t2v_logit_std``, ``t2v_shift``: the draws of the samples without a clean prefix (t2v) use these in place of
    ``logit_std`` and ``shift`` (None: the same), so t2v can train at other noise levels than i2v and v2v. The
    other samples' draws stay exactly those without them.
    """
    def draw(std: float, s: float) -> Tensor:  # (B, K) levels of one draw per chunk
        return shift_time(torch.sigmoid(torch.randn(batch, num_chunks, generator=generator) * std), s)

    t = draw(logit_std, shift)  # (B, K)
    probs = torch.tensor(prefix_probs, dtype=torch.float32)  # whole numbers too: (1, 0, 0) is a t2v-only stage
    kind = torch.multinomial(probs, batch, replacement=True, generator=generator)
    whole = torch.randint(1, max(num_chunks, 2), (batch,), generator=generator) * chunk_frames
    prefix = torch.where(kind == 0, 0, torch.where(kind == 1, 1, whole.clamp(max=(num_chunks - 1) * chunk_frames)))
    if t2v_logit_std is not None or t2v_shift is not None:  # drawn last, so the rest are the draws without them
        own = draw(logit_std if t2v_logit_std is None else t2v_logit_std, shift if t2v_shift is None else t2v_shift)
        t = torch.where((kind == 0)[:, None], own, t)
    if levels == "sorted":
        t = t.sort(dim=1, descending=True).values  # chunk 0 cleanest
    else:
        clean_chunks = torch.arange(num_chunks)[None] < (prefix // chunk_frames)[:, None]  # (B, K)
        t = torch.where(clean_chunks, torch.ones_like(t), t).cummin(dim=1).values
    t = t.repeat_interleave(chunk_frames, dim=1)  # (B, K * F)
    frames = torch.arange(num_chunks * chunk_frames)
    return torch.where(frames[None] < prefix[:, None], torch.ones_like(t), t)


def frame_change_mse(prediction: Tensor, target: Tensor, t: Tensor, chunk_frames: int, rows: slice = slice(None),
                     weight: Tensor | None = None) -> Tensor:
    """Mean squared error of the change from each noisy frame to the next one of the same chunk.

    The error's part that is the same in every frame of a chunk cancels; what is left is how the prediction
    fails to change over the chunk where the target does (a ball that should fall, drawn where it rests), and
    changes where the target does not (a fragment that comes and goes).
    Shapes, ``rows``, ``weight`` and the scaling across ranks as in ``noisy_frame_mse``; the weight of a pair
    is the mean of its two frames'.
    """
    error = prediction.float() - target.float()  # (b, C, T, H, W)
    squared = (error[:, :, 1:] - error[:, :, :-1]).pow(2)  # (b, C, T - 1, H, W)
    if weight is not None:
        squared = squared * (weight[:, :, 1:] + weight[:, :, :-1]) / 2
    change = squared.mean(dim=(1, 3, 4))  # (b, T - 1)
    noisy = t < 1
    same_chunk = torch.arange(1, t.shape[1], device=t.device) % chunk_frames != 0  # (T - 1,)
    pairs = noisy[:, 1:] & noisy[:, :-1] & same_chunk  # (B, T - 1)
    share = t.shape[0] / change.shape[0]
    return (change * pairs[rows].float()).sum() * share / pairs.float().sum().clamp(min=1.0)


def flow_loss(velocity_model: Callable[[Tensor, Tensor], Tensor], data: Tensor, t: Tensor,
              generator: torch.Generator, rows: slice = slice(None), weight: Tensor | None = None,
              change_weight: float = 0.0, chunk_frames: int = 1) -> Tensor:
    """Mean squared velocity error over the frames that are not clean (t < 1), plus ``change_weight`` times
    ``frame_change_mse`` over chunks of ``chunk_frames``.

    ``velocity_model(x_t, t)`` closes over the conditioning of ``rows``; data: (B, C, T, H, W); t: (B, T);
    ``weight``: optional (B, 1, T, H, W) per-position weights of the squared error.
    Under data parallelism each rank passes its ``rows`` of the same global batch: the noise is drawn for
    the whole batch, and the result is this rank's share, scaled so that the mean over ranks is the loss.
    """
    noise = torch.randn(data.shape, generator=generator).to(data)
    path = interpolate(data[rows], noise[rows], t[rows])
    prediction = velocity_model(path.x_t, t[rows])
    weight = None if weight is None else weight[rows]
    loss = noisy_frame_mse(prediction, path.velocity, t, rows, weight)
    if change_weight > 0:
        loss = loss + change_weight * frame_change_mse(prediction, path.velocity, t, chunk_frames, rows, weight)
    return loss


def noisy_frame_mse(prediction: Tensor, target: Tensor, t: Tensor, rows: slice = slice(None),
                    weight: Tensor | None = None) -> Tensor:
    """Mean squared error over the frames of the global batch that are not clean (t < 1), this rank's share.

    prediction, target: (b, C, T, H, W), the ``rows`` of the global batch; t: (B, T), all of it; ``weight``:
    optional (b, 1, T, H, W) weights of each position's squared error. The sum over this rank's frames is
    scaled by B / b (the number of ranks), so that the mean over ranks is the loss.
    """
    squared = (prediction.float() - target.float()).pow(2)
    if weight is not None:
        squared = squared * weight
    error = squared.mean(dim=(1, 3, 4))  # (b, T)
    share = t.shape[0] / error.shape[0]
    return (error * (t[rows] < 1).float()).sum() * share / (t < 1).float().sum().clamp(min=1.0)
