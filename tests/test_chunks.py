import pytest

from magi.sampling.chunks import chunk_plan


@pytest.mark.parametrize("num_chunks,steps,window", [(1, 8, 4), (3, 8, 4), (6, 16, 4), (5, 6, 2), (4, 4, 1)])
def test_plan_properties(num_chunks, steps, window):
    plan = chunk_plan(num_chunks, steps, window)
    visited = {c: [] for c in range(num_chunks)}
    admitted, finished_at = [], {}
    for i, step in enumerate(plan):
        assert list(step.chunks) == sorted(step.chunks) and len(step.chunks) <= window
        for c, k in zip(step.chunks, step.levels):
            visited[c].append(k)
        for c in step.admit:
            assert finished_at[c] == i - 1  # admitted in the very next forward pass
            assert step.chunks[0] == c + 1  # the admitted chunk directly precedes the active ones
        admitted += step.admit
        for c in step.finished:
            finished_at[c] = i
    for c in range(num_chunks):
        assert visited[c] == list(range(steps))  # every level once, monotone
    assert admitted == list(range(num_chunks - 1))  # in order; the last chunk needs no admission
    stage = steps // window
    starts = [next(i for i, s in enumerate(plan) if c in s.chunks) for c in range(num_chunks)]
    assert starts == [c * stage for c in range(num_chunks)]  # staggered by one stage
    assert len(plan) == (num_chunks + window - 1) * stage


def test_window_is_full_in_steady_state():
    plan = chunk_plan(8, 16, 4)
    assert max(len(s.chunks) for s in plan) == 4


def test_bad_arguments():
    with pytest.raises(ValueError):
        chunk_plan(2, 10, 4)
