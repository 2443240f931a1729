"""Stopping a run cleanly: SIGINT and SIGTERM end it at the next step boundary.

The first Ctrl-C (SIGINT) or SIGTERM (what Slurm and most schedulers send before a kill) only
sets a flag; the training loop reads it after finishing the current step and whatever
evaluation or probe is due at it, saves a checkpoint and exits. A second Ctrl-C exits at once
(the last checkpoint stays as it was).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunStopped(BaseException):
    """A run stopped by a signal after checkpointing. A BaseException, like KeyboardInterrupt,
    so that neither a sweep's per-run error handling nor Hydra records it as a failed run: the
    whole command stops, with exit status 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """While entered, turns SIGINT/SIGTERM into a request read by :attr:`signum`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if self.signum is None:
            self.signum = signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
