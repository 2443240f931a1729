"""Run directories -> pandas. The report reads nothing but run directories."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from normbench.errors import NormbenchError


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


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() and path.stat().st_size else pd.DataFrame()


def load_run(path: Path) -> Run:
    """Read one run directory (missing files give empty tables)."""
    config = yaml.safe_load((path / ".hydra" / "config.yaml").read_text())
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
    summary_file = path / "summary.json"
    summary = (
        json.loads(summary_file.read_text()) if summary_file.exists() else {"status": "no summary"}
    )
    return Run(
        path,
        config,
        overrides or [],
        summary,
        _csv(path / "metrics.csv"),
        _csv(path / "activations.csv"),
    )


def collect(dirs: list[str | Path]) -> list[Run]:
    """All runs at or under ``dirs``."""
    return [load_run(p) for p in find_run_dirs(dirs)]


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: identity, status, final numbers and timing."""
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
                "val_error": s.get("final", {}).get("val_error"),
                "best_val_error": s.get("best_val_error"),
                "wall_time_s": s.get("wall_time_s"),
                **{f"ms_{k}": v for k, v in s.get("ms_per_step", {}).items()},
                **{f"share_{k}": v for k, v in s.get("time_share", {}).items()},
            }
        )
    return pd.DataFrame(rows)
