"""Run directories -> pandas. The report reads nothing but run directories.

A file that is there but cannot be read (truncated JSON, broken YAML, a CSV without its
columns) stops the report with one message naming the file and the fix: a report must not
quietly leave a run out, nor fail with a traceback.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from normbench.errors import NormbenchError

CHANCE_FACTOR = 1.2  # a run ended at chance level when its final accuracy is below 1.2 / classes
TEST_SPLIT_SIZE = {"mnist": 10000, "fashion_mnist": 10000}  # official test splits
METRICS_COLUMNS = ("step", "val_error")  # numeric columns every metrics.csv has
ACTIVATIONS_COLUMNS = ("step", "unit_p15", "unit_p50", "unit_p85")  # and a `layer` column

# Which norms use no other sample of the batch, for summary.json files written before
# 2026-11-29: those lack "norm_batch_dependent", which the trainer now records from the norm
# spec. This serves only such older summaries; it mirrors the `batch_dependent` flags in
# normbench/norms/*.py as they were then (the report imports nothing from normbench.norms).
# Variants named here never look at other samples; a variant in BATCH_FREE_UNLESS does not
# unless its option says so; any other name (batch, batch_renorm, ghost_batch, sync_batch,
# batch_detached, or one unknown here) counts as using batch statistics.
BATCH_FREE_NORMS = frozenset({"none", "group", "layer", "instance", "frn", "normprop", "ws_group"})
BATCH_FREE_UNLESS = {
    "weight": ("mean_only_bn", True),  # mean-only BN in the slot takes a batch mean
    "evonorm": ("version", "B0"),  # B0 divides by a batch standard deviation; S0 does not
}


@dataclass
class Run:
    """One run directory as data."""

    path: Path
    config: dict[str, Any]
    overrides: list[str]
    summary: dict[str, Any]
    metrics: pd.DataFrame = field(repr=False)
    activations: pd.DataFrame = field(repr=False)

    @property
    def name(self) -> str:
        return self.config.get("name", "default")

    @property
    def norm(self) -> str:
        return self.config["norm"]["name"]

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    @property
    def final_val_error(self) -> float | None:
        """The last evaluation's validation error recorded in summary.json."""
        final = self.summary.get("final")
        value = final.get("val_error") if isinstance(final, dict) else None
        return float(value) if isinstance(value, int | float) else None

    @property
    def val_images(self) -> int | None:
        """Images of the run's validation split, where the config makes it certain: the
        held-out split's size, or the 10,000-image test split of MNIST and Fashion-MNIST."""
        data = self.config.get("dataset") or {}
        if data.get("val_split") == "holdout" and isinstance(data.get("holdout_size"), int):
            return int(data["holdout_size"])
        if data.get("val_split") == "test" and data.get("name") in TEST_SPLIT_SIZE:
            return TEST_SPLIT_SIZE[data["name"]]
        return None

    @property
    def num_classes(self) -> int | None:
        """Classes of the run's dataset: from summary.json, else from the dataset config."""
        value = self.summary.get("num_classes")
        if value is None:
            value = (self.config.get("dataset") or {}).get("num_classes")
        return int(value) if isinstance(value, int | float) and value > 0 else None

    @property
    def at_chance(self) -> bool | None:
        """Whether the run ended at chance level (None: not known).

        summary.json's ``at_chance`` when recorded; for older summaries of complete runs,
        final accuracy < 1.2 / classes when both are known."""
        if "at_chance" in self.summary:
            value = self.summary["at_chance"]
            return value if isinstance(value, bool) else None
        err, classes = self.final_val_error, self.num_classes
        if self.status != "complete" or err is None or classes is None:
            return None
        return 1.0 - err < CHANCE_FACTOR / classes

    @property
    def override_values(self) -> dict[str, str]:
        """The run's overrides as {key: value} (``seed=1`` → ``{"seed": "1"}``)."""
        return dict(o.partition("=")[::2] for o in self.overrides)

    @property
    def batch_dependent(self) -> bool:
        """Whether the run's norm uses the other samples of its batch in training.

        summary.json's ``norm_batch_dependent`` when recorded; for older summaries, looked up
        from the norm's config (BATCH_FREE_NORMS); an unknown variant counts as dependent."""
        value = self.summary.get("norm_batch_dependent")
        if isinstance(value, bool):
            return value
        norm = self.config["norm"]
        if norm["name"] in BATCH_FREE_UNLESS:
            key, dependent_value = BATCH_FREE_UNLESS[norm["name"]]
            return norm.get(key) == dependent_value
        return norm["name"] not in BATCH_FREE_NORMS

    @property
    def warnings(self) -> list[str]:
        """The warnings the trainer recorded in summary.json (none in older runs)."""
        value = self.summary.get("warnings") or []
        return [str(w) for w in value] if isinstance(value, list) else [str(value)]


def find_run_dirs(dirs: list[str | Path]) -> list[Path]:
    """Every run directory (one holding ``.hydra/config.yaml``) at or under ``dirs``, sorted."""
    found: set[Path] = set()
    for d in map(Path, dirs):
        if not d.exists():
            raise NormbenchError(
                f"{d} does not exist; pass run or sweep directories (e.g. runs/bn_fig1)."
            )
        found.update(p.parent.parent for p in d.rglob(".hydra/config.yaml"))
    if not found:
        raise NormbenchError(
            f"no run directories under {', '.join(map(str, dirs))} (a run directory holds "
            ".hydra/config.yaml); train first, e.g. normbench train -m experiment=bn_fig1"
        )
    return sorted(found)


class _Unreadable(Exception):
    """A run file that is there but cannot be used; the message says what is wrong with it."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path = path


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _Unreadable(path, "is not text (binary or corrupt)") from None
    except OSError as err:
        raise _Unreadable(path, f"cannot be read ({err.strerror})") from None


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(_text(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f": line {mark.line + 1} column {mark.column + 1}" if mark else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise _Unreadable(path, f"is not valid YAML ({what}{where})") from None


def _config(path: Path) -> dict[str, Any]:
    config = _yaml(path)
    if not isinstance(config, dict):
        what = "nothing" if config is None else f"a {type(config).__name__}"
        raise _Unreadable(path, f"holds {what}, not a run's config (a YAML mapping)")
    norm = config.get("norm")
    if not isinstance(norm, dict) or not isinstance(norm.get("name"), str):
        raise _Unreadable(path, "has no norm.name (the normalization the run trained with)")
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _Unreadable(path, f"has seed {seed!r}, not an integer")
    return config


def _overrides(path: Path) -> list[str]:
    if not path.exists():
        return []
    overrides = _yaml(path) or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise _Unreadable(path, "is not a list of overrides (key=value strings)")
    return overrides


def _summary(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"status": "no summary"}
    try:
        summary = json.loads(_text(path))
    except json.JSONDecodeError as err:
        raise _Unreadable(
            path,
            f"is not valid JSON (truncated? {err.msg}: line {err.lineno} column {err.colno})",
        ) from None
    if not isinstance(summary, dict):
        raise _Unreadable(path, f"holds a JSON {type(summary).__name__}, not an object")
    return summary


def _csv(path: Path, numeric: tuple[str, ...], text: tuple[str, ...] = ()) -> pd.DataFrame:
    """A run's CSV (empty when missing or empty); it must have the ``numeric`` and ``text``
    columns, the former holding numbers."""
    if not path.exists() or not path.stat().st_size:
        return pd.DataFrame()
    try:
        df = pd.read_csv(path)
    except UnicodeDecodeError:
        raise _Unreadable(path, "is not text (binary or corrupt)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        first = (str(err).strip().splitlines() or ["no columns"])[-1]
        raise _Unreadable(path, f"is not valid CSV ({first})") from None
    except OSError as err:
        raise _Unreadable(path, f"cannot be read ({err.strerror})") from None
    for col in (*numeric, *text):
        if col not in df.columns:
            header = ",".join(map(str, df.columns))[:60]
            raise _Unreadable(path, f"has no {col} column (its header reads {header!r})")
    for col in numeric:
        if len(df) and not pd.api.types.is_numeric_dtype(df[col]):
            raise _Unreadable(path, f"has a {col} column that does not hold numbers")
    return df


def _command(path: Path) -> str:
    """The command that makes the run at ``path`` again (from its overrides, when readable)."""
    try:
        overrides = _overrides(path / ".hydra" / "overrides.yaml")
    except _Unreadable:
        overrides = []
    return " ".join(["normbench train", *map(shlex.quote, overrides)]) if overrides else ""


def _fix(path: Path, root: Path) -> str:
    """How to get past an unreadable run directory ``path`` found under ``root``."""
    command = _command(path)
    again = f"rerun `{command}`" if command else "rerun the command that made it"
    if path.resolve() == root.resolve():
        return f"leave {path} out of the report's directories, or move it away and {again}"
    return f"move {path} out of {root} to report without it, or move it away and {again}"


def load_run(path: Path, root: Path | None = None) -> Run:
    """Read one run directory found under ``root`` (missing files give empty tables).

    Raises:
        NormbenchError: a file is there but cannot be read; the message names it and the fix.
    """
    try:
        return Run(
            path,
            _config(path / ".hydra" / "config.yaml"),
            _overrides(path / ".hydra" / "overrides.yaml"),
            _summary(path / "summary.json"),
            _csv(path / "metrics.csv", METRICS_COLUMNS),
            _csv(path / "activations.csv", ACTIVATIONS_COLUMNS, ("layer",)),
        )
    except _Unreadable as err:
        raise NormbenchError(f"{err}; {_fix(path, root or path.parent)}") from None


def collect(dirs: list[str | Path]) -> list[Run]:
    """All runs at or under ``dirs``; one error naming the first unreadable file, if any."""
    runs, bad = [], []
    for path in find_run_dirs(dirs):
        root = next(Path(d) for d in dirs if path.resolve().is_relative_to(Path(d).resolve()))
        try:
            runs.append(load_run(path, root))
        except NormbenchError as err:
            bad.append((path, str(err)))
    if bad:
        more = f" [{len(bad) - 1} more unreadable run directories]" if len(bad) > 1 else ""
        raise NormbenchError(bad[0][1] + more)
    return runs


def varying_keys(runs: list[Run]) -> set[str]:
    """Override keys whose value is not the same in every run."""
    keys = {k for r in runs for k in r.override_values}
    return {k for k in keys if len({r.override_values.get(k) for r in runs}) > 1}


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: identity, status, final numbers, chance-level flag and timing."""
    rows = []
    for r in runs:
        s = r.summary
        rows.append(
            {
                "run": str(r.path),
                "name": r.name,
                "norm": r.norm,
                "seed": r.seed,
                "status": r.status,
                "step": s.get("step"),
                "val_error": r.final_val_error,
                "best_val_error": s.get("best_val_error"),
                "num_classes": r.num_classes,
                "at_chance": r.at_chance,
                "warnings": "; ".join(r.warnings),
                "wall_time_s": s.get("wall_time_s"),
                **{f"ms_{k}": v for k, v in (s.get("ms_per_step") or {}).items()},
                **{f"share_{k}": v for k, v in (s.get("time_share") or {}).items()},
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty:
        table["num_classes"] = table["num_classes"].astype("Int64")
    return table
