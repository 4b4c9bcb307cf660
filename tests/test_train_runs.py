"""`magi train vae` -> `magi train dit` -> `magi generate --checkpoint <export>` on a tiny synthetic dataset."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from magi.cli import main
from magi.config import RunConfig, apply_overrides
from magi.io.video import read_video
from magi.io.weights import load_weights, read_safetensors, save_weights
from magi.models.dit import DiT
from magi.models.vae import TransformerVAE
from magi.presets import TRAINING, get_preset
from magi.training import runs

ROOT = Path(__file__).resolve().parents[1]


def moving_squares(n: int, frames: int = 48, size: int = 64) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(n)
    clips = np.full((n, frames, size, size, 3), 40, dtype=np.uint8)
    captions = []
    for i in range(n):
        colour = rng.integers(120, 255, 3)
        x, vx = rng.integers(0, size - 8), rng.choice([-1, 1])
        for t in range(frames):
            left = int(np.clip(x + vx * t, 0, size - 8))
            clips[i, t, 20:28, left:left + 8] = colour
        captions.append(f"a square moves {'right' if vx > 0 else 'left'}")
    return clips, captions


@pytest.fixture
def tiny_recipes(monkeypatch):
    data = {"train": moving_squares(6), "dev": moving_squares(2)}
    monkeypatch.setattr(runs, "load_clips", lambda root, split: data[split])
    monkeypatch.setitem(runs.__dict__, "ENCODE_BATCH", 4)
    base = replace(get_preset("tiny"), weights="")
    vae_train = replace(base.train, steps=4, batch_size=2, clip_frames=8, checkpoint_every=2, sample_every=2,
                        warmup_steps=1)
    dit_train = replace(vae_train, clip_chunks=2, sample_every=4)
    import magi.presets as presets

    monkeypatch.setitem(presets.TRAINING, ("tiny", "vae"), lambda: vae_train)
    monkeypatch.setitem(presets.TRAINING, ("tiny", "dit"), lambda: dit_train)
    monkeypatch.setitem(presets.TRAINING, ("tiny", "distill"), lambda: replace(dit_train, sample_every=0))
    monkeypatch.setitem(presets.TRAINING, ("tiny", "image"), lambda: replace(dit_train, sample_every=0))


def test_train_vae_then_dit_then_generate(tmp_path, tiny_recipes):
    data = tmp_path / "data"
    data.mkdir()
    common = ["--data", str(data), "--preset", "tiny", "--set", "text.kind=hash", "--no_progress"]
    assert main(["train", "vae", "--out", str(tmp_path / "vae"), *common]) == 0
    metrics = json.loads((tmp_path / "vae" / "export" / "metrics.json").read_text())
    assert metrics["dev_psnr_db"] > 0 and metrics["scale_factor"] > 0
    assert RunConfig.load(tmp_path / "vae" / "export" / "config.json").vae.scale_factor == \
        pytest.approx(metrics["scale_factor"], rel=1e-4)
    assert (tmp_path / "vae" / "samples" / "recon-000002.mp4").is_file()

    # a decoder fine-tune from the export, weighted where the squares move: the encoder (so the latents) and
    # the latent scale stay exactly, the decoder trains
    assert main(["train", "vae", "--out", str(tmp_path / "vae-ft"), "--init", str(tmp_path / "vae" / "export"),
                 "--set", "train.frozen=encoder", "--set", "train.motion_weight=4", "--steps", "2", *common]) == 0
    old = read_safetensors(tmp_path / "vae" / "export" / "vae.safetensors")
    new = read_safetensors(tmp_path / "vae-ft" / "export" / "vae.safetensors")
    assert old.keys() == new.keys()
    assert all(torch.equal(old[k], new[k]) == k.startswith("encoder") for k in old)
    assert RunConfig.load(tmp_path / "vae-ft" / "export" / "config.json").vae.scale_factor == \
        RunConfig.load(tmp_path / "vae" / "export" / "config.json").vae.scale_factor

    assert main(["train", "dit", "--out", str(tmp_path / "dit"), "--vae", str(tmp_path / "vae"), *common]) == 0
    export = tmp_path / "dit" / "export"
    assert {p.name for p in export.iterdir()} == {"config.json", "vae.safetensors", "dit.safetensors"}
    assert (tmp_path / "dit" / "samples" / "v2v-000004.mp4").is_file()
    assert (tmp_path / "dit" / "loss.csv").read_text().count("\n") == 1 + 4

    out = tmp_path / "gen.mp4"
    assert main(["generate", "--checkpoint", str(export), "--prompt", "a square moves left", "--output_path",
                 str(out), "--num_frames", "8"]) == 0
    assert read_video(out)[0].shape == (8, 64, 64, 3)

    # the latents are cached: a second run with more steps resumes and does not re-encode
    cache = tmp_path / "dit" / "latents.safetensors"
    stamp = cache.stat().st_mtime_ns
    assert main(["train", "dit", "--out", str(tmp_path / "dit"), "--vae", str(tmp_path / "vae"), "--steps", "5",
                 *common]) == 0
    assert cache.stat().st_mtime_ns == stamp
    assert (tmp_path / "dit" / "loss.csv").read_text().count("\n") == 1 + 5

    # a warm start from the export (--init, the same architecture): after a step of lr 1e-12 it still is the
    # export; this run also weights the loss where something moves, from the motion cells stored with the latents
    assert main(["train", "dit", "--out", str(tmp_path / "warm"), "--vae", str(tmp_path / "vae"), "--init",
                 str(export), "--steps", "1", "--set", "train.lr=1e-12", "--set", "train.motion_weight=4",
                 "--set", "sampler.t2v_start=image", *common]) == 0
    motion = read_safetensors(tmp_path / "warm" / "latents.safetensors")["motion"]
    assert motion.shape == (6, 1, 12, 8, 8) and 0 < motion.float().mean() < 0.5  # the squares' cells only
    warm_cfg = RunConfig.load(tmp_path / "warm" / "export" / "config.json")
    assert warm_cfg.sampler.t2v_start == "noise"  # a DiT export has no first-frame model: its t2v starts from noise
    start, warm = DiT(RunConfig.load(export / "config.json").dit), DiT(warm_cfg.dit)
    load_weights(start, export / "dit.safetensors")
    load_weights(warm, tmp_path / "warm" / "export" / "dit.safetensors")
    x, t, ctx = torch.randn(1, 8, 12, 8, 8), torch.rand(1, 12), torch.randn(1, 5, 384)
    with torch.no_grad():
        torch.testing.assert_close(warm(x, t, ctx), start(x, t, ctx))
    assert main(["train", "dit", "--out", str(tmp_path / "deeper"), "--vae", str(tmp_path / "vae"), "--init",
                 str(export), "--steps", "1", "--set", "dit.depth=4", *common]) == 2  # not the same architecture
    # ... unless grown first (scripts/grow_dit.py): the 4-block run starts as exactly the 2-block export
    grown = tmp_path / "grown"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "grow_dit.py"), "--init", str(export), "--depth",
                           "4", "--out", str(grown)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert main(["train", "dit", "--out", str(tmp_path / "deeper"), "--vae", str(tmp_path / "vae"), "--init",
                 str(grown), "--steps", "1", "--set", "train.lr=1e-12", "--set", "dit.depth=4", *common]) == 0
    deeper = DiT(RunConfig.load(tmp_path / "deeper" / "export" / "config.json").dit)
    load_weights(deeper, tmp_path / "deeper" / "export" / "dit.safetensors")
    assert deeper.cfg.depth == 4
    with torch.no_grad():
        torch.testing.assert_close(deeper(x, t, ctx), start(x, t, ctx))
    again = subprocess.run([sys.executable, str(ROOT / "scripts" / "grow_dit.py"), "--init", str(export), "--depth",
                            "3", "--out", str(tmp_path / "grown3")], capture_output=True, text=True)
    assert again.returncode == 1 and again.stderr.strip().splitlines() == [
        "error: a DiT of 2 blocks grows only to a whole multiple of them, not to 3"]
    assert not (tmp_path / "grown3").exists()

    # shortcut distillation of the exported model, then 8-step generation with the student
    assert main(["distill", "--teacher", str(export), "--data", str(data), "--out", str(tmp_path / "student"),
                 "--recipe", "tiny", "--no_progress"]) == 0
    student = tmp_path / "student" / "export"
    cfg = RunConfig.load(student / "config.json")
    assert cfg.dit.step_conditioning and cfg.sampler.solver == "shortcut" and cfg.sampler.guidance == "none"
    assert main(["generate", "--checkpoint", str(student), "--prompt", "a square", "--output_path",
                 str(tmp_path / "fast.mp4"), "--num_frames", "8", "--steps", "8"]) == 0


def test_train_image_adds_the_first_frame_model_to_a_video_model(tmp_path, tiny_recipes, capsys):
    """`magi train image --video EXPORT`: export/ is the video model, byte for byte, with the image model added
    and t2v starting from its image; the run resumes, and `magi generate` runs it."""
    video = tmp_path / "video"
    video.mkdir()
    cfg = apply_overrides(replace(get_preset("tiny"), weights=""), ["text.kind=hash"])
    cfg.save(video / "config.json")
    torch.manual_seed(0)
    save_weights(video / "dit.safetensors", DiT(cfg.dit).state_dict())
    save_weights(video / "vae.safetensors", TransformerVAE(cfg.vae).state_dict())
    data = tmp_path / "data"
    data.mkdir()
    common = ["--data", str(data), "--preset", "tiny", "--no_progress", "--video", str(video)]
    run = tmp_path / "image"
    assert main(["train", "image", "--out", str(run), *common]) == 0
    export = run / "export"
    assert {p.name for p in export.iterdir()} == {"config.json", "vae.safetensors", "dit.safetensors",
                                                   "image.safetensors"}
    for name in ("dit.safetensors", "vae.safetensors"):
        assert (export / name).read_bytes() == (video / name).read_bytes()
    exported = RunConfig.load(export / "config.json")
    assert exported == replace(cfg, image=get_preset("tiny").image,
                               sampler=replace(cfg.sampler, t2v_start="image"))
    image = DiT(exported.image.dit)
    load_weights(image, export / "image.safetensors")
    assert (run / "loss.csv").read_text().count("\n") == 1 + 4
    cache = run / "latents.safetensors"
    stamp = cache.stat().st_mtime_ns
    assert main(["train", "image", "--out", str(run), "--steps", "5", *common]) == 0  # resumed, not re-encoded
    assert cache.stat().st_mtime_ns == stamp and (run / "loss.csv").read_text().count("\n") == 1 + 5

    out = tmp_path / "t2v.mp4"
    assert main(["generate", "--checkpoint", str(export), "--prompt", "a square moves left", "--output_path",
                 str(out), "--num_frames", "8"]) == 0
    assert read_video(out)[0].shape == (8, 64, 64, 3)
    # its distilled student keeps the first-frame model
    assert main(["distill", "--teacher", str(export), "--data", str(data), "--out", str(tmp_path / "student"),
                 "--recipe", "tiny", "--no_progress"]) == 0
    student = tmp_path / "student" / "export"
    assert (student / "image.safetensors").read_bytes() == (export / "image.safetensors").read_bytes()
    assert RunConfig.load(student / "config.json").sampler.t2v_start == "image"
    # `magi train export` of a DiT run: without --image_from its t2v starts from noise; --image_from CKPT adds
    # CKPT's first-frame model (the workflow of a fine-tuned video DiT shipped beside an existing image model)
    distilled = tmp_path / "student"
    assert main(["train", "export", "--out", str(distilled)]) == 0
    assert not (student / "image.safetensors").exists()
    assert RunConfig.load(student / "config.json").sampler.t2v_start == "noise"
    assert main(["train", "export", "--out", str(distilled), "--image_from", str(export)]) == 0
    assert (student / "image.safetensors").read_bytes() == (export / "image.safetensors").read_bytes()
    with_image = RunConfig.load(student / "config.json")
    assert with_image.sampler.t2v_start == "image" and with_image.image == exported.image
    capsys.readouterr()
    assert main(["train", "export", "--out", str(distilled), "--image_from", str(video)]) == 2
    assert "has no image.safetensors" in capsys.readouterr().err
    other = tmp_path / "other-vae"
    other.mkdir()
    for name in ("config.json", "image.safetensors"):
        (other / name).write_bytes((export / name).read_bytes())
    torch.manual_seed(1)
    save_weights(other / "vae.safetensors", TransformerVAE(cfg.vae).state_dict())
    assert main(["train", "export", "--out", str(distilled), "--image_from", str(other)]) == 2
    assert "has another VAE than this model" in capsys.readouterr().err
    assert (student / "image.safetensors").is_file()  # a refused export leaves the last one as it was
    (export / "image.safetensors").unlink()
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(export), "--prompt", "a square", "--output_path",
                 str(tmp_path / "no.mp4"), "--num_frames", "8"]) == 2
    assert "has no image.safetensors" in capsys.readouterr().err and not (tmp_path / "no.mp4").exists()
    assert main(["train", "image", "--out", str(tmp_path / "x"), "--data", str(data), "--preset", "tiny",
                 "--video", str(data)]) == 2
    assert "is not an exported video model" in capsys.readouterr().err


def test_train_dit_needs_an_exported_vae(tmp_path, tiny_recipes, capsys):
    assert main(["train", "dit", "--out", str(tmp_path / "d"), "--vae", str(tmp_path / "none"), "--data",
                 str(tmp_path), "--preset", "tiny"]) == 2
    assert "no exported VAE" in capsys.readouterr().err


def test_init_needs_an_exported_dit(tmp_path, tiny_recipes, capsys):
    assert main(["train", "dit", "--out", str(tmp_path / "d"), "--vae", str(tmp_path), "--data", str(tmp_path),
                 "--preset", "tiny", "--init", str(tmp_path / "none")]) == 2
    assert "has no dit.safetensors" in capsys.readouterr().err
    assert main(["train", "vae", "--out", str(tmp_path / "v"), "--data", str(tmp_path), "--preset", "tiny",
                 "--init", str(tmp_path / "none")]) == 2
    assert "has no vae.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_training_refuses_clips_of_another_frame_rate(tmp_path, capsys):
    data = tmp_path / "data16"
    assert main(["data", "--out", str(data), "--train", "2", "--dev", "1", "--test", "0", "--frames", "24",
                 "--size", "32", "--fps", "16", "--no-progress"]) == 0
    common = ["--data", str(data), "--preset", "tiny", "--steps", "1", "--no_progress"]
    assert main(["train", "vae", "--out", str(tmp_path / "v"), *common]) == 2
    assert ("at 16 fps but the model's video.fps is 8 (train with --set video.fps=16, or write the clips with magi "
            "data --fps 8)") in capsys.readouterr().err
    assert not (tmp_path / "v").exists()
    assert main(["train", "vae", "--out", str(tmp_path / "v"), *common, "--set", "video.fps=16",
                 "--set", "train.sample_every=0", "--set", "train.batch_size=1"]) == 0
    assert RunConfig.load(tmp_path / "v" / "export" / "config.json").video.fps == 16


def test_physics_recipes_use_a_known_preset():
    for preset, phase in TRAINING:
        assert phase in ("vae", "dit", "distill", "image")
        get_preset(preset)
