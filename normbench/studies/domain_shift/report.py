"""The domain-shift study's report: statistics adaptation under common corruptions.

AdaBN (Li et al. 2016), BN adaptation with a source prior (Schneider et al. 2020) and Tent
(Wang et al. 2021), evaluated on common corruptions (Hendrycks & Dietterich 2019). The numbers
come from ``normbench eval`` rows in each run's evals.csv and kl.csv
(:mod:`~normbench.studies.domain_shift.data`); tables in ``tables``, ``comparisons`` and
``curves``, claims in ``claims``, figures in ``figures``. The report writes into the output
directory: errors.csv, severity5.csv, gain_by_corruption.csv, heatmap.csv and
``heatmap_<model>_<norm>.png``, ce.csv and mce.csv, k_curve.csv/png, n_curve.csv/png,
kl_per_layer.csv/png, norms.csv, tent.csv, ece.csv; the README text and the claims go back to
:func:`normbench.studies.report.write_report`, which adds the claims table and the rule.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd

from normbench.report.collect import Run
from normbench.report.commands import runs_section
from normbench.report.flags import chance_banner, not_enough
from normbench.report.output import md_table, write_tables
from normbench.studies.domain_shift.claims import all_claims
from normbench.studies.domain_shift.comparisons import (
    gain_table,
    gain_wide,
    norms_table,
    severity5_table,
    tent_table,
)
from normbench.studies.domain_shift.curves import k_curve, kl_per_layer, kl_summary, n_curve
from normbench.studies.domain_shift.data import (
    TEST,
    VAL,
    Baseline,
    corrupted,
    evals_table,
    kl_table,
    main_cells,
    main_settings,
    with_tent_reference,
)
from normbench.studies.domain_shift.figures import (
    heatmaps,
    k_curve_figure,
    kl_figure,
    n_curve_figure,
)
from normbench.studies.domain_shift.paper import TENT_BATCH, TENT_UPDATES
from normbench.studies.domain_shift.tables import (
    ce_table,
    comparable,
    ece_table,
    errors_csv,
    heatmap_table,
    mce_table,
)
from normbench.studies.study import ReportInput, ReportOutput

IMAGES = (
    "Which images: the grid of corruptions × severities 1–5 (heatmaps, mCE, the k and N curves, "
    "KL, norms, ECE, Tent by severity) is evaluated on the 1,000 images each run held out of "
    "its training set; the clean control and Tent against test-batch statistics at severity 5 "
    "also on the official 10,000-image test split (`data.val_split=test`). Each table and claim "
    "says which it uses.\n"
)


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
        "(ties: most samples, then the smallest batch, then the smallest prior): "
        + (", ".join(parts) or "none")
        + "; `batch@tent` is `mode=batch` at the batch size of Tent's evaluations.\n"
    ]


def _updates(cells: pd.DataFrame) -> str:
    """Tent's updates per corruption and severity: batches of its batch size over the images."""
    tent = cells[(cells["mode"] == "tent") & corrupted(cells)]
    if tent.empty:
        return "no Tent evaluations"
    size, images = float(tent["batch_size"].median()), float(tent["images"].median())
    return f"{math.ceil(images / size)} updates (batches of {size:g} over {images:g} images)"


def scale_of(runs: list[Run]) -> str:
    """The scale of the runs, as they record it: data, models, training steps, seeds."""
    if not runs:
        return "no complete runs"
    data = sorted({str((r.config.get("dataset") or {}).get("name", "?")) for r in runs})
    models = sorted({f"{(r.config.get('model') or {}).get('name', '?')}/{r.norm}" for r in runs})
    width = sorted({str((r.config.get("model") or {}).get("width", "?")) for r in runs})
    steps = sorted({str(r.summary.get("step", "?")) for r in runs})
    seeds = sorted({r.seed for r in runs})
    return (
        f"{', '.join(data)}; {', '.join(models)} at width {'/'.join(width)}; "
        f"{'/'.join(steps)} training steps; seeds {', '.join(map(str, seeds))}"
    )


def _eval_lines(ev: pd.DataFrame, command: str) -> list[str]:
    if ev.empty:
        return []
    bad = ev[corrupted(ev)]
    return [
        f"Evaluations: {len(ev)} rows of evals.csv over {ev['run'].nunique()} runs "
        f"({bad['corruption'].nunique()} corruptions, severities "
        f"{', '.join(map(str, sorted(set(bad['severity']))))}; "
        f"{int((ev['split'] == TEST).sum())} of them on the 10,000 test images); every row: "
        f"[errors.csv](errors.csv). `normbench study plan domain_shift` lists the phases "
        f"that made them; the study's command: `{command}`.\n"
    ]


def write_domain_shift_report(
    runs: list[Run],
    dirs: list[str],
    out_dir: Path,
    baseline: Baseline | None = None,
    command: str = "normbench study run domain_shift",
) -> ReportOutput:
    """Tables, figures, the README text and the claims of a domain-shift study (complete runs).

    Args:
        runs: every collected run (unfinished ones are listed, not used).
        dirs: the directories the report was asked for (for the command line).
        out_dir: where the files go.
        baseline: the model mCE is normalized by (default: resnet50/batch under running).
        command: the command that makes the runs.
    """
    baseline = baseline or Baseline()
    done = [r for r in runs if r.status == "complete"]
    ev = evals_table(done)
    settings = main_settings(ev[ev["split"] == VAL])
    val = with_tent_reference(main_cells(ev, settings), ev, VAL)
    test_rows = ev[ev["split"] == TEST]
    test = with_tent_reference(main_cells(ev, main_settings(test_rows), TEST), ev, TEST)
    kl_rows = kl_table(done)
    kl_cells = main_cells(kl_rows) if not kl_rows.empty else kl_rows
    shown, left_out = comparable(val)
    mce = mce_table(shown, baseline)
    tables = {
        "errors": errors_csv(ev),
        "severity5": severity5_table({VAL: val, TEST: test}),
        "gain_by_corruption": gain_table(val),
        "heatmap": heatmap_table(val[val["applied"]]),
        "ce": ce_table(shown, baseline),
        "mce": mce,
        "k_curve": k_curve(ev, val),
        "n_curve": n_curve(ev, val),
        "kl_per_layer": kl_per_layer(kl_cells),
        "norms": norms_table(val, mce),
        "tent": tent_table(val),
        "tent_test": tent_table(test),
        "ece": ece_table(shown),
    }
    write_tables(tables, out_dir)
    pngs = heatmaps(tables["heatmap"], out_dir)
    k_curve_figure(tables["k_curve"], out_dir / "k_curve.png")
    n_curve_figure(tables["n_curve"], out_dir / "n_curve.png")
    kl_figure(tables["kl_per_layer"], out_dir / "kl_per_layer.png")
    kl = kl_summary(tables["kl_per_layer"])
    claims = [replace(c, scale=scale_of(done)) for c in all_claims(val, test, ev, kl, baseline)]
    base = (mce["model"] == baseline.model) & (mce["norm"] == baseline.norm)
    has_baseline = bool((base & (mce["mode"] == baseline.mode)).any())
    severities = sorted(set(tables["k_curve"]["severity"]))
    lines = [
        "# Domain shift: normalization statistics under common corruptions\n",
        "AdaBN (Li et al. 2016), BN adaptation with a source prior (Schneider et al. 2020) and "
        "Tent (Wang et al. 2021) on common corruptions (Hendrycks & Dietterich 2019), made by "
        "`normbench study run domain_shift` (`normbench eval` on trained runs). Error and ECE "
        "in %.\n",
        IMAGES,
        *chance_banner(done),
        *_settings_lines(settings),
    ]
    lines += _section(
        "Severity 5 beside Tent's table",
        "Error at severity 5, mean over the corruptions each run holds, then over seeds; the "
        "paper's column is Tent's README (CIFAR-10-C, WRN-28-10): source, \"norm\" (each test "
        f"batch's own statistics at batch {TENT_BATCH}: our `batch@tent`) and Tent "
        f"({TENT_UPDATES} updates). AdaBN (`adapt`) uses the population statistics of all "
        "target images instead: [severity5.csv](severity5.csv).\n",
        tables["severity5"],
        "runs with batch statistics evaluated at severity 5",
    )
    lines += _section(
        "Gain of adaptation per corruption (severity 5, 1,000 held-out images)",
        "running − adapt per corruption, mean over seeds, beside Tent's source − norm on "
        "CIFAR-10-C: [gain_by_corruption.csv](gain_by_corruption.csv).\n",
        gain_wide(tables["gain_by_corruption"]),
        "runs with batch statistics under running and adapt at severity 5",
    )
    lines += _section(
        "mCE (1,000 held-out images)",
        f"Baseline: {baseline.label()} (the paper's is AlexNet). CE_c = Σ_s E_s,c / Σ_s "
        "E_s,c(baseline) over the severities both hold, mCE = 100 · mean over the benchmark "
        "corruptions both hold (at most 15); relative mCE subtracts each model's clean error. "
        "Modes are compared on the cells and seeds they share: a mode enters only where it was "
        "applied and holds every corrupted cell of running. Per corruption: [ce.csv](ce.csv); "
        "[mce.csv](mce.csv).\n"
        + "".join(f"\n- left out: {note}" for note in left_out)
        + ("\n" if left_out else ""),
        mce if has_baseline else None,
        f"corrupted evaluations of the baseline {baseline.label()}",
    )
    lines += [
        "## Error by corruption and severity (1,000 held-out images)\n",
        "Mean over seeds, modes that apply only: [heatmap.csv](heatmap.csv).\n",
        *[f"![{name}]({name})\n" for name in pngs],
    ]
    lines += _section(
        "AdaBN against the number of target samples k",
        "mode=adapt at each samples=k, beside running, on the corrupted cells a run holds at "
        f"every k: severity {', '.join(map(str, severities)) or '–'} only (the k phase's "
        "severity), 1,000 held-out images: [k_curve.csv](k_curve.csv).\n",
        tables["k_curve"],
        "mode=adapt evaluations at two or more samples=k at one severity",
        "k_curve.png",
    )
    lines += _section(
        "Partial adaptation against the prior strength N",
        "mode=partial (Schneider et al.: μ = N/(N+n) μ_source + n/(N+n) μ_batch) per batch size "
        "n, beside running and full AdaBN on the same cells (severity 3, 1,000 held-out "
        "images): [n_curve.csv](n_curve.csv).\n",
        tables["n_curve"],
        "mode=partial evaluations on corrupted data",
        "n_curve.png",
    )
    lines += _section(
        "Tent against test-batch statistics and against AdaBN",
        f"On the 1,000 held-out images Tent made {_updates(val)} per cell; on the 10,000 test "
        f"images (severity 5) {_updates(test)}; the paper made {TENT_UPDATES} (batches of "
        f"{TENT_BATCH}). `tent − batch@tent` is Tent's own comparison; `tent − adapt` is ours. "
        "Differences: mean ± 95% half-width (n seeds), paired by seed: [tent.csv](tent.csv), "
        "[tent_test.csv](tent_test.csv).\n",
        pd.concat(
            [tables["tent"].assign(images="1,000"), tables["tent_test"].assign(images="10,000")]
        ),
        "runs under mode=tent on corrupted data",
    )
    lines += _section(
        "KL divergence per layer, before and after adaptation",
        "Per norm layer, KL(source ‖ target) of Gaussian fits of each channel's output "
        "(`normbench eval ... kl=true`: clean training data against the corrupted evaluation "
        "data, each domain normalized as the mode does), mean over channels and corrupted cells "
        "(severity 3, 1,000 held-out images): [kl_per_layer.csv](kl_per_layer.csv). Under "
        "adapt each domain is normalized by statistics of its own, so every layer's output "
        "matches in mean and variance by construction: the drop to about 0 is no measurement "
        "of how much shift adaptation removes. The KL under running is the measured shift.\n",
        kl,
        "kl.csv rows (normbench eval ... kl=true) under mode=running and mode=adapt",
        "kl_per_layer.png",
    )
    lines += _section(
        "Norms without batch statistics beside BN (1,000 held-out images)",
        "Error under running; every other mode as its difference to running, paired by seed on "
        'the cells both hold ("not applied": the mode cannot change the model); '
        "batch_statistics from summary.json's norm_batch_dependent: [norms.csv](norms.csv).\n",
        tables["norms"],
        "runs evaluated on corrupted data",
    )
    lines += _section(
        "Calibration (ECE) per mode (1,000 held-out images)",
        "Expected calibration error (15 bins), clean and mean over corrupted cells, modes "
        "compared as in mCE: [ece.csv](ece.csv).\n",
        tables["ece"],
        "evaluations",
    )
    lines += _eval_lines(ev, command)
    text = "\n".join(lines) + "\n" + runs_section(runs, dirs, out_dir)
    return ReportOutput(text, claims)


def domain_shift_report(given: ReportInput) -> ReportOutput:
    """The study's report function (``Study.report``)."""
    return write_domain_shift_report(given.runs, given.dirs, given.out_dir, command=given.command)
