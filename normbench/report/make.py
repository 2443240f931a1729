"""``normbench report``: runs -> CSV + PNG + README.md beside the paper's claims.

Every number in the README is computed here from the run directories; the README also
records the commands, the hardware, the scale of the runs and the date.
"""

from __future__ import annotations

import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from normbench.report.collect import Run, collect, runs_table
from normbench.report.figures import PERCENTILES, bn_fig1, val_error_curves
from normbench.report.papers import BN_FIG1
from normbench.report.small_batch import is_small_batch_study
from normbench.report.small_batch_report import write_small_batch_report

ACCURACY_THRESHOLDS = (0.70, 0.75, 0.80, 0.82, 0.84, 0.85, 0.86, 0.87, 0.88, 0.90, 0.95, 0.97, 0.98)
NORM_LABEL = {"none": "no BN", "batch": "BN"}


def make_report(dirs: list[str], out: str | None) -> Path:
    """Collect the runs under ``dirs`` and write the study's report into ``out``."""
    runs = collect(dirs)
    out_dir = Path(out) if out else Path(dirs[0]) / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    done = [r for r in runs if r.status == "complete"]
    table = runs_table(runs)
    table.to_csv(out_dir / "runs.csv", index=False)
    names = {r.name for r in done}
    if is_small_batch_study(runs):
        text = write_small_batch_report(runs, dirs, out_dir)
        (out_dir / "README.md").write_text(text)
        print(f"report: {len(done)}/{len(runs)} complete runs -> {out_dir}/README.md")
        return out_dir
    if names == {"bn_fig1"} and varying_keys(done) <= {"norm", "seed"}:
        text = _bn_fig1_report(done, out_dir)
    else:
        tables = val_error_curves(done, out_dir / "val_error.png")
        tables["final"] = final_by_configuration(done)
        _write_tables(tables, out_dir)
        varying = ", ".join(sorted(varying_keys(done) - {"seed"})) or "nothing but the seed"
        text = (
            f"# Report: {', '.join(sorted(names)) or 'no complete runs'} — runs differ in {varying}\n\n"
            "![](val_error.png)\n\n"
            "Final validation error per configuration (mean ± std over seeds):\n\n"
            + _md(tables["final"])
            + "\n"
        )
    text += _runs_section(runs, dirs, out_dir)
    (out_dir / "README.md").write_text(text)
    print(f"report: {len(done)}/{len(runs)} complete runs -> {out_dir}/README.md")
    return out_dir


def _write_tables(tables: dict[str, pd.DataFrame], out_dir: Path) -> None:
    for name, df in tables.items():
        df.to_csv(out_dir / f"{name}.csv", index=False, float_format="%.6g")


def _md(df: pd.DataFrame) -> str:
    """A pandas table as GitHub markdown (no optional dependency)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _overrides(run: Run) -> dict[str, str]:
    return dict(o.partition("=")[::2] for o in run.overrides)


def varying_keys(runs: list[Run]) -> set[str]:
    """Override keys whose value is not the same in every run."""
    keys = {k for r in runs for k in _overrides(r)}
    return {k for k in keys if len({_overrides(r).get(k) for r in runs}) > 1}


def final_by_configuration(runs: list[Run]) -> pd.DataFrame:
    """Final and best validation error per configuration (runs differing only in seed pooled)."""
    keys = sorted(varying_keys(runs) - {"seed"})
    rows = []
    for r in runs:
        o = _overrides(r)
        rows.append(
            {
                **{k: o.get(k, "") for k in keys},
                "val_error": r.summary["final"]["val_error"],
                "best": r.summary.get("best_val_error"),
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    g = df.groupby(keys, sort=True) if keys else df.groupby(lambda _: "all")
    out = g.agg(
        seeds=("val_error", "size"),
        final_mean=("val_error", "mean"),
        final_std=("val_error", "std"),
        best_mean=("best", "mean"),
    ).reset_index()
    return out.round(4)


def steps_to_reach(runs: list[Run], thresholds: tuple[float, ...]) -> pd.DataFrame:
    """First evaluated step at which each run's test accuracy reaches each threshold; mean over
    seeds per norm (empty when a seed never reaches it)."""
    rows = []
    for thr in thresholds:
        row: dict[str, object] = {"test accuracy ≥": f"{thr:.2f}"}
        for norm in ("none", "batch"):
            steps = []
            for r in (r for r in runs if r.norm == norm):
                hit = r.metrics[1.0 - r.metrics["val_error"] >= thr]["step"]
                steps.append(int(hit.iloc[0]) if len(hit) else None)
            ok = steps and all(s is not None for s in steps)
            row[f"steps, {NORM_LABEL[norm]}"] = (
                f"{sum(steps) / len(steps):,.0f}" if ok else "not reached"
            )
        rows.append(row)
    df = pd.DataFrame(rows)
    reached_any = (df.iloc[:, 1:] != "not reached").any(axis=1)
    return df[reached_any]


def accuracy_at(acc: pd.DataFrame, steps: tuple[int, ...]) -> pd.DataFrame:
    """Test accuracy (mean ± std over seeds) per norm at the given steps."""
    rows = []
    for step in steps:
        row: dict[str, object] = {"step": f"{step:,}"}
        for norm in ("none", "batch"):
            a = acc[(acc["norm"] == norm) & (acc["step"] == step)]
            row[NORM_LABEL[norm]] = (
                f"{a['mean'].iloc[0]:.4f} ± {a['std'].iloc[0]:.4f}" if len(a) else "-"
            )
        rows.append(row)
    return pd.DataFrame(rows)


def higher_throughout(acc: pd.DataFrame) -> tuple[int, int, str]:
    """(evaluations where BN's mean accuracy beats no BN's, evaluations, same in the last half)."""
    wide = acc.pivot(index="step", columns="norm", values="mean").dropna()
    wide = wide[wide.index > 0]
    if not {"none", "batch"} <= set(wide.columns) or wide.empty:
        return 0, 0, "0/0"
    ahead = wide["batch"] > wide["none"]
    late = ahead[wide.index > wide.index.max() / 2]
    return int(ahead.sum()), len(ahead), f"{int(late.sum())}/{len(late)}"


def drift(pct: pd.DataFrame) -> pd.DataFrame:
    """How far the typical unit's percentiles move over training, per norm."""
    rows = []
    for norm in ("none", "batch"):
        p = pct[pct["norm"] == norm].sort_values("step")
        if p.empty:
            continue
        first, last = p.iloc[0], p.iloc[-1]
        max_move = max((p[c] - first[c]).abs().max() for c in PERCENTILES)
        after = p[p["step"] >= p["step"].max() * 0.1]  # the paper's figure: drift after the start
        late_move = max((after[c] - after[c].iloc[0]).abs().max() for c in PERCENTILES)
        rows.append(
            {
                "": NORM_LABEL[norm],
                "p15 / p50 / p85 at step 0": " / ".join(f"{first[c]:+.2f}" for c in PERCENTILES),
                "at the last step": " / ".join(f"{last[c]:+.2f}" for c in PERCENTILES),
                "largest move of a percentile from step 0": f"{max_move:.2f}",
                "from 10% of training on": f"{late_move:.2f}",
                "spread p85−p15: start → end": f"{first['unit_p85'] - first['unit_p15']:.2f} → "
                f"{last['unit_p85'] - last['unit_p15']:.2f}",
            }
        )
    return pd.DataFrame(rows)


def _bn_fig1_report(runs: list[Run], out_dir: Path) -> str:
    tables = bn_fig1(runs, out_dir / "fig1.png")
    _write_tables(tables, out_dir)
    acc, pct = tables["fig1_accuracy"], tables["fig1_percentiles"]
    last = int(acc["step"].max())
    probe_steps = tuple(s for s in (500, 1000, 2000, 5000, 10000, 20000, last) if s <= last)
    reach = steps_to_reach(runs, ACCURACY_THRESHOLDS)
    moves = drift(pct)
    both = reach[(reach.iloc[:, 1:] != "not reached").all(axis=1)]
    faster = [
        float(b.replace(",", "")) <= float(n.replace(",", ""))
        for n, b in zip(both.iloc[:, 1], both.iloc[:, 2], strict=True)
    ]
    stable = None
    if len(moves) == 2:
        stable = float(moves.iloc[1]["largest move of a percentile from step 0"]) < float(
            moves.iloc[0]["largest move of a percentile from step 0"]
        )
    cfg = runs[0].config
    seeds = sorted({r.seed for r in runs})
    verdict_speed = (
        f"{'holds' if all(faster) else 'does not hold'} for {sum(faster)} of {len(faster)} "
        "accuracy levels both reach"
        if faster
        else "no accuracy level reached by both"
    )
    verdict_drift = {True: "holds", False: "does not hold", None: "needs both norms"}[stable]
    if len(moves) == 2:
        late = [float(moves.iloc[i]["from 10% of training on"]) for i in (0, 1)]
        if stable and late[1] > late[0]:
            verdict_drift = (
                f"holds from step 0; but from 10% of training on BN's percentiles move more "
                f"({late[1]:.2f} vs {late[0]:.2f}): the learned γ, β widen the spread"
            )
    ahead = higher_throughout(acc)
    lines = [
        "# BN paper Figure 1: sigmoid MLP with and without batch normalization\n",
        f"Paper: {BN_FIG1['paper']}. Reduced reproduction made by normbench (see the commands below).\n",
        "![Figure 1](fig1.png)\n",
        "## The paper's claims beside ours\n",
        "| paper (claim) | ours | verdict |",
        "|---|---|---|",
        f"| {BN_FIG1['claims'][0]} | steps to reach each accuracy: table below | fewer steps: {verdict_speed} |",
        f"| (same) higher test accuracy throughout | BN's mean accuracy is above no BN's at {ahead[0]} of "
        f"{ahead[1]} evaluations ({ahead[2]} of them in the last half of training) | "
        f"{'holds' if ahead[0] == ahead[1] else 'does not hold'} |",
        f"| {BN_FIG1['claims'][1]} | largest move of the typical unit's 15/50/85th percentile: "
        + " vs ".join(
            f"{row['']} {row['largest move of a percentile from step 0']}"
            for _, row in moves.iterrows()
        )
        + f" | {verdict_drift} |\n",
        "### Steps to reach a test accuracy (first evaluation at or above it; mean over seeds)\n",
        _md(reach),
        "### Test accuracy (mean ± std over seeds)\n",
        _md(accuracy_at(acc, probe_steps)),
        f"### Input of a typical sigmoid in the last hidden layer ({pct['layer'].iloc[0]})\n",
        "Per probe step, each unit's 15/50/85th percentiles over the probe batch, then the median "
        f"over the layer's units; mean over seeds. Probe batch: the first {cfg['probes']['batch_size']} "
        f"validation images, normalization statistics mode `{cfg['probes']['mode']}`.\n",
        _md(moves),
        "## Scale of our runs and how they differ from the paper\n",
        "| | paper | ours |",
        "|---|---|---|",
        f"| data | {BN_FIG1['setup']['dataset']} | {cfg['dataset']['name']}, grey levels scaled to [0, 1], "
        f"validation = {cfg['dataset']['val_split']} split |",
        f"| network | {BN_FIG1['setup']['network']} | {cfg['model']['hidden']} {cfg['model']['activation']}, "
        f"weights ~ N(0, {cfg['model']['init_std']}²) |",
        f"| training | {BN_FIG1['setup']['training']} | SGD lr {cfg['optim']['lr']} (momentum "
        f"{cfg['optim']['momentum']}, schedule {cfg['optim']['schedule']}), {cfg['trainer']['steps']:,} steps "
        f"of {cfg['dataset']['batch_size']} |",
        f"| BN | {BN_FIG1['setup']['norm']} | same; momentum {cfg['norm'].get('momentum', '-')}, eps "
        f"{cfg['norm'].get('eps', '-')} |"
        if any(r.norm == "batch" for r in runs)
        else "",
        f"| seeds | 1 curve | {len(seeds)} seeds ({', '.join(map(str, seeds))}) per norm |",
        f"| probe | {BN_FIG1['setup']['probe']} | median over units of per-unit percentiles, every "
        f"{cfg['probes']['every']} steps |\n",
    ]
    return "\n".join(x for x in lines if x != "") + "\n"


def training_command(runs: list[Run]) -> str:
    """The ``normbench train`` command that makes these runs: one run, or one multirun whose
    swept keys list every value the runs took."""
    values: dict[str, list[str]] = {}
    for r in runs:
        for override in r.overrides:
            key, _, value = override.partition("=")
            if value not in values.setdefault(key, []):
                values[key].append(value)
    multi = len(runs) > 1
    args = [shlex.quote(f"{k}={','.join(v)}") for k, v in values.items()]
    return "normbench train " + ("-m " if multi else "") + " ".join(args)


def _runs_section(runs: list[Run], dirs: list[str], out_dir: Path) -> str:
    table = runs_table(runs)
    env = [r.summary.get("environment", {}) for r in runs if r.summary.get("environment")]
    hardware = sorted(
        {
            f"{e.get('device_name')} ({e.get('device')}, {e.get('threads')} threads, "
            f"torch {e.get('torch')}, git {e.get('git')})"
            for e in env
        }
    )
    dates = sorted(r.summary.get("finished_at", "") for r in runs if r.summary.get("finished_at"))
    lines = ["## Commands, hardware, time\n", "Training:\n", "```", training_command(runs)]
    lines += [
        "```\n",
        "This report:\n",
        "```",
        "normbench report " + " ".join(map(shlex.quote, dirs)) + f" --out {out_dir}",
        "```\n",
    ]
    lines += [
        f"- Hardware: {'; '.join(hardware) or 'unknown'}",
        f"- Runs finished: {dates[0] if dates else '?'} … {dates[-1] if dates else '?'}; report made "
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} "
        f"(python {sys.version.split()[0]})\n",
    ]
    if not table.empty and "wall_time_s" in table:
        shares = [c for c in table.columns if c.startswith("share_")]
        agg = table.groupby("norm").agg(
            runs=("seed", "size"),
            wall_time_s=("wall_time_s", "mean"),
            **{c: (c, "mean") for c in shares + [c for c in table.columns if c.startswith("ms_")]},
        )
        agg = agg.reset_index()
        fmt = agg.copy()
        fmt["wall_time_s"] = agg["wall_time_s"].map("{:.1f}".format)
        for c in shares:
            fmt[c] = agg[c].map(lambda v: f"{100 * v:.1f}%")
        for c in (c for c in agg.columns if c.startswith("ms_")):
            fmt[c] = agg[c].map("{:.3f}".format)
        lines += [
            "Wall time per run and where it went (mean over runs; `train_step` = forward, backward "
            "and optimizer step; `data` = batch indexing; `eval`, `probe`, `checkpoint`, `logging`; "
            "`other` = setup and everything untimed):\n",
            _md(fmt),
        ]
    failed = [r for r in runs if r.status != "complete"]
    if failed:
        lines += ["Runs not complete (left out of the figures):\n"]
        lines += [f"- {r.path}: {r.status} {r.summary.get('error', '')}" for r in failed]
    lines += ["\nPer-run numbers: [runs.csv](runs.csv).\n"]
    return "\n".join(lines) + "\n"
