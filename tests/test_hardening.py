"""Every bad path, byte and number gets one clear line and exit 2, before any model is built, and nothing
half-written survives (one test per case; each fails without its fix)."""

from __future__ import annotations

import errno
import os
import signal
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from magi.cli import main
from magi.errors import InputError
from magi.io.atomic import atomic_path
from magi.io.video import read_image, read_video, write_video

FAST = ["--preset", "tiny", "--set", "text.kind=hash", "--steps", "4", "--num_frames", "8"]


def generate(out, *flags: str) -> int:
    return main(["generate", "--prompt", "a ball falls", "--output_path", str(out), *FAST, *flags])


def refused(capsys, code: int, *words: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(word in err for word in words), err


@pytest.fixture(autouse=True)
def no_model(monkeypatch, request):
    """Bad input is refused before any model is built (the generation tests at the end build one)."""
    if "builds" not in request.keywords:
        def fail(*args, **kwargs):
            raise AssertionError("a model was built for bad input")
        monkeypatch.setattr("magi.sampling.pipeline.build_pipeline", fail)


def test_output_path_that_is_a_directory(tmp_path, capsys):
    (tmp_path / "out.mp4").mkdir()
    refused(capsys, generate(tmp_path / "out.mp4"), "is a directory")


def test_output_path_under_a_regular_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    refused(capsys, generate(tmp_path / "file" / "sub" / "out.mp4"), "is a file, not a directory")


def test_output_path_in_a_folder_that_cannot_be_written(tmp_path, capsys, monkeypatch):
    def read_only(*args, **kwargs):  # what a read-only mount answers (root ignores permission bits)
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    refused(capsys, generate(tmp_path / "out.mp4"), "cannot write in", "Read-only")


def test_prompt_that_is_not_utf8(tmp_path, capsys):
    prompt = b"ball \xff\xfe falls".decode(sys.getfilesystemencoding(), "surrogateescape")  # as argv holds it
    code = main(["generate", "--prompt", prompt, "--output_path", str(tmp_path / "o.mp4"), *FAST])
    refused(capsys, code, "--prompt", "UTF-8")


@pytest.mark.parametrize("flags, words", [
    (["--cfg", "nan"], ["--cfg", "finite"]),
    (["--cfg", "inf"], ["--cfg", "finite"]),
    (["--set", "sampler.shift=nan"], ["sampler.shift", "finite"]),
    (["--num_frames", str(10**9)], ["--num_frames", "out of range"]),
    (["--num_frames", "-3"], ["--num_frames"]),
    (["--seed", str(2**70)], ["--seed", "out of range"]),
    (["--seed", "-1"], ["--seed"]),
    (["--height", "100"], ["divisible by 16"]),
    (["--width", "0"], ["--width"]),
])
def test_numbers_are_checked(tmp_path, capsys, flags, words):
    refused(capsys, generate(tmp_path / "o.mp4", *flags), *words)
    assert not list(tmp_path.iterdir())


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    grey = np.full((8, 8), 32768, dtype=np.uint16)  # half of full scale
    Image.fromarray(grey).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8 and abs(int(image[0, 0, 0]) - 128) <= 1


def test_prefix_video_is_resized_frame_by_frame_and_read_only_as_far_as_used(tmp_path, monkeypatch):
    import magi.io.video as video

    write_video(tmp_path / "big.mp4", np.zeros((20, 256, 320, 3), np.uint8), fps=24)
    seen = []
    original = video.resize_frames
    monkeypatch.setattr(video, "resize_frames", lambda frames, *a, **k: seen.append(frames.shape[0])
                        or original(frames, *a, **k))
    frames, fps = read_video(tmp_path / "big.mp4", size=(64, 64), max_seconds=0.5)
    assert frames.shape == (13, 64, 64, 3) and fps == pytest.approx(24)  # 0.5 s at 24 fps, and one more
    assert seen == [1] * 13  # one frame at a time: never the whole clip at full size


@pytest.mark.parametrize("content, words", [
    (lambda p: np.savez(p, frames=np.zeros((4, 4), np.uint8)), ["(T, H, W, 3)"]),
    (lambda p: p.write_bytes(os.urandom(256)), ["not a readable .npz video"]),
    (lambda p: np.savez(p, other=np.zeros(3)), ["no 'frames'"]),
])
def test_npz_videos_are_checked(tmp_path, content, words):
    path = tmp_path / "v.npz"
    content(path)
    with pytest.raises(InputError) as caught:
        read_video(path)
    assert all(word in str(caught.value) for word in words) and "v.npz" in str(caught.value)


def test_config_json_that_is_not_json_names_the_file(tmp_path, capsys):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    code = main(["generate", "--prompt", "x", "--output_path", str(tmp_path / "o.mp4"), "--checkpoint", str(folder)])
    refused(capsys, code, "config.json")


def test_weights_of_another_dtype_are_refused():
    from magi.io.weights import load_state

    module = torch.nn.Linear(2, 2)
    with pytest.raises(InputError, match="another dtype"):
        load_state(module, {k: v.half() for k, v in module.state_dict().items()}, "half.safetensors")


def test_truncated_dataset_shard(tmp_path):
    from magi.physics.dataset import load_split, write_split

    write_split(tmp_path, "train", 4, seed=0, frames=8, size=32)
    shard = next((tmp_path / "train").glob("clips-*.npz"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(InputError, match="not a readable clip split"):
        load_split(tmp_path, "train")


def test_dataset_files_are_written_through_temporary_names(tmp_path, monkeypatch):
    from magi.physics import dataset

    def crash(path, **arrays):
        open(path, "wb").write(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(dataset.np, "savez_compressed", crash)
    with pytest.raises(RuntimeError):
        dataset.write_split(tmp_path, "train", 4, seed=0, frames=8, size=32)
    assert not [p for p in (tmp_path / "train").iterdir() if p.suffix in (".npz", ".json")]


def test_sigterm_leaves_no_temporary_file_and_exits_143(tmp_path, capsys, monkeypatch):
    target = tmp_path / "out.mp4"
    seen = []

    def writes_then_gets_terminated(args):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            seen.append(tmp)
            os.kill(os.getpid(), signal.SIGTERM)
        return 0

    import magi.commands.config as config_command

    monkeypatch.setattr(config_command, "run", writes_then_gets_terminated)
    code = main(["config", "--preset", "tiny"])
    assert code == 143 and "terminated" in capsys.readouterr().err
    assert seen and not seen[0].exists() and not target.exists()


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max: no such process
    stale = tmp_path / f".out.{dead}.abcd1234.tmp.mp4"
    live = tmp_path / f".out.{os.getpid()}.abcd1234.tmp.mp4"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    with atomic_path(tmp_path / "out.mp4") as tmp:
        tmp.write_bytes(b"done")
    assert not stale.exists() and live.exists() and (tmp_path / "out.mp4").read_bytes() == b"done"


NUMERIC = {"--seed": st.integers(-2**70, 2**70), "--num_frames": st.integers(-10, 10**7),
           "--steps": st.integers(-3, 6), "--cfg": st.floats(allow_nan=True, allow_infinity=True),
           "--height": st.integers(-32, 200), "--width": st.integers(-32, 200)}
SETS = {"sampler.shift": st.floats(allow_nan=True, allow_infinity=True), "sampler.steps": st.integers(-5, 8),
        "sampler.window_size": st.integers(-2, 5), "video.fps": st.integers(-5, 30),
        "sampler.cfg_t_range": st.lists(st.floats(allow_nan=True), min_size=0, max_size=6),
        "dit.chunk_frames": st.integers(-2, 8)}


@pytest.mark.builds
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(sorted(NUMERIC)), data=st.data(), key=st.sampled_from(sorted(SETS)))
def test_any_number_is_run_or_refused_in_one_line(tmp_path_factory, monkeypatch, flag, data, key):
    """Any value of a numeric flag or a --set key is either accepted and run, or refused with exit 2 and one
    line, and no output is left behind when refused."""
    from magi.sampling import pipeline

    monkeypatch.setattr(pipeline, "generate_frames", lambda pipe, request, progress=None: iter(
        [np.zeros((1, request.num_frames if request.num_frames < 50 else 1, 16, 16, 3), np.uint8)[0]]))
    out = tmp_path_factory.mktemp("h") / "o.mp4"
    value = data.draw(NUMERIC[flag])
    set_value = data.draw(SETS[key])
    text = ",".join(map(str, set_value)) if isinstance(set_value, list) else str(set_value)
    argv = ["generate", "--prompt", "a ball", "--output_path", str(out), "--preset", "tiny", "--set",
            "text.kind=hash", "--set", "dit.depth=1", f"{flag}={value}", "--set", f"{key}={text}"]
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse's refusal of a flag's value
            code = exit.code
    lines = [line for line in err.getvalue().splitlines() if line.strip() and not line.startswith("note:")]
    if code == 0:
        assert out.exists()
    else:
        assert code == 2 and len(lines) == 1 and "error" in lines[0], err.getvalue()
        assert not out.exists() and not list(out.parent.glob(".*tmp*"))
