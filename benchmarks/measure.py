"""Timing, FLOP and memory helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import ctypes
import os
import threading
import time

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula


@register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Q K^T and P V of the CPU flash-attention kernel, every (query, key) pair (as torch counts the GPU
    kernels); torch registers no formula for it, so FlopCounterMode would count CPU attention as free.
    Grouped K/V heads do the work of the query heads."""
    b, h, q_len, d = query_shape
    k_len, d_v = key_shape[-2], value_shape[-1]
    return 2 * b * h * q_len * k_len * (d + d_v)


def count_flops(fn) -> tuple[int, dict[str, int], object]:
    """FLOPs of one call of ``fn`` (matmuls and attention): the total, the FLOPs of each operator, and what
    ``fn`` returned."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    by_op = {str(op).split(".")[-1]: n for op, n in counter.get_flop_counts()["Global"].items()}
    return counter.get_total_flops(), by_op, result


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_growth(fn) -> tuple[float | None, float]:
    """Peak resident memory above the level before ``fn`` (MiB, sampled every 5 ms; None without /proc),
    and the seconds ``fn`` took."""
    if not os.path.exists("/proc/self/statm"):
        return None, timed(fn)
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # return freed heap, so the baseline is live memory
    except (OSError, AttributeError):
        pass
    base = peak = _rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        seconds = timed(fn)
    finally:
        done.set()
        thread.join()
    return (max(peak, _rss()) - base) / 2**20, seconds
