"""``<run>/evals.csv``: one row per evaluation of a run, replaced when the evaluation is redone.

An evaluation is identified by its :data:`KEY` columns (mode, knobs, data, corruption,
severity) and the checkpoint ``step`` it evaluated (the run's last, or a model kept by
``trainer.keep_every``): evaluating the same again replaces its row in place; anything else
adds a row.
The file is rewritten whole, atomically (:func:`normbench.files.write_atomic`: a temporary file
beside it, flushed, then renamed over it), by a process holding the run's lock, so a kill at
any moment leaves either the old or the new file. Temporary files left by a killed writer are
removed by the next write. Columns a newer normbench added are kept.

``<run>/kl.csv`` (``normbench eval ... kl=true``, :mod:`normbench.evaluation.kl`) is kept the
same way by :func:`write_rows`: one row per (evaluation, layer), and redoing an evaluation
replaces all of its rows.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from normbench.files import write_atomic

FILE = "evals.csv"
KNOB_COLUMNS = ("samples", "batch_size", "prior", "steps", "lr")
KEY = ("mode", *KNOB_COLUMNS, "data", "corruption", "severity")
COLUMNS = (
    *KEY,
    "error",
    "nll",
    "ece",
    "status",
    "applied",
    "note",
    "step",
    "bn_layers",
    "num_samples",
    "device",
    "time_s",
    "evaluated_at",
    "requests",
    "git",  # the revision of normbench that made the row (with -dirty for a modified tree)
)
#: Separates the requests (``EvalJob.describe()``) a row answers, in its ``requests`` column.
REQUEST_SEP = " | "


def cell(value: Any) -> str:
    """A value as written in the CSV: empty for None, ``true``/``false``, floats exactly."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def read_rows(run_dir: Path, file: str = FILE) -> list[dict[str, str]]:
    """The rows of ``run_dir/<file>`` (empty when there is none yet)."""
    path = Path(run_dir) / file
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [dict(row) for row in csv.DictReader(f)]


def read_evals(run_dir: Path) -> list[dict[str, str]]:
    """The rows of ``run_dir/evals.csv`` (empty when there is none yet)."""
    return read_rows(run_dir, FILE)


def _key(row: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(row.get(k) or "" for k in (*KEY, "step"))


def write_rows(
    run_dir: Path, file: str, columns: Sequence[str], new_rows: Sequence[Mapping[str, Any]]
) -> None:
    """Add ``new_rows`` (all of one evaluation) to ``run_dir/<file>``, replacing the rows of the
    same evaluation (same :data:`KEY` columns and step) at the place of the first of them.

    The caller holds the run's lock.

    Raises:
        NormbenchError: the directory is not writable or the disk is full.
    """
    run_dir = Path(run_dir)
    for stale in run_dir.glob(f"{file}*.tmp"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    new = [{k: cell(v) for k, v in row.items()} for row in new_rows]
    keys = {_key(row) for row in new}
    rows = read_rows(run_dir, file)
    same = [i for i, r in enumerate(rows) if _key(r) in keys]
    at = same[0] if same else len(rows)
    rows = (
        [r for i, r in enumerate(rows[:at]) if i not in same]
        + new
        + [r for r in rows[at:] if _key(r) not in keys]
    )
    extra = sorted({k for r in rows for k in r if k and k not in columns})
    fields = [*columns, *extra]

    def write(f: IO[str]) -> None:
        writer = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    write_atomic(run_dir / file, write)


def answered_requests(rows: list[dict[str, str]], step: int | None = None) -> set[str]:
    """The requests (``EvalJob.describe()``) that ``ok`` or ``undefined`` rows answer, for
    checkpoint ``step`` when given: read evals.csv once, then look requests up here."""
    found: set[str] = set()
    for row in rows:
        done = row.get("status") in ("ok", "undefined")
        if done and (step is None or row.get("step") == str(step)):
            found.update((row.get("requests") or "").split(REQUEST_SEP))
    return found


class Answered:
    """Whether evals.csv's ``rows`` answer a job: at the job's kept ``step``, or else at the
    run's ``last`` checkpoint step (the rows are read once; each step's set is made once)."""

    def __init__(self, rows: list[dict[str, str]], last: int | None) -> None:
        self.rows, self.last = rows, last
        self._by_step: dict[int | None, set[str]] = {}

    def __contains__(self, job: Any) -> bool:
        step = job.step if job.step is not None else self.last
        if step not in self._by_step:
            self._by_step[step] = answered_requests(self.rows, step)
        return job.describe() in self._by_step[step]


def answered(run_dir: Path, request: str, step: int | None = None) -> bool:
    """Whether an ``ok`` or ``undefined`` row of ``run_dir/evals.csv`` answers ``request`` (an
    ``EvalJob.describe()``), for checkpoint ``step`` when given (``done=skip``)."""
    return request in answered_requests(read_evals(run_dir), step)


def write_eval_row(run_dir: Path, row: Mapping[str, Any]) -> None:
    """Add ``row`` to ``run_dir/evals.csv``, replacing the row of the same evaluation (whose
    ``requests`` it keeps beside its own: one evaluation may answer several requests, e.g. with
    and without ``kl``, at one checkpoint step).

    The caller holds the run's lock.

    Raises:
        NormbenchError: the directory is not writable or the disk is full.
    """
    row = dict(row)
    for old in read_evals(run_dir):
        if _key(old) == _key({k: cell(v) for k, v in row.items()}):
            requests = [r for r in (old.get("requests") or "").split(REQUEST_SEP) if r]
            mine = str(row.get("requests") or "")
            row["requests"] = REQUEST_SEP.join(dict.fromkeys([*requests, mine]))
    write_rows(run_dir, FILE, COLUMNS, [row])
