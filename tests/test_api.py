"""The Python API, chunk-wise prompting, streaming output and ``magi extend`` (tiny preset, random weights)."""

from __future__ import annotations

import numpy as np
import pytest

from magi.api import Magi, split_prompt
from magi.cli import main
from magi.errors import InputError
from magi.io.video import partial_path, read_video, stream_video, write_video


@pytest.fixture(scope="module")
def magi():
    return Magi.load("tiny", device="cpu", overrides=["text.kind=hash", "sampler.steps=4"])


def test_call_stream_and_modes(magi):
    video = magi("a red ball falls", num_frames=24)
    assert video.shape == (24, 64, 64, 3) and video.dtype == np.uint8
    chunks = list(magi.stream("a red ball falls", num_frames=48))
    assert [c.shape[0] for c in chunks] == [24, 24] and np.array_equal(chunks[0], video)
    image = magi("a ball", image=video[0], num_frames=24)
    assert image.shape[0] == 1 + 24  # the image, then the generated frames
    continued = magi("a ball", video=video, num_frames=24)
    assert continued.shape[0] == 24 + 24
    with pytest.raises(InputError, match="not both"):
        magi("a ball", image=video[0], video=video)


def test_chunk_prompts_change_only_their_chunks(magi):
    shipped = Magi.load("physics-64", device="cpu", steps=8)  # trained: its video follows the text
    one = list(shipped.stream("a red ball falls", num_frames=48, seed=3))  # frames of chunk 0, then of chunk 1
    two = list(shipped.stream({0: "a red ball falls", 1: "three green cubes spin"}, num_frames=48, seed=3))
    assert [len(c) for c in one] == [len(c) for c in two] and sum(len(c) for c in one) == 48
    assert np.abs(one[0].astype(int) - two[0]).max() <= 1  # chunk 0: the same text (float rounding)
    assert np.abs(one[1].astype(int) - two[1]).mean() > 1  # chunk 1 on: its own text
    request = magi.request(["a", "b", "c"], num_frames=72)
    assert request.prompt_of_chunk(3) == ["a", "b", "c"]
    with pytest.raises(InputError, match="chunk 5"):
        magi.request({0: "a", 5: "b"}, num_frames=24).prompt_of_chunk(1)
    with pytest.raises(InputError, match="chunk 0"):
        split_prompt({1: "b"})


def test_extend_keeps_the_input_and_adds_frames(magi):
    video = magi("a ball", num_frames=24)
    longer = magi.extend(video, "the ball keeps rolling", num_frames=24)
    assert longer.shape[0] == 48 and np.array_equal(longer[:24], video)
    assert magi.context_frames() == magi.cfg.sampler.context_chunks * magi.frames_per_chunk


def test_stream_video_grows_playable_and_keeps_the_partial_on_a_crash(tmp_path):
    out = tmp_path / "out.mp4"
    sizes = []

    def batches():
        for k in range(3):
            yield np.full((8, 32, 32, 3), 60 * k, np.uint8)
            frames, _ = read_video(partial_path(out))  # playable while it grows
            sizes.append(frames.shape[0])
        raise RuntimeError("crash in chunk 4")

    with pytest.raises(RuntimeError):
        stream_video(out, batches(), fps=8)
    assert sizes[0] >= 7 and sizes == sorted(sizes) and sizes[-1] >= 23  # at most one frame behind
    assert not out.exists() and read_video(partial_path(out))[0].shape[0] == 24  # the frames written so far
    assert stream_video(out, [np.zeros((8, 32, 32, 3), np.uint8)], fps=8) == 8
    assert out.exists() and not partial_path(out).exists()


def test_generate_streams_reports_the_first_chunk_and_takes_chunk_prompts(tmp_path, capsys):
    out = tmp_path / "o.mp4"
    code = main(["generate", "--prompt", "a ball", "--chunk_prompt", "1:a cube", "--output_path", str(out),
                 "--preset", "tiny", "--set", "text.kind=hash", "--steps", "4", "--num_frames", "48"])
    assert code == 0 and read_video(out)[0].shape[0] == 48
    assert "first chunk after" in capsys.readouterr().out  # tqdm.write: above the progress bar
    assert main(["generate", "--prompt", "a", "--chunk_prompt", "x:b", "--output_path", str(out),
                 "--preset", "tiny"]) == 2


def test_extend_command(tmp_path, capsys):
    source = tmp_path / "in.mp4"
    write_video(source, np.random.default_rng(0).integers(0, 255, (30, 64, 64, 3), dtype=np.uint8), fps=8)
    out = tmp_path / "longer.mp4"
    code = main(["extend", str(source), "--prompt", "more", "--num_frames", "24", "--output_path", str(out),
                 "--preset", "tiny", "--set", "text.kind=hash", "--steps", "4"])
    assert code == 0
    frames, _ = read_video(out)
    assert frames.shape[0] == 30 + 24 and "30 frames" in capsys.readouterr().out
