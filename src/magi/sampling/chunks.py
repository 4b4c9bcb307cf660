"""The chunk plan: which chunks are denoised at which noise level at every step (pure, integers only).

MAGI-1 denoises a video chunk by chunk, but not one chunk at a time. With ``steps`` denoising steps per
chunk and a window of ``window`` chunks, the steps are cut into ``window`` stages of
``stage = steps // window`` steps. Chunk c runs stage 0 while chunk c - 1 runs stage 1, chunk c - 2
stage 2, ...: a new chunk enters whenever the previous one has finished a stage, so up to ``window``
chunks are in flight at staggered noise levels and every forward pass advances all of them:

    step:      0 .. s-1   s .. 2s-1   2s .. 3s-1   3s .. 4s-1   4s .. 5s-1
    chunk 0    stage 0    stage 1     stage 2      stage 3      (clean, admitted)
    chunk 1               stage 0     stage 1      stage 2      stage 3
    chunk 2                           stage 0      stage 1      stage 2  ...

A chunk that finishes its last step is clean. It is fed once more, at t = 1, as the first input chunk of
the next forward pass, which stores its keys/values in the KV cache ("admission"); from then on later
chunks attend to it through the cache only. ``level`` k of a chunk means it moves from grid time
t_k to t_{k+1} in that step (k = 0 is pure noise).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlanStep:
    chunks: tuple[int, ...]  # chunks denoised by this forward pass, ascending
    levels: tuple[int, ...]  # grid index k of each: it moves from t_k to t_{k+1}
    admit: tuple[int, ...]  # clean chunks fed first (t = 1) and stored in the KV cache
    finished: tuple[int, ...]  # chunks that are clean after this step


def chunk_plan(num_chunks: int, steps: int, window: int) -> list[PlanStep]:
    """The full schedule for generating ``num_chunks`` chunks."""
    if num_chunks < 1 or steps < 1 or window < 1 or steps % window:
        raise ValueError(f"need num_chunks, steps, window >= 1 and steps % window == 0, "
                         f"got {num_chunks}, {steps}, {window}")
    stage = steps // window
    plan: list[PlanStep] = []
    waiting: tuple[int, ...] = ()
    for g in range(num_chunks + window - 1):
        active = tuple(c for c in range(max(0, g - window + 1), min(g + 1, num_chunks)))
        for j in range(stage):
            levels = tuple((g - c) * stage + j for c in active)
            finished = tuple(c for c, k in zip(active, levels) if k == steps - 1)
            plan.append(PlanStep(active, levels, waiting, finished))
            waiting = finished
    return plan
