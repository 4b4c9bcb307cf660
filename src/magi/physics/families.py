"""Scenario families (physics_iq.md §9.2): each samples parameters from a Generator and builds a Scene.

A family is three functions: ``sample(rng) -> params`` (JSON-able, world units, colour names), ``build(params)
-> Scene`` (deterministic) and ``caption(params, trace) -> str`` (in ``captions.py``). Every event is placed inside
the world x range that all three views see (``VISIBLE_X``), and timings put motion inside the 5 s test window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from magi.physics.world import (
    COLOR_NAMES,
    FLOOR_Y,
    FPS,
    GRAVITY,
    PALETTE,
    SUBSTEPS,
    VISIBLE_X,
    WALL_COLOR,
    Scene,
    Thing,
    add_ball,
    add_box,
    add_static_box,
    hold,
    new_space,
)

LEFT, RIGHT = VISIBLE_X[0], VISIBLE_X[1]  # 64, 256: inner faces of the side walls


def colors(rng: np.random.Generator, n: int) -> list[str]:
    return [COLOR_NAMES[i] for i in rng.choice(len(COLOR_NAMES), n, replace=False)]


def u(rng, lo, hi, nd=2) -> float:
    return round(float(rng.uniform(lo, hi)), nd)


# ---- solid mechanics ---------------------------------------------------------------------------------------


def sample_bounce(rng):
    r = u(rng, 14, 22)
    return {"color": colors(rng, 1)[0], "radius": r, "restitution": u(rng, 0.6, 0.93), "x": u(rng, 130, 190),
            "y": u(rng, 40, 110), "vx": u(rng, -12, 12), "release": int(rng.integers(0, 14))}


def build_bounce(p):
    space, static = new_space()
    ball = Thing("ball", "circle", p["color"], (p["radius"],) * 2,
                 add_ball(space, p["x"], p["y"], p["radius"], elasticity=p["restitution"]))
    scene = Scene(space, [ball], static)
    hold(scene, ball, p["release"], (p["vx"], 0.0))
    return scene


def sample_drop(rng):
    """Two or three balls held at different heights and let go (together or one after another), spread along x
    with room between them."""
    n = int(rng.integers(2, 4))
    radii = [u(rng, 12, 20) for _ in range(n)]
    lane = (RIGHT - LEFT) / n  # one lane of x per ball, in a random order
    lanes = rng.permutation(n)
    xs = [u(rng, LEFT + k * lane + r + 4, LEFT + (k + 1) * lane - r - 4) for k, r in zip(lanes, radii)]
    together = bool(rng.random() < 0.5)
    first = int(rng.integers(0, 10))
    release = [first if together else first + int(rng.integers(0, 8)) for _ in range(n)]
    return {"colors": colors(rng, n), "radii": radii, "x": xs, "y": [u(rng, 40, 140) for _ in range(n)],
            "restitution": [u(rng, 0.5, 0.9) for _ in range(n)], "release": release}


def build_drop(p):
    space, static = new_space()
    things = [Thing(f"ball-{k}", "circle", c, (r, r), add_ball(space, x, y, r, elasticity=e))
              for k, (c, r, x, y, e) in enumerate(zip(p["colors"], p["radii"], p["x"], p["y"], p["restitution"]))]
    scene = Scene(space, things, static)
    for thing, release in zip(things, p["release"]):
        hold(scene, thing, release)
    return scene


def sample_collide(rng):
    ra, rb = u(rng, 14, 22), u(rng, 14, 22)
    c = colors(rng, 2)
    return {"colors": c, "radii": [ra, rb], "density_b": u(rng, 0.5, 2.0), "va": u(rng, 28, 55),
            "vb": u(rng, -25, 0), "xa": u(rng, LEFT + 24, LEFT + 40), "xb": u(rng, RIGHT - 40, RIGHT - 24)}


def build_collide(p):
    space, static = new_space()
    things = []
    for name, color, r, x, v, d in (("ball-a", p["colors"][0], p["radii"][0], p["xa"], p["va"], 1.0),
                                    ("ball-b", p["colors"][1], p["radii"][1], p["xb"], p["vb"], p["density_b"])):
        body = add_ball(space, x, FLOOR_Y - r, r, elasticity=0.9, density=d, velocity=(v, 0.0))
        body.angular_velocity = v / r
        things.append(Thing(name, "circle", color, (r, r), body))
    return Scene(space, things, static)


def _ramp(space, static, x_top, y_top, angle_deg, friction):
    import pymunk

    run = (FLOOR_Y - y_top) / math.tan(math.radians(angle_deg))
    pts = [(x_top, y_top), (x_top + run, FLOOR_Y), (x_top, FLOOR_Y)]
    poly = pymunk.Poly(space.static_body, pts)
    poly.friction, poly.elasticity = friction, 0.3
    space.add(poly)
    static.append(("poly", pts, WALL_COLOR))
    return run


def _rolling_resistance(body, coefficient: float):
    """Velocity damping standing in for rolling resistance: decel = coefficient * g while moving."""
    import pymunk

    def velocity_func(b, gravity, damping, dt):
        pymunk.Body.update_velocity(b, gravity, damping, dt)
        speed = b.velocity.length
        if speed > 1e-6:
            b.velocity = b.velocity * max(0.0, 1.0 - coefficient * GRAVITY * dt / speed)

    body.velocity_func = velocity_func


def sample_ramp(rng):
    return {"color": colors(rng, 1)[0], "radius": u(rng, 12, 18), "angle": u(rng, 15, 35),
            "friction": u(rng, 0.0, 0.08, 3),
            "run": u(rng, 100, 130), "release": int(rng.integers(4, 22))}


def build_ramp(p):
    space, static = new_space()
    y_top = FLOOR_Y - p["run"] * math.tan(math.radians(p["angle"]))
    _ramp(space, static, LEFT, y_top, p["angle"], 0.9)
    r, a = p["radius"], math.radians(p["angle"])
    x, y = LEFT + 6 + r * math.sin(a), y_top + 6 * math.tan(a) - r * math.cos(a) - 0.5
    body = add_ball(space, x, y, r, elasticity=0.3, friction=0.9)
    _rolling_resistance(body, p["friction"])
    ball = Thing("ball", "circle", p["color"], (r, r), body)
    scene = Scene(space, [ball], static)
    hold(scene, ball, p["release"])
    return scene


def sample_rolls_off(rng):
    r, edge, v = u(rng, 12, 18), u(rng, 150, 190), u(rng, 30, 55)
    start = max(LEFT + r + 4, edge - v * u(rng, 2.6, 4.0))
    return {"color": colors(rng, 1)[0], "radius": r, "edge": edge, "table_height": u(rng, 90, 150), "speed": v,
            "start": round(start, 2), "restitution": u(rng, 0.4, 0.8)}


def build_rolls_off(p):
    space, static = new_space()
    top = FLOOR_Y - p["table_height"]
    add_static_box(space, static, LEFT, top, p["edge"], FLOOR_Y, WALL_COLOR, elasticity=1.0)
    r = p["radius"]
    body = add_ball(space, p["start"], top - r, r, elasticity=p["restitution"], velocity=(p["speed"], 0.0))
    body.angular_velocity = p["speed"] / r
    return Scene(space, [Thing("ball", "circle", p["color"], (r, r), body)], static)


def sample_dominoes(rng, gap: bool = False):
    n = int(rng.integers(4, 6))
    h = u(rng, 40, 48)
    spacing = u(rng, 0.45 * h, 0.7 * h)
    c = colors(rng, n + 1)
    return {"colors": c, "count": n, "height": h, "spacing": spacing, "gap": gap,
            "gap_after": int(rng.integers(1, n - 1)) if gap else -1, "speed": u(rng, 40, 70),
            "release": int(rng.integers(12, 24))}


def build_dominoes(p):
    space, static = new_space()
    h, w, n = p["height"], 9.0, p["count"]
    total = (n - 1) * p["spacing"] + (1.3 * h if p["gap"] else 0.0)
    x = 0.5 * (LEFT + RIGHT) - 0.5 * total + 24
    things = []
    for i in range(n):
        body = add_box(space, x, FLOOR_Y - h / 2, w, h, friction=0.6)
        things.append(Thing(f"domino-{i + 1}", "box", p["colors"][i + 1], (w, h), body))
        x += p["spacing"] + (1.3 * h if i == p["gap_after"] else 0.0)
    r = 10.0
    ball = Thing("pusher", "circle", p["colors"][0], (r, r),
                 add_ball(space, LEFT + r + 2, FLOOR_Y - h * 0.75, r, elasticity=0.2, density=3.0))
    scene = Scene(space, [ball, *things], static)
    # the pusher flies in flat (no gravity before release), hitting the first domino near its top
    hold(scene, ball, p["release"], (p["speed"], -p["speed"] * 0.2))
    return scene


def sample_pendulum(rng):
    length = u(rng, 80, 140)
    r = u(rng, 12, 18)
    max_amp = math.degrees(math.asin(min(1.0, (96 - r - 8) / length)))
    return {"color": colors(rng, 1)[0], "radius": r, "length": length, "amplitude": u(rng, 20, min(60, max_amp)),
            "side": int(rng.choice([-1, 1])), "release": int(rng.integers(0, 12))}


def build_pendulum(p):
    import pymunk

    space, static = new_space(walls=False)
    pivot = (0.5 * (LEFT + RIGHT), 30.0)
    a = math.radians(p["amplitude"]) * p["side"]
    r = p["radius"]
    body = add_ball(space, pivot[0] + p["length"] * math.sin(a), pivot[1] + p["length"] * math.cos(a), r)
    space.add(pymunk.PinJoint(space.static_body, body, pivot, (0, 0)))
    static.append(("poly", [(pivot[0] - 16, 22), (pivot[0] + 16, 22), (pivot[0] + 16, 30), (pivot[0] - 16, 30)],
                   WALL_COLOR))
    bob = Thing("bob", "circle", p["color"], (r, r), body)
    scene = Scene(space, [bob], static, extras={"links": [(pivot, 0)]})
    hold(scene, bob, p["release"])
    return scene


def sample_projectile(rng):
    angle, v = u(rng, 35, 65), u(rng, 150, 200)
    return {"color": colors(rng, 1)[0], "radius": u(rng, 10, 15), "angle": angle, "speed": v,
            "restitution": u(rng, 0.4, 0.8), "release": int(rng.integers(14, 26))}


def build_projectile(p):
    space, static = new_space()
    r = p["radius"]
    x, y = LEFT + r + 6, FLOOR_Y - 50 - r
    add_static_box(space, static, LEFT, FLOOR_Y - 50, LEFT + 2 * r + 14, FLOOR_Y, WALL_COLOR)
    body = add_ball(space, x, y, r, elasticity=p["restitution"])
    ball = Thing("ball", "circle", p["color"], (r, r), body)
    scene = Scene(space, [ball], static)
    a = math.radians(p["angle"])
    hold(scene, ball, p["release"], (p["speed"] * math.cos(a), -p["speed"] * math.sin(a)))
    return scene


def sample_stack(rng, stable: bool):
    n = int(rng.integers(3, 5))
    widths = [u(rng, 36, 56) for _ in range(n)]
    if stable:
        offsets = [u(rng, -0.12, 0.12) for _ in range(n - 1)]
    else:
        offsets = [u(rng, -0.15, 0.15) for _ in range(n - 2)] + [u(rng, 0.6, 0.85) * float(rng.choice([-1, 1]))]
    return {"colors": colors(rng, n), "widths": widths, "height": u(rng, 20, 26), "offsets": offsets,
            "stable": stable, "x": u(rng, 140, 180), "release": int(rng.integers(20, 28))}


def build_stack(p):
    space, static = new_space()
    h, x, y = p["height"], p["x"], FLOOR_Y - p["height"] / 2
    things = []
    for i, (w, c) in enumerate(zip(p["widths"], p["colors"], strict=True)):
        if i > 0:
            x += p["offsets"][i - 1] * p["widths"][i - 1]
        things.append(Thing(f"block-{i + 1}", "box", c, (w, h), add_box(space, x, y, w, h, friction=0.7)))
        y -= h
    scene = Scene(space, things, static)
    for t in things:  # a grabber holds the stack, then lets go
        hold(scene, t, p["release"])
    return scene


def sample_static(rng):
    c = colors(rng, 2)
    return {"colors": c, "radius": u(rng, 12, 20), "box": [u(rng, 24, 44), u(rng, 24, 44)],
            "ball_x": u(rng, 90, 140), "box_x": u(rng, 180, 220)}


def build_static(p):
    space, static = new_space()
    r, (w, h) = p["radius"], p["box"]
    ball = Thing("ball", "circle", p["colors"][0], (r, r), add_ball(space, p["ball_x"], FLOOR_Y - r, r))
    box = Thing("block", "box", p["colors"][1], (w, h), add_box(space, p["box_x"], FLOOR_Y - h / 2, w, h))
    return Scene(space, [ball, box], static)


def sample_peekaboo(rng):
    c = colors(rng, 2)
    return {"colors": c, "radius": u(rng, 12, 17), "speed": u(rng, 30, 55), "occluder_x": u(rng, 150, 185),
            "occluder": [u(rng, 40, 56), u(rng, 50, 70)]}


def build_peekaboo(p):
    space, static = new_space()
    r = p["radius"]
    body = add_ball(space, LEFT + r + 4, FLOOR_Y - r, r, elasticity=0.8, velocity=(p["speed"], 0.0))
    body.angular_velocity = p["speed"] / r
    w, h = p["occluder"]
    pose = (p["occluder_x"], FLOOR_Y - h / 2, 0.0)
    occluder = Thing("occluder", "box", p["colors"][1], (w, h), None, place=lambda frame: pose, on_top=True)
    return Scene(space, [Thing("ball", "circle", p["colors"][0], (r, r), body), occluder], static)


# ---- fluid (particle analogues) ----------------------------------------------------------------------------


def sample_pour(rng):
    return {"color": str(rng.choice(["cyan", "blue", "orange", "pink"])), "cup_color": "white",
            "cup_width": u(rng, 50, 80), "cup_height": u(rng, 40, 64), "rate": u(rng, 1.0, 2.6),
            "start": int(rng.integers(4, 14)), "duration": int(rng.integers(36, 50)), "cup_x": u(rng, 150, 190)}


def build_pour(p):
    import pymunk

    space, static = new_space()
    cx, w, h = p["cup_x"], p["cup_width"], p["cup_height"]
    t = 5.0  # cup wall thickness
    cup = Thing("cup", "box", p["cup_color"], (w + 2 * t, h), None, place=lambda f: (cx, FLOOR_Y - h / 2, 0.0),
                drawn=False)
    for x0 in (cx - w / 2 - t, cx + w / 2):
        wall = [(x0, FLOOR_Y - h), (x0 + t, FLOOR_Y - h), (x0 + t, FLOOR_Y), (x0, FLOOR_Y)]
        poly = pymunk.Poly(space.static_body, wall)
        poly.friction = 0.3
        space.add(poly)
        static.append(("poly", wall, PALETTE[p["cup_color"]]))
    static.append(("poly", [(cx - w / 2 - t, FLOOR_Y - 4), (cx + w / 2 + t, FLOOR_Y - 4), (cx + w / 2 + t, FLOOR_Y),
                            (cx - w / 2 - t, FLOOR_Y)], PALETTE[p["cup_color"]]))
    spout = (cx - w / 2 + 8, 46.0)
    static.append(("poly", [(LEFT, 36), (spout[0] + 6, 36), (spout[0] + 6, 44), (LEFT, 44)], WALL_COLOR))
    scene = Scene(space, [], static, particle_color=p["color"], particle_radius=5.0, rates={"rate": p["rate"]})
    jitter = np.random.default_rng(int(p["cup_x"] * 100)).uniform(-2, 2, 4096)  # fixed per scene
    budget = {"owed": 0.0, "n": 0}

    def spawn(scene, frame, sub):
        if sub != 0 or not p["start"] <= frame < p["start"] + p["duration"]:
            return
        budget["owed"] += scene.rates["rate"]
        while budget["owed"] >= 1.0:
            budget["owed"] -= 1.0
            k = budget["n"]
            b = add_ball(space, spout[0] + jitter[k % 4096], spout[1] + 2 * (k % 2), 5.0, elasticity=0.1,
                         friction=0.05, velocity=(20.0 + 5 * jitter[(k + 7) % 4096], 30.0))
            scene.particles.append(b)
            budget["n"] += 1

    scene.hooks.append(spawn)
    scene.things.append(cup)
    return scene


def sample_buoyancy(rng):
    return {"colors": colors(rng, 1), "radius": u(rng, 12, 18), "density": u(rng, 0.3, 1.6),
            "drop_height": u(rng, 30, 90), "x": u(rng, 130, 190), "release": int(rng.integers(12, 26)),
            "water_level": u(rng, 120, 150)}


WATER_COLOR = (45, 70, 125)


def build_buoyancy(p):
    space, static = new_space()
    level, r = p["water_level"], p["radius"]
    static.append(("poly", [(LEFT, level), (RIGHT, level), (RIGHT, FLOOR_Y), (LEFT, FLOOR_Y)], WATER_COLOR))
    body = add_ball(space, p["x"], level - p["drop_height"] - r, r, elasticity=0.2, density=p["density"])
    ball = Thing("ball", "circle", p["colors"][0], (r, r), body)
    scene = Scene(space, [ball], static, rates={"drag": 2.0})

    def buoyancy(scene, frame, sub):
        depth = min(2 * r, max(0.0, body.position.y + r - level))  # submerged height of the disc
        if depth <= 0.0:
            return
        h = depth
        area = r * r * math.acos((r - h) / r) - (r - h) * math.sqrt(max(0.0, 2 * r * h - h * h))
        mass_displaced = area / 100.0  # water density 1 in add_ball's units
        body.apply_force_at_local_point((0.0, -mass_displaced * GRAVITY), (0, 0))
        frac = area / (math.pi * r * r)
        body.apply_force_at_local_point(tuple(-scene.rates["drag"] * frac * body.mass * body.velocity), (0, 0))

    scene.hooks.append(buoyancy)
    hold(scene, ball, p["release"])
    return scene


# ---- optics, magnetism, thermodynamics (simulated analogues) -----------------------------------------------


def sample_shadow(rng):
    n = int(rng.integers(1, 3))
    return {"colors": colors(rng, n + 1), "blocks": [[u(rng, 110 + 70 * i, 130 + 70 * i), u(rng, 24, 36),
                                                      u(rng, 30, 60)] for i in range(n)],
            "direction": int(rng.choice([-1, 1])), "speed": u(rng, 10, 16), "height": u(rng, 30, 60)}


def build_shadow(p):
    space, static = new_space(walls=False)
    things = []
    for i, (x, w, h) in enumerate(p["blocks"]):
        pose = (x, FLOOR_Y - h / 2, 0.0)
        things.append(Thing(f"block-{i + 1}", "box", p["colors"][i + 1], (w, h), None, place=lambda f, q=pose: q))
    scene = Scene(space, things, static, rates={"speed": p["speed"]})
    x0 = 160.0 - p["direction"] * 100.0
    state = {"x": x0}

    def move(scene, frame, sub):
        state["x"] += p["direction"] * scene.rates["speed"] / (FPS * SUBSTEPS)

    scene.hooks.append(move)
    light = Thing("lamp", "circle", p["colors"][0], (8.0, 8.0), None,
                  place=lambda f: (state["x"], p["height"], 0.0))
    scene.things.insert(0, light)
    scene.record_extras = lambda s: {"light": (state["x"], p["height"])}
    return scene


def sample_magnet(rng):
    c = colors(rng, 1)
    return {"colors": [c[0], "white" if c[0] != "white" else "yellow"], "strength": u(rng, 6.0e5, 1.6e6, 0),
            "distance": u(rng, 90, 150), "radius": u(rng, 10, 14), "on": int(rng.integers(6, 24))}


def build_magnet(p):
    import pymunk

    space, static = new_space()
    mx, mw, mh = LEFT + 20, 24.0, 40.0
    magnet = Thing("magnet", "box", p["colors"][0], (mw, mh), None, place=lambda f: (mx, FLOOR_Y - mh / 2, 0.0))
    box = pymunk.Poly(space.static_body, [(mx - mw / 2, FLOOR_Y - mh), (mx + mw / 2, FLOOR_Y - mh),
                                          (mx + mw / 2, FLOOR_Y), (mx - mw / 2, FLOOR_Y)])
    box.elasticity, box.friction = 0.0, 0.9
    space.add(box)
    r = p["radius"]
    body = add_ball(space, mx + mw / 2 + p["distance"] + r, FLOOR_Y - r, r, elasticity=0.0, density=2.0)
    ball = Thing("steel-ball", "circle", p["colors"][1], (r, r), body)
    scene = Scene(space, [magnet, ball], static, rates={"strength": p["strength"]})

    def attract(scene, frame, sub):
        if frame < p["on"]:
            return
        d = body.position.x - (mx + mw / 2)
        body.apply_force_at_world_point((-scene.rates["strength"] / max(d, r) ** 2 * body.mass, 0.0),
                                        body.position)

    scene.hooks.append(attract)
    return scene


def sample_heat(rng):
    return {"colors": ["orange"], "diffusivity": u(rng, 0.6, 1.6), "on": int(rng.integers(4, 20)),
            "length": u(rng, 150, 180), "cells": 24}


COLD, HOT = (80, 110, 230), (255, 225, 70)


def build_heat(p):
    space, static = new_space(walls=False)
    x0 = 0.5 * (LEFT + RIGHT) - p["length"] / 2
    bar_y = 130.0
    static.append(("poly", [(x0 + 20, bar_y + 8), (x0 + 26, bar_y + 8), (x0 + 26, FLOOR_Y), (x0 + 20, FLOOR_Y)],
                   WALL_COLOR))
    temp = np.zeros(p["cells"])
    cell = p["length"] / p["cells"]
    scene = Scene(space, [], static, rates={"diffusivity": p["diffusivity"]})

    def diffuse(scene, frame, sub):
        if frame < p["on"]:
            return
        temp[0] = 1.0
        alpha = scene.rates["diffusivity"] * 0.25 * 0.5  # explicit scheme, stable below 0.5 per substep
        padded = np.concatenate([temp[:1], temp, temp[-1:]])
        temp[:] = temp + alpha * (padded[:-2] - 2 * temp + padded[2:])
        temp[0] = 1.0

    def front(frame):
        hot = np.nonzero(temp >= 0.5)[0]
        return (x0 + (hot[-1] + 1 if len(hot) else 0) * cell, bar_y, 0.0)

    flame = Thing("flame", "circle", p["colors"][0], (9.0, 9.0), None,
                  place=lambda f: (x0 + cell / 2, bar_y + 22, 0.0) if f >= p["on"] else (x0 + cell / 2, 300, 0.0))
    scene.things += [flame, Thing("heat-front", "circle", "yellow", (7.0, 7.0), None, place=front,
                                            drawn=False)]
    scene.hooks.append(diffuse)
    scene.record_extras = lambda s: {"heat": temp.round(4).tolist(), "bar": (x0, bar_y, p["length"], 14.0)}
    return scene


# ---- registry ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    name: str  # slug, hyphens only
    category: str
    sample: Callable[[np.random.Generator], dict]
    build: Callable[[dict], Scene]


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("ball-bounce", "Solid Mechanics", sample_bounce, build_bounce),
    Family("balls-collide", "Solid Mechanics", sample_collide, build_collide),
    Family("ball-ramp", "Solid Mechanics", sample_ramp, build_ramp),
    Family("ball-rolls-off", "Solid Mechanics", sample_rolls_off, build_rolls_off),
    Family("dominoes", "Solid Mechanics", lambda rng: sample_dominoes(rng, False), build_dominoes),
    Family("dominoes-with-space", "Solid Mechanics", lambda rng: sample_dominoes(rng, True), build_dominoes),
    Family("pendulum", "Solid Mechanics", sample_pendulum, build_pendulum),
    Family("projectile", "Solid Mechanics", sample_projectile, build_projectile),
    Family("stable-blocks", "Solid Mechanics", lambda rng: sample_stack(rng, True), build_stack),
    Family("unstable-block-stack", "Solid Mechanics", lambda rng: sample_stack(rng, False), build_stack),
    Family("static-objects", "Solid Mechanics", sample_static, build_static),
    Family("ball-peekaboo", "Solid Mechanics", sample_peekaboo, build_peekaboo),
    Family("liquid-pour", "Fluid Dynamics", sample_pour, build_pour),
    Family("ball-in-water", "Fluid Dynamics", sample_buoyancy, build_buoyancy),
    Family("light-on-block", "Optics", sample_shadow, build_shadow),
    Family("magnet-ball", "Magnetism", sample_magnet, build_magnet),
    Family("heat-bar", "Thermodynamics", sample_heat, build_heat),
    Family("balls-drop", "Solid Mechanics", sample_drop, build_drop),
)}

# Scenarios per family in Physics-IQ-mini: 40 solid, 12 fluid, 8 optics, 3 magnetism, 3 thermo = 66 (§9.2).
MINI_COUNTS: dict[str, int] = {
    "ball-bounce": 4, "balls-collide": 4, "ball-ramp": 4, "ball-rolls-off": 4, "dominoes": 3,
    "dominoes-with-space": 3, "pendulum": 4, "projectile": 3, "stable-blocks": 3, "unstable-block-stack": 3,
    "static-objects": 2, "ball-peekaboo": 3, "liquid-pour": 6, "ball-in-water": 6, "light-on-block": 8,
    "magnet-ball": 3, "heat-bar": 3,
}
assert sum(MINI_COUNTS.values()) == 66
# Training mixture weights: proportional to the benchmark mix, with every family of the benchmark present. The
# families outside it (balls-drop: several objects falling at once, which no benchmark family shows) are drawn
# only where asked for (``magi data --families``), so that the default data stays what it was.
TRAIN_WEIGHTS = {name: float(n) for name, n in MINI_COUNTS.items()}
