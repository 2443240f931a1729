#!/usr/bin/env python
"""Where does BN's small-batch penalty come from? Re-evaluate trained runs three ways.

For each finished run directory, the validation error of the final weights with the BN layers
normalizing by:

- ``running``: the running averages made during training (what the run reported);
- ``precise``: population statistics recomputed over ``--images`` training images with the
  weights frozen (Precise BN, Wu & Johnson 2021), each layer normalizing as in training
  (ghost groups of N included);
- ``batch``: each evaluated batch's own statistics, in the training batch size and groups of N:
  test-time conditions equal to training ones.

If ``precise`` closes most of the gap between small and large N, the penalty is in the test-time
statistics; if it does not, the weights learned under noisy statistics are worse.

A thin wrapper: it runs ``normbench eval -m RUN... mode=running,precise,batch
samples=<--images> device=cpu`` (each evaluation a row of ``RUN/evals.csv``; ``batch`` at the
run's training batch size by default) and rebuilds its table from those rows.

Usage:
    scripts/bn_stats_check.py RUN_DIR... [--images 10000] [--out results/x/bn_stats.csv]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

from normbench.engine.environment import cpu_name, git_revision
from normbench.evaluation.modes import whole_batches
from normbench.evaluation.records import read_evals
from normbench.evaluation.run import check_run_dir, read_run_config
from normbench.errors import NormbenchError
from normbench.cli.eval import main as eval_main
from normbench.recorder import read_summary

MODES = ("running", "precise", "batch")


def _value(rows: list[dict[str, str]], **match: object) -> tuple[float, str]:
    """The error of the row matching ``match`` (NaN when undefined or missing) and its time."""
    for row in rows:
        if all(row.get(k) == str(v) for k, v in match.items()):
            return (float(row["error"]) if row["error"] else float("nan")), row["evaluated_at"]
    return float("nan"), ""


def table_row(run_dir: Path, images: int) -> dict[str, object]:
    """One run's line of the table, read back from its evals.csv."""
    cfg = read_run_config(run_dir)
    summary = read_summary(run_dir / "summary.json")
    per_device = summary.get("per_device", {})
    batch = int(per_device.get("batch_size") or cfg.dataset.batch_size)
    rows = [
        r
        for r in read_evals(run_dir)
        if r["data"] == cfg.dataset.name and r["corruption"] == "none" and r["status"] == "ok"
    ]
    precise_images = whole_batches(images, batch)
    running, t1 = _value(rows, mode="running")
    precise, t2 = _value(rows, mode="precise", samples=precise_images)
    batch_error, t3 = _value(rows, mode="batch", batch_size=batch)
    first = next((r for r in rows if r["mode"] == "running"), {})
    return {
        "run": str(run_dir),
        "norm": cfg.norm.name,
        "images_per_device": per_device.get("images"),
        "seed": cfg.seed,
        "step": int(first["step"]) if first else None,
        "bn_layers": int(first["bn_layers"]) if first else None,
        "running": running,
        "batch": batch_error,
        "precise": precise,
        "precise_images": precise_images,
        "evaluated": max(t1, t2, t3),
        "hardware": f"{cpu_name()} (cpu, 1 thread, torch {torch.__version__})",
        "git": git_revision(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--images", type=int, default=10000, help="training images for precise")
    parser.add_argument("--out", type=Path, help="write the table as CSV here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        for run in args.runs:
            check_run_dir(run)
        code = eval_main(
            [
                "-m",
                *map(str, args.runs),
                f"mode={','.join(MODES)}",
                f"samples={args.images}",
                "device=cpu",
            ]
        )
        table = pd.DataFrame([table_row(run, args.images) for run in args.runs])
    except NormbenchError as err:
        raise SystemExit(f"bn_stats_check: {err}") from None
    print(table.drop(columns=["run", "evaluated", "hardware", "git"]).to_string(index=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
    return code


if __name__ == "__main__":
    sys.exit(main())
