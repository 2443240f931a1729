"""Signals: how a run, a sweep or a study stops. Every signal handler normbench installs, and
every signal it sends itself, goes through this module.

- :class:`StopRequest`: the first Ctrl-C (SIGINT) or SIGTERM (what Slurm and most schedulers
  send before a kill) only sets a flag; the training loop reads it after finishing the current
  step and whatever evaluation or probe is due at it, saves a checkpoint and exits. A second
  Ctrl-C exits at once (the last checkpoint stays as it was).
- :func:`sigterm_as_interrupt`: while entered, SIGTERM acts as Ctrl-C does (KeyboardInterrupt),
  for work with no step boundaries of its own.
- :func:`ignore_stop_signals`, :func:`stop_signals_blocked`, :func:`signal_main_thread`: for
  the worker processes of a launcher (see :mod:`normbench.cli.sweep_stop`).

Handlers can only be set from the main thread; elsewhere these leave them as they are.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


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


def signal_name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM`` ...: the name of a signal number."""
    return signal.Signals(signum).name


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def handled(signums: Iterable[int], handler: Handler) -> Iterator[None]:
    """While entered, ``handler`` (a function or ``signal.SIG_IGN``) handles ``signums``; on exit
    the previous handlers are back. Outside the main thread, nothing changes."""
    previous = {s: signal.signal(s, handler) for s in signums} if _in_main_thread() else {}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def sigterm_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """While entered, a SIGTERM raises KeyboardInterrupt in the main thread, as Ctrl-C does."""
    return handled([signal.SIGTERM], signal.default_int_handler)


class StopRequest:
    """While entered, turns SIGINT/SIGTERM into a request read by :attr:`signum`. Subclasses
    add to :attr:`_exit` what their exit undoes (run before the handlers are put back)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._exit = contextlib.ExitStack()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal_name(self.signum) if self.signum is not None else ""

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if self.signum is None:
            self.signum = signum

    def __enter__(self) -> StopRequest:
        self._exit.enter_context(handled(STOP_SIGNALS, self._handle))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit.close()


def ignore_stop_signals(*, where_default: bool = False) -> None:
    """From now on this process ignores SIGINT and SIGTERM, and receives them (unblocked: one
    that arrived while they were blocked is dropped). ``where_default``: only a signal whose
    default action is in place is ignored, and the mask stays."""
    if not _in_main_thread():
        return
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    for signum in STOP_SIGNALS:
        if not where_default or signal.getsignal(signum) == defaults[signum]:
            signal.signal(signum, signal.SIG_IGN)
    if not where_default:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM blocked in this thread while entered: processes and threads started
    meanwhile inherit the block; a signal arriving meanwhile is delivered on exit."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def signal_main_thread(signum: int, thread_id: int | None) -> None:
    """Send ``signum`` to this process's main thread (``thread_id``), if a Python handler is
    there to take it (not while the default action, or none, is in place)."""
    if thread_id is not None and callable(signal.getsignal(signum)):
        signal.pthread_kill(thread_id, signum)
