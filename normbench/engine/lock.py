"""One process per run directory: an OS file lock on ``<run>/.lock``.

The lock is held with ``fcntl.flock`` for the life of the run, so the operating system
releases it when the process ends in any way (a kill included): a lock left by a dead process
is simply taken over. The file holds the owner's pid and host, for the message.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import TracebackType

from normbench.errors import NormbenchError
from normbench.files import disk_error

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, runs are not locked
    fcntl = None


class RunLockedError(NormbenchError):
    """Another live process owns the run directory."""


class RunLock:
    """Exclusive, non-blocking lock on a run directory (a context manager)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`RunLockedError` naming the process that holds it.
        Under torchrun only rank 0 takes it: the other ranks of the run are its own."""
        from normbench.engine.distributed import launched_rank

        if launched_rank() > 0:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise disk_error(self.path, err) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd)
                os.close(fd)
                raise RunLockedError(
                    f"{self.path.parent} is in use by another normbench process ({owner}); "
                    "wait for it to finish, or stop it (Ctrl-C or kill <pid>) and run the same "
                    "command again to resume."
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_owner(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    return text or "pid unknown"
