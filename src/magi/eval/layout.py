"""The Physics-IQ dataset layout (physics_iq.md §1.2-§1.3): cases, clips, generated folders, fps resampling.

```
root/
  descriptions.csv                          scenario, description, category, generated_video_name
  split-videos/testing/{fps}FPS/{ID}_testing-videos_{fps}FPS_{view}_{take}_{scenario}.mp4|.npz (+ .json sidecar)
  split-videos/conditioning/{fps}FPS/{ID}_conditioning-videos_{fps}FPS_{view}_{take}_{scenario}.mp4|.npz
  switch-frames/{ID}_switch-frames_anyFPS_{view}_{scenario}.jpg|.png
```
A *case* is one take-1 (scenario, view) with its take-2 partner. A generated folder holds one clip per case,
named ``{ID}_...`` with the take-1 ID (``0001_`` ... ``0198_``), ``.mp4`` or ``.npz`` (key ``frames``, optional
``fps``); it must be exactly 5 s long at its fps. Real clips are read at the generated fps: from the matching
``{fps}FPS`` folder, or, if there is none, from ``30FPS`` by linear blending of neighbouring frames (§1.2).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from magi.errors import InputError

SECONDS = 5  # length of the scored test clip
SOURCE_FPS = 30  # the folder that always exists in the real benchmark, used for resampling
VIDEO_SUFFIXES = (".mp4", ".npz")
NAME = re.compile(r"^(?P<id>\d{4})_(?P<kind>[a-z-]+)_(?P<fps>\d+FPS|anyFPS)_(?P<view>[a-z-]+)_"
                  r"(?:(?P<take>take-\d+)_)?(?P<scenario>[^_]+)$")


@dataclass(frozen=True)
class Case:
    """One take-1 (scenario, view) of the benchmark and the files that belong to it."""

    id: str  # take-1 ID, "0001"
    scenario: str  # slug, "trimmed-ball-and-block-fall"
    view: str  # "perspective-left"
    take1: Path
    take2: Path
    conditioning: Path | None
    switch_frame: Path | None
    sidecar: dict | None  # the Physics-IQ-mini JSON sidecar of the take-1 test clip
    category: str
    family: str
    caption: str

    @property
    def label(self) -> str:
        return f"{self.id} {self.view} {self.scenario}"


@dataclass(frozen=True)
class RealSet:
    """The real clips of a benchmark root at one evaluation fps."""

    root: Path
    fps: int  # evaluation fps (the generated videos' fps)
    source_fps: int  # the folder the test clips are read from; != fps means linear-blend resampling
    cases: tuple[Case, ...]
    num_frames: int  # scored frames: 5 s at fps, or the test length a Physics-IQ-mini set declares

    @property
    def source_frames(self) -> int:
        return self.num_frames if self.source_fps == self.fps else frames_for(self.source_fps)


def frames_for(fps: float) -> int:
    return int(round(SECONDS * fps))


def parse_name(path: Path) -> dict[str, str] | None:
    """Fields of a Physics-IQ file name (id, kind, fps, view, take, scenario), or None if it is not one."""
    match = NAME.match(path.stem)
    return match.groupdict() if match else None


def fps_folders(root: Path, kind: str = "testing") -> list[int]:
    folder = Path(root) / "split-videos" / kind
    if not folder.is_dir():
        return []
    return sorted(int(p.name[:-3]) for p in folder.iterdir() if re.fullmatch(r"\d+FPS", p.name))


def _descriptions(root: Path) -> dict[str, dict[str, str]]:
    """descriptions.csv rows keyed by generated-video ID and by scenario slug."""
    path = root / "descriptions.csv"
    if not path.is_file():
        return {}
    table: dict[str, dict[str, str]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            scenario = Path(row.get("scenario", "")).stem
            name = row.get("generated_video_name", "")
            table.setdefault(scenario, row)
            if name[:4].isdigit():
                table[name[:4]] = row
    return table


def _indexed(folder: Path, suffixes: tuple[str, ...]) -> dict[tuple[str, str, str], Path]:
    """Files of a folder keyed by (take or "", view, scenario)."""
    found = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            fields = parse_name(p) if p.suffix.lower() in suffixes else None
            if fields:
                found[(fields["take"] or "", fields["view"], fields["scenario"])] = p
    return found


def find_cases(root: str | Path, fps: int) -> RealSet:
    """Every take-1 case of ``root`` readable at ``fps`` (directly, or resampled from 30FPS)."""
    root = Path(root)
    available = fps_folders(root)
    if not available:
        raise InputError(f"'{root}' has no split-videos/testing/<fps>FPS folders: not a Physics-IQ root")
    source = fps if fps in available else SOURCE_FPS
    if source not in available:
        raise InputError(f"'{root}' has no {fps}FPS test clips and no {SOURCE_FPS}FPS clips to resample from "
                         f"(has {', '.join(f'{f}FPS' for f in available)})")
    tests = _indexed(root / "split-videos" / "testing" / f"{source}FPS", VIDEO_SUFFIXES)
    conds = _indexed(root / "split-videos" / "conditioning" / f"{source}FPS", VIDEO_SUFFIXES)
    switches = _indexed(root / "switch-frames", (".jpg", ".jpeg", ".png"))
    table = _descriptions(root)
    cases = []
    for (take, view, scenario), path in tests.items():
        if take != "take-1":
            continue
        partner = tests.get(("take-2", view, scenario))
        if partner is None:
            raise InputError(f"'{path}' has no take-2 partner ({view}, {scenario}) in '{path.parent}'")
        case_id = path.name[:4]
        side_path = path.with_suffix(".json")
        side = json.loads(side_path.read_text()) if side_path.is_file() else None
        row = table.get(case_id) or table.get(scenario) or {}
        family = (side or {}).get("family") or scenario.removeprefix("trimmed-")
        cases.append(Case(id=case_id, scenario=scenario, view=view, take1=path, take2=partner,
                          conditioning=conds.get(("take-1", view, scenario)),
                          switch_frame=switches.get(("", view, scenario)), sidecar=side,
                          category=(side or {}).get("category") or row.get("category") or "unknown",
                          family=family, caption=row.get("description") or (side or {}).get("caption") or ""))
    if not cases:
        raise InputError(f"no take-1 test clips in '{root / 'split-videos' / 'testing' / f'{source}FPS'}'")
    return RealSet(root, fps, source, tuple(sorted(cases, key=lambda c: c.id)), _test_frames(root, fps))


def _test_frames(root: Path, fps: int) -> int:
    """5 s at ``fps``; a Physics-IQ-mini set (physics_iq_mini.json) may declare shorter clips (the tiny profile)."""
    path = root / "physics_iq_mini.json"
    if path.is_file():
        info = json.loads(path.read_text())
        if info.get("fps") == fps and info.get("test_frames"):
            return int(info["test_frames"])
    return frames_for(fps)


# ---------------------------------------------------------------------------------------------------- reading


def read_clip(path: Path, max_frames: int | None = None) -> tuple[np.ndarray, float | None]:
    """(T, H, W, 3) uint8 frames of an .npz (key ``frames``, optional ``fps``) or a video file, and its fps."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        if not path.is_file():
            raise InputError(f"clip not found: '{path}'")
        with np.load(path) as data:
            if "frames" not in data:
                raise InputError(f"'{path}' has no 'frames' array")
            frames = data["frames"][:max_frames]
            fps = float(data["fps"]) if "fps" in data else None
    else:
        from magi.io.video import read_video

        frames, fps = read_video(path, max_frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"'{path}' must hold uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames, fps


def probe_fps(path: Path) -> float | None:
    """The frame rate of a clip without decoding it (None for an .npz without an ``fps`` entry)."""
    if path.suffix.lower() == ".npz":
        with np.load(path) as data:
            return float(data["fps"]) if "fps" in data else None
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return float(stream.average_rate or stream.guessed_rate or 0) or None
    except (av.error.FFmpegError, IndexError) as error:
        raise InputError(f"cannot read video '{path}': {error}") from None


def resample_linear(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """Change the frame count by linear blending (§1.2): frame j blends source floor(a) and floor(a) + 1 at
    a = j (N_src - 1) / (N_new - 1), weights 1 - frac(a) and frac(a); rounded half to even (cv2.addWeighted)."""
    n_src = len(frames)
    if n_src == num_frames:
        return frames
    if num_frames == 1 or n_src == 1:
        return frames[np.zeros(num_frames, dtype=np.int64)]
    out = np.empty((num_frames,) + frames.shape[1:], dtype=np.uint8)
    for j in range(num_frames):
        a = j * (n_src - 1) / (num_frames - 1)
        i = min(int(np.floor(a)), n_src - 1)
        w = a - i
        blend = frames[i].astype(np.float32) if w == 0 else \
            (1 - w) * frames[i].astype(np.float32) + w * frames[min(i + 1, n_src - 1)].astype(np.float32)
        out[j] = np.clip(np.rint(blend), 0, 255)
    return out


def real_test_clip(real: RealSet, path: Path) -> np.ndarray:
    """The first 5 s of a real test clip at the evaluation fps: (5 * fps, H, W, 3) uint8."""
    n_src = real.source_frames
    frames, _ = read_clip(path, n_src)
    if len(frames) < n_src:
        raise InputError(f"'{path}' has {len(frames)} frames; the test clip at {real.source_fps} fps "
                         f"needs {n_src}")
    return resample_linear(frames, real.num_frames) if real.source_fps != real.fps else frames


def list_generated(folder: str | Path) -> dict[str, Path]:
    """The clips of a generated folder keyed by their 4-digit ID prefix; two clips with one ID are an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"generated folder not found: '{folder}'")
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in VIDEO_SUFFIXES and p.name[:4].isdigit() and p.name[4:5] == "_":
            if p.name[:4] in files:
                raise InputError(f"two generated clips for case {p.name[:4]}: '{files[p.name[:4]]}' and '{p}'")
            files[p.name[:4]] = p
    if not files:
        raise InputError(f"'{folder}' holds no generated clips named '<ID>_....mp4' or '.npz'")
    return files


def match_cases(files: dict[str, Path], cases: tuple[Case, ...], folder: str | Path) -> dict[str, Path]:
    """The generated clip of every case, keyed by take-1 ID; a missing clip is an error naming the file."""
    for case in cases:
        if case.id not in files:
            raise InputError(f"missing generated clip for case {case.label}: expected "
                             f"'{Path(folder) / f'{case.id}_{case.view}_{case.scenario}.mp4'}' (or .npz)")
    return {case.id: files[case.id] for case in cases}


def generated_fps(files: dict[str, Path], default: float | None = None) -> int:
    """The one frame rate of all generated clips (read from the files; ``default`` for bare .npz files)."""
    rates = {}
    for path in files.values():
        fps = probe_fps(path) or default
        if fps is None:
            raise InputError(f"'{path}' has no frame rate (add an 'fps' entry to the .npz)")
        rates.setdefault(round(fps, 3), path)
    if len(rates) > 1:
        (a, pa), (b, pb) = list(rates.items())[:2]
        raise InputError(f"generated clips differ in fps: '{pa}' is {a} fps, '{pb}' is {b} fps")
    fps = next(iter(rates))
    if abs(fps - round(fps)) > 1e-3:
        raise InputError(f"generated fps {fps} (e.g. '{next(iter(rates.values()))}') is not a whole number")
    return int(round(fps))


def read_generated(path: Path, num_frames: int, size: tuple[int, int] | None) -> np.ndarray:
    """A generated clip that must be exactly ``num_frames`` long (5 s) and, if given, ``size`` = (H, W)."""
    frames, _ = read_clip(path, num_frames + 1)
    if len(frames) != num_frames:
        more = "or more " if len(frames) > num_frames else ""
        raise InputError(f"'{path}' has {len(frames)} {more}frames; the benchmark needs exactly {num_frames} "
                         f"(the length of the real test clips)")
    if size is not None and frames.shape[1:3] != tuple(size):
        raise InputError(f"'{path}' is {frames.shape[2]}x{frames.shape[1]} but the other generated clips are "
                         f"{size[1]}x{size[0]}")
    return frames
