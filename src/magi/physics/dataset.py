"""Train/dev/test clip splits on disk: ``root/split/clips-00000.npz`` shards + ``captions.json`` + ``meta.json``.

Every clip i of a split draws its own Generator from ``(split code, seed, i, attempt)``, so splits use disjoint
seed streams, clips are independent of ``workers``, and the same seed gives byte-identical clips. Train and dev
configurations whose quantised parameters hash like a test configuration (the first ``RESERVED_TEST_CLIPS`` test
clips and the Physics-IQ-mini scenarios) are rejected and redrawn (physics_iq.md §9.3).
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from magi.errors import InputError
from magi.io.atomic import atomic_path, atomic_write_text
from magi.physics.captions import caption
from magi.physics.families import FAMILIES, MINI_COUNTS, TRAIN_WEIGHTS
from magi.physics.render import Camera, check_size, render_views
from magi.physics.world import FPS, SUBSTEPS, check_fps, simulate

SPLIT_CODES = {"train": 1, "dev": 2, "test": 3}
MINI_CODE = 4
CLIPS_PER_SHARD = 128
RESERVED_TEST_CLIPS = 2048
MAX_ATTEMPTS = 64
CAMERA_CODE = 7  # the extra seed word of a clip's camera draws: clips shown as usual stay byte-identical
CAMERA_DY = (-16.0, 40.0)  # world units the view moves down: the floor from 0.94 to 0.72 of the frame height
CAMERA_GREY, CAMERA_TINT = (22, 62), 6  # background grey levels (objects are >= 100) and per-channel tint
FAMILY_NAMES = tuple(TRAIN_WEIGHTS)
FAMILY_P = np.array([TRAIN_WEIGHTS[n] for n in FAMILY_NAMES]) / sum(TRAIN_WEIGHTS.values())


def _quantise(value):
    if isinstance(value, float):
        return float(f"{value:.2g}")
    if isinstance(value, list | tuple):
        return [_quantise(v) for v in value]
    return value


def config_hash(family: str, params: dict) -> str:
    """Hash of the family and its parameters rounded to 2 significant digits."""
    key = json.dumps({"family": family, "params": {k: _quantise(v) for k, v in params.items()}}, sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def draw_config(rng: np.random.Generator, families: tuple[str, ...] | None = None) -> tuple[str, dict, int]:
    """A random (family, params, view): a family of the training mix, or one of ``families`` (equally likely)."""
    if families is None:
        family = FAMILY_NAMES[int(rng.choice(len(FAMILY_NAMES), p=FAMILY_P))]
    else:
        family = families[int(rng.integers(len(families)))]
    params = FAMILIES[family].sample(rng)
    return family, params, int(rng.integers(3))


def benchmark_configs(seed: int) -> list[tuple[str, str, dict]]:
    """The 66 Physics-IQ-mini scenarios as (slug, family, params), in slug (= ID) order."""
    out = []
    for f, (family, count) in enumerate(MINI_COUNTS.items()):
        for k in range(count):
            params = FAMILIES[family].sample(np.random.default_rng([MINI_CODE, seed, f, k]))
            out.append((f"trimmed-{family}-{k + 1}", family, params))
    return sorted(out, key=lambda c: c[0])


def reserved_hashes(seed: int) -> frozenset[str]:
    test = (draw_config(np.random.default_rng([SPLIT_CODES["test"], seed, i, 0]))
            for i in range(RESERVED_TEST_CLIPS))
    hashes = {config_hash(family, params) for family, params, _ in test}
    for mini_seed in sorted({0, seed}):
        hashes |= {config_hash(family, params) for _, family, params in benchmark_configs(mini_seed)}
    return frozenset(hashes)


def random_camera(rng: np.random.Generator) -> Camera:
    """A view moved up or down and another background, so that a model also follows frames that are not framed
    like the simulator's (i2v from drawn or photographed scenes)."""
    grey = int(rng.integers(*CAMERA_GREY))
    tint = rng.integers(-CAMERA_TINT, CAMERA_TINT + 1, 3)
    return Camera(dy=round(float(rng.uniform(*CAMERA_DY)), 2), background=tuple(int(grey + t) for t in tint))


def make_clip(index: int, *, split: str, seed: int, frames: int, size: int, reserved: frozenset[str],
              camera_variation: float = 0.0, fps: int = FPS, families: tuple[str, ...] | None = None
              ) -> tuple[np.ndarray, str, dict]:
    """Clip ``index`` of a split: (T, size, size, 3) uint8 frames at ``fps``, its caption and its metadata.
    With ``camera_variation`` p, a share p of the clips is shown through a :func:`random_camera`. The scene
    drawn for an index does not depend on ``fps``: the same clip at 16 fps has twice the frames of the motion.
    ``families``: draw from these families only (default: the training mix)."""
    for attempt in range(MAX_ATTEMPTS):
        family, params, view = draw_config(np.random.default_rng([SPLIT_CODES[split], seed, index, attempt]),
                                           families)
        digest = config_hash(family, params)
        if digest not in reserved:
            break
    else:
        raise RuntimeError(f"clip {index}: every draw collided with a test configuration")
    trace = simulate(FAMILIES[family].build(params), frames, fps=fps)
    camera_rng = np.random.default_rng([SPLIT_CODES[split], seed, index, attempt, CAMERA_CODE])
    camera = random_camera(camera_rng) if camera_rng.random() < camera_variation else Camera()
    clip = render_views(trace, size, (view,), camera)[0]
    meta = {"family": family, "category": FAMILIES[family].category, "view": view, "params": params,
            "hash": digest, "attempt": attempt}
    if camera != Camera():
        meta["camera"] = {"dy": camera.dy, "background": list(camera.background)}
    return clip, caption(family, params, trace), meta


def write_split(root: Path, split: str, num_clips: int, *, seed: int, frames: int = 64, size: int = 64,
                workers: int = 1, progress: bool = True, camera_variation: float = 0.0, fps: int = FPS,
                families: tuple[str, ...] | None = None, append: bool = False) -> Path:
    """Generate ``num_clips`` clips into ``root/split`` and return that folder (``camera_variation``, ``fps``,
    ``families``: see :func:`make_clip`).

    ``append``: add the clips to the split already there (same frames, size and frame rate) instead of
    replacing it. They are the clips of indices after its last one, in new shards; its meta.json, written last,
    takes them in only when all are written, so that an interrupted append leaves the split as it was."""
    if split not in SPLIT_CODES:
        raise InputError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    if not 0.0 <= camera_variation <= 1.0:
        raise InputError(f"camera variation is a share of the clips, between 0 and 1 (got {camera_variation})")
    if num_clips < 0 or frames < 1 or workers < 1:
        raise InputError(f"need num_clips >= 0, frames >= 1, workers >= 1 (got {num_clips}, {frames}, {workers})")
    if families is not None:
        if not families:
            raise InputError("families is empty")
        unknown = sorted(set(families) - set(FAMILIES))
        if unknown:
            raise InputError(f"unknown families {', '.join(unknown)} (known: {', '.join(FAMILIES)})")
    try:
        check_size(size)
        check_fps(fps)
    except ValueError as error:
        raise InputError(str(error)) from None
    out = Path(root) / split
    old_meta = _appended_to(out, frames, size, fps) if append else None
    out.mkdir(parents=True, exist_ok=True)
    if old_meta is None:
        for old in out.glob("clips-*.npz"):
            old.unlink()
        old_meta = {"generator": {"num_clips": 0, "num_shards": 0}, "clips": []}
        old_captions = []
    else:
        old_captions = json.loads((out / "captions.json").read_text())
    first_clip, first_shard = old_meta["generator"]["num_clips"], old_meta["generator"]["num_shards"]
    reserved = reserved_hashes(seed) if split != "test" else frozenset()
    job = partial(make_clip, split=split, seed=seed, frames=frames, size=size, reserved=reserved,
                  camera_variation=camera_variation, fps=fps, families=families)
    captions, metas, shard = [], [], []
    num_shards = math.ceil(num_clips / CLIPS_PER_SHARD)

    written = []

    def flush():
        with atomic_path(out / f"clips-{first_shard + len(written):05d}.npz") as tmp:
            np.savez_compressed(tmp, clips=np.stack(shard))
        written.append(len(shard))
        shard.clear()

    pool = Pool(workers) if workers > 1 else None
    try:
        indices = range(first_clip, first_clip + num_clips)
        results = pool.imap(job, indices, chunksize=4) if pool else map(job, indices)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=num_clips, desc=f"magi data {split}", unit="clip")
        for clip, text, meta in results:
            shard.append(clip)
            captions.append(text)
            metas.append(meta)
            if len(shard) == CLIPS_PER_SHARD:
                flush()
        if shard:
            flush()
    finally:
        if pool:
            pool.close()
            pool.join()
    settings = {"split": split, "num_clips": num_clips, "seed": seed, "frames": frames, "size": size,
                "fps": fps, "substeps": SUBSTEPS, "clips_per_shard": CLIPS_PER_SHARD,
                "num_shards": num_shards, "reserved_test_hashes": len(reserved),
                "camera_variation": camera_variation}
    if families is not None:
        settings["families"] = list(families)
    if first_clip:  # the first write's settings with the totals, and what each append added
        settings = {**old_meta["generator"], "num_clips": first_clip + num_clips,
                    "num_shards": first_shard + num_shards,
                    "appended": [*old_meta["generator"].get("appended", []), settings]}
    atomic_write_text(out / "captions.json", json.dumps(old_captions + captions, indent=0))
    atomic_write_text(out / "meta.json", json.dumps({"generator": settings, "clips": old_meta["clips"] + metas}))
    return out


def _appended_to(folder: Path, frames: int, size: int, fps: int) -> dict | None:
    """The meta.json of the split that ``write_split(append=True)`` adds to (None: there is none yet), once
    its clips are known to be like the new ones."""
    if not (folder / "meta.json").exists():
        return None
    meta = _read_meta(folder)
    have = meta["generator"]
    theirs = (have["frames"], have["size"], have.get("fps", FPS))
    if theirs != (frames, size, fps):
        raise InputError(f"{folder} holds clips of {theirs[0]} frames, {theirs[1]} pixels, {theirs[2]} fps; "
                         f"cannot append {frames} frames, {size} pixels, {fps} fps")
    return meta


def _unreadable(folder: Path, error: Exception) -> InputError:
    return InputError(f"{folder} is not a readable clip split ({type(error).__name__}: {error})")


def _read_meta(folder: Path) -> dict:
    """A split's meta.json (written last by :func:`write_split`, so its presence means the split is complete)."""
    try:
        return json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as error:
        raise _unreadable(folder, error) from None


def recorded_fps(root: Path) -> int | None:
    """The frame rate of a dataset written by ``magi data`` (its train split's meta.json); None without one."""
    folder = Path(root) / "train"
    if not (folder / "meta.json").is_file():
        return None
    return int(_read_meta(folder)["generator"].get("fps", FPS))


def usual_camera(root: Path, split: str) -> np.ndarray:
    """(N,) bool: which clips of a split are shown through the usual camera (not ``--camera-variation``'s)."""
    folder = Path(root) / split
    try:
        clips = _read_meta(folder)["clips"]
    except KeyError as error:
        raise _unreadable(folder, error) from None
    return np.array(["camera" not in clip for clip in clips], dtype=bool)


def load_split(root: Path, split: str) -> tuple[np.ndarray, list[str]]:
    """All clips (N, T, H, W, 3) uint8 and their captions, as written by :func:`write_split`."""
    folder = Path(root) / split
    meta = _read_meta(folder)
    try:
        # captions past meta.json's clips are those of an append that did not finish (meta.json is written last)
        captions = json.loads((folder / "captions.json").read_text())[:len(meta["clips"])]
        settings = meta["generator"]
        shards = [folder / f"clips-{i:05d}.npz" for i in range(settings["num_shards"])]
        parts = []
        for path in shards:
            with np.load(path) as data:
                parts.append(data["clips"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise _unreadable(folder, error) from None
    t, s = settings["frames"], settings["size"]
    clips = np.concatenate(parts) if parts else np.zeros((0, t, s, s, 3), np.uint8)
    if clips.dtype != np.uint8 or clips.shape[1:] != (t, s, s, 3) or len(clips) != len(captions):
        raise InputError(f"{folder}: clips {clips.shape} {clips.dtype} do not match meta.json / "
                         f"{len(captions)} captions")
    return clips, captions
