import numpy as np

from magi.eval.tracking import intact_objects, locate, trajectory_error, visible_objects
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


def test_an_object_smeared_to_a_faint_trace_is_visible_but_not_intact():
    objects = [{"color": (200, 0, 0)}, {"color": (0, 0, 200)}]
    before = np.zeros((10, 10, 3), dtype=np.uint8)
    before[2:5, 2:5] = (200, 0, 0)  # 9 red pixels
    before[6:9, 6:9] = (0, 0, 200)  # 9 blue pixels
    after = before.copy()
    after[2:5, 2:5] = 0
    after[2, 2:5] = (200, 0, 0)  # red: 3 pixels left (a third of its area)
    assert visible_objects(after, objects) == 2
    assert intact_objects(after, before, objects) == 1
    assert intact_objects(before, before, objects) == 2
