import numpy as np

from magi.eval.tracking import locate, trajectory_error, visible_objects
from magi.physics.mini import render_case


def test_locate_a_hand_made_square():
    frames = np.zeros((2, 10, 10, 3), dtype=np.uint8)
    frames[0, 2:4, 6:8] = (200, 0, 0)  # 2x2 red square: centre (7, 3)
    centroids, visible = locate(frames, (200, 0, 0))
    np.testing.assert_allclose(centroids[0], (7.0, 3.0))
    assert visible.tolist() == [True, False]


def test_ground_truth_tracks_well_and_copying_the_last_frame_does_not():
    for index in range(66):  # find a case with clear motion
        clip, record = render_case(index, 1, 1, profile="tiny")
        if record["family"] in ("balls-collide", "pendulum", "projectile"):
            break
    truth_error = trajectory_error(clip[8:], record["objects"], start=8)
    copy_error = trajectory_error(np.repeat(clip[7:8], 16, axis=0), record["objects"], start=8)
    assert truth_error < 1.0, truth_error
    assert copy_error > 2 * truth_error + 1.0, (copy_error, truth_error)
    blank = np.full_like(clip[8:], 40)
    assert trajectory_error(blank, record["objects"], start=8) == 16.0  # every object missing: the penalty
    assert visible_objects(clip[8], record["objects"]) == len(record["objects"])
