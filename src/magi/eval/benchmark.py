"""Folder-level Physics-IQ: score generated folders against a benchmark root (real take 1 and take 2).

The real clips' features (metric-size frames and motion masks) depend only on the root, the evaluation fps and
the mask settings, so a ``RealCache`` computes them once and every submission (model modes, baselines) reuses
them. Scoring only reads folders; producing the folders is someone else's job (``magi.eval.mini``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from magi.errors import InputError
from magi.eval.layout import (
    RealSet,
    find_cases,
    fps_folders,
    generated_fps,
    list_generated,
    match_cases,
    read_generated,
    real_test_clip,
)
from magi.eval.physics_iq import (
    ClipFeatures,
    MaskParams,
    Sample,
    Summary,
    clip_features,
    compare,
    metric_size,
    summarize,
    summarize_by,
)
from magi.eval.trajectory import clip_trajectory_error, mean_error


@dataclass
class RealClips:
    """Take 1 and take 2 of one case at metric size, and take 1's native (H, W)."""

    take1: ClipFeatures
    take2: ClipFeatures
    native_size: tuple[int, int]


@dataclass
class RealCache:
    """Real-clip features per (fps, case ID), computed on first use."""

    root: Path
    params: MaskParams
    scenarios: int | None = None  # score only the first N scenarios (alphabetical), None = all
    sets: dict[int, RealSet] = field(default_factory=dict)
    clips: dict[tuple[int, str], RealClips] = field(default_factory=dict)

    def real_set(self, fps: int) -> RealSet:
        if fps not in self.sets:
            real = find_cases(self.root, fps)
            if self.scenarios is not None:
                keep = sorted({c.scenario for c in real.cases})[: self.scenarios]
                real = dataclasses.replace(real, cases=tuple(c for c in real.cases if c.scenario in keep))
            self.sets[fps] = real
        return self.sets[fps]

    def get(self, real: RealSet, case_id: str) -> RealClips:
        key = (real.fps, case_id)
        if key not in self.clips:
            case = next(c for c in real.cases if c.id == case_id)
            take1, take2 = real_test_clip(real, case.take1), real_test_clip(real, case.take2)
            if take1.shape != take2.shape:
                raise InputError(f"'{case.take2}' is {take2.shape} but take 1 '{case.take1}' is {take1.shape}")
            size = metric_size(*take1.shape[1:3], self.params)
            self.clips[key] = RealClips(clip_features(take1, size, self.params),
                                        clip_features(take2, size, self.params), take1.shape[1:3])
        return self.clips[key]


@dataclass
class Result:
    """One scored submission."""

    name: str
    fps: int
    samples: list[Sample]
    trajectory: dict[str, float | None]  # case ID -> mean located-object pixel error (None: no tracks)
    summary: Summary
    by_category: dict[str, Summary]
    by_family: dict[str, Summary]

    @property
    def trajectory_error(self) -> float | None:
        return mean_error(self.trajectory)


def default_fps(root: Path) -> float | None:
    """The fps assumed for .npz clips without an ``fps`` entry: the root's only fps folder, if it has one."""
    folders = fps_folders(root)
    return float(folders[0]) if len(folders) == 1 else None


def score_folder(cache: RealCache, folder: str | Path, name: str,
                 progress: Callable[[Iterable], Iterable] | None = None) -> Result:
    """Score every case of the benchmark with the clips in ``folder`` (see ``magi.eval.layout``)."""
    files = list_generated(folder)
    fps = generated_fps(files, default_fps(cache.root))
    real = cache.real_set(fps)
    files = match_cases(files, real.cases, folder)
    samples, trajectory, size = [], {}, None
    for case in progress(real.cases) if progress else real.cases:
        clips = cache.get(real, case.id)
        frames = read_generated(files[case.id], real.num_frames, size)
        size = frames.shape[1:3]
        generated = clip_features(frames, clips.take1.masks.shape[1:3], cache.params)
        samples.append(Sample(case.id, case.scenario, case.view, case.category, case.family,
                              compare(clips.take1, generated), compare(clips.take1, clips.take2)))
        tracks = case.sidecar if real.source_fps == real.fps else None  # tracks are at the source fps
        trajectory[case.id] = clip_trajectory_error(frames, tracks, clips.native_size)
    return Result(name, fps, samples, trajectory, summarize(samples),
                  summarize_by(samples, lambda s: s.category), summarize_by(samples, lambda s: s.family))
