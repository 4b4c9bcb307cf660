import numpy as np
import pytest

from magi.errors import InputError
from magi.io.atomic import atomic_write_text
from magi.io.video import (
    frames_to_tensor,
    read_image,
    read_video,
    resize_frames,
    tensor_to_frames,
    write_video,
)


def smooth_clip(frames: int = 10, size: int = 32) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    clip = [np.stack([(x * 3 + 10 * t) % 256, y * 3, np.full_like(x, 128)], -1) for t in range(frames)]
    return np.stack(clip).astype(np.uint8)


def test_tensor_round_trip_is_exact():
    frames = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    video = frames_to_tensor(frames)
    assert video.shape == (3, 3, 8, 8) and video.min() >= -1 and video.max() <= 1
    np.testing.assert_array_equal(tensor_to_frames(video), frames)


def test_write_then_read_mp4(tmp_path):
    clip = smooth_clip()
    path = tmp_path / "clip.mp4"
    assert write_video(path, clip, fps=8) == len(clip)
    frames, fps = read_video(path)
    assert frames.shape == clip.shape and fps == pytest.approx(8)
    assert np.abs(frames.astype(int) - clip).mean() < 4  # lossy but close
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary left behind


def test_streaming_write_leaves_no_file_when_the_source_fails(tmp_path):
    def batches():
        yield smooth_clip(4)
        raise InputError("boom")

    path = tmp_path / "out.mp4"
    with pytest.raises(InputError):
        write_video(path, batches(), fps=8)
    assert list(tmp_path.iterdir()) == []


def test_missing_and_corrupt_inputs_raise_input_error(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    for call in (lambda: read_video(tmp_path / "nope.mp4"), lambda: read_video(junk),
                 lambda: read_image(tmp_path / "nope.png"), lambda: read_image(junk)):
        with pytest.raises(InputError):
            call()


def test_read_image_and_npz(tmp_path):
    from PIL import Image

    image = smooth_clip(1, 16)[0]
    Image.fromarray(image).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), image)
    np.savez(tmp_path / "v.npz", frames=smooth_clip(5, 16))
    frames, fps = read_video(tmp_path / "v.npz")
    assert frames.shape == (5, 16, 16, 3) and fps == 8


def test_resize_center_crops_to_the_target_aspect():
    wide = np.zeros((1, 20, 40, 3), dtype=np.uint8)
    wide[:, :, 10:30] = 255  # the central square is white, the sides black
    out = resize_frames(wide, 10, 10)
    assert out.shape == (1, 10, 10, 3) and out.min() == 255


def test_atomic_write_text(tmp_path):
    atomic_write_text(tmp_path / "a" / "b.json", "{}\n")
    assert (tmp_path / "a" / "b.json").read_text() == "{}\n"
    assert len(list((tmp_path / "a").iterdir())) == 1


def test_resample_fps_takes_the_nearest_frame_in_time():
    import numpy as np

    from magi.io.video import resample_fps

    frames = np.arange(12)[:, None, None, None] * np.ones((1, 2, 2, 3), dtype=np.uint8)
    assert resample_fps(frames, 60, 8)[:, 0, 0, 0].tolist() == [0, 8]  # 0.2 s -> 2 frames at 8 fps
    slow = resample_fps(frames[:3], 1, 8)[:, 0, 0, 0].tolist()  # 3 s -> 24 frames, each held ~8 times
    assert slow == [0] * 4 + [1] * 8 + [2] * 12
    assert resample_fps(frames, 24, 24) is frames
