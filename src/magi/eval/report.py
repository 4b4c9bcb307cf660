"""Physics-IQ reports: a printed table, report.json, report.md, PNG bar plots and side-by-side mp4 previews."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from magi.eval.benchmark import RealCache, Result
from magi.eval.layout import read_generated
from magi.eval.physics_iq import MaskParams, Summary, clip_features, verified_sample_score

COLUMNS = (("score", "Physics-IQ", "{:.2f}"), ("raw_score", "raw", "{:.2f}"), ("verified", "Verified", "{:.2f}"),
           ("spatial", "Spatial IoU", "{:.3f}"), ("spatiotemporal", "ST IoU", "{:.3f}"),
           ("weighted_spatial", "W-spatial IoU", "{:.3f}"), ("mse", "MSE", "{:.4f}"),
           ("motion_spatiotemporal", "motion ST IoU", "{:.3f}"))


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def summary_table(results: list[Result]) -> str:
    """A Markdown table: one row per submission, plus the physical-variance row."""
    head = ["submission", "n"] + [title for _, title, _ in COLUMNS] + ["traj. err px"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        s = r.summary
        cells = [r.name, str(s.samples)] + [_fmt(getattr(s, k), p) for k, _, p in COLUMNS]
        lines.append("| " + " | ".join(cells + [_fmt(r.trajectory_error, "{:.2f}")]) + " |")
    if results:
        s = results[0].summary
        cells = ["physical variance (take 2)", str(s.samples), "100.00", "100.00", "-", _fmt(s.var_spatial, "{:.3f}"),
                 _fmt(s.var_spatiotemporal, "{:.3f}"), _fmt(s.var_weighted_spatial, "{:.3f}"),
                 _fmt(s.var_mse, "{:.4f}"), "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def group_table(results: list[Result], attribute: str, title: str) -> str:
    """Original score (Verified in brackets) per group (category or family) x submission."""
    groups = sorted({g for r in results for g in getattr(r, attribute)})
    head = [title, "n"] + [r.name for r in results]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [g, str(getattr(results[0], attribute)[g].samples)]
        for r in results:
            s: Summary | None = getattr(r, attribute).get(g)
            cells.append("-" if s is None else f"{s.score:.1f} ({s.verified:.1f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def result_dict(result: Result) -> dict:
    samples = []
    for s in result.samples:
        samples.append({"id": s.case, "scenario": s.scenario, "view": s.view, "category": s.category,
                        "family": s.family, "spatial_iou": s.model.spatial,
                        "spatiotemporal_iou": float(s.model.spatiotemporal.mean()),
                        "weighted_spatial_iou": s.model.weighted_spatial, "mse": float(s.model.mse.mean()),
                        "variance_spatial_iou": s.variance.spatial,
                        "variance_spatiotemporal_iou": float(s.variance.spatiotemporal.mean()),
                        "variance_weighted_spatial_iou": s.variance.weighted_spatial,
                        "variance_mse": float(s.variance.mse.mean()),
                        "verified_sample_score": verified_sample_score(s.model, s.variance),
                        "trajectory_error_px": result.trajectory.get(s.case)})
    return {"name": result.name, "fps": result.fps, "summary": _summary(result.summary),
            "trajectory_error_px": result.trajectory_error,
            "by_category": {k: _summary(v) for k, v in result.by_category.items()},
            "by_family": {k: _summary(v) for k, v in result.by_family.items()}, "samples": samples}


def _summary(summary: Summary) -> dict:
    """The summary as a dict, NaN (no moving frame anywhere) written as null."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in dataclasses.asdict(summary).items()}


def markdown(results: list[Result], meta: dict) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in meta.items())
    parts = ["# Physics-IQ report", "", settings, "", "## Scores", "", summary_table(results), "",
             "Physics-IQ: the original score (§4.1), clipped to [0, 100]; raw: unclipped; Verified: per-sample "
             "score (§4.2). traj. err: mean pixel distance of colour-located objects to the simulator's positions.",
             "", "## By category (Physics-IQ, Verified in brackets)", "",
             group_table(results, "by_category", "category"), "",
             "## By scenario family", "", group_table(results, "by_family", "family"), ""]
    return "\n".join(parts)


def write_plots(results: list[Result], out: Path) -> list[Path]:
    """Bar plots: scores per submission; score per category; the four sub-metrics beside the variance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in results]
    x = np.arange(len(results))
    written = []

    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(results) + 2), 3.5))
    ax.bar(x - 0.2, [r.summary.score for r in results], 0.4, label="Physics-IQ")
    ax.bar(x + 0.2, [r.summary.verified for r in results], 0.4, label="Verified")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("score")
    ax.set_ylim(0, 105)
    ax.legend()
    written.append(_save(fig, out / "scores.png"))

    categories = sorted({c for r in results for c in r.by_category})
    fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(categories) + 2), 3.5))
    width = 0.8 / max(1, len(results))
    for i, r in enumerate(results):
        values = [r.by_category[c].score if c in r.by_category else 0.0 for c in categories]
        ax.bar(np.arange(len(categories)) + (i - (len(results) - 1) / 2) * width, values, width, label=r.name)
    ax.set_xticks(np.arange(len(categories)), categories, rotation=20, ha="right")
    ax.set_ylabel("Physics-IQ")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7)
    written.append(_save(fig, out / "scores_by_category.png"))

    fig, axes = plt.subplots(1, 4, figsize=(12, 3))
    for ax, (key, title) in zip(axes, (("spatial", "Spatial IoU"), ("spatiotemporal", "ST IoU"),
                                       ("weighted_spatial", "W-spatial IoU"), ("mse", "MSE")), strict=True):
        ax.bar(x, [getattr(r.summary, key) for r in results])
        ax.axhline(getattr(results[0].summary, "var_" + key), color="k", ls="--", lw=1, label="take 2")
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    written.append(_save(fig, out / "submetrics.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def side_by_side(truth: np.ndarray, generated: np.ndarray, real_masks: np.ndarray, gen_masks: np.ndarray,
                 min_height: int = 192) -> np.ndarray:
    """(T, h, 3w, 3) uint8: ground truth | generated | masks (red: real only, green: generated only, yellow: both),
    upscaled by an integer factor (nearest) to at least ``min_height`` rows, even sizes for H.264."""
    masks = np.zeros(truth.shape, dtype=np.uint8)
    masks[..., 0] = real_masks * 255
    masks[..., 1] = gen_masks * 255
    panel = np.concatenate([truth, generated, masks], axis=2)  # (T, h, 3w, 3)
    k = max(1, -(-min_height // panel.shape[1]))
    panel = panel.repeat(k, axis=1).repeat(k, axis=2)
    return panel[:, : panel.shape[1] // 2 * 2, : panel.shape[2] // 2 * 2]


def write_previews(cache: RealCache, result: Result, folder: Path, out: Path, count: int = 3) -> list[Path]:
    """Side-by-side mp4 previews of the ``count`` cases with the most real motion."""
    from magi.eval.layout import list_generated
    from magi.io.video import write_video

    real = cache.real_set(result.fps)
    motion = {c.id: int(cache.get(real, c.id).take1.masks.sum()) for c in real.cases}
    chosen = sorted(real.cases, key=lambda c: -motion[c.id])[:count]
    files = list_generated(folder)
    written = []
    for case in chosen:
        clips = cache.get(real, case.id)
        frames = read_generated(files[case.id], real.num_frames, None)
        generated = clip_features(frames, clips.take1.masks.shape[1:3], cache.params)
        video = side_by_side(clips.take1.frames, generated.frames, clips.take1.masks, generated.masks)
        path = out / f"{result.name.replace(' ', '-')}_{case.id}_{case.scenario}.mp4"
        write_video(path, video, fps=result.fps)
        written.append(path)
    return written


def write_report(results: list[Result], out: str | Path, meta: dict, params: MaskParams) -> dict[str, Path]:
    """report.json, report.md and PNG plots in ``out``; returns the paths."""
    from magi.io.atomic import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "mask_params": dataclasses.asdict(params)}
    payload = {"meta": meta, "results": [result_dict(r) for r in results]}
    atomic_write_text(out / "report.json", json.dumps(payload, indent=2, default=_jsonable) + "\n")
    atomic_write_text(out / "report.md", markdown(results, {k: v for k, v in meta.items() if k != "mask_params"}))
    plots = write_plots(results, out)
    return {"json": out / "report.json", "markdown": out / "report.md", **{p.stem: p for p in plots}}


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value)} to JSON")
