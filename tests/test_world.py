"""The procedural physics dataset: determinism, disjoint splits, physics sanity, layout, CLI."""

import json

import numpy as np
import pytest

from magi.cli import main
from magi.errors import InputError
from magi.world.dataset import load_split, make_clip, write_split
from magi.world.scenes import BACKGROUND, COLOURS, FAMILIES, GRAVITY, falling_balls, simulate


def luminance(rgb) -> float:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def test_same_seed_same_bytes_other_seed_or_split_differs():
    a, rec = make_clip("train", 0, 5, 16, 32, 8)
    b, _ = make_clip("train", 0, 5, 16, 32, 8)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16, 32, 32, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, make_clip("train", 1, 5, 16, 32, 8)[0])
    assert not np.array_equal(a, make_clip("test", 0, 5, 16, 32, 8)[0])
    assert rec["caption"] and rec["family"] in FAMILIES


def test_every_colour_stands_out_from_the_background():
    assert all(abs(luminance(c) - luminance(BACKGROUND)) >= 60 for c in COLOURS.values())


def test_a_dropped_ball_accelerates_with_gravity():
    scene = falling_balls(np.random.default_rng(3))
    poses = simulate(scene, 6, fps=8)
    ball = next(i for i, d in enumerate(scene.drawables) if d.kind == "ball")
    y = np.array([frame[ball][1] for frame in poses[:4]])  # before it can reach the floor
    accel = np.diff(y, 2) * 8**2  # px / s^2
    np.testing.assert_allclose(accel, GRAVITY, rtol=0.05)


def test_every_family_simulates_and_moves_or_rests_as_captioned():
    for seed, (name, family) in enumerate([*FAMILIES.items(), ("stack", FAMILIES["stack"])]):
        scene = family(np.random.default_rng(seed))
        poses = simulate(scene, 8, fps=8)
        moving = [i for i, d in enumerate(scene.drawables) if d.body is not None]
        travel = max(np.hypot(poses[-1][i][0] - poses[0][i][0], poses[-1][i][1] - poses[0][i][1]) for i in moving)
        if name == "static" or (name == "stack" and not scene.params["unstable"]):
            assert travel < 2.0, name
        else:
            assert travel > 5.0, name


def test_write_and_load_split(tmp_path):
    write_split(tmp_path, "dev", 5, frames=8, size=32, workers=1, progress=False)
    clips, captions = load_split(tmp_path, "dev")
    assert clips.shape == (5, 8, 32, 32, 3) and len(captions) == 5
    meta = json.loads((tmp_path / "dev" / "meta.json").read_text())
    assert len(meta["clips"]) == 5 and all("objects" in c for c in meta["clips"])
    for clip, record in zip(clips, meta["clips"]):  # tracked objects are drawn where the sidecar says
        for obj in record["objects"]:
            if obj["kind"] == "ball":
                x, y = obj["positions"][0]
                pixel = clip[0, int(np.clip(y, 0, 31)), int(np.clip(x, 0, 31))]
                assert np.abs(pixel.astype(int) - obj["color"]).max() < 80
    with pytest.raises(InputError, match="no dataset split"):
        load_split(tmp_path, "train")


def test_data_command(tmp_path, capsys):
    assert main(["data", "--out", str(tmp_path), "--train", "3", "--dev", "2", "--test", "0", "--frames", "8",
                 "--size", "32", "--workers", "2"]) == 0
    clips, _ = load_split(tmp_path, "train")
    assert clips.shape[0] == 3 and (tmp_path / "settings.json").is_file()
    assert main(["data", "--out", str(tmp_path), "--train", "0", "--dev", "1", "--frames", "8", "--size",
                 "4"]) == 2
