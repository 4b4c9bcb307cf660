"""Draw a Trace with PIL, 4x supersampled, and box-downsample (``Image.reduce``, an area mean) each view crop.

The world (320x256 units) is drawn at ``scale = 4 * size / 256`` pixels per unit, so every view crop is exactly
``4 * size`` pixels wide and the downsample is an exact 4x4 area mean (cv2's INTER_AREA at an integer factor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from magi.physics.world import (
    BACKGROUND,
    FLOOR_COLOR,
    FLOOR_Y,
    PALETTE,
    VIEW_OFFSETS,
    VIEW_SIZE,
    WORLD_H,
    WORLD_W,
    Trace,
)

SUPERSAMPLE = 4
SHADOW_COLOR = (52, 52, 56)
STRING_COLOR = (170, 170, 170)
COLD, HOT = np.array((80, 110, 230), np.float64), np.array((255, 225, 70), np.float64)


@dataclass(frozen=True)
class Camera:
    """How a clip is shown: the view moved down by ``dy`` world units (positive: the floor sits higher in the
    frame, negative: lower, with more room above) and the background colour. The physics is the same."""

    dy: float = 0.0
    background: tuple[int, int, int] = BACKGROUND


def check_size(size: int) -> None:
    if size < 16 or size % 2:
        raise ValueError(f"frame size must be an even number >= 16 (objects must stay a few pixels wide), got {size}")


def _box_corners(x, y, angle, w, h):
    c, s = np.cos(angle), np.sin(angle)
    local = np.array([(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)])
    return local @ np.array([[c, s], [-s, c]]) + (x, y)


def _shadow_span(light, corners) -> tuple[float, float] | None:
    lx, ly = light
    xs = []
    for cx, cy in corners:
        if cy >= FLOOR_Y - 1e-6:
            xs.append(cx)
        elif cy > ly:
            xs.append(lx + (cx - lx) * (FLOOR_Y - ly) / (cy - ly))
        else:
            return None  # light below the top of the block: shadow leaves the floor
    return min(xs), max(xs)


def draw_world(trace: Trace, frame: int, scale: float, camera: Camera = Camera()) -> Image.Image:
    """One world frame, (W*scale) x (H*scale) RGB, seen through ``camera``."""
    img = Image.new("RGB", (round(WORLD_W * scale), round(WORLD_H * scale)), camera.background)
    draw = ImageDraw.Draw(img)

    def pts(seq):
        return [(float(x) * scale, (float(y) - camera.dy) * scale) for x, y in seq]

    if camera.dy > 0:  # the floor goes on below the world's bottom edge
        draw.rectangle(pts([(0, FLOOR_Y), (WORLD_W, WORLD_H + camera.dy)]), fill=FLOOR_COLOR)
    for item in trace.static:
        if item[0] == "poly":
            draw.polygon(pts(item[1]), fill=tuple(item[2]))
    extras = trace.extras[frame]
    states = trace.states[frame]
    if "heat" in extras:
        x0, y0, length, height = extras["bar"]
        temp = np.asarray(extras["heat"])
        cell = length / len(temp)
        for i, t in enumerate(temp):
            rgb = tuple(int(v) for v in np.round(COLD + (HOT - COLD) * t))
            draw.rectangle(pts([(x0 + i * cell, y0 - height / 2), (x0 + (i + 1) * cell, y0 + height / 2)]), fill=rgb)
    if "light" in extras:
        for thing, (x, y, a) in zip(trace.things, states, strict=True):
            if thing.kind == "box":
                span = _shadow_span(extras["light"], _box_corners(x, y, a, *thing.size))
                if span is not None:
                    draw.rectangle(pts([(span[0], FLOOR_Y), (span[1], FLOOR_Y + 10)]), fill=SHADOW_COLOR)
    for pivot, k in extras.get("links", []):
        draw.line(pts([pivot, states[k][:2]]), fill=STRING_COLOR, width=max(1, round(2 * scale)))
    if len(trace.particles[frame]):
        r, rgb = trace.particle_radius, PALETTE[trace.particle_color]
        for x, y in trace.particles[frame]:
            draw.ellipse(pts([(x - r, y - r), (x + r, y + r)]), fill=rgb)
    for on_top in (False, True):
        for thing, (x, y, a) in zip(trace.things, states, strict=True):
            if thing.on_top != on_top or not thing.drawn:
                continue
            rgb = PALETTE[thing.color]
            if thing.kind == "circle":
                r = thing.size[0]
                draw.ellipse(pts([(x - r, y - r), (x + r, y + r)]), fill=rgb)
            else:
                draw.polygon(pts(_box_corners(x, y, a, *thing.size)), fill=rgb)
    return img


def render_views(trace: Trace, size: int, views: tuple[int, ...] = (0, 1, 2), camera: Camera = Camera()) -> np.ndarray:
    """All frames of the chosen views: (V, T, size, size, 3) uint8."""
    check_size(size)
    scale = SUPERSAMPLE * size / VIEW_SIZE
    crop = SUPERSAMPLE * size
    frames = len(trace.states)
    out = np.empty((len(views), frames, size, size, 3), np.uint8)
    for t in range(frames):
        world = draw_world(trace, t, scale, camera)
        for i, v in enumerate(views):
            x0 = round(VIEW_OFFSETS[v] * scale)
            out[i, t] = np.asarray(world.crop((x0, 0, x0 + crop, crop)).reduce(SUPERSAMPLE))
    return out


def object_tracks(trace: Trace, view: int, size: int, frames: slice = slice(None)) -> list[dict]:
    """Per-object colour, radius and per-frame centre in the pixel coordinates of one ``size`` x ``size`` view."""
    k = size / VIEW_SIZE
    tracks = []
    for i, thing in enumerate(trace.things):
        xy = trace.states[frames, i, :2]
        tracks.append({"name": thing.name, "color": list(PALETTE[thing.color]), "radius_px": round(thing.radius * k, 3),
                       "positions": [[round((x - VIEW_OFFSETS[view]) * k, 3), round(y * k, 3)] for x, y in xy]})
    if any(len(p) for p in trace.particles):
        centres = [p.mean(axis=0) if len(p) else np.array([np.nan, np.nan]) for p in trace.particles[frames]]
        tracks.append({"name": "fluid", "color": list(PALETTE[trace.particle_color]),
                       "radius_px": round(trace.particle_radius * k, 3),
                       "positions": [[None, None] if np.isnan(c[0]) else
                                     [round((c[0] - VIEW_OFFSETS[view]) * k, 3), round(c[1] * k, 3)] for c in centres]})
    return tracks
