"""Anti-aliased rendering of recorded scene poses: draw at the 256 x 256 canvas, area-downsample."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from magi.world.scenes import BACKGROUND, CANVAS, Drawable

STRING = (150, 150, 150)


def _box_corners(d: Drawable, x: float, y: float, angle: float) -> list[tuple[float, float]]:
    w, h = d.size[0] / 2, d.size[1] / 2
    c, s = math.cos(angle), math.sin(angle)
    return [(x + c * px - s * py, y + s * px + c * py) for px, py in ((-w, -h), (w, -h), (w, h), (-w, h))]


def render_frame(drawables: list[Drawable], poses: list[tuple[float, float, float]], size: int) -> np.ndarray:
    """One (size, size, 3) uint8 frame; the canvas is drawn at 256 px and box-filtered down."""
    image = Image.new("RGB", (CANVAS, CANVAS), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for d, (x, y, angle) in zip(drawables, poses):
        if d.kind == "segment":
            draw.line([d.points[0], d.points[1]], fill=d.colour, width=max(1, round(2 * d.radius)))
        elif d.kind == "ball":
            if d.anchor is not None:
                draw.line([d.anchor, (x, y)], fill=STRING, width=3)
            r = d.radius
            draw.ellipse([x - r, y - r, x + r, y + r], fill=d.colour)
        elif d.kind == "box":
            draw.polygon(_box_corners(d, x, y, angle), fill=d.colour)
    if size != CANVAS:
        image = image.resize((size, size), Image.Resampling.BOX)
    return np.asarray(image)


def render_clip(drawables: list[Drawable], poses: list[list[tuple[float, float, float]]], size: int) -> np.ndarray:
    return np.stack([render_frame(drawables, frame, size) for frame in poses])  # (T, size, size, 3)


def object_tracks(drawables: list[Drawable], poses: list[list[tuple[float, float, float]]], size: int) -> list[dict]:
    """Per named object: colour, radius and (x, y) per frame in output pixel coordinates."""
    scale = size / CANVAS
    tracks = []
    for i, d in enumerate(drawables):
        if d.name and d.body is not None:
            tracks.append({"name": d.name, "kind": d.kind, "color": list(d.colour),
                           "radius_px": round((d.radius or max(d.size) / 2) * scale, 3),
                           "positions": [[round(p[i][0] * scale, 3), round(p[i][1] * scale, 3)] for p in poses]})
    return tracks
