"""The Jacobian README: the figure (median and 10-90% band of the singular values against
steps, per map, without a norm and with BN), the table, claims, scale and runs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from normbench.report.collect import Run  # noqa: E402
from normbench.report.figures import save_png  # noqa: E402
from normbench.report.flags import chance_banner, flag_lines, incomplete_lines, run_cells  # noqa: E402
from normbench.report.output import SCALE_HEADER, md_table  # noqa: E402
from normbench.report.verdicts import Claim  # noqa: E402
from normbench.studies.jacobian.claims import all_claims, per_run  # noqa: E402
from normbench.studies.study import CLAIMS_HERE  # noqa: E402

COLOR = {"none": "tab:gray", "batch": "tab:blue"}
LABEL = {"none": "no norm", "batch": "BN"}


def read_jacobians(runs: list[Run]) -> pd.DataFrame:
    frames = []
    for r in runs:
        path = r.path / "jacobian.csv"
        if r.status == "complete" and path.is_file():
            frames.append(pd.read_csv(path).assign(norm=r.norm, seed=r.seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def figure(jac: pd.DataFrame, out_png: Path) -> None:
    maps = list(dict.fromkeys(jac["map"]))
    fig, axes = plt.subplots(
        1, len(maps), figsize=(4.6 * len(maps), 3.8), squeeze=False, sharey=True
    )
    for ax, name in zip(axes[0], maps, strict=True):
        for norm in ("none", "batch"):
            sel = jac[(jac["map"] == name) & (jac["norm"] == norm)]
            for k, (_seed, g) in enumerate(sel.groupby("seed")):
                ax.plot(
                    g["step"],
                    g["p50"],
                    color=COLOR[norm],
                    lw=1,
                    label=f"{LABEL[norm]}, median" if k == 0 else None,
                )
                ax.fill_between(g["step"], g["p10"], g["p90"], color=COLOR[norm], alpha=0.12, lw=0)
        ax.axhline(1, color="k", lw=0.6, ls="--")
        ax.set(yscale="log", title=f"Jacobian {name}", xlabel="step")
    axes[0][0].set_ylabel("singular values (median, 10-90% band)")
    axes[0][0].legend(fontsize=7)
    save_png(fig, out_png)


def table(jac: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (name, norm), g in jac.groupby(["map", "norm"], sort=False):
        first, last = g[g["step"] == g["step"].min()], g[g["step"] == g["step"].max()]
        rows.append(
            {
                "map": name,
                "norm": LABEL.get(norm, norm),
                "median σ at step 0": f"{first['p50'].mean():.3g}",
                "median σ at the end": f"{last['p50'].mean():.3g}",
                "10-90% at the end": f"{last['p10'].mean():.2g}–{last['p90'].mean():.2g}",
                "median abs(ln σ), mean over steps": f"{g['log_dist'].mean():.2f}",
            }
        )
    return pd.DataFrame(rows)


def jacobian_report(runs: list[Run], out_dir: Path, scale: str) -> tuple[str, list[Claim]]:
    """README text (with the claims' mark) and the claims."""
    jac = read_jacobians(runs)
    jac.to_csv(out_dir / "jacobian_all.csv", index=False, float_format="%.5g")
    summary = per_run(jac)
    if not jac.empty:
        figure(jac, out_dir / "jacobian.png")
    claims = all_claims(summary, scale)
    rows = [
        {"norm": LABEL.get(r.norm, r.norm), "seed": r.seed, **run_cells(r, final_error=True)}
        for r in runs
    ]
    lines = [
        "# Layer Jacobians' singular values, with and without BN\n",
        "Ioffe & Szegedy 2015, §3.4 (docs/papers.md §12): if the normalized inputs of two "
        "consecutive layers are Gaussian and uncorrelated and the map between them is nearly "
        "linear, then J Jᵀ = I, so BN may keep the singular values of layer Jacobians close to 1. "
        "Here the Jacobians between consecutive norm-slot outputs (the pre-activations without a "
        "norm) of the BN paper's sigmoid MLP, per example, BN's statistics held at the probe "
        "batch's estimates (`probes.jacobian`, torch.func; tested against finite differences).\n",
        *chance_banner(runs),
        "![singular values against steps](jacobian.png)\n",
        "Mean over seeds:\n",
        md_table(table(jac)) if not jac.empty else "No complete runs yet.\n",
        CLAIMS_HERE,
        *SCALE_HEADER,
        "| network | a conjecture (no experiment) | experiment=bn_fig1's sigmoid MLP, 5,000 steps of "
        "60, SGD lr 0.5, 3 seeds; 32 examples per Jacobian probe, every 500 steps |",
        "",
        "## Runs\n",
        md_table(pd.DataFrame(rows).sort_values(["norm", "seed"])) if rows else "",
        *flag_lines(runs),
        *(incomplete_lines(runs, "the table and claims") or ["All runs complete."]),
        "\nEvery Jacobian probe: [jacobian_all.csv](jacobian_all.csv); [runs.csv](runs.csv).\n",
    ]
    return "\n".join(lines) + "\n", claims
