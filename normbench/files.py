"""Writing run files safely: atomic replacement, normal permissions, clear errors on a full disk.

Every file a run leaves behind is written to a temporary file beside it and renamed over the
old one, so a reader (or a resumed run) sees either the old or the new content, never half of
each. A failed write removes its temporary file and raises one message naming the fix.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from normbench.errors import NormbenchError


def make_readable(path: Path) -> None:
    """Give ``path`` the permissions of a normally created file (``0o666`` minus the umask);
    :func:`tempfile.mkstemp` creates files readable by their owner only."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def disk_error(path: Path, err: BaseException) -> NormbenchError:
    """One message for a write that failed: a full disk, a read-only or foreign directory."""
    code = getattr(err, "errno", None)
    if (
        code in (errno.ENOSPC, errno.EDQUOT)
        or "No space left" in str(err)
        or "file write failed" in str(err)
    ):
        return NormbenchError(
            f"cannot write {path}: the disk is full. Free space on {path.parent} (or point the "
            "runs elsewhere with hydra.run.dir=<dir>), then run the same command again to resume."
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return NormbenchError(
            f"cannot write {path}: {path.parent} is not writable ({os.strerror(code)}). Make it "
            "writable (chmod u+w) or choose another run directory with hydra.run.dir=<dir>."
        )
    return NormbenchError(f"cannot write {path}: {err}")


#: errno values that mean "this location cannot take the write" (not a bug of ours).
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


def find_disk_error(err: BaseException, fallback: Path) -> NormbenchError | None:
    """The one-line message for an exception caused, anywhere in its chain, by a full disk or an
    unwritable location (a TensorBoard flush, torch's zip writer, …); None for other errors."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_ERRNOS:
            where = Path(current.filename) if current.filename else fallback
            return disk_error(where, current)
        current = current.__cause__ or current.__context__
    return None


def write_atomic(path: Path, write: Callable[[IO[Any]], None], binary: bool = False) -> None:
    """Write a file through ``write(file)`` into a temporary file beside ``path``, flush it to
    disk, then rename it to ``path``; on any failure the temporary file is removed.

    Raises:
        NormbenchError: the directory is not writable or the disk is full.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError as err:
        raise disk_error(path, err) from None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        make_readable(Path(tmp))
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        # a library may report a failed write (ENOSPC …) as an error of its own, raised while
        # handling the OSError (torch's zip writer does)
        known = find_disk_error(err, path)
        if known is not None:
            raise known from None
        if isinstance(err, OSError) or "file write failed" in str(err):
            raise disk_error(path, err) from None
        raise
