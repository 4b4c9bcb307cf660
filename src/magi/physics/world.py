"""The simulated world: a 320x256 side view (y points down) stepped by pymunk at 8 FPS x 16 substeps.

A family (see ``families.py``) builds a :class:`Scene`: pymunk bodies wrapped as :class:`Thing` s (each with a
unique colour), static geometry to draw, and optional per-substep ``hooks`` (forces, releases, spawning).
:func:`simulate` steps it and returns a :class:`Trace`, the per-frame state that ``render.py`` draws and that the
JSON sidecars record. Nothing here draws pixels, and nothing here is random: every random number comes from the
``numpy.random.Generator`` a family was given, so the same seed gives the same bytes.

Take 2 (Physics-IQ's "physical variance" pair, physics_iq.md §9.4) is the same scene simulated identically up to
the switch frame, then perturbed once (:func:`perturb`): positions by sigma 0.25 world px, velocities, restitution,
friction and the scene's ``rates`` by x(1 + N(0, 0.015-0.02)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

WORLD_W, WORLD_H = 320, 256
VIEW_SIZE = 256  # each view is a VIEW_SIZE x VIEW_SIZE crop of the world
VIEW_OFFSETS = (0, 32, 64)  # perspective-left / -center / -right
VISIBLE_X = (VIEW_OFFSETS[-1], VIEW_OFFSETS[0] + VIEW_SIZE)  # world x range seen by every view
FLOOR_Y = 224.0  # top surface of the floor
GRAVITY = 300.0  # world px / s^2: slow enough that 8 FPS shows a fall over several frames
FPS = 8  # the world's frame rate: families time their events in these frames (``simulate(fps=)`` records others)
SUBSTEPS = 16
DT = 1.0 / (FPS * SUBSTEPS)

BACKGROUND = (40, 40, 40)
FLOOR_COLOR = (96, 96, 100)
WALL_COLOR = (84, 84, 88)
# Object colours: every luminance is >= 100, i.e. >= 60 gray levels above the background (§9.1).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (240, 70, 60),
    "blue": (80, 130, 255),
    "green": (60, 200, 80),
    "yellow": (240, 220, 60),
    "orange": (255, 150, 40),
    "purple": (190, 110, 250),
    "cyan": (60, 215, 225),
    "pink": (255, 125, 195),
    "white": (235, 235, 235),
    "lime": (170, 240, 70),
    "brown": (200, 140, 80),
    "teal": (40, 180, 150),
}
COLOR_NAMES = tuple(PALETTE)


def luminance(rgb: tuple[int, int, int]) -> float:
    """BT.601 luminance, the gray level the Physics-IQ masks see."""
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


@dataclass
class Thing:
    """One drawn, tracked object. ``size`` is (radius, radius) for circles and (width, height) for boxes."""

    name: str
    kind: Literal["circle", "box"]
    color: str
    size: tuple[float, float]
    body: object = None  # pymunk.Body (None for purely drawn things, whose state comes from ``place``)
    place: Callable[[int], tuple[float, float, float]] | None = None  # frame -> (x, y, angle), drawn things
    tracked: bool = True
    on_top: bool = False  # drawn after the others (occluders)
    drawn: bool = True  # False: tracked only (e.g. the heat front)

    @property
    def radius(self) -> float:
        return self.size[0] if self.kind == "circle" else 0.5 * max(self.size)


@dataclass
class Scene:
    """Everything :func:`simulate` needs; built by one family from its parameters."""

    space: object  # pymunk.Space
    things: list[Thing]
    static: list[tuple] = field(default_factory=list)  # draw items: ("poly", pts, rgb) | ("line", pts, rgb, w)
    hooks: list[Callable[[Scene, int, int], None]] = field(default_factory=list)  # (scene, frame, substep)
    holds: dict[str, tuple] = field(default_factory=dict)  # name -> (release_frame, pos, velocity, angvel)
    rates: dict[str, float] = field(default_factory=dict)  # scalar knobs perturbed in take 2 (forces, speeds)
    particles: list = field(default_factory=list)  # pymunk bodies of fluid particles
    particle_color: str = "cyan"
    particle_radius: float = 5.0
    extras: dict = field(default_factory=dict)  # family state recorded per frame ("light", "heat", "links")
    record_extras: Callable[[Scene], dict] | None = None


@dataclass
class Trace:
    """Per-frame state of a simulated scene (world coordinates)."""

    things: list[Thing]
    states: np.ndarray  # (T, K, 3) x, y, angle per thing
    particles: list[np.ndarray]  # T arrays of (P_t, 2)
    particle_color: str
    particle_radius: float
    static: list[tuple]
    extras: list[dict]  # T dicts
    events: dict = field(default_factory=dict)


def new_space(*, floor: bool = True, walls: bool = True, elasticity: float = 1.0, friction: float = 0.8):
    """A pymunk space with gravity pointing down the screen, a floor and two side walls at the visible edges."""
    import pymunk

    space = pymunk.Space()
    space.gravity = (0.0, GRAVITY)
    static = []
    if floor:
        seg = pymunk.Segment(space.static_body, (-50, FLOOR_Y + 40), (WORLD_W + 50, FLOOR_Y + 40), 40)
        seg.elasticity, seg.friction = elasticity, friction
        space.add(seg)
        static.append(("poly", [(0, FLOOR_Y), (WORLD_W, FLOOR_Y), (WORLD_W, WORLD_H), (0, WORLD_H)], FLOOR_COLOR))
    if walls:
        for x0, x1 in ((VISIBLE_X[0] - 12, VISIBLE_X[0]), (VISIBLE_X[1], VISIBLE_X[1] + 12)):
            add_static_box(space, static, x0, 40.0, x1, FLOOR_Y, WALL_COLOR, elasticity=0.6)
    return space, static


def add_static_box(space, static: list, x0, y0, x1, y1, rgb, *, elasticity=0.6, friction=0.8) -> None:
    import pymunk

    pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    poly = pymunk.Poly(space.static_body, pts)
    poly.elasticity, poly.friction = elasticity, friction
    space.add(poly)
    static.append(("poly", pts, rgb))


def add_ball(space, x, y, r, *, elasticity=0.8, friction=0.8, density=1.0, velocity=(0.0, 0.0)):
    import pymunk

    mass = density * np.pi * r * r / 100.0
    body = pymunk.Body(mass, pymunk.moment_for_circle(mass, 0, r))
    body.position, body.velocity = (x, y), velocity
    shape = pymunk.Circle(body, r)
    shape.elasticity, shape.friction = elasticity, friction
    space.add(body, shape)
    return body


def add_box(space, x, y, w, h, *, elasticity=0.2, friction=0.8, density=1.0, angle=0.0, velocity=(0.0, 0.0)):
    import pymunk

    mass = density * w * h / 100.0
    body = pymunk.Body(mass, pymunk.moment_for_box(mass, (w, h)))
    body.position, body.angle, body.velocity = (x, y), angle, velocity
    shape = pymunk.Poly.create_box(body, (w, h), radius=0.5)
    shape.elasticity, shape.friction = elasticity, friction
    space.add(body, shape)
    return body


def hold(scene: Scene, thing: Thing, release_frame: int, velocity=(0.0, 0.0), angular_velocity: float = 0.0):
    """Keep ``thing`` at its current pose (a "grabber") until ``release_frame``, then give it ``velocity``."""
    b = thing.body
    scene.holds[thing.name] = (release_frame, tuple(b.position), b.angle, tuple(velocity), angular_velocity)


def _apply_holds(scene: Scene, frame: int, substep: int) -> None:
    by_name = {t.name: t for t in scene.things}
    for name, (release, pos, angle, vel, angvel) in scene.holds.items():
        b = by_name[name].body
        if frame < release:
            b.position, b.angle, b.velocity, b.angular_velocity = pos, angle, (0.0, 0.0), 0.0
        elif frame == release and substep == 0:
            b.position, b.velocity, b.angular_velocity = pos, vel, angvel


def check_fps(fps: int) -> None:
    """A frame rate the world can record: it must divide the FPS * SUBSTEPS steps it takes a second."""
    if fps < 1 or (FPS * SUBSTEPS) % fps:
        raise ValueError(f"fps must divide {FPS * SUBSTEPS}, the simulator's substeps per second (got fps={fps})")


def simulate(scene: Scene, frames: int, *, fps: int = FPS, perturb_at: int | None = None,
             perturb_rng=None) -> Trace:
    """Step ``scene`` for ``frames`` frames; frame t is the state after t frame steps (frame 0 = initial).

    ``fps``: frames recorded per second. The world always steps FPS x SUBSTEPS times a second and its families
    time their events in FPS frames, so any ``fps`` dividing FPS * SUBSTEPS records the same motion, sampled
    more or less often: at 2 * FPS, every other frame is the FPS run's frame.

    With ``perturb_at`` = s, the state is perturbed right after frame s is recorded (the switch frame), so frames
    0..s are bit-identical to the unperturbed run.
    """
    check_fps(fps)
    per_frame = FPS * SUBSTEPS // fps  # substeps between recorded frames
    things = scene.things
    states = np.zeros((frames, len(things), 3), np.float64)
    particles, extras = [], []
    bounces = {t.name: 0 for t in things}
    falling = {t.name: False for t in things}
    steps = 0  # substeps taken; the world's frame is steps // SUBSTEPS
    for frame in range(frames):
        for _ in range(per_frame if frame > 0 else 0):
            world_frame, sub = divmod(steps, SUBSTEPS)
            _apply_holds(scene, world_frame, sub)
            for h in scene.hooks:
                h(scene, world_frame, sub)
            scene.space.step(DT)
            steps += 1
            for t in things:
                if t.body is not None and t.kind == "circle":
                    vy = t.body.velocity.y
                    if vy > 40.0:
                        falling[t.name] = True
                    elif vy < -15.0 and falling[t.name]:
                        bounces[t.name] += 1
                        falling[t.name] = False
        now = steps // SUBSTEPS if steps % SUBSTEPS == 0 else steps / SUBSTEPS  # in the world's frames
        for k, t in enumerate(things):
            if t.body is not None:
                states[frame, k] = (t.body.position.x, t.body.position.y, t.body.angle)
            else:
                states[frame, k] = t.place(now)
        particles.append(np.array([tuple(b.position) for b in scene.particles], np.float64).reshape(-1, 2))
        extras.append({**scene.extras, **(scene.record_extras(scene) if scene.record_extras else {})})
        if perturb_at is not None and frame == perturb_at:
            perturb(scene, perturb_rng)
    return Trace(things, states, particles, scene.particle_color, scene.particle_radius, scene.static, extras,
                 {"bounces": bounces})


def perturb(scene: Scene, rng: np.random.Generator, *, pos_sigma: float = 0.25, vel_sigma: float = 0.015,
            material_sigma: float = 0.02) -> None:
    """The take-2 perturbation of physics_iq.md §9.4, applied once at the switch frame."""
    for b in list(scene.space.bodies):
        if b.body_type != b.DYNAMIC:
            continue
        b.position = tuple(np.asarray(b.position) + rng.normal(0.0, pos_sigma, 2))
        b.velocity = tuple(np.asarray(b.velocity) * (1.0 + rng.normal(0.0, vel_sigma, 2)))
        b.angular_velocity = b.angular_velocity * (1.0 + rng.normal(0.0, vel_sigma))
    for s in list(scene.space.shapes):
        s.elasticity = min(1.0, s.elasticity * (1.0 + rng.normal(0.0, material_sigma)))
        s.friction = s.friction * (1.0 + rng.normal(0.0, material_sigma))
    for name, (release, pos, angle, vel, angvel) in list(scene.holds.items()):
        pos = tuple(np.asarray(pos) + rng.normal(0.0, pos_sigma, 2))
        vel = tuple(np.asarray(vel) * (1.0 + rng.normal(0.0, vel_sigma, 2)))
        scene.holds[name] = (release, pos, angle, vel, angvel)
    for key in sorted(scene.rates):
        scene.rates[key] *= 1.0 + rng.normal(0.0, material_sigma)
