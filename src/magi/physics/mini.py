"""Physics-IQ-mini (physics_iq.md §9.1): 66 scenarios x 3 views x 2 takes in the real benchmark's file layout.

```
root/
  descriptions.csv                                   scenario, description, category, generated_video_name
  full-videos/take-{1,2}/{fps}FPS/{ID}_full-videos_{fps}FPS_{view}_{take}_{scenario}.npz
  split-videos/conditioning/{fps}FPS/{ID}_conditioning-videos_{fps}FPS_{view}_{take}_{scenario}.npz
  split-videos/testing/{fps}FPS/{ID}_testing-videos_{fps}FPS_{view}_{take}_{scenario}.npz (+ .json sidecar)
  switch-frames/{ID}_switch-frames_anyFPS_{view}_{scenario}.png   (last conditioning frame)
```
IDs 0001-0198 are take 1 and 0199-0396 take 2; scenarios in alphabetical order, views left, center, right.
Scored videos are lossless ``.npz`` (key ``frames``, uint8 T x H x W x 3). Real motion masks are not written: the
evaluator recomputes them from the test videos at the evaluation fps, as the original does. Take t >= 2 is the
take-1 simulation perturbed at the switch frame with its own seed, so ``render_case(..., take=3)`` is a
simulator-oracle baseline.

The set is recorded at one frame rate, the simulator's 8 fps unless ``fps`` says otherwise: the profile's
conditioning and test frames are counted at 8 fps and scale with it (3 s and 5 s for ``mini``), and at 16 fps every
other conditioning frame is the 8-fps set's frame.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from magi.errors import InputError
from magi.io.atomic import atomic_path, atomic_write_text
from magi.physics.captions import caption
from magi.physics.dataset import benchmark_configs
from magi.physics.families import FAMILIES
from magi.physics.render import object_tracks, render_views
from magi.physics.world import FPS, Trace, check_fps, simulate

PROFILES = {"mini": (64, 24, 40), "tiny": (32, 8, 16)}  # size, conditioning frames, test frames (at FPS)
VIEWS = ("perspective-left", "perspective-center", "perspective-right")
TAKE_CODE = 5



def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` under a temporary name, renamed when complete."""
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)

def profile_frames(profile: str, fps: int = FPS) -> tuple[int, int, int]:
    """(size, conditioning frames, test frames) of ``profile`` recorded at ``fps``."""
    if profile not in PROFILES:
        raise InputError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    try:
        check_fps(fps)
    except ValueError as e:
        raise InputError(str(e)) from None
    size, cond, test = PROFILES[profile]
    return size, cond * fps // FPS, test * fps // FPS  # exact: the profiles' counts are multiples of FPS


def simulate_take(scenario_index: int, take: int, *, seed: int = 0, profile: str = "mini",
                  test_frames: int | None = None, fps: int = FPS) -> Trace:
    """Simulate one scenario at ``fps``; takes >= 2 are perturbed right after the switch frame (§9.4).

    ``test_frames`` overrides the profile's count of frames after the conditioning (the first frames of a
    longer simulation are the same frames).
    """
    _, cond, test = profile_frames(profile, fps)
    test = test if test_frames is None else test_frames
    configs = benchmark_configs(seed)
    if not 0 <= scenario_index < len(configs) or take < 1:
        raise InputError(f"need 0 <= scenario_index < {len(configs)} and take >= 1, got {scenario_index}, {take}")
    _, family, params = configs[scenario_index]
    rng = np.random.default_rng([TAKE_CODE, seed, scenario_index, take])
    return simulate(FAMILIES[family].build(params), cond + test, fps=fps, perturb_at=cond - 1 if take > 1 else None,
                    perturb_rng=rng)


def sidecar(config: tuple[str, str, dict], trace: Trace, view: int, *, size: int, frames: slice, text: str,
            fps: int = FPS) -> dict:
    """The JSON sidecar of one clip: scenario facts and per-frame object states of ``frames``."""
    slug, family, params = config
    return {"scenario": slug, "family": family, "category": FAMILIES[family].category, "caption": text,
            "params": params, "view": VIEWS[view], "fps": fps, "frame_offset": frames.start or 0,
            "objects": object_tracks(trace, view, size, frames)}


def render_case(scenario_index: int, view: int, take: int, *, seed: int = 0, profile: str = "mini",
                test_frames: int | None = None, fps: int = FPS) -> tuple[np.ndarray, dict]:
    """All conditioning + test frames (T, H, W, 3) uint8 of one case at ``fps``, and its sidecar (positions for
    all T)."""
    size, _, _ = profile_frames(profile, fps)
    if view not in (0, 1, 2):
        raise InputError(f"view must be 0, 1 or 2, got {view}")
    trace = simulate_take(scenario_index, take, seed=seed, profile=profile, test_frames=test_frames, fps=fps)
    config = benchmark_configs(seed)[scenario_index]
    text = caption(config[1], config[2], simulate_take(scenario_index, 1, seed=seed, profile=profile, fps=fps))
    side = sidecar(config, trace, view, size=size, frames=slice(0, None), text=text, fps=fps)
    return render_views(trace, size, (view,))[0], side


def write_physics_iq_mini(root: Path, *, seed: int = 0, profile: str = "mini", progress: bool = True,
                          scenarios: int | None = None, fps: int = FPS) -> Path:
    """Write the benchmark at ``fps`` to ``root`` (``scenarios`` limits the count, for tests) and return ``root``."""
    size, cond, test = profile_frames(profile, fps)
    configs = benchmark_configs(seed)
    n = len(configs) if scenarios is None else scenarios
    if not 1 <= n <= len(configs):
        raise InputError(f"scenarios must be in 1..{len(configs)}, got {n}")
    root = Path(root)
    rate = f"{fps}FPS"
    dirs = {"cond": root / "split-videos" / "conditioning" / rate, "test": root / "split-videos" / "testing" / rate,
            "switch": root / "switch-frames", 1: root / "full-videos" / "take-1" / rate,
            2: root / "full-videos" / "take-2" / rate}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    rows = []
    items = range(n)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="physics-iq-mini", unit="scenario")
    per_take = 3 * len(configs)
    for s in items:
        slug, family, params = configs[s]
        traces = {take: simulate_take(s, take, seed=seed, profile=profile, fps=fps) for take in (1, 2)}
        text = caption(family, params, traces[1])
        for take, trace in traces.items():
            videos = render_views(trace, size)
            for v, view in enumerate(VIEWS):
                vid = f"{(take - 1) * per_take + 3 * s + v + 1:04d}"
                tk = f"take-{take}"
                save_npz(dirs[take] / f"{vid}_full-videos_{rate}_{view}_{tk}_{slug}.npz", frames=videos[v])
                save_npz(dirs["cond"] / f"{vid}_conditioning-videos_{rate}_{view}_{tk}_{slug}.npz",
                                    frames=videos[v, :cond])
                stem = dirs["test"] / f"{vid}_testing-videos_{rate}_{view}_{tk}_{slug}"
                save_npz(stem.with_suffix(".npz"), frames=videos[v, cond:])
                side = sidecar(configs[s], trace, v, size=size, frames=slice(cond, cond + test), text=text, fps=fps)
                side.update(take=tk, id=vid, size=size, conditioning_frames=cond, test_frames=test)
                atomic_write_text(stem.with_suffix(".json"), json.dumps(side))
                switch = dirs["switch"] / f"{vid}_switch-frames_anyFPS_{view}_{slug}.png"
                with atomic_path(switch) as tmp:
                    Image.fromarray(videos[v, cond - 1]).save(tmp)
                rows.append({"scenario": slug, "description": text, "category": FAMILIES[family].category,
                             "generated_video_name": f"{vid}_{view}_{slug}.mp4", "_order": (take, s, v)})
    rows.sort(key=lambda r: r.pop("_order"))
    with open(root / "descriptions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["scenario", "description", "category", "generated_video_name"])
        writer.writeheader()
        writer.writerows(rows)
    settings = {"profile": profile, "seed": seed, "size": size, "fps": fps, "conditioning_frames": cond,
                "test_frames": test, "scenarios": n, "switch_frame": cond - 1}
    atomic_write_text(root / "physics_iq_mini.json", json.dumps(settings, indent=2))
    return root
