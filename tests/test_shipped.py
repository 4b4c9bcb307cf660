"""The weights shipped inside the package: present, small, consistent with their presets, and used by default."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import magi
from magi.cli import main
from magi.config import RunConfig
from magi.io.video import read_video
from magi.presets import DEFAULT_PRESET, default_preset, get_preset

WEIGHTS = Path(magi.__file__).resolve().parent / "weights"
SHIPPED = ["physics-64", "physics-64-distill"]


def test_default_is_the_shipped_model_and_fits_the_size_budget():
    assert DEFAULT_PRESET == "physics-64"
    total = sum(p.stat().st_size for p in WEIGHTS.rglob("*") if p.is_file())
    assert total < 50 * 2**20


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_is_the_preset(name):
    shipped = RunConfig.load(WEIGHTS / name / "config.json")
    assert replace(shipped, name=name, weights="", train=get_preset(name).train) == \
        replace(get_preset(name), weights="")


def test_fewer_steps_pick_the_distilled_student():
    assert default_preset(None) == "physics-64"
    assert default_preset(8) == "physics-64-distill"
    assert default_preset(64) == "physics-64"


def test_default_generation_runs_and_is_deterministic(tmp_path):
    out = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for path in out:
        assert main(["generate", "--prompt", "a red ball falls and bounces on the floor", "--output_path", str(path),
                     "--num_frames", "24", "--seed", "3"]) == 0
    a, b = read_video(out[0])[0], read_video(out[1])[0]
    np.testing.assert_array_equal(a, b)
    assert a.shape == (24, 64, 64, 3) and a.std() > 5  # a real picture, not a flat frame


def test_builtin_checkpoints_are_accepted_by_name(tmp_path):
    import argparse
    import json

    from magi.commands.eval import _resolve_config

    out = tmp_path / "student.mp4"
    assert main(["generate", "--prompt", "a ball", "--output_path", str(out), "--checkpoint",
                 "builtin:physics-64-distill", "--num_frames", "8"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["config"]["weights"] == "builtin:physics-64-distill"
    cfg = _resolve_config(argparse.Namespace(checkpoint=Path("builtin:physics-64-distill"), preset=None))
    assert cfg.name == "physics-64-distill" and cfg.weights == "builtin:physics-64-distill"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_sampler_spans_no_more_chunks_than_the_weights_were_trained_on(name):
    """A forward sees context_chunks clean chunks and window_size in flight: at most the training clip."""
    shipped = RunConfig.load(WEIGHTS / name / "config.json")
    assert shipped.sampler.context_chunks + shipped.sampler.window_size <= shipped.train.clip_chunks
