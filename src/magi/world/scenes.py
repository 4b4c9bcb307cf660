"""Procedural 2-D physics scenes (pymunk) for training data: each scene is a pure function of an RNG.

World units are pixels of a 256 x 256 canvas, y pointing down (as in images); gravity is +y.
A scene returns a ``Scene``: the pymunk space, the shapes to draw with their colours, and a caption
written from the scene's parameters. ``simulate`` steps it at ``substeps`` per frame and records, per
frame, every drawable's pose, so rendering never touches pymunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

CANVAS = 256
FLOOR_Y = 224.0
GRAVITY = 300.0  # px / s^2 on the canvas: a ball dropped from the top lands in about 1.2 s
BACKGROUND = (40, 40, 40)
STRUCTURE = (120, 120, 120)  # floor, ramps, tables, pins: neutral gray
COLOURS = {  # every object gets its own; all are >= 60 luminance levels away from the background
    "red": (225, 55, 55), "green": (70, 200, 90), "blue": (70, 120, 235), "yellow": (235, 215, 60),
    "orange": (245, 145, 45), "purple": (175, 95, 230), "cyan": (70, 215, 225), "pink": (245, 120, 185),
    "white": (235, 235, 235),
}


@dataclass
class Drawable:
    kind: str  # "ball" | "box" | "segment"
    colour: tuple[int, int, int]
    name: str = ""  # colour name for captions and tracking ("" for static structure)
    radius: float = 0.0  # ball radius or segment half-thickness
    size: tuple[float, float] = (0.0, 0.0)  # box width, height
    body: object = None  # pymunk.Body (None for static geometry given by points)
    points: tuple[tuple[float, float], ...] = ()  # segment end points (static)
    anchor: tuple[float, float] | None = None  # pendulum pivot: a string is drawn to the body


@dataclass
class Scene:
    space: object
    drawables: list[Drawable]
    caption: str
    family: str
    params: dict = field(default_factory=dict)


def pick_colours(rng: np.random.Generator, n: int) -> list[str]:
    return [str(c) for c in rng.choice(list(COLOURS), size=n, replace=False)]


def size_word(radius: float) -> str:
    return "small" if radius < 15 else "large" if radius > 20 else ""


def a_(word: str) -> str:
    """The indefinite article for ``word``."""
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _space():
    import pymunk

    space = pymunk.Space()
    space.gravity = (0.0, GRAVITY)
    return space


def _static_segment(space, a, b, thickness=3.0, friction=0.8, elasticity=0.9) -> Drawable:
    import pymunk

    shape = pymunk.Segment(space.static_body, a, b, thickness)
    shape.friction, shape.elasticity = friction, elasticity
    space.add(shape)
    return Drawable("segment", STRUCTURE, radius=thickness, points=(tuple(a), tuple(b)))


def _ball(space, name, radius, position, velocity=(0.0, 0.0), elasticity=0.8, friction=0.6, mass=None):
    import pymunk

    mass = mass if mass is not None else (radius / 12.0) ** 2
    body = pymunk.Body(mass, pymunk.moment_for_circle(mass, 0, radius))
    body.position, body.velocity = position, velocity
    shape = pymunk.Circle(body, radius)
    shape.elasticity, shape.friction = elasticity, friction
    space.add(body, shape)
    return Drawable("ball", COLOURS[name], name=name, radius=radius, body=body)


def _box(space, name, width, height, position, friction=0.7, elasticity=0.1, colour=None):
    import pymunk

    mass = width * height / 200.0
    body = pymunk.Body(mass, pymunk.moment_for_box(mass, (width, height)))
    body.position = position
    shape = pymunk.Poly.create_box(body, (width, height))
    shape.friction, shape.elasticity = friction, elasticity
    space.add(body, shape)
    return Drawable("box", colour or COLOURS[name], name=name, size=(width, height), body=body)


def _floor(space, elasticity) -> list[Drawable]:
    return [_static_segment(space, (-50, FLOOR_Y), (CANVAS + 50, FLOOR_Y), 4.0, elasticity=elasticity),
            _static_segment(space, (-4, -200), (-4, FLOOR_Y), 4.0, elasticity=elasticity),
            _static_segment(space, (CANVAS + 4, -200), (CANVAS + 4, FLOOR_Y), 4.0, elasticity=elasticity)]


def falling_balls(rng: np.random.Generator) -> Scene:
    space = _space()
    n = int(rng.integers(1, 4))
    names = pick_colours(rng, n)
    elasticity = float(rng.uniform(0.5, 0.97))
    drawables = _floor(space, elasticity)
    balls = []
    for i, name in enumerate(names):
        radius = float(rng.uniform(12, 24))
        x = (i + 0.5) * CANVAS / n + float(rng.uniform(-15, 15))
        y = float(rng.uniform(30, 140))
        vx = float(rng.uniform(-80, 80))
        ball = _ball(space, name, radius, (x, y), (vx, 0.0), elasticity=elasticity)
        balls.append(ball)
        drawables.append(ball)
    bounciness = "bouncy " if elasticity > 0.85 else "" if elasticity > 0.65 else "heavy "
    if n == 1:
        b = balls[0]
        caption = a_(" ".join(f"{bounciness}{size_word(b.radius)} {b.name}".split())) + " ball falls and bounces on the floor"
    else:
        caption = f"{', '.join(b.name for b in balls[:-1])} and {balls[-1].name} {bounciness}balls fall and bounce"
    return Scene(space, drawables, " ".join(caption.split()), "falling",
                 {"elasticity": elasticity, "balls": n})


def collision(rng: np.random.Generator) -> Scene:
    space = _space()
    drawables = _floor(space, 0.5)
    names = pick_colours(rng, 2)
    r1, r2 = float(rng.uniform(12, 22)), float(rng.uniform(12, 22))
    speed1, speed2 = float(rng.uniform(60, 160)), float(rng.uniform(0, 120))
    first = _ball(space, names[0], r1, (float(rng.uniform(20, 70)), FLOOR_Y - 4 - r1), (speed1, 0.0), 0.9, 0.0)
    second = _ball(space, names[1], r2, (float(rng.uniform(170, 230)), FLOOR_Y - 4 - r2), (-speed2, 0.0), 0.9, 0.0)
    drawables += [first, second]
    moving = f"{a_(first.name)} ball rolls into {a_(second.name)} ball" if speed2 < 20 else \
        f"{a_(first.name)} ball and {a_(second.name)} ball roll toward each other"
    return Scene(space, drawables, f"{moving} and they collide", "collision", {"v1": speed1, "v2": speed2})


def ramp(rng: np.random.Generator) -> Scene:
    space = _space()
    drawables = _floor(space, 0.4)
    angle = float(rng.uniform(15, 35))
    left = bool(rng.integers(2))
    top_x, length = (20.0, 150.0)
    dx, dy = length * math.cos(math.radians(angle)), length * math.sin(math.radians(angle))
    top = (top_x, FLOOR_Y - dy - 10)
    bottom = (top_x + dx, FLOOR_Y - 10)
    if not left:
        top, bottom = (CANVAS - top[0], top[1]), (CANVAS - bottom[0], bottom[1])
    friction = float(rng.uniform(0.2, 1.0))
    drawables.append(_static_segment(space, top, bottom, 4.0, friction=friction, elasticity=0.2))
    drawables.append(_static_segment(space, bottom, (bottom[0], FLOOR_Y), 4.0))
    name = pick_colours(rng, 1)[0]
    radius = float(rng.uniform(12, 18))
    normal = np.array([dy, -dx]) / length if left else np.array([-dy, -dx]) / length
    start = np.array(top) + (np.array(bottom) - np.array(top)) * 0.1 + normal * (radius + 5)
    ball = _ball(space, name, radius, tuple(start), elasticity=0.2, friction=friction)
    drawables.append(ball)
    return Scene(space, drawables, f"{a_(name)} ball rolls down a {'steep' if angle > 27 else 'gentle'} ramp",
                 "ramp", {"angle": angle, "friction": friction})


def projectile(rng: np.random.Generator) -> Scene:
    space = _space()
    elasticity = float(rng.uniform(0.3, 0.8))
    drawables = _floor(space, elasticity)
    name = pick_colours(rng, 1)[0]
    radius = float(rng.uniform(12, 18))
    left = bool(rng.integers(2))
    speed, angle = float(rng.uniform(150, 260)), math.radians(float(rng.uniform(30, 70)))
    vx, vy = speed * math.cos(angle) * (1 if left else -1), -speed * math.sin(angle)
    x = 25.0 if left else CANVAS - 25.0
    ball = _ball(space, name, radius, (x, FLOOR_Y - 4 - radius), (vx, vy), elasticity=elasticity)
    drawables.append(ball)
    side = "right" if left else "left"
    return Scene(space, drawables, f"{a_(name)} ball is thrown to the {side} and flies in an arc", "projectile",
                 {"speed": speed, "angle": math.degrees(angle)})


def table_roll(rng: np.random.Generator) -> Scene:
    space = _space()
    drawables = _floor(space, 0.6)
    height = float(rng.uniform(70, 130))
    width = float(rng.uniform(90, 140))
    left = bool(rng.integers(2))
    x0, x1 = (0.0, width) if left else (CANVAS - width, float(CANVAS))
    y = FLOOR_Y - height
    drawables.append(_static_segment(space, (x0, y), (x1, y), 4.0, friction=0.3, elasticity=0.3))
    edge = x1 if left else x0
    drawables.append(_static_segment(space, (edge, y), (edge, FLOOR_Y), 3.0))
    name = pick_colours(rng, 1)[0]
    radius = float(rng.uniform(12, 17))
    speed = float(rng.uniform(40, 120))
    start = (x0 + 20 if left else x1 - 20, y - 4 - radius)
    ball = _ball(space, name, radius, start, (speed if left else -speed, 0.0), elasticity=0.6, friction=0.3)
    drawables.append(ball)
    return Scene(space, drawables, f"{a_(name)} ball rolls off the edge of a table and bounces on the floor",
                 "table", {"speed": speed, "height": height})


def pendulum(rng: np.random.Generator) -> Scene:
    import pymunk

    space = _space()
    drawables = _floor(space, 0.5)
    pivot = (CANVAS / 2 + float(rng.uniform(-30, 30)), 20.0)
    length = float(rng.uniform(90, 170))
    amplitude = math.radians(float(rng.uniform(20, 70))) * (1 if rng.integers(2) else -1)
    name = pick_colours(rng, 1)[0]
    radius = float(rng.uniform(12, 18))
    position = (pivot[0] + length * math.sin(amplitude), pivot[1] + length * math.cos(amplitude))
    ball = _ball(space, name, radius, position)
    joint = pymunk.PinJoint(space.static_body, ball.body, pivot, (0, 0))
    space.add(joint)
    ball.anchor = pivot
    drawables.append(_static_segment(space, (pivot[0] - 12, pivot[1]), (pivot[0] + 12, pivot[1]), 3.0))
    drawables.append(ball)
    return Scene(space, drawables, f"{a_(name)} ball swings on a string like a pendulum", "pendulum",
                 {"length": length, "amplitude": math.degrees(amplitude)})


def dominoes(rng: np.random.Generator) -> Scene:
    space = _space()
    drawables = _floor(space, 0.1)
    count = int(rng.integers(3, 7))
    spacing = float(rng.uniform(18, 34))
    height, width = float(rng.uniform(36, 52)), 7.0
    start = 70.0
    names = pick_colours(rng, 2)
    for i in range(count):
        drawables.append(_box(space, names[0], width, height, (start + i * spacing, FLOOR_Y - 4 - height / 2),
                              friction=0.6))
    pusher = _ball(space, names[1], 12.0, (25.0, FLOOR_Y - 14), (float(rng.uniform(90, 160)), 0.0), 0.1, 0.4)
    drawables.append(pusher)
    falls = "all the dominoes fall" if spacing < height * 0.8 else "the dominoes topple"
    return Scene(space, drawables, f"{a_(names[1])} ball pushes a row of {count} {names[0]} dominoes and {falls}",
                 "dominoes", {"count": count, "spacing": spacing})


def stack(rng: np.random.Generator) -> Scene:
    space = _space()
    drawables = _floor(space, 0.1)
    count = int(rng.integers(2, 5))
    names = pick_colours(rng, count)
    unstable = bool(rng.integers(2))
    direction = 1 if rng.integers(2) else -1
    y = FLOOR_Y - 4
    x = CANVAS / 2
    size = float(rng.uniform(24, 34))
    tipping = int(rng.integers(1, count)) if unstable else -1  # the level that overhangs its support
    for level, name in enumerate(names):
        if level:
            shift = rng.uniform(0.6, 0.8) if level == tipping else rng.uniform(0.0, 0.12)
            x += float(shift) * size * direction
        drawables.append(_box(space, name, size, size, (x, y - size / 2)))
        y -= size
    what = "an unstable stack of blocks topples over" if unstable else "a stack of blocks stands still"
    return Scene(space, drawables, what, "stack", {"unstable": unstable, "blocks": count})


def resting(rng: np.random.Generator) -> Scene:
    space = _space()
    drawables = _floor(space, 0.3)
    n = int(rng.integers(1, 3))
    for i, name in enumerate(pick_colours(rng, n)):
        radius = float(rng.uniform(12, 22))
        drawables.append(_ball(space, name, radius, ((i + 1) * CANVAS / (n + 1), FLOOR_Y - 4 - radius)))
    names = [d.name for d in drawables if d.name]
    return Scene(space, drawables, f"{' and '.join(names)} {'ball rests' if n == 1 else 'balls rest'} "
                 "on the floor and nothing moves", "static", {"balls": n})


FAMILIES: dict[str, Callable[[np.random.Generator], Scene]] = {
    "falling": falling_balls, "collision": collision, "ramp": ramp, "projectile": projectile,
    "table": table_roll, "pendulum": pendulum, "dominoes": dominoes, "stack": stack, "static": resting,
}
WEIGHTS = {"falling": 3, "collision": 2, "ramp": 2, "projectile": 2, "table": 2, "pendulum": 2, "dominoes": 1,
           "stack": 1, "static": 0.5}


def simulate(scene: Scene, frames: int, fps: int, substeps: int = 16) -> list[list[tuple[float, float, float]]]:
    """Poses (x, y, angle) of every drawable for each frame (the first frame is the initial state)."""
    dt = 1.0 / (fps * substeps)
    poses = []
    for frame in range(frames):
        if frame:
            for _ in range(substeps):
                scene.space.step(dt)
        poses.append([(d.body.position.x, d.body.position.y, d.body.angle) if d.body is not None else (0.0, 0.0, 0.0)
                      for d in scene.drawables])
    return poses
