"""``normbench report`` for the domain-shift study: statistics adaptation under corruptions.

AdaBN (Li et al. 2016), BN adaptation with a source prior (Schneider et al. 2020) and Tent
(Wang et al. 2021), evaluated on common corruptions (Hendrycks & Dietterich 2019). The numbers
come from ``normbench eval`` rows in each run's evals.csv and kl.csv
(:mod:`normbench.studies.domain_shift.data`); tables in ``domain_shift_tables``, verdicts in
``domain_shift_claims``, figures in ``domain_shift_figures``.

**Which runs make a domain-shift study:** runs of which at least one complete run holds an
``ok`` evaluation on corrupted data (a row of evals.csv whose ``corruption`` is neither empty
nor ``none``), whatever else the runs vary. The report writes into the output directory:
errors.csv, heatmap.csv and ``heatmap_<model>_<norm>.png``, ce.csv and mce.csv, k_curve.csv/png,
n_curve.csv/png, kl_per_layer.csv/png, norms.csv, tent.csv, ece.csv and README.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from normbench.report.collect import Run
from normbench.report.commands import runs_section
from normbench.studies.domain_shift.claims import KL_MIN_SHARE, MIN_EFFECT, verdicts
from normbench.studies.domain_shift.data import (
    Baseline,
    corrupted,
    evals_table,
    has_corrupted_evaluations,
    kl_table,
    main_cells,
    main_settings,
)
from normbench.studies.domain_shift.figures import (
    heatmaps,
    k_curve_figure,
    kl_figure,
    n_curve_figure,
)
from normbench.studies.domain_shift.tables import (
    ce_table,
    ece_table,
    errors_csv,
    heatmap_table,
    k_curve,
    kl_per_layer,
    mce_table,
    n_curve,
    norms_table,
    tent_table,
)
from normbench.report.flags import chance_banner, not_enough
from normbench.report.output import md_table, write_tables

#: Tent's README table (docs/papers.md §7): CIFAR-10-C severity 5, WRN-28-10, error (%).
TENT_PAPER = {"running": 43.5, "adapt": 20.4, "tent": 18.6}


def is_domain_shift_study(runs: list[Run]) -> bool:
    """Whether a complete run holds an ``ok`` evaluation on corrupted data."""
    return any(has_corrupted_evaluations(r) for r in runs if r.status == "complete")


def _fmt(df: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Floats rounded for a README table, missing values as –."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].map(lambda v: "–" if pd.isna(v) else f"{v:.{digits}f}")
    return out.fillna("–")


def _section(
    title: str, text: str, table: pd.DataFrame | None, needs: str = "", image: str = ""
) -> list[str]:
    """A README section: its text, then its figure and table, or "not enough runs" when the
    table is empty."""
    lines = [f"## {title}\n", text]
    if table is not None and not table.empty:
        lines += [f"![{Path(image).stem}]({image})\n"] if image else []
        lines.append(md_table(_fmt(table)))
    elif needs:
        lines.append(f"{not_enough(needs)}.\n")
    return lines


def _settings_lines(settings: dict[str, str]) -> list[str]:
    parts = [f"`mode={m}{' ' + s if s else ''}`" for m, s in sorted(settings.items())]
    return [
        "Where a mode was evaluated at several settings, the one evaluated on the most "
        "(run, corruption, severity) cells stands for it in the heatmaps, mCE, tables and claims "
        "(ties: most samples, then largest batch, then smallest prior): "
        + (", ".join(parts) or "none")
        + ".\n"
    ]


def kl_summary(kl: pd.DataFrame) -> pd.DataFrame:
    """Per (model, norm): layers, mean KL over layers under running and adapt, and in how many
    layers adapt is lower (the README's short form of kl_per_layer.csv)."""
    rows = []
    for (model, norm), g in kl.groupby(["model", "norm"]):
        wide = g.pivot_table(index="layer", columns="mode", values="mean")
        both = wide.dropna() if {"running", "adapt"} <= set(wide.columns) else wide.iloc[0:0]
        rows.append(
            {
                "model": model,
                "norm": norm,
                "layers": len(wide),
                "mean KL, running": wide["running"].mean() if "running" in wide else math.nan,
                "mean KL, adapt": wide["adapt"].mean() if "adapt" in wide else math.nan,
                "layers lower after adapt": f"{int((both['adapt'] < both['running']).sum())}"
                f"/{len(both)}",
                "seeds": int(g["seeds"].max()),
            }
        )
    cols = ["model", "norm", "layers", "mean KL, running", "mean KL, adapt"]
    return pd.DataFrame(rows, columns=[*cols, "layers lower after adapt", "seeds"])


def _eval_lines(ev: pd.DataFrame, with_kl: bool) -> list[str]:
    """What ``normbench eval`` evaluated, as one line and an example command."""
    if ev.empty:
        return []
    bad = ev[corrupted(ev)]
    corruptions = sorted(set(bad["corruption"]))
    severities = sorted(set(bad["severity"]))
    modes = [
        m
        for m in ("running", "precise", "batch", "adapt", "partial", "tent")
        if m in set(ev["mode"])
    ]
    example = (
        f"normbench eval RUN_DIR... -m mode={','.join(modes)} "
        f"corruption={','.join(corruptions)} severity={','.join(map(str, severities))}"
        + (" kl=true" if with_kl else "")
    )
    return [
        f"Evaluations: {len(ev)} rows of evals.csv over {ev['run'].nunique()} runs "
        f"({len(corruptions)} corruptions, severities {', '.join(map(str, severities))}); "
        "every row: [errors.csv](errors.csv). They were made by commands of the form:\n",
        "```",
        example,
        "```\n",
    ]


def write_domain_shift_report(
    runs: list[Run], dirs: list[str], out_dir: Path, baseline: Baseline | None = None
) -> str:
    """Tables, figures and the README text of a domain-shift study (complete runs only).

    Args:
        runs: every collected run (unfinished ones are listed, not used).
        dirs: the directories the report was asked for (for the command line).
        out_dir: where the files go.
        baseline: the model mCE is normalized by (default: resnet50/batch under running).
    """
    baseline = baseline or Baseline()
    done = [r for r in runs if r.status == "complete"]
    ev = evals_table(done)
    settings = main_settings(ev[ev["own_data"]])
    cells = main_cells(ev, settings)
    kl_rows = kl_table(done)
    kl_cells = main_cells(kl_rows) if not kl_rows.empty else kl_rows
    heat = heatmap_table(cells)
    mce = mce_table(cells, baseline)
    tables = {
        "errors": errors_csv(ev),
        "heatmap": heat,
        "ce": ce_table(cells, baseline),
        "mce": mce,
        "k_curve": k_curve(ev, cells),
        "n_curve": n_curve(ev, cells),
        "kl_per_layer": kl_per_layer(kl_cells),
        "norms": norms_table(cells, mce),
        "tent": tent_table(cells),
        "ece": ece_table(cells),
    }
    write_tables(tables, out_dir)
    pngs = heatmaps(heat, out_dir)
    k_curve_figure(tables["k_curve"], out_dir / "k_curve.png")
    n_curve_figure(tables["n_curve"], out_dir / "n_curve.png")
    kl_figure(tables["kl_per_layer"], out_dir / "kl_per_layer.png")
    claims = verdicts(ev, cells, kl_cells)
    has_baseline = bool(
        (
            (cells["model"] == baseline.model)
            & (cells["norm"] == baseline.norm)
            & (cells["mode"] == baseline.mode)
            & corrupted(cells)
        ).any()
    )
    many_k = tables["k_curve"]["samples"].nunique() >= 2
    k_all = tables["k_curve"][tables["k_curve"]["severity"] == "all"]
    lines = [
        "# Domain shift: normalization statistics under common corruptions\n",
        "AdaBN (Li et al. 2016), BN adaptation with a source prior (Schneider et al. 2020) and "
        "Tent (Wang et al. 2021) on common corruptions (Hendrycks & Dietterich 2019), made by "
        "`normbench eval` on trained runs and `normbench report`. Error and ECE in %.\n",
        *chance_banner(done),
        "## Claims\n",
        "Differences are paired by run (one trained model under two modes, on the cells both "
        "hold): mean ± standard error over seeds. An error difference counts when it exceeds "
        f"both twice its standard error and {MIN_EFFECT} points; a KL difference when it exceeds "
        f"twice its standard error and {KL_MIN_SHARE:.0%} of the KL under running statistics. "
        "Fewer than two seeds, or nothing to compare: not enough runs.\n",
        "| claim | ours | verdict |",
        "|---|---|---|",
        *[f"| {v.claim} | {v.ours} | {v.verdict} |" for v in claims],
        "",
        *_settings_lines(settings),
    ]
    lines += _section(
        "mCE",
        f"Baseline: {baseline.label()} (the paper's is AlexNet). CE_c = Σ_s E_s,c / Σ_s "
        "E_s,c(baseline) over the severities both hold, mCE = 100 · mean over the benchmark "
        "corruptions both hold (at most 15); relative mCE subtracts each model's clean error. "
        "Per corruption: [ce.csv](ce.csv); [mce.csv](mce.csv).\n",
        mce if has_baseline else None,
        f"corrupted evaluations of the baseline {baseline.label()}",
    )
    lines += [
        "## Error by corruption and severity\n",
        "Mean over seeds: [heatmap.csv](heatmap.csv).\n",
    ]
    lines += [f"![{name}]({name})\n" for name in pngs]
    lines += _section(
        "AdaBN against the number of target samples k",
        "mode=adapt at each samples=k, beside running (dashed), on the corrupted cells a run "
        "holds at every k, all severities pooled; per severity: [k_curve.csv](k_curve.csv).\n",
        k_all if many_k else None,
        "mode=adapt evaluations at two or more samples=k",
        "k_curve.png",
    )
    lines += _section(
        "Partial adaptation against the prior strength N",
        "mode=partial (Schneider et al.: μ = N/(N+n) μ_source + n/(N+n) μ_batch) per batch size "
        "n, beside running and full AdaBN on the same cells: [n_curve.csv](n_curve.csv).\n",
        tables["n_curve"],
        "mode=partial evaluations on corrupted data",
        "n_curve.png",
    )
    lines += _section(
        "KL divergence per layer, before and after adaptation",
        "Per norm layer, KL(source ‖ target) of Gaussian fits of each channel's response "
        "(`normbench eval ... kl=true`: the clean training data against the corrupted evaluation "
        "data, each domain normalized as the mode does), mean over channels and corrupted cells; "
        "every layer: [kl_per_layer.csv](kl_per_layer.csv). Under adapt each domain is "
        "normalized by statistics of its own, so the first layer's KL is about 0 by "
        "construction when the target statistics came from the measured samples; what remains "
        "deeper, or with samples=k below the measured count, is the shift the first two "
        "moments do not capture.\n",
        kl_summary(tables["kl_per_layer"]),
        "kl.csv rows (normbench eval ... kl=true) under mode=running and mode=adapt",
        "kl_per_layer.png",
    )
    lines += _section(
        "Norms without batch statistics beside adapted BN",
        "Mean corrupted error of each mode over the cells it shares with running; "
        "batch_statistics from summary.json's norm_batch_dependent: [norms.csv](norms.csv).\n",
        tables["norms"],
        "runs evaluated on corrupted data",
    )
    lines += _section(
        "Tent against AdaBN",
        f"Paper (Tent's README, docs/papers.md §7; CIFAR-10-C severity 5, WRN-28-10): source "
        f"{TENT_PAPER['running']}, BN adaptation {TENT_PAPER['adapt']}, Tent "
        f"{TENT_PAPER['tent']}. Ours: [tent.csv](tent.csv).\n",
        tables["tent"],
        "runs under mode=adapt and mode=tent on the same corruptions",
    )
    lines += _section(
        "Calibration (ECE) per mode",
        "Expected calibration error (15 bins), clean and mean over corrupted cells: "
        "[ece.csv](ece.csv).\n",
        tables["ece"],
        "evaluations",
    )
    lines += _eval_lines(ev, not kl_rows.empty)
    return "\n".join(lines) + "\n" + runs_section(runs, dirs, out_dir)
