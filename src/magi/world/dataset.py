"""Deterministic clip datasets from the procedural scenes, written as compressed shards.

Layout of ``<root>/<split>/``: ``clips-00000.npz`` ... (uint8 ``clips`` (n, T, H, W, 3)), ``captions.json``
(one caption per clip, in order), ``meta.json`` (settings + per-clip family, parameters and object tracks).
Clip i of a split is simulated from ``np.random.default_rng([SPLIT_SEED[split], seed, i])``, so splits are
disjoint by construction, any clip can be regenerated alone, and the same arguments give identical bytes.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from magi.errors import InputError
from magi.world.render import object_tracks, render_clip
from magi.world.scenes import FAMILIES, WEIGHTS, simulate

SPLIT_SEED = {"train": 1, "dev": 2, "test": 3}
SHARD = 250


def make_clip(split: str, seed: int, index: int, frames: int, size: int, fps: int) -> tuple[np.ndarray, dict]:
    """One clip (T, size, size, 3) uint8 and its record (family, caption, params, object tracks)."""
    rng = np.random.default_rng([SPLIT_SEED[split], seed, index])
    names = list(FAMILIES)
    weights = np.array([WEIGHTS[n] for n in names], dtype=float)
    family = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    scene = FAMILIES[family](rng)
    poses = simulate(scene, frames, fps)
    record = {"family": family, "caption": scene.caption, "params": scene.params,
              "objects": object_tracks(scene.drawables, poses, size)}
    return render_clip(scene.drawables, poses, size), record


def _make(args: tuple) -> tuple[np.ndarray, dict]:
    return make_clip(*args)


def write_split(root: Path, split: str, num_clips: int, *, seed: int = 0, frames: int = 72, size: int = 64,
                fps: int = 8, workers: int = 1, progress: bool = True) -> Path:
    if split not in SPLIT_SEED:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_SEED)}")
    if num_clips < 1 or frames < 1 or size < 8:
        raise InputError("need num_clips >= 1, frames >= 1 and size >= 8")
    folder = Path(root) / split
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(split, seed, i, frames, size, fps) for i in range(num_clips)]
    records: list[dict] = []
    shard: list[np.ndarray] = []
    bar = tqdm(total=num_clips, desc=f"simulate {split}", disable=not progress)

    def flush() -> None:
        path = folder / f"clips-{(len(records) - 1) // SHARD:05d}.npz"
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez_compressed(tmp, clips=np.stack(shard))
        os.replace(tmp, path)
        shard.clear()

    with ProcessPoolExecutor(workers) if workers > 1 else _Inline() as pool:
        for clip, record in pool.map(_make, jobs, chunksize=8):
            shard.append(clip)
            records.append(record)
            bar.update(1)
            if len(shard) == SHARD:
                flush()
    if shard:
        flush()
    bar.close()
    settings = {"split": split, "num_clips": num_clips, "seed": seed, "frames": frames, "size": size, "fps": fps}
    (folder / "captions.json").write_text(json.dumps([r["caption"] for r in records], indent=0) + "\n")
    (folder / "meta.json").write_text(json.dumps({"settings": settings, "clips": records}) + "\n")
    return folder


class _Inline:
    """A one-process stand-in for an executor."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def map(self, fn, items, chunksize: int = 1):
        return map(fn, items)


def load_split(root: Path, split: str) -> tuple[np.ndarray, list[str]]:
    """All clips (N, T, H, W, 3) uint8 of a split and their captions."""
    folder = Path(root) / split
    shards = sorted(folder.glob("clips-*.npz"))
    if not shards or not (folder / "captions.json").is_file():
        raise InputError(f"no dataset split at '{folder}' (write it with `magi data`)")
    try:
        clips = np.concatenate([np.load(path)["clips"] for path in shards])
        captions = json.loads((folder / "captions.json").read_text())
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"cannot read dataset split '{folder}': {error}") from None
    if len(captions) != len(clips):
        raise InputError(f"'{folder}' has {len(clips)} clips but {len(captions)} captions")
    return clips, captions
