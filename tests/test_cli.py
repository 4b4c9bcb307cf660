"""``magi generate`` end to end on the tiny preset, and every kind of bad input."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from magi.cli import main
from magi.config import RunConfig
from magi.errors import InputError
from magi.io.video import read_video, write_video
from magi.io.weights import save_weights
from magi.models.dit import DiT
from magi.models.vae import TransformerVAE
from magi.presets import get_preset

FAST = ["--preset", "tiny", "--set", "text.kind=hash", "--steps", "4"]


def clip(frames: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(frames)
    return rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)


@pytest.fixture
def inputs(tmp_path):
    Image.fromarray(clip(1, 80)[0]).save(tmp_path / "image.png")
    write_video(tmp_path / "prefix.mp4", clip(30), fps=8)
    write_video(tmp_path / "short.mp4", clip(10), fps=8)
    (tmp_path / "junk.mp4").write_text("not a video")
    return tmp_path


@pytest.mark.parametrize("mode, extra, expected_frames", [
    ("t2v", [], 24),
    ("i2v", ["--image_path", "image.png"], 1 + 24),
    ("v2v", ["--prefix_video_path", "prefix.mp4"], 28 + 24),  # prefix cut to the VAE stride (4)
])
def test_each_mode_writes_video_and_config(inputs, monkeypatch, mode, extra, expected_frames):
    monkeypatch.chdir(inputs)
    out = inputs / "out" / f"{mode}.mp4"
    code = main(["generate", "--mode", mode, "--prompt", "a red ball falls", "--output_path", str(out),
                 "--num_frames", "24", *FAST, *extra])
    assert code == 0
    frames, fps = read_video(out)
    assert frames.shape == (expected_frames, 64, 64, 3) and fps == pytest.approx(8)
    record = json.loads(out.with_suffix(".json").read_text())
    cfg = RunConfig.from_dict(record["config"])
    assert cfg.text.kind == "hash" and cfg.sampler.steps == 4 and record["request"]["mode"] == mode
    if mode == "v2v":
        prefix, _ = read_video(inputs / "prefix.mp4")
        assert np.abs(frames[:28].astype(int) - prefix[:28]).mean() < 12  # the prefix is kept (re-encoded)


def test_same_seed_same_video_different_seed_differs(inputs):
    def run(seed: int, name: str) -> np.ndarray:
        out = inputs / name
        assert main(["generate", "--prompt", "a ball", "--output_path", str(out), "--num_frames", "8",
                     "--seed", str(seed), *FAST]) == 0
        return read_video(out)[0]

    a, b, c = run(1, "a.mp4"), run(1, "b.mp4"), run(2, "c.mp4")
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 1


@pytest.mark.parametrize("args, message", [
    (["--mode", "i2v"], "needs --image_path"),
    (["--mode", "v2v"], "needs --prefix_video_path"),
    (["--mode", "t2v", "--image_path", "image.png"], "only used with --mode i2v"),
    (["--mode", "i2v", "--image_path", "image.png", "--prefix_video_path", "prefix.mp4"], "only used with --mode v2v"),
    (["--mode", "i2v", "--image_path", "missing.png"], "image not found"),
    (["--mode", "i2v", "--image_path", "junk.mp4"], "cannot read image"),
    (["--mode", "v2v", "--prefix_video_path", "missing.mp4"], "video not found"),
    (["--mode", "v2v", "--prefix_video_path", "junk.mp4"], "cannot read video"),
    (["--mode", "v2v", "--prefix_video_path", "short.mp4"], "at least one chunk"),
    (["--prompt", "   "], "prompt is empty"),
    (["--output_path", "out.gif"], "must end in .mp4"),
    (["--preset", "nope"], "unknown preset"),
    (["--set", "dit.depth=zero"], "dit.depth"),
    (["--num_frames", "0"], "num_frames"),
])
def test_bad_input_is_one_line_exit_2_and_no_output(inputs, monkeypatch, capsys, args, message):
    monkeypatch.chdir(inputs)
    base = {"--prompt": "a ball", "--output_path": "out.mp4"}
    for flag in list(base):
        if flag in args:
            base.pop(flag)
    argv = ["generate", *[x for kv in base.items() for x in kv], *FAST, *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("magi generate: error:"), err
    assert not (inputs / "out.mp4").exists() and not (inputs / "out.json").exists()
    assert not [p for p in inputs.iterdir() if p.name.startswith(".")]  # no temporaries


def test_checkpoint_that_does_not_match_the_config(inputs, capsys):
    cfg = get_preset("tiny")
    ckpt = inputs / "ckpt"
    ckpt.mkdir()
    cfg.save(ckpt / "config.json")
    save_weights(ckpt / "vae.safetensors", TransformerVAE(cfg.vae).state_dict())
    save_weights(ckpt / "dit.safetensors", DiT(replace(cfg.dit, dim=32, head_dim=8)).state_dict())
    out = inputs / "out.mp4"
    assert main(["generate", "--prompt", "a ball", "--output_path", str(out), "--checkpoint", str(ckpt),
                 "--set", "text.kind=hash"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dit.safetensors" in err[0], err
    assert not out.exists()


def test_console_script_and_run_sh_flags(inputs):
    """The installed entry point runs as a process: exit code and a single stderr line."""
    proc = subprocess.run([sys.executable, "-m", "magi.cli", "generate", "--mode", "i2v", "--prompt", "x",
                           "--output_path", str(inputs / "o.mp4")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "magi generate: error: --mode i2v needs --image_path"


def test_reference_layout_checkpoint_without_config_names_the_fix(inputs, capsys):
    folder = inputs / "reference"
    folder.mkdir()
    save_weights(folder / "model.safetensors", {"x": torch.zeros(1)})
    assert main(["generate", "--prompt", "a ball", "--output_path", str(inputs / "o.mp4"),
                 "--checkpoint", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reference layout" in err[0] and "--preset" in err[0], err


@pytest.mark.parametrize("mode", ["t2v", "v2v"])
def test_requests_generated_together_give_each_its_own_video(mode):
    from magi.sampling.pipeline import Request, build_pipeline, generate_batch, generate_frames

    cfg = get_preset("tiny")
    cfg = replace(cfg, text=replace(cfg.text, kind="hash"), sampler=replace(cfg.sampler, steps=4))
    pipe = build_pipeline(cfg)
    prefix = clip(cfg.frames_per_chunk) if mode == "v2v" else None
    requests = [Request(mode=mode, prompt=prompt, seed=seed, prefix_video=prefix, num_frames=cfg.frames_per_chunk + 4)
                for prompt, seed in (("a red ball falls", 3), ("two blue boxes slide apart on the floor", 8))]
    pieces = list(generate_batch(pipe, requests))
    for i, request in enumerate(requests):
        together = np.concatenate([piece[i] for piece in pieces]).astype(int)
        alone = np.concatenate(list(generate_frames(pipe, request))).astype(int)
        shown = 0 if prefix is None else len(prefix)  # the conditioning frames come first
        assert together.shape == alone.shape == (shown + request.num_frames, 64, 64, 3)
        assert np.abs(together - alone).max() <= 1  # the same video, up to float rounding
    first = np.concatenate([piece[0] for piece in pieces]).astype(int)
    assert np.abs(first - np.concatenate([piece[1] for piece in pieces]).astype(int)).max() > 10
    with pytest.raises(InputError, match="must agree on mode, num_frames"):
        next(generate_batch(pipe, [requests[0], replace(requests[1], num_frames=3)]))
    if mode == "v2v":
        longer = replace(requests[1], prefix_video=clip(cfg.frames_per_chunk + cfg.vae.patch_t))
        with pytest.raises(InputError, match="the number of conditioning frames"):
            next(generate_batch(pipe, [requests[0], longer]))
