"""Object-trajectory error (physics_iq.md §8-§9.5): locate every object by its unique colour, compare with the
simulator's positions in the Physics-IQ-mini sidecar. Reported next to Physics-IQ, never instead of it.

Located centroids come from ``magi.eval.tracking`` (colour distance below a threshold, centroid of the matching
pixels; an object that cannot be found costs a fixed penalty). Generated frames of another size are first
resized to the sidecar's pixel grid, since the sidecar positions are pixels of the real clip.
"""

from __future__ import annotations

import numpy as np

from magi.eval.physics_iq import resize_linear
from magi.eval.tracking import trajectory_error


def clip_trajectory_error(frames: np.ndarray, sidecar: dict | None, size: tuple[int, int]) -> float | None:
    """Mean pixel error of (T, H, W, 3) ``frames`` against the sidecar tracks of the same T test frames.

    ``size`` = (H, W) of the real clip whose pixels the positions are in; None when there is nothing to track.
    """
    if not sidecar or not sidecar.get("objects"):
        return None
    if frames.shape[1:3] != tuple(size):
        frames = resize_linear(frames, *size)
    return trajectory_error(frames, sidecar["objects"], start=0)


def mean_error(errors: dict[str, float | None]) -> float | None:
    """Mean over the cases that have tracks (None if none has)."""
    values = [e for e in errors.values() if e is not None]
    return float(np.mean(values)) if values else None
