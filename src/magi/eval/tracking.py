"""Objects located by colour: every simulated object has a unique colour, so a video can be parsed into tracks.

``locate`` finds, per frame, the centroid of the pixels close to an object's colour; ``trajectory_error``
compares located positions in generated frames with the simulator's positions (the sidecar tracks of
``magi data`` / Physics-IQ-mini). A missing object costs ``miss_penalty`` pixels (default: half the frame),
so a model that makes balls dissolve is penalised, not ignored.
"""

from __future__ import annotations

import numpy as np

COLOUR_TOLERANCE = 60.0  # max RGB distance of a pixel to an object's colour
MIN_PIXELS = 2  # fewer matching pixels than this: the object is not visible in the frame


def locate(frames: np.ndarray, colour: tuple[int, int, int] | list[int],
           tolerance: float = COLOUR_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (T, 2) as (x, y) pixel coordinates and visibility (T,) bool of one colour in (T, H, W, 3)."""
    hit = colour_pixels(frames, colour, tolerance)  # (T, H, W)
    counts = hit.sum(axis=(1, 2))
    ys, xs = np.mgrid[: frames.shape[1], : frames.shape[2]]
    safe = np.maximum(counts, 1)
    # pixel centres: a pixel at column i covers [i, i + 1), so its centre is at i + 0.5
    centroids = np.stack([(hit * (xs + 0.5)).sum(axis=(1, 2)) / safe, (hit * (ys + 0.5)).sum(axis=(1, 2)) / safe], -1)
    return centroids, counts >= MIN_PIXELS


def colour_pixels(frames: np.ndarray, colour: tuple[int, int, int] | list[int],
                  tolerance: float = COLOUR_TOLERANCE) -> np.ndarray:
    """(T, H, W) bool: the pixels of (T, H, W, 3) frames within ``tolerance`` of ``colour``."""
    return np.linalg.norm(frames.astype(np.float32) - np.asarray(colour, np.float32), axis=-1) < tolerance


def intact_objects(frame: np.ndarray, reference: np.ndarray, objects: list[dict], keep: float = 0.5) -> int:
    """How many of ``objects`` visible in ``reference`` still cover at least ``keep`` of that pixel area in
    ``frame`` (both (H, W, 3)): an object that dissolves into a faint smear is not intact."""
    intact = 0
    for obj in objects:
        before = colour_pixels(reference[None], obj["color"]).sum()
        after = colour_pixels(frame[None], obj["color"]).sum()
        intact += int(before >= MIN_PIXELS and after >= keep * before)
    return intact


def trajectory_error(frames: np.ndarray, objects: list[dict], start: int = 0,
                     miss_penalty: float | None = None) -> float:
    """Mean pixel distance between located and simulated positions of every object over ``frames``.

    ``objects``: sidecar tracks with ``color`` and ``positions`` (one (x, y) per frame of the full clip);
    ``frames`` are compared with positions ``start .. start + len(frames)``. Objects the simulator itself
    has outside the frame are skipped in those frames.
    """
    penalty = frames.shape[2] / 2 if miss_penalty is None else miss_penalty
    errors = []
    for obj in objects:
        truth = np.asarray(obj["positions"][start:start + len(frames)], np.float32)
        found, visible = locate(frames[: len(truth)], obj["color"])
        inside = (truth[:, 0] >= 0) & (truth[:, 0] < frames.shape[2]) & (truth[:, 1] >= 0) & \
            (truth[:, 1] < frames.shape[1])
        distance = np.where(visible, np.linalg.norm(found - truth, axis=-1), penalty)
        errors.extend(distance[inside].tolist())
    return float(np.mean(errors)) if errors else 0.0


def visible_objects(frame: np.ndarray, objects: list[dict]) -> int:
    """How many of ``objects`` (by colour) are visible in one (H, W, 3) frame."""
    return sum(bool(locate(frame[None], obj["color"])[1][0]) for obj in objects)
