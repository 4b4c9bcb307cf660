"""Physics-IQ evaluator: metric math by hand, motion masks, scores, layout, CLI errors (physics_iq.md §2-§6)."""

import json

import numpy as np
import pytest

from magi.cli import main
from magi.config import RunConfig
from magi.eval.benchmark import RealCache, score_folder
from magi.eval.layout import find_cases, real_test_clip, resample_linear
from magi.eval.physics_iq import (
    MINI,
    ClipFeatures,
    MaskParams,
    Metrics,
    compare,
    frame_mse,
    gaussian_blur,
    motion_masks,
    physics_iq_score,
    resize_linear,
    spatial_iou,
    spatiotemporal_iou,
    to_gray,
    verified_sample_score,
    weighted_spatial_iou,
)

VIEWS = ("perspective-left", "perspective-center", "perspective-right")


# ------------------------------------------------------------------------------------------------ fixture set


def square_clip(n, size, start, speed, row, value=230, background=40):
    """(n, size, size, 3): a 4x4 bright square moving right by ``speed`` px per frame from column ``start``."""
    frames = np.full((n, size, size, 3), background, dtype=np.uint8)
    for t in range(n):
        x = int(start + speed * t) % (size - 4)
        frames[t, row:row + 4, x:x + 4] = value
    return frames


def write_fixture(root, fps=8, size=16, scenarios=2, cond=8):
    """Hand-made clips in the real layout (§1.3): take 2 moves slightly faster than take 1."""
    n = 5 * fps
    folder = {k: root / "split-videos" / k / f"{fps}FPS" for k in ("testing", "conditioning")}
    for f in folder.values():
        f.mkdir(parents=True)
    (root / "switch-frames").mkdir()
    rows = ["scenario,description,category,generated_video_name"]
    for s in range(scenarios):
        slug = f"trimmed-square-run-{s}"
        for v, view in enumerate(VIEWS):
            for take, speed in ((1, 0.5), (2, 0.55)):
                vid = f"{(take - 1) * 3 * scenarios + 3 * s + v + 1:04d}"
                clip = square_clip(cond + n, size, 1 + s, speed, 2 + 4 * v)
                tk = f"take-{take}"
                name = f"{vid}_testing-videos_{fps}FPS_{view}_{tk}_{slug}.npz"
                np.savez(folder["testing"] / name, frames=clip[cond:])
                np.savez(folder["conditioning"] / f"{vid}_conditioning-videos_{fps}FPS_{view}_{tk}_{slug}.npz",
                         frames=clip[:cond])
                rows.append(f"{slug},a square slides,Solid Mechanics,{vid}_{view}_{slug}.mp4")
    (root / "descriptions.csv").write_text("\n".join(rows) + "\n")
    return root


def write_submission(folder, real_root, make, fps=8):
    """A generated folder: ``make(take1_frames, take2_frames, conditioning)`` -> frames, per take-1 case."""
    folder.mkdir(parents=True)
    real = find_cases(real_root, fps)
    for case in real.cases:
        t1, t2 = np.load(case.take1)["frames"], np.load(case.take2)["frames"]
        cond = np.load(case.conditioning)["frames"]
        np.savez(folder / f"{case.id}_{case.view}_{case.scenario}.npz", frames=make(t1, t2, cond), fps=fps)
    return folder


@pytest.fixture
def fixture_root(tmp_path):
    return write_fixture(tmp_path / "real")


# ------------------------------------------------------------------------------------------- metric math by hand


def masks_from(frames_pixels, shape=(3, 4, 4)):
    m = np.zeros(shape, dtype=bool)
    for t, pixels in enumerate(frames_pixels):
        for y, x in pixels:
            m[t, y, x] = True
    return m


def test_ious_by_hand():
    real = masks_from([[], [(0, 0), (0, 1)], [(1, 1)]])
    other = masks_from([[], [(0, 1), (1, 0)], [(0, 1)]])
    # unions: real {(0,0),(0,1),(1,1)}, other {(0,1),(1,0)} -> 1 / 4
    assert spatial_iou(real, other) == pytest.approx(0.25)
    # frame 0 both empty -> 1; frame 1: 1 / 3; frame 2: 0 / 2
    np.testing.assert_allclose(spatiotemporal_iou(real, other), [1.0, 1 / 3, 0.0])
    # frequencies: real 1/3 at three pixels; other 2/3 at (0,1), 1/3 at (1,0): sum min 1/3, sum max 5/3
    assert weighted_spatial_iou(real, other) == pytest.approx(0.2)
    empty = np.zeros((3, 4, 4), dtype=bool)
    assert spatial_iou(empty, empty) == 1.0 and weighted_spatial_iou(empty, empty) == 1.0
    assert spatiotemporal_iou(empty, empty).tolist() == [1.0, 1.0, 1.0]


def test_mse_by_hand():
    a = np.zeros((2, 2, 2, 3), dtype=np.uint8)
    b = a.copy()
    b[1, 0, 0, 0] = 255  # one channel of one pixel of frame 1 fully off: 1 / (2 * 2 * 3)
    np.testing.assert_allclose(frame_mse(a, b), [0.0, 1 / 12])


def test_gray_blur_and_resize_match_opencv_rules():
    assert to_gray(np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 200, 200]], np.uint8)).tolist() == \
        [76, 150, 29, 200]
    impulse = np.zeros((1, 7, 7), dtype=np.int32)
    impulse[0, 3, 3] = 256
    blurred = gaussian_blur(impulse, 5)
    assert blurred[0, 3, 3] == 36 and blurred[0, 1, 1] == 1 and blurred.sum() == 256  # [1,4,6,4,1]^2 / 256
    # /4 bilinear without antialiasing == rounded-half-up mean of each 4x4 block's central 2x2 pixels (§3)
    image = np.random.default_rng(0).integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    central = image.reshape(1, 2, 4, 2, 4, 3)[:, :, 1:3, :, 1:3].astype(float).mean(axis=(2, 4))
    np.testing.assert_array_equal(resize_linear(image, 2, 2), np.floor(central + 0.5).astype(np.uint8))


def test_motion_mask_moving_square_and_threshold():
    clip = square_clip(5, 16, 2, 2, 6)  # 4x4 square at rows 6-9, columns 2-5, then 4-7, 6-9, ...
    masks = motion_masks(clip, MINI)
    assert not masks[0].any()
    expected = np.zeros((16, 16), dtype=bool)
    expected[6:10, 0:9] = True  # blur spreads the change to columns 1-8; closing with set borders fills column 0
    np.testing.assert_array_equal(masks[1], expected)
    for t in range(1, 4):  # the leading edge moves; the ghost trail of the start position lingers (0.7^k decay)
        xs = np.nonzero(masks[t].any(0))[0]
        assert xs.max() == 2 + 2 * t + 3 + 1 and xs.min() == 0
    assert not motion_masks(np.repeat(clip[:1], 5, axis=0), MINI).any()  # a static clip has no motion
    # alpha is applied before the difference: a global step of 15 fires (|55 - round(44.5)| = 11 > 10), 14 does not
    for step, fires in ((14, False), (15, True)):
        flat = np.full((2, 8, 8, 3), 40, dtype=np.uint8)
        flat[1] += step
        mask = motion_masks(flat, MaskParams(blur=5, morph=5, downscale=4))[1]
        assert mask.all() if fires else not mask.any()  # out-of-image counts as set when eroding


# ----------------------------------------------------------------------------------------------------- scores


def test_score_formula_on_known_inputs():
    # ratios 0.5 each, MSE penalty 0.008: 100 * (0.5 - 0.008)
    assert physics_iq_score(0.3, 0.4, 0.2, 0.01, 0.6, 0.8, 0.4, 0.002) == (49.2, pytest.approx(49.2))
    score, raw = physics_iq_score(0.9, 0.9, 0.9, 0.0, 0.6, 0.6, 0.6, 0.002)
    assert score == 100.0 and raw == pytest.approx(150.2)
    assert physics_iq_score(0.0, 0.0, 0.0, 0.5, 0.6, 0.6, 0.6, 0.002)[0] == 0.0
    model = Metrics(0.4, np.array([0.2, 0.4]), 0.1, np.array([0.01, 0.03]), np.ones(2, bool))
    variance = Metrics(0.8, np.array([0.6, 0.6]), 0.05, np.array([0.005, 0.005]), np.ones(2, bool))
    # ratios: S 0.5, ST 0.5, WS 2 -> 1, MSE 0.005 / 0.02 = 0.25
    assert verified_sample_score(model, variance) == pytest.approx((0.5 + 0.5 + 1.0 + 0.25) / 4)


def test_take2_as_model_scores_exactly_100_and_copy_last_scores_lower(fixture_root, tmp_path):
    take2 = write_submission(tmp_path / "take2", fixture_root, lambda t1, t2, c: t2)
    copy = write_submission(tmp_path / "copy", fixture_root, lambda t1, t2, c: np.repeat(c[-1:], len(t1), 0))
    cache = RealCache(fixture_root, MINI)
    best, still = score_folder(cache, take2, "take-2"), score_folder(cache, copy, "copy-last")
    assert best.summary.score == 100.0 and best.summary.raw_score == 100.0
    assert best.summary.verified == pytest.approx(100.0, abs=1e-4)
    assert best.summary.var_spatial < 1.0  # the fixture's takes differ, so the normalisation means something
    assert still.summary.score < best.summary.score - 20
    assert set(best.by_category) == {"Solid Mechanics"} and len(best.by_family) == 2
    take1 = score_folder(cache, write_submission(tmp_path / "t1", fixture_root, lambda t1, t2, c: t1), "take-1")
    assert take1.summary.raw_score > 100.0  # take 1 against itself exceeds the physical variance


def test_cli_take2_report_is_100(fixture_root, tmp_path, capsys):
    take2 = write_submission(tmp_path / "gen", fixture_root, lambda t1, t2, c: t2)
    out = tmp_path / "report"
    assert main(["eval", "physics-iq", "--real", str(fixture_root), "--generated", str(take2), "--mode", "v2v",
                 "--out", str(out), "--masks", "mini", "--no-progress", "--previews", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["results"][0]["summary"]["score"] == 100.0
    assert (out / "report.md").is_file() and (out / "scores.png").is_file()
    assert len(list((out / "previews").glob("*.mp4"))) == 1
    assert "100.00" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------- layout


def test_linear_blend_resampling():
    frames = (np.arange(5, dtype=np.uint8) * 10)[:, None, None, None].repeat(2, 1)  # values 0, 10, .., 40
    assert resample_linear(frames, 3)[:, 0, 0, 0].tolist() == [0, 20, 40]  # a = 0, 2, 4
    assert resample_linear(frames, 4)[:, 0, 0, 0].tolist() == [0, 13, 27, 40]  # a = 0, 4/3, 8/3, 4


def test_missing_fps_folder_resamples_from_30fps(tmp_path):
    root = write_fixture(tmp_path / "r30", fps=30, size=8, scenarios=1)
    real = find_cases(root, 24)
    assert (real.fps, real.source_fps, real.num_frames) == (24, 30, 120)
    clip = real_test_clip(real, real.cases[0].take1)
    assert clip.shape == (120, 8, 8, 3)


def test_compare_rejects_mismatched_shapes():
    a = ClipFeatures(np.zeros((3, 4, 4, 3), np.uint8), np.zeros((3, 4, 4), bool))
    b = ClipFeatures(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4, 4), bool))
    with pytest.raises(ValueError):
        compare(a, b)


def test_cli_errors_name_the_file(fixture_root, tmp_path, capsys):
    args = ["eval", "physics-iq", "--real", str(fixture_root), "--masks", "mini", "--no-progress", "--generated"]
    missing = write_submission(tmp_path / "missing", fixture_root, lambda t1, t2, c: t2)
    victim = sorted(missing.iterdir())[2]
    victim.unlink()
    assert main(args + [str(missing)]) == 2
    assert victim.name[:4] in capsys.readouterr().err

    short = write_submission(tmp_path / "short", fixture_root, lambda t1, t2, c: t2[:-1])
    assert main(args + [str(short)]) == 2
    err = capsys.readouterr().err
    assert "has 39 frames" in err and "0001_" in err and err.count("\n") == 1

    sizes = write_submission(tmp_path / "sizes", fixture_root, lambda t1, t2, c: t2)
    odd = sorted(sizes.iterdir())[1]
    np.savez(odd, frames=np.zeros((40, 8, 8, 3), np.uint8), fps=8)
    assert main(args + [str(sizes)]) == 2
    assert odd.name in capsys.readouterr().err

    assert main(args + [str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err


def test_mini_eval_end_to_end_with_overrides(tmp_path):
    """`magi eval physics-iq-mini` on one tiny scenario: the model's submission is scored beside the
    baselines, --set reaches the sampler, and the resolved config is saved beside the report."""
    out, data = tmp_path / "out", tmp_path / "data"
    args = ["eval", "physics-iq-mini", "--profile", "tiny", "--limit", "1", "--preset", "tiny", "--modes", "i2v",
            "--data", str(data), "--previews", "0", "--no-progress", "--out", str(out)]
    assert main(args + ["--set", "sampler.steps=4", "--set", "sampler.text_scales=3,3,3,1,1"]) == 0
    report = json.loads((out / "report.json").read_text())
    names = [r["name"] for r in report["results"]]
    assert names[0] == "tiny i2v" and "copy-last" in names and report["meta"]["cases"] == 3
    saved = RunConfig.load(out / "config.json")
    assert saved.sampler.steps == 4 and saved.sampler.text_scales == (3.0, 3.0, 3.0, 1.0, 1.0)
    assert main(args + ["--out", str(tmp_path / "bad"), "--set", "sampler.steps=three"]) == 2
    assert not (tmp_path / "bad" / "config.json").exists()


def test_mini_eval_builds_its_set_at_the_models_frame_rate(tmp_path, capsys):
    """A 16-fps model gets a 16-fps set (built on the first run) and is scored on it; an 8-fps model is refused on
    that set with the command that makes one at its rate, before anything is written."""
    data = tmp_path / "data"
    args = ["eval", "physics-iq-mini", "--profile", "tiny", "--limit", "1", "--preset", "tiny", "--modes", "i2v",
            "--data", str(data), "--previews", "0", "--no-progress", "--set", "sampler.steps=4"]
    assert main(args + ["--out", str(tmp_path / "16"), "--set", "video.fps=16"]) == 0
    assert json.loads((data / "physics_iq_mini.json").read_text())["fps"] == 16
    report = json.loads((tmp_path / "16" / "report.json").read_text())
    assert report["meta"]["fps"] == 16 and report["meta"]["cases"] == 3
    with np.load(next((tmp_path / "16" / "generated" / "i2v").iterdir())) as clip:
        assert len(clip["frames"]) == 32 and float(clip["fps"]) == 16  # 2 s at 16 fps: the tiny profile's test
    assert main(args + ["--out", str(tmp_path / "8")]) == 2
    assert "magi data --physics-iq-mini DIR --fps 8" in capsys.readouterr().err
    assert not (tmp_path / "8").exists()


def test_mini_eval_cases_generated_together_are_the_cases_generated_alone(tmp_path, capsys):
    """--batch 2 over 3 cases (a pair, then the last one alone) writes the videos that --batch 1 writes."""
    from magi.eval.layout import read_clip

    data = tmp_path / "data"
    args = ["eval", "physics-iq-mini", "--profile", "tiny", "--limit", "1", "--preset", "tiny", "--modes", "i2v",
            "--data", str(data), "--previews", "0", "--no-progress", "--set", "sampler.steps=4"]
    for batch in (1, 2):
        assert main(args + ["--out", str(tmp_path / f"b{batch}"), "--batch", str(batch)]) == 0
    alone = sorted((tmp_path / "b1" / "generated" / "i2v").iterdir())
    assert len(alone) == 3
    for path in alone:
        a = read_clip(path)[0].astype(int)
        b = read_clip(tmp_path / "b2" / "generated" / "i2v" / path.name)[0].astype(int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1
    assert main(args + ["--out", str(tmp_path / "b0"), "--batch", "0"]) == 2
    assert "--batch must be at least 1" in capsys.readouterr().err
