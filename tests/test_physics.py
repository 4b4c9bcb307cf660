"""Procedural physics data: determinism, splits, take-2 perturbation, colours, gravity, mini layout, CLI."""

import json

import numpy as np
import pytest

from magi.errors import InputError
from magi.physics.dataset import config_hash, load_split, make_clip, reserved_hashes, usual_camera, write_split
from magi.physics.families import FAMILIES, MINI_COUNTS
from magi.physics.mini import VIEWS, render_case, write_physics_iq_mini
from magi.physics.render import render_views
from magi.physics.world import BACKGROUND, PALETTE, luminance, simulate


def test_split_deterministic_and_shapes(tmp_path):
    a = write_split(tmp_path / "a", "train", 3, seed=1, frames=8, size=32, progress=False)
    b = write_split(tmp_path / "b", "train", 3, seed=1, frames=8, size=32, workers=2, progress=False)
    (ca, ta), (cb, tb) = load_split(a.parent, "train"), load_split(b.parent, "train")
    assert ca.shape == (3, 8, 32, 32, 3) and ca.dtype == np.uint8
    assert ca.tobytes() == cb.tobytes() and ta == tb and all(len(t.split()) < 30 for t in ta)
    other, _, _ = make_clip(0, split="train", seed=2, frames=8, size=32, reserved=frozenset())
    assert other.tobytes() != ca[0].tobytes()
    meta = json.loads((a / "meta.json").read_text())
    assert len(meta["clips"]) == 3 and meta["generator"]["seed"] == 1


def test_splits_disjoint_and_test_configs_rejected():
    def hashes(split):
        return {make_clip(i, split=split, seed=0, frames=2, size=16, reserved=frozenset())[2]["hash"]
                for i in range(6)}

    assert not hashes("train") & hashes("dev") and not hashes("train") & hashes("test")
    test_meta = make_clip(0, split="test", seed=0, frames=2, size=16, reserved=frozenset())[2]
    assert test_meta["hash"] in reserved_hashes(0)
    # pretend train clip 0's first draw is a test config: it must be redrawn
    first = make_clip(0, split="train", seed=0, frames=2, size=16, reserved=frozenset())[2]
    redrawn = make_clip(0, split="train", seed=0, frames=2, size=16, reserved=frozenset({first["hash"]}))[2]
    assert redrawn["attempt"] == 1 and redrawn["hash"] != first["hash"]
    assert config_hash("ball-bounce", {"x": 1.001}) == config_hash("ball-bounce", {"x": 1.002})


def test_load_split_errors(tmp_path):
    with pytest.raises(InputError):
        load_split(tmp_path, "train")
    write_split(tmp_path, "dev", 1, seed=0, frames=2, size=16, progress=False)
    (tmp_path / "dev" / "clips-00000.npz").write_bytes(b"garbage")
    with pytest.raises(InputError):
        load_split(tmp_path, "dev")


def test_colours_far_from_background():
    bg = luminance(BACKGROUND)
    assert all(abs(luminance(c) - bg) >= 60 for c in PALETTE.values())
    assert len(set(PALETTE.values())) == len(PALETTE)


def test_falling_ball_accelerates_down():
    params = FAMILIES["ball-bounce"].sample(np.random.default_rng(0))
    params.update(release=0, y=40.0, vx=0.0)
    trace = simulate(FAMILIES["ball-bounce"].build(params), 5)
    y = trace.states[:, 0, 1]
    dy = np.diff(y)
    assert (dy > 0).all() and (np.diff(dy) > 0).all()  # y grows down the screen, faster each frame


def test_a_higher_frame_rate_samples_the_same_motion_more_often(tmp_path):
    for name, family in FAMILIES.items():  # every family's holds, hooks, kinematic places and extras
        params = family.sample(np.random.default_rng(5))
        slow, fast = simulate(family.build(params), 12), simulate(family.build(params), 23, fps=16)
        assert np.array_equal(fast.states[::2], slow.states), name
        assert all(np.array_equal(a, b) for a, b in zip(fast.particles[::2], slow.particles)), name
        assert fast.extras[::2] == slow.extras, name
    params = FAMILIES["ball-bounce"].sample(np.random.default_rng(0))
    params.update(release=0, y=40.0, vx=0.0)
    y = simulate(FAMILIES["ball-bounce"].build(params), 9, fps=16).states[:, 0, 1]
    assert (y[0:-2:2] < y[1:-1:2]).all() and (y[1:-1:2] < y[2::2]).all()  # the frames between are new, mid-fall
    with pytest.raises(ValueError, match="fps=7"):
        simulate(FAMILIES["ball-bounce"].build(params), 2, fps=7)
    eight = write_split(tmp_path / "a", "train", 2, seed=0, frames=6, size=16, progress=False)
    sixteen = write_split(tmp_path / "b", "train", 2, seed=0, frames=11, size=16, progress=False, fps=16)
    (slow, _), (fast, _) = load_split(eight.parent, "train"), load_split(sixteen.parent, "train")
    assert np.array_equal(fast[:, ::2], slow)
    assert json.loads((sixteen / "meta.json").read_text())["generator"]["fps"] == 16
    with pytest.raises(InputError, match="fps must divide"):
        write_split(tmp_path / "c", "train", 1, seed=0, frames=2, size=16, progress=False, fps=3)


def test_every_family_renders_moving_objects():
    for name, family in FAMILIES.items():
        trace = simulate(family.build(family.sample(np.random.default_rng(3))), 4)
        video = render_views(trace, 16, (1,))[0]
        assert video.shape == (4, 16, 16, 3) and (video != BACKGROUND[0]).any(), name


def test_take2_matches_conditioning_then_diverges_slightly():
    index = 0  # trimmed-ball-bounce-1
    one, side = render_case(index, 1, 1, profile="tiny")
    two, _ = render_case(index, 1, 2, profile="tiny")
    assert one.shape == (24, 32, 32, 3) and side["family"] == "ball-bounce"
    assert np.array_equal(one[:8], two[:8])
    diff = np.abs(one[8:].astype(int) - two[8:]).mean()
    assert 0 < diff < 10
    positions = np.array(side["objects"][0]["positions"])
    assert positions.shape == (24, 2)


def test_longer_case_extends_the_same_simulation():
    short, _ = render_case(5, 1, 1, profile="tiny")
    long, side = render_case(5, 1, 1, profile="tiny", test_frames=40)
    assert long.shape[0] == 48 and len(side["objects"][0]["positions"]) == 48
    assert np.array_equal(long[:24], short)


def test_mini_layout(tmp_path):
    root = write_physics_iq_mini(tmp_path, profile="tiny", progress=False, scenarios=2)
    testing = sorted(p.name for p in (root / "split-videos" / "testing" / "8FPS").glob("*.npz"))
    conditioning = sorted((root / "split-videos" / "conditioning" / "8FPS").glob("*.npz"))
    switch = sorted((root / "switch-frames").glob("*.png"))
    assert len(testing) == len(conditioning) == len(switch) == 2 * 3 * 2
    assert testing[0] == "0001_testing-videos_8FPS_perspective-left_take-1_trimmed-ball-bounce-1.npz"
    assert "0199_testing-videos_8FPS_perspective-left_take-2_trimmed-ball-bounce-1.npz" in testing
    fields = testing[4].split("_")
    assert fields[3] in VIEWS and fields[4] in ("take-1", "take-2") and fields[5].startswith("trimmed-")
    with np.load(root / "split-videos" / "testing" / "8FPS" / testing[0]) as data:
        assert data["frames"].shape == (16, 32, 32, 3) and data["frames"].dtype == np.uint8
    side = json.loads((root / "split-videos" / "testing" / "8FPS" / testing[0].replace(".npz", ".json")).read_text())
    assert {"family", "category", "caption", "params", "objects"} <= side.keys()
    assert len(side["objects"][0]["positions"]) == 16
    rows = (root / "descriptions.csv").read_text().splitlines()
    assert rows[0] == "scenario,description,category,generated_video_name" and len(rows) == 1 + 12
    assert sum(MINI_COUNTS.values()) == 66


def test_mini_at_16_fps_is_the_8_fps_set_sampled_twice_as_often(tmp_path):
    """The same cases over the same seconds: twice the frames, and every other take-1 frame (conditioning and
    test) is the 8-fps set's frame; the settings, folders and sidecars say 16 fps."""
    eight = write_physics_iq_mini(tmp_path / "8", profile="tiny", progress=False, scenarios=1)
    sixteen = write_physics_iq_mini(tmp_path / "16", profile="tiny", progress=False, scenarios=1, fps=16)
    info = json.loads((sixteen / "physics_iq_mini.json").read_text())
    assert (info["fps"], info["conditioning_frames"], info["test_frames"], info["switch_frame"]) == (16, 16, 32, 15)
    name = "0001_{}-videos_{}FPS_perspective-left_take-1_trimmed-ball-bounce-1"
    for kind, frames in (("conditioning", 8), ("testing", 16)):
        with np.load(eight / "split-videos" / kind / "8FPS" / f"{name.format(kind, 8)}.npz") as a, \
                np.load(sixteen / "split-videos" / kind / "16FPS" / f"{name.format(kind, 16)}.npz") as b:
            assert len(a["frames"]) == frames and len(b["frames"]) == 2 * frames
            assert np.array_equal(b["frames"][::2], a["frames"])
            if kind == "testing":  # the frames between are new (the ball moves there)
                assert not np.array_equal(b["frames"][1::2], a["frames"])
    sidecar = sixteen / "split-videos" / "testing" / "16FPS" / f"{name.format('testing', 16)}.json"
    side = json.loads(sidecar.read_text())
    assert side["fps"] == 16 and len(side["objects"][0]["positions"]) == 32
    assert render_case(0, 0, 1, profile="tiny", fps=16)[0].shape == (48, 32, 32, 3)
    with pytest.raises(InputError, match="fps must divide"):
        write_physics_iq_mini(tmp_path / "3", profile="tiny", progress=False, scenarios=1, fps=3)


def test_cli(tmp_path):
    from magi.cli import main

    assert main(["data", "--out", str(tmp_path), "--train", "2", "--dev", "1", "--test", "1", "--frames", "4",
                 "--size", "16", "--no-progress"]) == 0
    assert load_split(tmp_path, "train")[0].shape == (2, 4, 16, 16, 3)
    assert (tmp_path / "settings.json").is_file()
    assert main(["data", "--out", str(tmp_path), "--train", "1", "--size", "5", "--no-progress"]) == 2
    assert main(["data", "--physics-iq-mini", str(tmp_path / "m"), "--profile", "huge", "--no-progress"]) == 2
    assert main(["data", "--physics-iq-mini", str(tmp_path / "m"), "--fps", "3", "--no-progress"]) == 2
    assert not (tmp_path / "m" / "physics_iq_mini.json").exists()
    assert main(["data", "--out", str(tmp_path / "f"), "--train", "1", "--dev", "0", "--test", "0", "--frames", "3",
                 "--size", "16", "--fps", "16", "--no-progress"]) == 0
    assert json.loads((tmp_path / "f" / "settings.json").read_text())["fps"] == 16


def test_camera_moves_the_view_and_changes_the_background_only():
    from magi.physics.render import Camera
    from magi.physics.world import FLOOR_COLOR, FLOOR_Y, VIEW_SIZE

    trace = simulate(FAMILIES["ball-bounce"].build(FAMILIES["ball-bounce"].sample(np.random.default_rng(0))), 4)
    size, dy = 64, 32.0
    usual = render_views(trace, size, (1,))[0]
    moved = render_views(trace, size, (1,), Camera(dy=dy, background=(20, 30, 50)))[0]
    k = size / VIEW_SIZE
    floor_row = round(FLOOR_Y * k)  # the floor's first row, 56 of 64
    assert (usual[:, floor_row + 1:] == FLOOR_COLOR).all() and (usual[:, floor_row - 2] != FLOOR_COLOR).any()
    moved_row = round((FLOOR_Y - dy) * k)  # 8 rows higher, and floor down to the bottom edge
    assert (moved[:, moved_row + 1:] == FLOOR_COLOR).all() and (moved[:, moved_row - 2] != FLOOR_COLOR).any()
    assert (moved[:, 0, 0] == (20, 30, 50)).all() and (usual[:, 0, 0] == BACKGROUND).all()
    # what is above the floor is the same picture, moved up by dy (the background recoloured)
    shift = round(dy * k)
    same = (usual[:, shift:floor_row] == BACKGROUND).all(-1) == (moved[:, :moved_row] == (20, 30, 50)).all(-1)
    assert same.mean() > 0.99


def test_camera_variation_changes_train_clips_only_and_keeps_the_rest_byte_identical(tmp_path):
    plain = write_split(tmp_path / "a", "train", 12, seed=0, frames=4, size=32)
    varied = write_split(tmp_path / "b", "train", 12, seed=0, frames=4, size=32, camera_variation=0.5)
    (a, captions_a), (b, captions_b) = load_split(tmp_path / "a", "train"), load_split(tmp_path / "b", "train")
    metas = json.loads((varied / "meta.json").read_text())["clips"]
    moved = [i for i, m in enumerate(metas) if "camera" in m]
    assert captions_a == captions_b and 0 < len(moved) < 12
    assert all(np.array_equal(a[i], b[i]) != (i in moved) for i in range(12))
    assert "camera" not in json.loads((plain / "meta.json").read_text())["clips"][0]
    assert usual_camera(tmp_path / "b", "train").tolist() == [i not in moved for i in range(12)]
    with pytest.raises(InputError, match="camera variation"):
        write_split(tmp_path / "c", "train", 1, seed=0, frames=4, size=32, camera_variation=1.5)


def test_balls_drop_holds_several_balls_apart_then_lets_each_fall():
    from magi.physics.captions import caption
    from magi.physics.world import FLOOR_Y, VISIBLE_X

    family = FAMILIES["balls-drop"]
    assert "balls-drop" not in MINI_COUNTS  # outside the benchmark mix: drawn only where asked for
    for seed in range(8):
        p = family.sample(np.random.default_rng(seed))
        n = len(p["colors"])
        assert 2 <= n <= 3 and len(set(p["colors"])) == n
        trace = simulate(family.build(p), 24)
        x, y = trace.states[:, :, 0], trace.states[:, :, 1]  # (frames, balls)
        radii = np.array(p["radii"])
        assert ((x[0] - radii >= VISIBLE_X[0]) & (x[0] + radii <= VISIBLE_X[1])).all()
        gaps = np.abs(x[0][:, None] - x[0][None]) - radii[:, None] - radii[None]
        assert (gaps[~np.eye(n, dtype=bool)] > 0).all()  # apart, so each falls on its own
        for k, release in enumerate(p["release"]):
            assert np.allclose(y[:release + 1, k], p["y"][k])  # held until its release frame
            assert y[release + 2, k] > y[release + 1, k] and y[:, k].max() <= FLOOR_Y  # then falls, onto the floor
        text = caption("balls-drop", p, trace)
        assert text.endswith("fall and bounce on the floor") and all(text.count(f"{c} ball") == 1 for c in p["colors"])


def test_append_adds_clips_of_chosen_families_and_keeps_the_split_readable_throughout(tmp_path):
    write_split(tmp_path, "train", 3, seed=0, frames=4, size=16, progress=False)
    before, captions_before = load_split(tmp_path, "train")
    folder = write_split(tmp_path, "train", 2, seed=0, frames=4, size=16, progress=False, families=("balls-drop",),
                         append=True)
    clips, captions = load_split(tmp_path, "train")
    assert clips.shape == (5, 4, 16, 16, 3) and np.array_equal(clips[:3], before)
    assert captions[:3] == captions_before and all("fall and bounce" in c for c in captions[3:])
    meta = json.loads((folder / "meta.json").read_text())
    assert [m["family"] for m in meta["clips"][3:]] == ["balls-drop"] * 2
    assert meta["generator"]["num_clips"] == 5 and meta["generator"]["appended"][0]["num_clips"] == 2
    # the appended clips are those of the indices after the first write's, as one write of five would number them
    alone = make_clip(3, split="train", seed=0, frames=4, size=16, reserved=reserved_hashes(0),
                      families=("balls-drop",))
    assert np.array_equal(clips[3], alone[0])
    # an append cut off after its captions but before meta.json leaves the split as it was
    (folder / "captions.json").write_text(json.dumps(captions + ["unfinished"]))
    assert load_split(tmp_path, "train")[1] == captions
    with pytest.raises(InputError, match="cannot append"):
        write_split(tmp_path, "train", 1, seed=0, frames=4, size=32, progress=False, append=True)
    with pytest.raises(InputError, match="unknown families nope"):
        write_split(tmp_path, "train", 1, seed=0, frames=4, size=16, progress=False, families=("nope",), append=True)
    assert load_split(tmp_path, "train")[0].shape[0] == 5


def test_cli_append(tmp_path):
    from magi.cli import main

    args = ["data", "--out", str(tmp_path), "--frames", "3", "--size", "16", "--no-progress"]
    assert main([*args, "--train", "2", "--dev", "1", "--test", "1"]) == 0
    assert main([*args, "--train", "2", "--dev", "0", "--test", "0", "--families", "balls-drop", "--append"]) == 0
    assert load_split(tmp_path, "train")[0].shape[0] == 4 and load_split(tmp_path, "dev")[0].shape[0] == 1
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["train"] == 2 and settings["appended"][0]["families"] == ["balls-drop"]
    assert main([*args, "--train", "1", "--families", "balls-drop,nope", "--append"]) == 2
    assert load_split(tmp_path, "train")[0].shape[0] == 4
