"""Stopping a multirun whose jobs run in launcher worker processes (``hydra/launcher=parallel``,
Hydra's joblib launcher).

A run stops cleanly when its own process gets SIGINT or SIGTERM (see
:mod:`normbench.engine.signals`). In a joblib sweep the runs live in loky worker processes, and
joblib kills every worker at once when an exception (KeyboardInterrupt included) reaches the
parent or when a worker dies. So:

- The parent, ``normbench train -m``, holds a :class:`SweepStop` around Hydra: the first SIGINT
  or SIGTERM only writes the *stop file* (the signal number, next to the multirun's tally file);
  the parent keeps waiting for its jobs. A second Ctrl-C interrupts at once, as for one run.
- Loky workers ignore SIGINT and SIGTERM between jobs (:func:`quiet_loky_workers` gives them an
  initializer that does so); otherwise a terminal's Ctrl-C, which reaches the whole process
  group, would end an idle worker and joblib would then kill the busy ones.
- A job in a worker holds :func:`job_stop`: a StopRequest for the moments outside the trainer's
  own, and a thread that sends the job's process SIGTERM when the stop file appears (how a
  SIGTERM sent to the parent alone reaches the running jobs). A job that starts after the stop
  file exists does not train.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from normbench.engine.signals import (
    StopRequest,
    ignore_stop_signals,
    signal_main_thread,
    stop_signals_blocked,
)

#: Environment variable holding the pid of the ``normbench train -m`` process: a job whose
#: process has another pid runs in a launcher's worker process.
PARENT_ENV = "NORMBENCH_MULTIRUN_PID"

#: Seconds between two looks of a running job for the stop file.
POLL_S = 0.2


def stop_file(tally: str | os.PathLike[str]) -> Path:
    """The stop file of the multirun whose tally file is ``tally``."""
    return Path(f"{os.fspath(tally)}.stop")


def request_stop(path: Path, signum: int) -> None:
    """Write the stop file holding ``signum``, unless it exists (the first stop is kept). The
    file appears whole: it is written aside, then linked into place."""
    aside = path.with_name(f"{path.name}.{os.getpid()}")
    try:
        aside.write_text(f"{int(signum)}\n")
        os.link(aside, path)
    except FileExistsError:
        pass
    except OSError:
        return  # the multirun's files are gone: nothing is waiting for this stop
    finally:
        aside.unlink(missing_ok=True)


def requested_signal(path: Path) -> int | None:
    """The signal number in the stop file, or None when no stop was requested."""
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def in_worker_process() -> bool:
    """Whether this process is a launcher's worker rather than the ``normbench train -m`` one."""
    parent = os.environ.get(PARENT_ENV)
    return parent is not None and parent != str(os.getpid())


class FileStopRequest(StopRequest):
    """A StopRequest that also writes the stop file on the first signal, so that the other jobs
    of the sweep stop too."""

    def __init__(self, tally: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = stop_file(tally)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        super()._handle(signum, frame)  # a second Ctrl-C raises KeyboardInterrupt here
        if first:
            request_stop(self.path, signum)


class SweepStop(FileStopRequest):
    """The parent's stop request, around Hydra: the first SIGINT/SIGTERM writes the stop file and
    returns (the parent goes on waiting for its jobs); a second Ctrl-C raises KeyboardInterrupt.
    Loky workers started meanwhile ignore both signals between jobs. On exit, :attr:`signum` also
    holds a stop requested by a job (a worker that got a signal of its own), and the stop file is
    removed."""

    def __enter__(self) -> SweepStop:
        self.path.unlink(missing_ok=True)
        os.environ[PARENT_ENV] = str(os.getpid())
        self._exit.callback(self._after)
        self._exit.enter_context(quiet_loky_workers())
        super().__enter__()
        return self

    def _after(self) -> None:
        os.environ.pop(PARENT_ENV, None)
        if self.signum is None:
            self.signum = requested_signal(self.path)
        self.path.unlink(missing_ok=True)


def _new_resource_trackers() -> list[Any]:
    """The resource trackers (loky's and multiprocessing's) not running yet."""
    from multiprocessing import resource_tracker

    from joblib.externals.loky.backend import resource_tracker as loky_resource_tracker

    trackers = (loky_resource_tracker._resource_tracker, resource_tracker._resource_tracker)
    return [tracker for tracker in trackers if getattr(tracker, "_fd", None) is None]


def _start_mp_resource_tracker() -> None:
    """Start multiprocessing's resource tracker now, unless running: loky starts it as it starts
    its first worker, and it unblocks SIGINT and SIGTERM in the thread that starts it."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


def _shut_down_loky(trackers: list[Any]) -> None:
    """End loky's workers (idle ones wait for more work for minutes) and the resource trackers
    started for them: no process of the sweep outlives the command (private joblib and
    multiprocessing attributes; without them, the processes end a moment after the command)."""
    with contextlib.suppress(Exception):
        from joblib.externals.loky import reusable_executor

        executor = getattr(reusable_executor, "_executor", None)
        if executor is not None:
            executor.terminate(kill_workers=False)  # waits for them, removes temporary files
        for tracker in trackers:
            tracker._stop()


@contextlib.contextmanager
def quiet_loky_workers() -> Iterator[None]:
    """While entered, joblib's ``loky`` backend (the one Hydra's joblib launcher always uses)
    starts its workers with SIGINT and SIGTERM blocked (they are started while a task is
    submitted, or by the executor's thread, which starts then too), and their initializer
    :func:`ignore_stop_signals` ignores both: a Ctrl-C while a worker starts up does not end it.
    On a normal exit the workers are ended. Without joblib, nothing changes."""
    try:
        from joblib import parallel
        from joblib._parallel_backends import LokyBackend
    except ImportError:
        yield
        return
    previous = parallel.BACKENDS.get("loky")
    if not (isinstance(previous, type) and issubclass(previous, LokyBackend)):
        yield
        return
    started: list[list[Any]] = []  # the resource trackers started for this sweep, once configured

    class QuietLokyBackend(previous):  # type: ignore[misc, valid-type]
        def configure(self, *args: Any, **kwargs: Any) -> int:
            kwargs.setdefault("initializer", ignore_stop_signals)
            new = _new_resource_trackers()
            with stop_signals_blocked():
                n_jobs = super().configure(*args, **kwargs)
            if not started:  # not again when joblib makes a new executor after an abort
                started.append(new)
                _start_mp_resource_tracker()
            return n_jobs

        def submit(self, *args: Any, **kwargs: Any) -> Any:
            with stop_signals_blocked():
                return super().submit(*args, **kwargs)

    parallel.BACKENDS["loky"] = QuietLokyBackend
    try:
        yield
    except BaseException:  # e.g. a second Ctrl-C: joblib has ended its workers its own way
        parallel.BACKENDS["loky"] = previous
        raise
    parallel.BACKENDS["loky"] = previous
    if started:
        _shut_down_loky(started[0])


class _StopWatch(threading.Thread):
    """Once the stop file appears, sends the main thread SIGTERM at every look until the job
    ends: one that fell between the trainer's StopRequest and the job's is not lost."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="normbench-stop-watch", daemon=True)
        self.path = path
        self.done = threading.Event()
        self.target = threading.main_thread().ident

    def run(self) -> None:
        while not self.done.wait(POLL_S):
            if self.path.exists():
                signal_main_thread(signal.SIGTERM, self.target)


@contextlib.contextmanager
def job_stop(tally: str | os.PathLike[str]) -> Iterator[StopRequest]:
    """For a job in a worker process (in its main thread): SIGINT and SIGTERM are requests (read
    by the trainer while it runs, else in the returned StopRequest) that stop the whole sweep
    (the stop file is written); the stop file sends this process SIGTERM; between jobs the worker
    ignores both signals (as its initializer set, or from its first job on)."""
    if threading.current_thread() is not threading.main_thread():  # no signal reaches the job
        with StopRequest() as stop:
            yield stop
        return
    ignore_stop_signals(where_default=True)
    with FileStopRequest(tally) as stop:
        watch = _StopWatch(stop.path)
        watch.start()
        try:
            yield stop
        finally:
            watch.done.set()
            watch.join()
