"""Timing, FLOP and memory helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections import Counter
from math import prod

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

aten = torch.ops.aten


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


class KernelCalls(TorchDispatchMode):
    """Records the matmul and attention calls of the code run under it: ``calls`` counts each distinct call
    (operator, and the shape, strides and dtype of every tensor argument, other arguments as given). Everything
    else (norms, gates, copies, Python) is what ``kernels_alone_seconds`` leaves out."""

    KERNELS = (aten.mm.default, aten.addmm.default, aten.bmm.default,
               aten._scaled_dot_product_flash_attention_for_cpu.default)

    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.KERNELS:
            self.calls[(func, _describe(args), _describe(tuple(sorted(kwargs.items()))))] += 1
        else:  # composite operators (linear, matmul, SDPA) reach the mode whole under inference_mode
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        return func(*args, **kwargs)


def _describe(value):
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.stride(), value.dtype)
    if isinstance(value, (list, tuple)):
        return tuple(_describe(v) for v in value)
    return value


def _rebuild(value):
    """A random tensor laid out like the described one (strides too: broadcast masks, transposed weights)."""
    if isinstance(value, tuple) and value[:1] == ("tensor",):
        _, shape, stride, dtype = value
        storage = 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if prod(shape) else 0
        return torch.randn(storage, dtype=dtype).as_strided(shape, stride)
    if isinstance(value, tuple):
        return tuple(_rebuild(v) for v in value)
    return value


def kernels_alone_seconds(calls: Counter, repeats: int = 3, loop: int = 10) -> float:
    """What the recorded calls take when each runs on its own, back to back with itself on the same tensors
    (operands in cache): the best of ``repeats`` loops of ``loop`` calls, times the number of such calls. A
    floor on the time of any implementation that runs these kernels, so FLOPs over it bound the MFU."""
    total = 0.0
    with torch.inference_mode():
        for (func, args, kwargs), count in calls.items():
            args, kwargs = _rebuild(args), dict(_rebuild(kwargs))
            func(*args, **kwargs)
            best = min(timed(lambda f=func, a=args, k=kwargs: [f(*a, **k) for _ in range(loop)])
                       for _ in range(repeats))
            total += best / loop * count
    return total


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
