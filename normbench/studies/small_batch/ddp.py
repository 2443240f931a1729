"""Real devices against simulated ones: runs of ``per_device.mode=ddp`` (N images on each
torchrun process) beside runs of the same settings on one process (``per_device.mode=real``
with ``per_device.devices`` = the process count, or ``ghost``), paired by N, norm and seed.

Both see the same global batches in the same order and normalize each device's N images
alone, so their parameters differ only by floating-point order; their running statistics
differ by construction (DDP keeps rank 0's; ghost BN averages every group's), and so may their
validation error, which uses them. A leaf: reads run directories only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from normbench.report.collect import Run
from normbench.report.output import md_table, write_tables
from normbench.studies.small_batch.claims import images_per_device, run_error


def _mode(run: Run) -> str:
    return (run.config.get("per_device") or {}).get("mode", "ghost")


def is_ddp_comparison(runs: list[Run]) -> bool:
    """Whether these runs hold ddp-mode runs beside runs of another mode."""
    modes = {_mode(r) for r in runs}
    return "ddp" in modes and len(modes) > 1


def comparison_table(runs: list[Run]) -> pd.DataFrame:
    """One row per complete run: N, mode, processes, batch, steps, errors, time."""
    rows = []
    for r in runs:
        if r.status != "complete":
            continue
        s = r.summary
        per = s.get("per_device") or {}
        error, used = run_error(r)
        rows.append(
            {
                "norm": r.norm,
                "N": images_per_device(r),
                "seed": r.seed,
                "mode": _mode(r),
                "processes": (s.get("distributed") or {}).get("world_size", 1),
                "devices": per.get("devices"),
                "batch": per.get("batch_size"),
                "steps": s.get("steps"),
                "final val error %": round(100 * s["final"]["val_error"], 2),
                "median last evals %": round(error, 2),
                "evals": used,
                "wall s": round(s.get("wall_time_s", float("nan")), 1),
                "run": r.path.name,
            }
        )
    return pd.DataFrame(rows).sort_values(
        ["norm", "N", "seed", "mode"], ascending=[True, False, True, True]
    )


def paired(table: pd.DataFrame) -> pd.DataFrame:
    """ddp minus the other mode, per (norm, N, seed) where both ran."""
    rows = []
    for (norm, n, seed), group in table.groupby(["norm", "N", "seed"], sort=False):
        ddp = group[group["mode"] == "ddp"]
        for _, other in group[group["mode"] != "ddp"].iterrows():
            if ddp.empty:
                continue
            d = ddp.iloc[0]
            rows.append(
                {
                    "norm": norm,
                    "N": n,
                    "seed": seed,
                    "against": other["mode"],
                    "same batch and steps": bool(
                        d["batch"] == other["batch"] and d["steps"] == other["steps"]
                    ),
                    "ddp − other, final %": round(
                        d["final val error %"] - other["final val error %"], 2
                    ),
                    "ddp − other, median last %": round(
                        d["median last evals %"] - other["median last evals %"], 2
                    ),
                }
            )
    return pd.DataFrame(rows)


def write_ddp_report(runs: list[Run], dirs: list[str], out_dir: Path) -> str:
    """The README of a ddp-against-simulated-devices sweep; CSVs beside it."""
    table = comparison_table(runs)
    pairs = paired(table) if not table.empty else pd.DataFrame()
    write_tables({"ddp_compare": table, "ddp_pairs": pairs}, out_dir)
    names = ", ".join(sorted({r.name for r in runs}))
    return "\n".join(
        [
            f"# Images per device: real processes (DDP) against simulated devices — {names}",
            "",
            __doc__.split("\n\n")[0].replace("\n", " "),
            "",
            *_how_made(runs),
            "Per run (error = the final validation error, and the median of the last evaluations "
            "as in the small-batch report): [ddp_compare.csv](ddp_compare.csv)",
            "",
            md_table(table) if not table.empty else "(no complete runs)\n",
            "Paired by norm, N and seed: [ddp_pairs.csv](ddp_pairs.csv)",
            "",
            md_table(pairs) if not pairs.empty else "(no pair of a ddp run and another mode)\n",
            "Why they can differ: the parameters follow the same arithmetic up to the order of "
            "floating-point sums (tests/test_ddp.py checks 20 steps to 1e-4); the validation "
            "error uses the running statistics, which under DDP are rank 0's alone (torch "
            "broadcasts rank 0's buffers before every forward), and in ghost/real mode the mean "
            "of every group's.",
            "",
            "Run directories: " + ", ".join(f"`{d}`" for d in dirs),
            "",
        ]
    )


def _how_made(runs: list[Run]) -> list[str]:
    """Hardware, dates and the command of every run (torchrun for the ddp ones)."""
    done = [r for r in runs if r.status == "complete"]
    if not done:
        return []
    env = done[0].summary.get("environment") or {}
    dates = sorted({str(r.summary.get("finished_at", ""))[:10] for r in done} - {""})
    lines = [
        f"Made on {env.get('device', '?')} ({env.get('device_name', '?')}, {env.get('cpu_count', '?')} "
        f"cores, torch {env.get('torch', '?')}, {env.get('threads', '?')} thread(s) per process), "
        f"{', '.join(dates)}. Commands (one per run):",
        "",
        "```bash",
    ]
    for r in done:
        world = (r.summary.get("distributed") or {}).get("world_size", 1)
        prefix = (
            f"torchrun --standalone --nproc_per_node={world} -m normbench train"
            if world > 1
            else "normbench train"
        )
        lines.append(" ".join([prefix, *r.overrides]))
    lines += ["```", ""]
    return lines
