"""Wall time per phase of training (data, compute, eval, probe, checkpoint, logging).

On CPU a phase is timed with ``perf_counter``. On CUDA it is bracketed by CUDA events,
which are only read at :meth:`PhaseTimer.flush` (one synchronization per flush, none per step).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch


class PhaseTimer:
    """Accumulates seconds per named phase; also keeps a window since the last :meth:`window`."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"  # CUDA events on GPU, perf_counter on CPU
        self.totals: dict[str, float] = defaultdict(float)
        self._window: dict[str, float] = defaultdict(float)
        self._pending: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block as phase ``name``."""
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._pending.append((name, start, end))
        else:
            t0 = time.perf_counter()
            yield
            self._add(name, time.perf_counter() - t0)

    def _add(self, name: str, seconds: float) -> None:
        self.totals[name] += seconds
        self._window[name] += seconds

    def flush(self) -> None:
        """Resolve pending CUDA events (synchronizes once)."""
        if self._pending:
            self._pending[-1][2].synchronize()
            for name, start, end in self._pending:
                self._add(name, start.elapsed_time(end) / 1000.0)
            self._pending.clear()

    def window(self) -> dict[str, float]:
        """Seconds per phase since the previous call (flushes first)."""
        self.flush()
        out = dict(self._window)
        self._window.clear()
        return out

    def state_dict(self) -> dict[str, float]:
        self.flush()
        return dict(self.totals)

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.totals.clear()
        self.totals.update(state)


def images_per_s(seconds: Mapping[str, float], images: int) -> float:
    """Training throughput: ``images`` over the seconds of the data and train_step phases."""
    busy = seconds.get("train_step", 0.0) + seconds.get("data", 0.0)
    return images / busy if busy > 0 else 0.0
