"""Physics-IQ metrics and scores (physics_iq.md §2-§4), pure numpy, frames uint8 (T, H, W, 3) RGB.

Pipeline for one (scenario, view):

1. ``motion_masks``: background subtraction at the clip's native size (§2): gray -> k x k Gaussian blur ->
   running average (alpha 0.3, updated *before* the difference) -> |gray - round(bg)| > 10 -> open, close.
2. ``clip_features``: frames and masks resized to the metric size (real take 1's size // downscale) with
   bilinear interpolation without antialiasing (OpenCV ``INTER_LINEAR``); masks re-binarised with ``> 127``.
3. ``compare``: Spatial IoU, per-frame Spatiotemporal IoU, Weighted spatial IoU, per-frame MSE (§3) of a
   real take-1 clip against another clip (the model's, or take 2 for the physical variance).
4. ``summarize``: dataset means, the original Physics-IQ score (§4.1) and the Verified score (§4.2).

Differences from the reference evaluator, all deliberate: masks stay in memory (the original round-trips them
through a lossy mp4v file, which flips a few edge pixels); per-frame values are not rounded to 4 decimals before
averaging; the resize is a numpy bilinear that rounds half up like OpenCV's fixed-point ``INTER_LINEAR`` (bit-exact
for integer downscale factors such as /4 and /1, within one gray level otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

EPS = 1e-8  # the Verified score's epsilon (§4.2)

# cv2.GaussianBlur with sigma=0 uses these fixed integer kernels for small sizes (sum = 2**bits).
_BLUR_KERNELS = {1: (1,), 3: (1, 2, 1), 5: (1, 4, 6, 4, 1), 7: (2, 7, 14, 18, 14, 7, 2)}


@dataclass(frozen=True, kw_only=True)
class MaskParams:
    """Motion-mask and metric-size settings. ``REAL`` is the benchmark's; ``MINI`` is §9.5's for 64x64 clips."""

    blur: int = 5  # Gaussian blur kernel size (sigma 0)
    morph: int = 5  # opening/closing square kernel size
    threshold: float = 10.0  # gray-level difference that counts as motion (strictly greater)
    alpha: float = 0.3  # running-average weight of the new frame
    downscale: int = 4  # metric size = real take-1 size // downscale

    def __post_init__(self) -> None:
        if self.blur not in _BLUR_KERNELS:
            raise ValueError(f"blur must be one of {sorted(_BLUR_KERNELS)}, got {self.blur}")
        if self.morph < 1 or self.morph % 2 == 0:
            raise ValueError(f"morph must be a positive odd size, got {self.morph}")
        if not 0.0 < self.alpha <= 1.0 or self.downscale < 1:
            raise ValueError(f"need 0 < alpha <= 1 and downscale >= 1, got {self.alpha}, {self.downscale}")


REAL = MaskParams()
MINI = MaskParams(blur=3, morph=3, downscale=1)
MASK_PRESETS = {"real": REAL, "mini": MINI}


# ---------------------------------------------------------------------------------------------- motion masks


def to_gray(frames: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) int32 luma, OpenCV's 15-bit fixed point (bit-exact with cvtColor)."""
    r, g, b = (frames[..., c].astype(np.int32) for c in range(3))
    return (9798 * r + 19235 * g + 3735 * b + 16384) >> 15


def gaussian_blur(gray: np.ndarray, size: int) -> np.ndarray:
    """Separable k x k blur of (T, H, W) integers, border reflect-101, rounded half up (cv2's uint8 result)."""
    kernel = _BLUR_KERNELS[size]
    if size == 1:
        return gray
    r, total = size // 2, sum(kernel) ** 2
    x = np.pad(gray.astype(np.int64), ((0, 0), (r, r), (r, r)), mode="reflect")  # numpy reflect == reflect-101
    H, W = gray.shape[1:]
    rows = sum(w * x[:, i:i + H] for i, w in enumerate(kernel))  # (T, H, W + 2r)
    full = sum(w * rows[:, :, i:i + W] for i, w in enumerate(kernel))  # (T, H, W)
    return ((full + total // 2) // total).astype(np.int32)


def _sweep(mask: np.ndarray, size: int, erode: bool) -> np.ndarray:
    """Binary erosion (out-of-image = 1) or dilation (out-of-image = 0) of (T, H, W) by a size x size square."""
    if size == 1:
        return mask
    r, combine = size // 2, (np.logical_and if erode else np.logical_or)
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        x = np.pad(mask, pad, constant_values=erode)
        n = mask.shape[axis]
        out = x.take(range(0, n), axis=axis)
        for i in range(1, size):
            out = combine(out, x.take(range(i, i + n), axis=axis))
        mask = out
    return mask


def open_close(mask: np.ndarray, size: int) -> np.ndarray:
    """Morphological opening then closing with a size x size square (cv2.morphologyEx defaults)."""
    opened = _sweep(_sweep(mask, size, erode=True), size, erode=False)
    return _sweep(_sweep(opened, size, erode=False), size, erode=True)


def motion_masks(frames: np.ndarray, params: MaskParams = REAL, block: int = 16) -> np.ndarray:
    """Motion masks (T, H, W) bool of uint8 RGB frames (T, H, W, 3); frame 0 is all False (§2).

    Frames are processed ``block`` at a time so that a 4K clip does not need a float copy of itself.
    """
    T = frames.shape[0]
    masks = np.zeros(frames.shape[:3], dtype=bool)
    background = None
    for start in range(0, T, block):
        gray = gaussian_blur(to_gray(frames[start:start + block]), params.blur)  # (t, H, W)
        diff = np.zeros(gray.shape, dtype=bool)
        for i, g in enumerate(gray):
            if background is None:
                background = g.astype(np.float64)
                continue
            background = background * (1.0 - params.alpha) + g * params.alpha
            rounded = np.clip(np.rint(background), 0, 255)  # saturate_cast<uchar>: round half to even
            diff[i] = np.abs(g - rounded) > params.threshold
        masks[start:start + len(gray)] = open_close(diff, params.morph)
    masks[0] = False
    return masks


# ------------------------------------------------------------------------------------------ resize to metric size


def _linear_taps(n_src: int, n_dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of cv2 INTER_LINEAR along one axis (half-pixel centres, edge clamp)."""
    x = (np.arange(n_dst) + 0.5) * (n_src / n_dst) - 0.5
    x0 = np.floor(x).astype(np.int64)
    frac = x - x0
    frac[x0 < 0], x0[x0 < 0] = 0.0, 0
    last = x0 >= n_src - 1
    frac[last], x0[last] = 0.0, n_src - 1
    return x0, np.minimum(x0 + 1, n_src - 1), frac


def resize_linear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize without antialiasing of (T, H, W[, C]) uint8 to (T, height, width[, C]) uint8."""
    H, W = images.shape[1:3]
    if (H, W) == (height, width):
        return images
    y0, y1, fy = _linear_taps(H, height)
    x0, x1, fx = _linear_taps(W, width)
    shape = (1, -1, 1) + (1,) * (images.ndim - 3)
    x = images.astype(np.float64)
    rows = x[:, y0] * (1 - fy.reshape(shape)) + x[:, y1] * fy.reshape(shape)  # (T, height, W[, C])
    shape = (1, 1, -1) + (1,) * (images.ndim - 3)
    out = rows[:, :, x0] * (1 - fx.reshape(shape)) + rows[:, :, x1] * fx.reshape(shape)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class ClipFeatures:
    """A clip at metric size: frames (T, h, w, 3) uint8 and motion masks (T, h, w) bool."""

    frames: np.ndarray
    masks: np.ndarray


def clip_features(frames: np.ndarray, size: tuple[int, int], params: MaskParams = REAL,
                  block: int = 16) -> ClipFeatures:
    """Masks at native size, then frames and masks resized to ``size`` = (h, w) (§3 setup)."""
    h, w = size
    masks = motion_masks(frames, params, block)
    small_masks = np.concatenate([resize_linear(masks[i:i + block].astype(np.uint8) * 255, h, w) > 127
                                  for i in range(0, len(masks), block)])
    small_frames = np.concatenate([resize_linear(frames[i:i + block], h, w) for i in range(0, len(frames), block)])
    return ClipFeatures(small_frames, small_masks)


def metric_size(height: int, width: int, params: MaskParams = REAL) -> tuple[int, int]:
    return max(1, height // params.downscale), max(1, width // params.downscale)


# ------------------------------------------------------------------------------------------------- the metrics


def _iou(a: np.ndarray, b: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    inter = (a & b).sum(axis=axes)
    union = (a | b).sum(axis=axes)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def spatial_iou(real: np.ndarray, other: np.ndarray) -> float:
    """IoU of the masks' unions over time (T, H, W) -> scalar; two empty unions give 1."""
    return float(_iou(real.any(0), other.any(0), (0, 1)))


def spatiotemporal_iou(real: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per-frame IoU (T,); a frame where both masks are empty scores 1."""
    return _iou(real, other, (1, 2)).astype(np.float64)


def weighted_spatial_iou(real: np.ndarray, other: np.ndarray) -> float:
    """sum(min(w1, w2)) / sum(max(w1, w2)) of per-pixel motion frequencies w = mean over time; 1 if both 0."""
    w1, w2 = real.mean(0), other.mean(0)
    top = np.maximum(w1, w2).sum()
    return 1.0 if top == 0 else float(np.minimum(w1, w2).sum() / top)


def frame_mse(real: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per-frame mean squared error (T,) of uint8 RGB frames scaled to [0, 1]."""
    diff = real.astype(np.float64) / 255.0 - other.astype(np.float64) / 255.0
    return (diff * diff).mean(axis=(1, 2, 3))


@dataclass(frozen=True)
class Metrics:
    """The four Physics-IQ metrics of one clip against real take 1; list metrics are per frame (N,)."""

    spatial: float
    spatiotemporal: np.ndarray
    weighted_spatial: float
    mse: np.ndarray
    moving: np.ndarray  # (N,) bool: either mask has motion in the frame (for the motion-only ST IoU, §9.5)


def compare(real: ClipFeatures, other: ClipFeatures) -> Metrics:
    """Metrics of ``other`` against the real take-1 clip; both (N, h, w[, 3]) at metric size."""
    if real.masks.shape != other.masks.shape:
        raise ValueError(f"clip shapes differ: {real.masks.shape} vs {other.masks.shape}")
    st = spatiotemporal_iou(real.masks, other.masks)
    moving = (real.masks | other.masks).any(axis=(1, 2))
    return Metrics(spatial_iou(real.masks, other.masks), st, weighted_spatial_iou(real.masks, other.masks),
                   frame_mse(real.frames, other.frames), moving)


# ------------------------------------------------------------------------------------------------------ scores


@dataclass(frozen=True)
class Sample:
    """One (scenario, view): the model against take 1, and take 2 against take 1 (the physical variance)."""

    case: str  # take-1 ID, e.g. "0001"
    scenario: str
    view: str
    category: str
    family: str
    model: Metrics
    variance: Metrics


def physics_iq_score(st: float, s: float, ws: float, mse: float, st_var: float, s_var: float, ws_var: float,
                     mse_var: float) -> tuple[float, float]:
    """Original score (§4.1) from dataset means: (100 * clip(x, 0, 1) rounded to 2 decimals, 100 * x unclipped)."""
    x = (_ratio(st, st_var) + _ratio(s, s_var) + _ratio(ws, ws_var)) / 3 - (mse - mse_var)
    return round(100.0 * float(np.clip(x, 0.0, 1.0)), 2), 100.0 * x


def _ratio(value: float, reference: float) -> float:
    if reference > 0:
        return value / reference
    return 1.0 if value == 0 else float("inf")


def verified_sample_score(model: Metrics, variance: Metrics) -> float:
    """Physics-IQ Verified per-sample score in [0, 1] (§4.2): mean of four ratios, each clipped to [0, 1]."""
    ratios = (model.spatial / (variance.spatial + EPS),
              model.spatiotemporal.mean() / (variance.spatiotemporal.mean() + EPS),
              model.weighted_spatial / (variance.weighted_spatial + EPS),
              (variance.mse.mean() + EPS) / model.mse.mean() if model.mse.mean() > 0 else 1.0)
    return float(np.mean(np.clip(ratios, 0.0, 1.0)))


@dataclass(frozen=True)
class Summary:
    """Dataset-level means and scores of a set of samples."""

    samples: int
    score: float  # original Physics-IQ score, clipped to [0, 100], 2 decimals
    raw_score: float  # the same before clipping
    verified: float  # Physics-IQ Verified, x100
    spatial: float
    spatiotemporal: float
    weighted_spatial: float
    mse: float
    var_spatial: float
    var_spatiotemporal: float
    var_weighted_spatial: float
    var_mse: float
    motion_spatiotemporal: float


def _list_mean(samples: list[Sample], get: Callable[[Sample], np.ndarray]) -> float:
    """List metrics (§4.1): per scenario concatenate the views' frames and average, then average scenarios."""
    by_scenario: dict[str, list[np.ndarray]] = {}
    for s in samples:
        by_scenario.setdefault(s.scenario, []).append(get(s))
    return float(np.mean([np.concatenate(v).mean() for v in by_scenario.values()]))


def summarize(samples: Iterable[Sample]) -> Summary:
    samples = list(samples)
    if not samples:
        raise ValueError("no samples to summarize")
    st, mse = _list_mean(samples, lambda s: s.model.spatiotemporal), _list_mean(samples, lambda s: s.model.mse)
    st_var = _list_mean(samples, lambda s: s.variance.spatiotemporal)
    mse_var = _list_mean(samples, lambda s: s.variance.mse)
    s, ws = np.mean([x.model.spatial for x in samples]), np.mean([x.model.weighted_spatial for x in samples])
    s_var = np.mean([x.variance.spatial for x in samples])
    ws_var = np.mean([x.variance.weighted_spatial for x in samples])
    score, raw = physics_iq_score(st, s, ws, mse, st_var, s_var, ws_var, mse_var)
    motion = np.concatenate([x.model.spatiotemporal[x.model.moving] for x in samples])
    return Summary(
        samples=len(samples), score=score, raw_score=raw,
        verified=100.0 * float(np.mean([verified_sample_score(x.model, x.variance) for x in samples])),
        spatial=float(s), spatiotemporal=st, weighted_spatial=float(ws), mse=mse, var_spatial=float(s_var),
        var_spatiotemporal=st_var, var_weighted_spatial=float(ws_var), var_mse=mse_var,
        motion_spatiotemporal=float(motion.mean()) if motion.size else float("nan"))


def summarize_by(samples: list[Sample], key: Callable[[Sample], str]) -> dict[str, Summary]:
    """Per-group summaries (e.g. per category); each group is normalised by its own physical variance."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(key(s), []).append(s)
    return {name: summarize(group) for name, group in sorted(groups.items())}
