"""Short captions (< 30 words) from a family's parameters and what actually happened in its Trace."""

from __future__ import annotations

import numpy as np

from magi.physics.world import Trace

NUMBERS = ("no", "once", "twice", "three times", "four times", "five times")
COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six")


def times(n: int) -> str:
    return NUMBERS[n] if n < len(NUMBERS) else "many times"


def fallen(trace: Trace, prefix: str) -> int:
    """Number of boxes named ``prefix*`` tilted by more than 40 degrees at the end."""
    idx = [i for i, t in enumerate(trace.things) if t.name.startswith(prefix)]
    return int(np.sum(np.abs(trace.states[-1, idx, 2]) > np.radians(40)))


def caption(family: str, p: dict, trace: Trace) -> str:
    bounces = trace.events.get("bounces", {})
    if family == "ball-bounce":
        n = min(bounces.get("ball", 0), 6)
        return f"a {p['color']} ball falls and bounces {times(n)} on the floor"
    if family == "balls-drop":
        balls = [f"a {c} ball" for c in p["colors"]]
        return f"{', '.join(balls[:-1])} and {balls[-1]} fall and bounce on the floor"
    if family == "balls-collide":
        a, b = p["colors"]
        return f"a {a} ball rolls into a {b} ball and they bounce apart"
    if family == "ball-ramp":
        steep = "steep" if p["angle"] > 25 else "gentle"
        return f"a {p['color']} ball rolls down a {steep} ramp and across the floor"
    if family == "ball-rolls-off":
        n = min(bounces.get("ball", 0), 6)
        return f"a {p['color']} ball rolls off the edge of a table, falls and bounces {times(n)}"
    if family in ("dominoes", "dominoes-with-space"):
        n, k = p["count"], fallen(trace, "domino")
        head = f"a {p['colors'][0]} ball hits a row of {COUNT_WORDS[n]} dominoes"
        if k >= n:
            return f"{head} and they all fall over"
        fall = f"{head}; {COUNT_WORDS[k]} fall"
        return f"{fall} and the chain stops at a gap" if p["gap"] else fall
    if family == "pendulum":
        return f"a {p['color']} ball hangs on a string and swings back and forth like a pendulum"
    if family == "projectile":
        n = min(bounces.get("ball", 0), 6)
        return f"a {p['color']} ball is launched into the air, flies in an arc and bounces {times(n)}"
    if family in ("stable-blocks", "unstable-block-stack"):
        n = COUNT_WORDS[len(p["widths"])]
        if fallen(trace, "block") or np.abs(trace.states[-1, :, 1] - trace.states[0, :, 1]).max() > 10:
            return f"a stack of {n} blocks is let go, tips over and falls"
        return f"a stack of {n} blocks is let go and stays still"
    if family == "static-objects":
        return f"a {p['colors'][0]} ball and a {p['colors'][1]} block rest on the floor and nothing moves"
    if family == "ball-peekaboo":
        return f"a {p['colors'][0]} ball rolls behind a {p['colors'][1]} box and comes out the other side"
    if family == "liquid-pour":
        inside = trace.particles[-1]
        over = len(inside) and np.sum(np.abs(inside[:, 0] - p["cup_x"]) > p["cup_width"] / 2 + 5) > 3
        end = "overflows onto the floor" if over else "fills it"
        return f"{p['color']} liquid pours from a spout into a white cup and {end}"
    if family == "ball-in-water":
        verb = "floats" if p["density"] < 1.0 else "sinks to the bottom"
        return f"a {p['colors'][0]} ball drops into a tank of water and {verb}"
    if family == "light-on-block":
        side = "right" if p["direction"] > 0 else "left"
        n = len(p["blocks"])
        what = "a block" if n == 1 else f"{COUNT_WORDS[n]} blocks"
        return f"a {p['colors'][0]} lamp moves to the {side} above {what} and the shadows sweep across the floor"
    if family == "magnet-ball":
        return f"a {p['colors'][0]} magnet pulls a {p['colors'][1]} steel ball, which rolls faster and sticks to it"
    if family == "heat-bar":
        return "a flame heats the left end of a metal bar and the heat spreads slowly along the bar"
    raise ValueError(f"unknown family {family!r}")
