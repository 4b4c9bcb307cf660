"""Timing and memory helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import ctypes
import os
import threading
import time


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
