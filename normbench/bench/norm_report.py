"""Outputs of ``normbench bench norms``: ``norms-<device>.csv`` (on CPU
``norms-cpu-<threads>t.csv``), its PNG, the printed table, and the ``bench norms`` section of
the README: the text between ``<!-- bench norms -->`` and ``<!-- /bench norms -->``
(:mod:`normbench.bench.readme_sections`), rewritten from every ``norms-<device>.csv`` while the
rest of the README (other benchmarks' sections, notes) is kept.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from normbench.bench.norm_timing import COMPILED_TARGET, TARGET
from normbench.bench.readme_sections import update_section
from normbench.bench.variants import acts_on_weights
from normbench.norms import VARIANTS

SECTION = "bench norms"


def output_name(env: dict) -> str:
    """``norms-cuda`` on GPU; ``norms-cpu-<threads>t`` on CPU, one file per thread count."""
    if env["device"] == "cpu":
        return f"norms-cpu-{env['threads']}t"
    return f"norms-{env['device']}"


COLUMNS = [
    "device",
    "device_name",
    "torch",
    "threads",
    "date",
    "load_start",
    "load_end",
    "conditions",
    "shape",
    "variant",
    "kind",
    "compared_to",
    "ms",
    "ratio",
    "within_target",
    "ms_compiled",
    "ratio_compiled",
    "compiled_gain",
    "within_compiled_target",
    "compile_s",
    "reason",
    "compile_note",
]


def print_table(rows: list[dict]) -> None:
    """One line per case: shape, variant, milliseconds, ratio to its reference."""
    compiled = any("ratio_compiled" in row for row in rows)
    head = f"{'shape':<14} {'variant':<26} {'ms':>9} {'ratio':>7}  target"
    print(head + (f" {'compiled ms':>11} {'ratio':>7}  target" if compiled else ""))
    for row in rows:
        if math.isnan(row["ms"]):  # not defined at this shape: the reason is printed below
            print(f"{row['shape']:<14} {row['variant']:<26} {'n/a':>9} {'n/a':>7}  undefined")
            continue
        line = (
            f"{row['shape']:<14} {row['variant']:<26} {row['ms']:>9.3f} {row['ratio']:>7.2f}  "
            f"{_mark(row['within_target']):<6}"
        )
        if compiled:
            line += (
                f" {row.get('ms_compiled', math.nan):>11.3f} {row.get('ratio_compiled', math.nan):>7.2f}"
                f"  {_mark(row.get('within_compiled_target', ''))}"
            )
        print(line)
    for row in rows:
        if math.isnan(row["ms"]):
            print(f"n/a: {row['variant']} at {row['shape']}: {row.get('reason') or 'not timed'}")
        if row["within_target"] is False:
            print(
                f"miss: {row['variant']} at {row['shape']}: {row['ratio']:.2f}x {row['compared_to']}"
                f" ({row['reason']})"
            )


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _mark(within: object) -> str:
    return "" if within == "" else ("ok" if within else "MISS")


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from normbench.report.legends import legends_off_data

    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    fig, axes = plt.subplots(
        1, len(shapes), figsize=(5 * len(shapes), 6), sharey=True, squeeze=False
    )
    for ax, shape in zip(axes[0], shapes, strict=True):
        sub = [r for r in rows if r["shape"] == shape]
        at = list(range(len(sub)))
        ratios = [_float(r["ratio"]) for r in sub]
        colors = ["tab:red" if r["within_target"] in (False, "False") else "tab:blue" for r in sub]
        compiled = [_float(r.get("ratio_compiled", "nan")) for r in sub]
        height = 0.4 if any(not math.isnan(v) for v in compiled) else 0.8
        ax.barh(
            at, [0 if math.isnan(v) else v for v in ratios], height, color=colors, label="eager"
        )
        ax.axvline(TARGET, color="k", ls="--", lw=1)
        if height < 0.8:
            ax.barh(
                [a + height for a in at],
                [0 if math.isnan(v) else v for v in compiled],
                height,
                color="tab:green",
                label="torch.compile",
            )
            ax.axvline(COMPILED_TARGET, color="tab:green", ls=":", lw=1)
            ax.legend(loc="lower right")
        ax.set_yticks([a + (height / 2 if height < 0.8 else 0) for a in at])
        ax.set_yticklabels([r["variant"] for r in sub])
        ax.set_title(f"{shape} ({sub[0]['device']})")
    # one label for every panel: a label per panel ran into its neighbour's
    fig.supxlabel("fwd+bwd time / eager native BN (weight variants: / conv+BN)")
    axes[0][0].invert_yaxis()
    fig.suptitle(
        f"normbench bench norms: {rows[0]['device_name']}, torch {rows[0]['torch']}, "
        f"{rows[0]['threads']} threads, {rows[0]['date']}"
    )
    fig.tight_layout()
    legends_off_data(fig)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme_section(out: Path) -> str:
    """The ``bench norms`` README section, from every ``norms-<device>.csv`` in ``out``."""
    weight_variants = ", ".join(f"`{n}`" for n in VARIANTS if acts_on_weights(n))
    lines = [
        "## Normalization variants: forward+backward time",
        "",
        "Produced by `normbench bench norms` (`normbench/bench/norms.py`); every number here "
        "comes from that command. Targets: every variant within "
        f"{TARGET:g}x native BatchNorm on CPU in eager mode; compiled (`torch.compile` of the "
        f"case, forward and backward), within {COMPILED_TARGET:g}x eager native BN at the 4-d "
        "shapes (issue 12).",
        "",
        "Slot variants time `spec.layer(C, dims)` alone against native BN (`batch`). Weight "
        f"variants ({weight_variants}) time a 1x1 conv (linear for (N, C)) built "
        "by the spec plus the spec's slot, against a plain 1x1 conv (linear) plus native BN "
        "(`conv+batch`). Median over repeats, cases (eager and compiled) interleaved within each "
        "repeat. *compiled ratio* = compiled ms / the eager reference's ms; *gain* = eager ms / "
        "compiled ms of the same case (what `trainer.compile=true` buys it).",
        "",
    ]
    for path in sorted(out.glob("norms-*.csv")):
        with path.open() as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        head = rows[0]
        load = ""
        if head.get("load_start"):
            load = (
                f" 1-minute load average {head['load_start']} at the start, "
                f"{head['load_end']} at the end."
            )
        lines += [
            f"### {head['device']}: {head['device_name']}",
            "",
            f"torch {head['torch']}, {head['threads']} threads, {head['date']}.{load} "
            f"Command: `{head.get('command', 'normbench bench norms')}`. "
            f"Data: [{path.name}]({path.name}), figure: [{path.stem}.png]({path.stem}.png).",
            "",
        ]
        if head.get("conditions"):
            lines += [f"Conditions: {head['conditions']}", ""]
        compiled = any(r.get("ratio_compiled") not in (None, "") for r in rows)
        header = "| shape | variant | compared to | ms | ratio | within target |"
        rule = "|---|---|---|---:|---:|---|"
        if compiled:
            header += " compiled ms | compiled ratio | gain | within compiled target |"
            rule += "---:|---:|---:|---|"
        lines += [header, rule]
        for r in rows:
            line = (
                f"| {r['shape']} | {r['variant']} | {r['compared_to']} | {_fmt(r['ms'], 3)} | "
                f"{_fmt(r['ratio'], 2, r['ms'])} | {_yes(r['within_target'])} |"
            )
            if compiled:
                line += (
                    f" {_fmt(r.get('ms_compiled'), 3)} | "
                    f"{_fmt(r.get('ratio_compiled'), 2, r.get('ms_compiled'))} | "
                    f"{_fmt(r.get('compiled_gain'), 2, r.get('ms_compiled'))} | "
                    f"{_yes(r.get('within_compiled_target', ''))} |"
                )
            lines.append(line)
        misses = [r for r in rows if r["within_target"] == "False"]
        lines += ["", f"Eager misses ({len(misses)}):" if misses else "Eager misses: none.", ""]
        lines += [
            f"- `{r['variant']}` at {r['shape']}: {float(r['ratio']):.2f}x - {r['reason']}"
            for r in misses
        ]
        notes = [r for r in rows if r["within_target"] == "" and r["reason"]]
        lines += [f"- `{r['variant']}` at {r['shape']}: {r['reason']}" for r in notes]
        if compiled:
            cmisses = [r for r in rows if r.get("within_compiled_target") == "False"]
            lines += [
                "",
                f"Compiled misses at the 4-d shapes ({len(cmisses)}):"
                if cmisses
                else f"Compiled: every variant within {COMPILED_TARGET:g}x eager native BN at the "
                "4-d shapes.",
                "",
            ]
            lines += [
                f"- `{r['variant']}` at {r['shape']}: {float(r['ratio_compiled']):.2f}x compiled"
                for r in cmisses
            ]
            lines += [
                f"- `{r['variant']}` at {r['shape']}: {r['compile_note']}"
                for r in rows
                if r.get("compile_note")
            ]
        lines.append("")
    return "\n".join(lines)


def _fmt(value: object, digits: int, defined: object = None) -> str:
    number = _float(value)
    if math.isnan(number) or math.isnan(_float(value if defined is None else defined)):
        return "n/a"
    return f"{number:.{digits}f}"


def _yes(within: object) -> str:
    return {"True": "yes", "False": "**no**"}.get(str(within), "n/a")


def redraw_figures(out: Path) -> list[Path]:
    """Redraw ``norms-<device>.png`` from each ``norms-<device>.csv`` in ``out`` (no timing)."""
    drawn = []
    for path in sorted(out.glob("norms-*.csv")):
        with path.open() as f:
            rows = list(csv.DictReader(f))
        if rows:
            _plot(rows, path.with_suffix(".png"))
            drawn.append(path.with_suffix(".png"))
    return drawn


def write_outputs(rows: list[dict], out: Path, name: str, command: str) -> None:
    """``<name>.csv``, ``<name>.png`` and the README's ``bench norms`` section."""
    csv_path = out / f"{name}.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*COLUMNS, "command"], extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **row,
                    "command": command,
                    **{
                        key: f"{row[key]:.4f}"
                        for key in ("ms", "ms_compiled", "compile_s")
                        if key in row
                    },
                    **{
                        key: f"{row[key]:.3f}"
                        for key in ("ratio", "ratio_compiled", "compiled_gain")
                        if key in row
                    },
                }
            )
    _plot(rows, out / f"{name}.png")
    update_section(out / "README.md", SECTION, readme_section(out))
    print(f"wrote {csv_path}, {csv_path.with_suffix('.png')} and {out / 'README.md'}")
