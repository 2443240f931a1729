"""``normbench bench norms``: forward+backward time of every normalization variant.

What is timed, per input shape and device, in eager mode, for every registered variant and a
few extra cases (the table: :mod:`normbench.bench.norm_cases`):

- *slot* variants (everything acting on activations): ``spec.layer(C, dims)`` alone, in
  training mode, forward and backward (gradients of the input and of every parameter for a
  random upstream gradient), relative to native BatchNorm (``norm=batch``) on the same input.
- *weight* variants (those whose spec builds the weight layers: ``weight``, ``normprop``,
  ``ws_group``): ``spec.conv(C, C, 1)`` (``spec.linear(C, C)`` for (N, C) inputs) followed by
  ``spec.layer(C, dims)``, relative to a plain 1×1 conv (linear) followed by native BN
  (``conv+batch``): the weight transform is paid once per step, beside a conv of the same size.

Cases are timed round-robin within each repeat (so load from other processes hits them
alike); the time of a case is the median over repeats of the mean over an inner loop sized
to last ≥ 5 ms (CUDA events on GPU). Results go to ``<out>/norms-<device>.csv``, a PNG, and
the ``bench norms`` section of ``<out>/README.md``: the text between ``<!-- bench norms -->``
and ``<!-- /bench norms -->`` (``normbench.bench.readme_sections``), rewritten from every
``norms-<device>.csv`` while the rest of the README (other benchmarks' sections, notes) is
kept. The section records command, hardware, threads, date, the load average before and after
the run, the ``--conditions`` note, the table and the variants missing the 2× CPU target.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from normbench.bench.norm_cases import CASES, REFERENCE, build_case
from normbench.bench.readme_sections import update_section
from normbench.bench.variants import acts_on_weights
from normbench.engine.environment import cpu_name
from normbench.errors import ConfigError
from normbench.norms import VARIANTS

SECTION = "bench norms"

SHAPES: list[tuple[int, ...]] = [(32, 256, 16, 16), (8, 64, 56, 56), (60, 100)]
QUICK_SHAPES: list[tuple[int, ...]] = [(8, 32, 8, 8), (60, 100)]
TARGET = 2.0
MIN_REPEAT_S = 0.005


def _timer(device: torch.device) -> Callable[[Callable[[], None], int], float]:
    """Seconds per call of ``fn`` over ``n`` calls (CUDA events on GPU)."""

    def cpu(fn: Callable[[], None], n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n

    def cuda(fn: Callable[[], None], n: int) -> float:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        begin.record()
        for _ in range(n):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        return begin.elapsed_time(end) / 1000 / n

    return cuda if device.type == "cuda" else cpu


def _step_fn(module: nn.Module, shape: tuple[int, ...], device: torch.device) -> Callable[[], None]:
    module.to(device).train()
    x = torch.randn(shape, device=device, requires_grad=True)
    dy = torch.randn(shape, device=device)
    params = list(module.parameters())

    def step() -> None:
        torch.autograd.grad(module(x), [x, *params], dy)

    return step


def time_shape(
    shape: tuple[int, ...],
    device: torch.device,
    repeats: int,
    warmup: int,
    log: Callable[[str], None],
) -> list[dict]:
    """Median seconds per forward+backward of every case at ``shape``, and the ratio rows."""
    timer = _timer(device)
    steps: dict[str, tuple[Callable[[], None], int]] = {}
    rows: dict[str, dict] = {}
    for case in CASES:
        row = {
            "shape": "x".join(map(str, shape)),
            "variant": case.label,
            "kind": case.kind,
            "compared_to": REFERENCE[case.kind],
        }
        rows[case.label] = row
        try:
            step = _step_fn(build_case(case, shape), shape, device)
        except ConfigError as err:
            row.update(ms=math.nan, note=f"not defined for this shape: {err}")
            continue
        for _ in range(warmup):
            step()
        once = timer(step, 1)
        steps[case.label] = (step, max(1, math.ceil(MIN_REPEAT_S / max(once, 1e-7))))
    samples: dict[str, list[float]] = {label: [] for label in steps}
    for r in range(repeats):
        for label, (step, inner) in steps.items():
            samples[label].append(timer(step, inner))
        log(f"  {row['shape']}: repeat {r + 1}/{repeats}")
    for label, values in samples.items():
        rows[label]["ms"] = statistics.median(values) * 1000
    for row in rows.values():
        ref = rows[row["compared_to"]]["ms"]
        row["ratio"] = row["ms"] / ref
        row["within_target"] = "" if math.isnan(row["ratio"]) else row["ratio"] <= TARGET
    return list(rows.values())


def environment(device: torch.device) -> dict:
    """Device name, torch version, threads and date recorded beside every row."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "device": device.type,
        "device_name": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": dt.date.today().isoformat(),
    }


def _devices(choice: str) -> list[torch.device]:
    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise ConfigError(
            "bench norms --device cuda: no CUDA device is available; use --device cpu."
        )
    if choice == "all":
        return [torch.device("cpu")] + ([torch.device("cuda")] if cuda else [])
    return [torch.device(choice)]


def main(argv: list[str]) -> int:
    """Entry point of ``normbench bench norms``."""
    parser = argparse.ArgumentParser(
        prog="normbench bench norms", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda", "all"],
        default="all",
        help="where to time (default: CPU, and CUDA when available)",
    )
    parser.add_argument(
        "--out", default="results/bench", help="output directory (default: results/bench)"
    )
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per case (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per case first")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument("--quick", action="store_true", help="small shapes, 3 repeats: a smoke run")
    parser.add_argument(
        "--conditions", default="", help="free text recorded with the run (e.g. machine load)"
    )
    parser.add_argument(
        "--readme-only",
        action="store_true",
        help="only rewrite the README section from the existing CSVs (no timing)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.readme_only:
        update_section(out / "README.md", SECTION, readme_section(out))
        print(f"rewrote the '{SECTION}' section of {out / 'README.md'}", file=sys.stderr)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    repeats, warmup = (3, 1) if args.quick else (args.repeats, args.warmup)
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["normbench", "bench", "norms", *argv])
    for device in _devices(args.device):
        env = {**environment(device), "load_start": _load(), "conditions": args.conditions}
        print(
            f"bench norms on {device.type} ({env['device_name']}, torch {env['torch']}, "
            f"{env['threads']} threads): {len(CASES)} cases × {len(shapes)} shapes",
            flush=True,
        )
        rows = []
        for shape in shapes:
            rows += time_shape(
                shape, device, repeats, warmup, lambda s: print(s, file=sys.stderr, flush=True)
            )
        ref_ms = {(r["shape"], r["variant"]): r["ms"] for r in rows}
        env["load_end"] = _load()
        rows = [
            {**env, **row, "reason": _reason(row, ref_ms[row["shape"], row["compared_to"]])}
            for row in rows
        ]
        print_table(rows)
        write_outputs(rows, out, device.type, command.strip())
    return 0


def _load() -> str:
    """The 1-minute load average (other processes competing for the CPU), or '' if unknown."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return ""


def _reason(row: dict, reference_ms: float) -> str:
    if row.get("note"):
        return row["note"]
    if row["within_target"] is not False:
        return ""
    case = next(c for c in CASES if c.label == row["variant"])
    reason = case.reason or "slower than the target; no structural reason identified"
    if reference_ms < 0.25:
        reason = (
            f"overhead-bound shape (the reference takes {reference_ms:.3f} ms, so each extra small "
            f"op's dispatch cost of a few µs counts); {reason}"
        )
    return reason


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
    "reason",
]


def print_table(rows: list[dict]) -> None:
    """One line per case: shape, variant, milliseconds, ratio to its reference."""
    print(f"{'shape':<14} {'variant':<26} {'ms':>9} {'ratio':>7}  target")
    for row in rows:
        mark = "" if row["within_target"] == "" else ("ok" if row["within_target"] else "MISS")
        print(
            f"{row['shape']:<14} {row['variant']:<26} {row['ms']:>9.3f} {row['ratio']:>7.2f}  {mark}"
        )
    for row in rows:
        if row["within_target"] is False:
            print(
                f"miss: {row['variant']} at {row['shape']}: {row['ratio']:.2f}x {row['compared_to']}"
                f" ({row['reason']})"
            )


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    fig, axes = plt.subplots(
        1, len(shapes), figsize=(5 * len(shapes), 6), sharey=True, squeeze=False
    )
    for ax, shape in zip(axes[0], shapes, strict=True):
        sub = [r for r in rows if r["shape"] == shape]
        ratios = [float(r["ratio"]) for r in sub]
        colors = ["tab:red" if r["within_target"] in (False, "False") else "tab:blue" for r in sub]
        ax.barh(
            [r["variant"] for r in sub], [0 if math.isnan(v) else v for v in ratios], color=colors
        )
        ax.axvline(TARGET, color="k", ls="--", lw=1)
        ax.set_title(f"{shape} ({sub[0]['device']})")
        ax.set_xlabel("fwd+bwd time / native BN (weight variants: / conv+BN)")
    axes[0][0].invert_yaxis()
    fig.suptitle(
        f"normbench bench norms: {rows[0]['device_name']}, torch {rows[0]['torch']}, "
        f"{rows[0]['threads']} threads, {rows[0]['date']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme_section(out: Path) -> str:
    """The ``bench norms`` README section, from every ``norms-<device>.csv`` in ``out``."""
    weight_variants = ", ".join(f"`{n}`" for n in VARIANTS if acts_on_weights(n))
    lines = [
        "## Normalization variants: forward+backward time",
        "",
        "Produced by `normbench bench norms` (`normbench/bench/norms.py`); every number here "
        "comes from that command. Target: every variant within "
        f"{TARGET:g}x native BatchNorm on CPU in eager mode.",
        "",
        "Slot variants time `spec.layer(C, dims)` alone against native BN (`batch`). Weight "
        f"variants ({weight_variants}) time a 1x1 conv (linear for (N, C)) built "
        "by the spec plus the spec's slot, against a plain 1x1 conv (linear) plus native BN "
        "(`conv+batch`). Median over repeats, cases interleaved within each repeat.",
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
        lines += [
            "| shape | variant | compared to | ms | ratio | within target |",
            "|---|---|---|---:|---:|---|",
        ]
        for r in rows:
            ms, ratio = float(r["ms"]), float(r["ratio"])
            ok = {"True": "yes", "False": "**no**"}.get(r["within_target"], "n/a")
            ms_s, ratio_s = ("n/a", "n/a") if math.isnan(ms) else (f"{ms:.3f}", f"{ratio:.2f}")
            lines.append(
                f"| {r['shape']} | {r['variant']} | {r['compared_to']} | {ms_s} | {ratio_s} | {ok} |"
            )
        misses = [r for r in rows if r["within_target"] == "False"]
        lines += ["", f"Misses ({len(misses)}):" if misses else "Misses: none.", ""]
        lines += [
            f"- `{r['variant']}` at {r['shape']}: {float(r['ratio']):.2f}x - {r['reason']}"
            for r in misses
        ]
        notes = [r for r in rows if r["within_target"] == "" and r["reason"]]
        lines += [f"- `{r['variant']}` at {r['shape']}: {r['reason']}" for r in notes]
        lines.append("")
    return "\n".join(lines)


def write_outputs(rows: list[dict], out: Path, device: str, command: str) -> None:
    """``norms-<device>.csv``, ``norms-<device>.png`` and the README's ``bench norms`` section."""
    csv_path = out / f"norms-{device}.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*COLUMNS, "command"], extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **row,
                    "command": command,
                    "ms": f"{row['ms']:.4f}",
                    "ratio": f"{row['ratio']:.3f}",
                }
            )
    _plot(rows, out / f"norms-{device}.png")
    update_section(out / "README.md", SECTION, readme_section(out))
    print(f"wrote {csv_path}, {csv_path.with_suffix('.png')} and {out / 'README.md'}")
