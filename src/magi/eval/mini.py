"""Physics-IQ-mini submissions: model predictions and the baselines of physics_iq.md §9.5, written as folders.

Every submission is a folder of ``{ID}_{view}_{scenario}.npz`` files (``frames`` uint8 (N, H, W, 3), ``fps``), the
naming ``magi.eval.layout`` reads, so that scoring never needs the model or the simulator:

* ``generate_predictions``: the model continues the switch frame (i2v) or the 3 s conditioning clip (v2v);
* ``write_baselines``: copy-last-frame (the switch frame held for 5 s), take 2 (must score exactly 100) and the
  simulator oracle (take 3: the simulator from the true switch state with its own perturbation).

Existing files are kept, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from magi.errors import InputError
from magi.eval.layout import Case, RealSet, find_cases, fps_folders, read_clip
from magi.physics.world import FPS

if TYPE_CHECKING:  # the pipeline (torch, the networks) is imported only when generating
    from magi.sampling.pipeline import Request

MODES = ("i2v", "v2v")
BASELINES = ("copy-last", "oracle", "take-2")
VIEWS = ("perspective-left", "perspective-center", "perspective-right")


def clip_name(case: Case) -> str:
    return f"{case.id}_{case.view}_{case.scenario}.npz"


def save_clip(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write one lossless clip atomically (temporary name, then rename)."""
    from magi.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, frames=frames, fps=np.float64(fps))


def _done(path: Path, num_frames: int) -> bool:
    """A clip from an earlier run that can be kept (resume): it exists and has the right length."""
    if not path.is_file():
        return False
    with np.load(path) as data:
        return "frames" in data and len(data["frames"]) == num_frames


def settings(root: Path) -> dict:
    path = Path(root) / "physics_iq_mini.json"
    if not path.is_file():
        raise InputError(f"'{root}' is not a Physics-IQ-mini set (no physics_iq_mini.json)")
    return json.loads(path.read_text())


def ensure_data(root: Path, *, seed: int, profile: str, scenarios: int | None, progress: bool = True,
                fps: int = FPS) -> Path:
    """Build the set at ``fps`` with ``magi.physics.mini`` unless ``root`` already holds one."""
    root = Path(root)
    if root.is_dir() and any(root.iterdir()):
        settings(root)
        return root
    from magi.physics.mini import write_physics_iq_mini

    return write_physics_iq_mini(root, seed=seed, profile=profile, progress=progress, scenarios=scenarios, fps=fps)


def data_cases(root: Path, scenarios: int | None = None) -> RealSet:
    """The set's cases at its own fps, limited to the first ``scenarios`` scenarios."""
    folders = fps_folders(root)
    if len(folders) != 1:
        raise InputError(f"'{root}' should have exactly one fps folder, has {folders}")
    real = find_cases(root, folders[0])
    if scenarios is not None:
        keep = sorted({c.scenario for c in real.cases})[:scenarios]
        real = dataclasses.replace(real, cases=tuple(c for c in real.cases if c.scenario in keep))
    return real


def _cases(items: Iterable[Case], progress: Callable[[Iterable], Iterable] | None) -> Iterable[Case]:
    return progress(items) if progress else items


def generate_predictions(pipe, data_root: Path, out_dir: Path, modes: Iterable[str], seed: int,
                         limit: int | None = None, progress: Callable[[Iterable], Iterable] | None = None,
                         batch: int = 1) -> dict[str, Path]:
    """Model predictions for every case: ``out_dir/{mode}/{ID}_{view}_{scenario}.npz``; returns mode -> folder.

    ``pipe`` is a ``magi.sampling.pipeline.Pipeline``; each case uses seed ``seed + int(ID)``. ``batch`` cases
    are generated together in one sampler pass (the same videos up to float rounding, in less time on small
    models: docs/benchmarks.md).
    """
    from magi.sampling.pipeline import batch_key

    if batch < 1:
        raise InputError(f"batch={batch} must be at least 1")
    real = data_cases(data_root, limit)
    cfg = pipe.cfg
    num_frames = real.num_frames
    folders = {}
    for mode in modes:
        if mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {mode!r}")
        folder = Path(out_dir) / mode
        folder.mkdir(parents=True, exist_ok=True)
        pending: list[tuple[Path, Request]] = []  # generated together: one batch_key
        for case in _cases(real.cases, progress):
            path = folder / clip_name(case)
            if _done(path, num_frames):
                continue
            request = _request(case, mode, data_root, num_frames, seed, cfg.frames_per_chunk)
            if pending and batch_key(request, cfg) != batch_key(pending[0][1], cfg):
                _generate_together(pipe, pending, num_frames)
            pending.append((path, request))
            if len(pending) == batch:
                _generate_together(pipe, pending, num_frames)
        if pending:
            _generate_together(pipe, pending, num_frames)
        folders[mode] = folder
    return folders


def _generate_together(pipe, pending: list[tuple[Path, Request]], num_frames: int) -> None:
    """Generate the requests of ``pending`` (path, request) in one sampler pass, save each clip, empty it."""
    from magi.sampling.pipeline import generate_batch

    pieces = list(generate_batch(pipe, [request for _, request in pending]))
    for i, (path, _) in enumerate(pending):
        frames = np.concatenate([piece[i] for piece in pieces])[:num_frames]  # (N, H, W, 3)
        save_clip(path, frames, pipe.cfg.video.fps)
    pending.clear()


def _request(case: Case, mode: str, data_root: Path, num_frames: int, seed: int, chunk_frames: int) -> Request:
    """The generation request of ``case``: i2v from its switch frame, v2v from its conditioning clip."""
    from magi.io.video import read_image
    from magi.sampling.pipeline import Request

    if mode == "i2v":
        if case.switch_frame is None:
            raise InputError(f"case {case.label} has no switch frame in '{data_root / 'switch-frames'}'")
        return Request(mode="i2v", prompt=case.caption or case.family, image=read_image(case.switch_frame),
                       num_frames=num_frames, seed=seed + int(case.id), include_prefix=False)
    if case.conditioning is None:
        raise InputError(f"case {case.label} has no conditioning clip")
    prefix, _ = read_clip(case.conditioning)
    if len(prefix) < chunk_frames:
        raise InputError(f"v2v needs at least {chunk_frames} conditioning frames (one chunk); "
                         f"'{case.conditioning}' has {len(prefix)} (use --profile mini or --modes i2v)")
    return Request(mode="v2v", prompt=case.caption or case.family, prefix_video=prefix,
                   num_frames=num_frames, seed=seed + int(case.id), include_prefix=False)


def write_baselines(data_root: Path, out_dir: Path, limit: int | None = None,
                    progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, Path]:
    """copy-last, oracle (take 3) and take-2 folders under ``out_dir``; returns name -> folder."""
    from magi.physics.mini import render_case

    info = settings(data_root)
    real = data_cases(data_root, limit)
    n, cond = real.num_frames, info["conditioning_frames"]
    folders = {name: Path(out_dir) / name for name in BASELINES}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for case in _cases(real.cases, progress):
        name = clip_name(case)
        if not _done(folders["copy-last"] / name, n):
            last = read_clip(case.conditioning)[0][-1] if case.conditioning else read_clip(case.take1)[0][0]
            save_clip(folders["copy-last"] / name, np.repeat(last[None], n, axis=0), real.fps)
        if not _done(folders["take-2"] / name, n):
            save_clip(folders["take-2"] / name, read_clip(case.take2, n)[0], real.fps)
        if not _done(folders["oracle"] / name, n):
            scenario, view = divmod(int(case.id) - 1, 3)
            frames, side = render_case(scenario, view, take=3, seed=info["seed"], profile=info["profile"],
                                       fps=info["fps"])
            if side.get("scenario") != case.scenario or VIEWS[view] != case.view:
                raise InputError(f"oracle for case {case.label} rendered {side.get('scenario')} {VIEWS[view]}: "
                                 "the set was not written by magi.physics.mini with these settings")
            save_clip(folders["oracle"] / name, frames[cond:cond + n], real.fps)
    return folders
