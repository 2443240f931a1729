"""The benchmarks' clocks: wall time of a call with the device synchronized around it, and the
mean time per call over many calls (CUDA events on GPU)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wall_seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one call of ``fn``, with ``device`` synchronized before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def per_call_timer(device: torch.device) -> Callable[[Callable[[], None], int], float]:
    """A timer of seconds per call of ``fn`` over ``n`` calls (CUDA events on GPU)."""

    def cpu(fn: Callable[[], None], n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n

    def cuda(fn: Callable[[], None], n: int) -> float:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        begin.record()
        for _ in range(n):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        return begin.elapsed_time(end) / 1000 / n

    return cuda if device.type == "cuda" else cpu
