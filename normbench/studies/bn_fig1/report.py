"""BN paper Figure 1 (sigmoid MLP with and without BN): figure, tables and README text; the
claims are judged in :mod:`normbench.studies.bn_fig1.claims`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from normbench.report.collect import Run
from normbench.report.commands import runs_section
from normbench.report.figures import PERCENTILES, bn_fig1
from normbench.report.flags import chance_banner
from normbench.report.output import SCALE_HEADER, write_tables
from normbench.report.output import md_table as _md
from normbench.report.papers import BN_FIG1
from normbench.studies.study import CLAIMS_HERE

ACCURACY_THRESHOLDS = (0.70, 0.75, 0.80, 0.82, 0.84, 0.85, 0.86, 0.87, 0.88, 0.90, 0.95, 0.97, 0.98)
NORM_LABEL = {"none": "no BN", "batch": "BN"}


def steps_to_reach(runs: list[Run], thresholds: tuple[float, ...]) -> pd.DataFrame:
    """First evaluated step at which each run's test accuracy reaches each threshold; mean over
    seeds per norm (empty when a seed never reaches it)."""
    rows = []
    for thr in thresholds:
        row: dict[str, object] = {"test accuracy ≥": f"{thr:.2f}"}
        for norm in ("none", "batch"):
            steps = []
            for r in (r for r in runs if r.norm == norm and not r.metrics.empty):
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


def _get(cfg: dict[str, Any], dotted: str) -> Any:
    """``cfg``'s value at a dotted key; ``?`` where a run's config lacks it."""
    value: Any = cfg
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return "?"
        value = value[key]
    return value


def probe_steps_text(steps: list[int]) -> str:
    """The probe steps the runs took, as the scale table says them: each one when there are
    few, else the interval and the range."""
    if not steps:
        return "no probe steps recorded"
    if len(steps) <= 5:
        shown = [f"{s:,}" for s in steps]
        listed = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
        return f"at step{'s' if len(steps) > 1 else ''} {listed}"
    gaps = Counter(b - a for a, b in zip(steps, steps[1:], strict=False))
    return (
        f"every {gaps.most_common(1)[0][0]:,} steps, {len(steps)} probes (steps {steps[0]:,}–"
        f"{steps[-1]:,})"
    )


def _thousands(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def write_bn_fig1_report(all_runs: list[Run], dirs: list[str], out_dir: Path) -> str:
    """Figure, CSVs and README text of BN-Fig.1: numbers from the complete runs, the scale from
    their config (else any run's); unfinished runs are listed, not used."""
    runs = [r for r in all_runs if r.status == "complete"]
    basis = runs or all_runs
    tables = bn_fig1(runs, out_dir / "fig1.png")
    write_tables(tables, out_dir)
    acc, pct = tables["fig1_accuracy"], tables["fig1_percentiles"]
    last = int(acc["step"].max()) if not acc.empty else 0
    probe_steps = tuple(s for s in (500, 1000, 2000, 5000, 10000, 20000, last) if 0 < s <= last)
    reach = steps_to_reach(runs, ACCURACY_THRESHOLDS)
    moves = drift(pct)
    ahead = higher_throughout(acc)
    cfg = basis[0].config
    seeds = sorted({r.seed for r in runs})
    bn = next((r.config["norm"] for r in basis if r.norm == "batch"), None)
    ahead_text = (
        f"BN's mean accuracy is above no BN's at {ahead[0]} of {ahead[1]} evaluations "
        f"({ahead[2]} of them in the last half of training)"
        if ahead[1]
        else "no evaluation of both norms at the same step"
    )
    moves_text = " vs ".join(
        f"{row['']} {row['largest move of a percentile from step 0']}"
        for _, row in moves.iterrows()
    )
    if pct.empty:
        percentiles = [
            "### Input of a typical sigmoid in the last hidden layer\n",
            "No activations.csv rows in these runs (train with probes.every > 0).\n",
        ]
    else:
        percentiles = [
            f"### Input of a typical sigmoid in the last hidden layer ({pct['layer'].iloc[0]})\n",
            "Per probe step, each unit's 15/50/85th percentiles over the probe batch, then the "
            "median over the layer's units; mean over seeds. Probe batch: the first "
            f"{_get(cfg, 'probes.batch_size')} validation images, normalization statistics mode "
            f"`{_get(cfg, 'probes.mode')}`.\n",
            _md(moves),
        ]
    lines = [
        "# BN paper Figure 1: sigmoid MLP with and without batch normalization\n",
        f"Paper: {BN_FIG1['paper']}. Reduced reproduction made by normbench (see the commands below).\n",
        *chance_banner(basis),
        "![Figure 1](fig1.png)\n",
        CLAIMS_HERE,
        f"{ahead_text}. Largest move of the typical unit's 15/50/85th "
        f"percentile from step 0 (mean over seeds): {moves_text or '–'}.\n",
        "### Steps to reach a test accuracy (first evaluation at or above it; mean over seeds; per seed: [steps_per_seed.csv](steps_per_seed.csv))\n",
        _md(reach),
        *(
            ["### Test accuracy (mean ± std over seeds)\n", _md(accuracy_at(acc, probe_steps))]
            if probe_steps
            else []
        ),
        *percentiles,
        *SCALE_HEADER,
        f"| data | {BN_FIG1['setup']['dataset']} | {_get(cfg, 'dataset.name')}, grey levels scaled "
        f"to [0, 1], validation = {_get(cfg, 'dataset.val_split')} split |",
        f"| network | {BN_FIG1['setup']['network']} | {_get(cfg, 'model.hidden')} "
        f"{_get(cfg, 'model.activation')}, weights ~ N(0, {_get(cfg, 'model.init_std')}²) |",
        f"| training | {BN_FIG1['setup']['training']} | SGD lr {_get(cfg, 'optim.lr')} (momentum "
        f"{_get(cfg, 'optim.momentum')}, schedule {_get(cfg, 'optim.schedule')}), "
        f"{_thousands(_get(cfg, 'trainer.steps'))} steps of {_get(cfg, 'dataset.batch_size')} |",
        f"| BN | {BN_FIG1['setup']['norm']} | same; momentum {bn.get('momentum', '-')}, eps "
        f"{bn.get('eps', '-')} |"
        if bn
        else "",
        f"| seeds | 1 curve | {len(seeds)} seeds ({', '.join(map(str, seeds))}) per norm |"
        if seeds
        else "| seeds | 1 curve | no complete runs |",
        f"| probe | {BN_FIG1['setup']['probe']} | median over units of per-unit percentiles, "
        f"{probe_steps_text(sorted(set(pct['step'].astype(int))))} |\n",
    ]
    return "\n".join(x for x in lines if x != "") + "\n" + runs_section(all_runs, dirs, out_dir)


def lr_figure(table: pd.DataFrame, out_png: Path) -> None:
    """The lr variant: final test error (%) against the learning rate, per norm (mean, and the
    seeds' min–max as a band)."""
    import matplotlib.pyplot as plt

    from normbench.report.figures import NORM_COLORS, save_png

    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for norm in ("none", "batch"):
        g = table[table["norm"] == norm].groupby("lr")["error"]
        if g.ngroups == 0:
            continue
        stats = g.agg(["mean", "min", "max", "size"]).reset_index()
        color = NORM_COLORS.get(norm)
        label = f"{NORM_LABEL[norm]} ({int(stats['size'].max())} seeds)"
        ax.plot(stats["lr"], stats["mean"], "o-", color=color, label=label)
        ax.fill_between(stats["lr"], stats["min"], stats["max"], color=color, alpha=0.2, lw=0)
    ax.set(
        xscale="log",
        xlabel="learning rate (SGD)",
        ylabel="final test error (%)",
        title="Final test error against the learning rate",
    )
    ax.legend()
    save_png(fig, out_png)
