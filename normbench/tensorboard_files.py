"""TensorBoard event files that agree with the CSVs after a resume.

A run's event files lie in the run directory itself, so that TensorBoard names the run after
it (``bn_fig1/norm=batch,seed=0`` under ``--logdir runs``). Runs of earlier versions kept them
in ``<run>/tb/``: :func:`adopt_legacy_events` moves them up when such a run resumes.

When a run resumes from its checkpoint at step k, a previous attempt may have logged events
after k (lost work that will be redone), and a kill may have cut its last record short.
:func:`compact_event_files` rewrites all event files of the run into one file holding each
(tag, step) once, for steps <= k only, without the hparams summary (written again when the run
completes). TensorBoard's own ``purge_step`` would hide events at k as well, and only from
readers that honour it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import IO

from normbench.files import write_atomic

#: Tags written once when a run completes (its hyper-parameters and final metric).
HPARAMS_TAG_PREFIXES = ("_hparams_/", "hparam/")

#: Where runs of earlier versions kept their event files, relative to the run directory.
LEGACY_DIR = "tb"


def event_files(tb_dir: Path) -> list[Path]:
    """TensorBoard event files in ``tb_dir``, in the order TensorBoard reads them (by name)."""
    return sorted(
        p for p in tb_dir.glob("*tfevents*") if p.is_file() and not p.name.endswith(".tmp")
    )


def remove_event_files(run_dir: Path) -> None:
    """Remove every event file of a run (a fresh start), the legacy ``tb/`` folder included."""
    for path in event_files(run_dir):
        path.unlink(missing_ok=True)
    for stale in run_dir.glob("*tfevents*.tmp"):
        stale.unlink(missing_ok=True)
    shutil.rmtree(run_dir / LEGACY_DIR, ignore_errors=True)


def adopt_legacy_events(run_dir: Path) -> None:
    """Move the event files of a run of an earlier version from ``<run>/tb/`` into the run
    directory, where the run goes on writing them."""
    legacy = run_dir / LEGACY_DIR
    if not legacy.is_dir():
        return
    for path in event_files(legacy):
        path.replace(run_dir / path.name)
    shutil.rmtree(legacy, ignore_errors=True)


def compact_event_files(tb_dir: Path, last_step: int) -> int:
    """Rewrite ``tb_dir``'s event files as one, keeping each (tag, step <= ``last_step``) once.

    The latest record of a (tag, step) wins; hparams tags are dropped. Returns the number of
    summary values kept.
    """
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    for stale in tb_dir.glob("*tfevents*.tmp"):  # a compaction cut short by a kill
        stale.unlink(missing_ok=True)
    files = event_files(tb_dir)
    if not files:
        return 0
    header = None
    kept: dict[tuple[str, int], event_pb2.Event] = {}
    for path in files:
        for raw in RawEventFileLoader(str(path)).Load():
            event = event_pb2.Event.FromString(raw)
            if event.HasField("file_version"):
                header = header or event
                continue
            if not event.HasField("summary") or event.step > last_step:
                continue
            for value in event.summary.value:
                if value.tag.startswith(HPARAMS_TAG_PREFIXES):
                    continue
                single = event_pb2.Event(wall_time=event.wall_time, step=event.step)
                single.summary.value.add().CopyFrom(value)
                kept.pop((value.tag, event.step), None)  # re-insert: keeps the logging order
                kept[(value.tag, event.step)] = single
    # Sorts before any file a writer opens from now on (their names start with the time).
    name = f"events.out.tfevents.{int(time.time()) - 1:010d}.normbench-compacted"

    def write(f: IO[bytes]) -> None:
        writer = RecordWriter(f)
        if header is not None:
            writer.write(header.SerializeToString())
        for event in sorted(kept.values(), key=lambda e: e.step):
            writer.write(event.SerializeToString())

    write_atomic(tb_dir / name, write, binary=True)
    for path in files:
        if path.name != name:
            path.unlink(missing_ok=True)
    return len(kept)
