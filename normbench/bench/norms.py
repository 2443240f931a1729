"""``normbench bench norms``: forward+backward time of every normalization variant.

What is timed, per input shape and device, for every registered variant and a few extra cases
(the table: :mod:`normbench.bench.norm_cases`), in eager mode and, unless ``--no-compile``,
through ``torch.compile`` (the *compiled column*: the case's module compiled with inductor,
forward and the backward AOTAutograd derives from it):

- *slot* variants (everything acting on activations): ``spec.layer(C, dims)`` alone, in
  training mode, forward and backward (gradients of the input and of every parameter for a
  random upstream gradient), relative to native BatchNorm (``norm=batch``) on the same input.
- *weight* variants (those whose spec builds the weight layers: ``weight``, ``normprop``,
  ``ws_group``): ``spec.conv(C, C, 1)`` (``spec.linear(C, C)`` for (N, C) inputs) followed by
  ``spec.layer(C, dims)``, relative to a plain 1×1 conv (linear) followed by native BN
  (``conv+batch``): the weight transform is paid once per step, beside a conv of the same size.

The compiled column is compared with the *eager* reference (native BN, or conv + native BN):
target :data:`COMPILED_TARGET` at the 4-d shapes, which is what ``trainer.compile=true`` can buy
a variant without a native kernel. ``compiled_gain`` is eager ms / compiled ms of the same case.

Cases (eager and compiled alike) are timed round-robin within each repeat (so load from other processes hits them
alike); the time of a case is the median over repeats of the mean over an inner loop sized
to last ≥ 5 ms (CUDA events on GPU). Results go to ``<out>/norms-<device>.csv`` (on CPU
``norms-cpu-<threads>t.csv``: one file per thread count), a PNG, and
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
COMPILED_TARGET = 1.5  # compiled case / eager reference, at the 4-d shapes
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


def _step_fn(
    module: nn.Module, shape: tuple[int, ...], device: torch.device, compiled: bool = False
) -> Callable[[], None]:
    """One forward+backward of ``module`` (through ``torch.compile`` when ``compiled``)."""
    module.to(device).train()
    x = torch.randn(shape, device=device, requires_grad=True)
    dy = torch.randn(shape, device=device)
    params = list(module.parameters())
    forward = torch.compile(module, dynamic=False) if compiled else module

    def step() -> None:
        torch.autograd.grad(forward(x), [x, *params], dy)

    return step


def _compile_config() -> None:
    """Room in dynamo's cache for every case (each case is its own module, compiled once)."""
    config = torch._dynamo.config
    for key in ("recompile_limit", "cache_size_limit"):  # the name changed across versions
        if hasattr(config, key):
            setattr(config, key, max(getattr(config, key), 64))
            break


def time_shape(
    shape: tuple[int, ...],
    device: torch.device,
    repeats: int,
    warmup: int,
    log: Callable[[str], None],
    compiled: bool = False,
) -> list[dict]:
    """Median seconds per forward+backward of every case at ``shape`` (eager, and compiled when
    ``compiled``), and the ratio rows."""
    timer = _timer(device)
    steps: dict[tuple[str, bool], tuple[Callable[[], None], int]] = {}
    rows: dict[str, dict] = {}
    for case in CASES:
        row = {
            "shape": "x".join(map(str, shape)),
            "variant": case.label,
            "kind": case.kind,
            "compared_to": REFERENCE[case.kind],
        }
        rows[case.label] = row
        row.update(ms=math.nan, ms_compiled=math.nan)
        for mode in (False, True) if compiled else (False,):
            try:
                step = _step_fn(build_case(case, shape), shape, device, compiled=mode)
                started = time.perf_counter()
                for _ in range(warmup):
                    step()  # compiled: the first call compiles
            except ConfigError as err:
                row["note"] = f"not defined for this shape: {err}"
                break
            except Exception as err:  # noqa: BLE001 - a case torch.compile cannot build
                if not mode:
                    raise
                row["compile_note"] = f"torch.compile failed: {type(err).__name__}: {err}"[:300]
                log(f"  {row['shape']} {case.label}: {row['compile_note']}")
                continue
            if mode:
                row["compile_s"] = time.perf_counter() - started
                log(f"  {row['shape']} {case.label}: compiled in {row['compile_s']:.1f} s")
            once = timer(step, 1)
            steps[case.label, mode] = (step, max(1, math.ceil(MIN_REPEAT_S / max(once, 1e-7))))
    samples: dict[tuple[str, bool], list[float]] = {key: [] for key in steps}
    for r in range(repeats):
        for key, (step, inner) in steps.items():
            samples[key].append(timer(step, inner))
        log(f"  {row['shape']}: repeat {r + 1}/{repeats}")
    for (label, mode), values in samples.items():
        rows[label]["ms_compiled" if mode else "ms"] = statistics.median(values) * 1000
    for row in rows.values():
        ref = rows[row["compared_to"]]["ms"]
        row["ratio"] = row["ms"] / ref
        row["within_target"] = "" if math.isnan(row["ratio"]) else row["ratio"] <= TARGET
        if compiled:
            row["ratio_compiled"] = row["ms_compiled"] / ref
            row["compiled_gain"] = row["ms"] / row["ms_compiled"]
            row["within_compiled_target"] = (
                ""
                if math.isnan(row["ratio_compiled"]) or len(shape) != 4
                else row["ratio_compiled"] <= COMPILED_TARGET
            )
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
        "--shapes",
        default=None,
        help="comma-separated input shapes such as 32x256x16x16,60x100 (default: "
        + ",".join("x".join(map(str, s)) for s in SHAPES)
        + ")",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time every case through torch.compile (the compiled column; default: on)",
    )
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
    if args.compile:
        _compile_config()
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        shapes = _parse_shapes(parser, args.shapes)
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
                shape,
                device,
                repeats,
                warmup,
                lambda s: print(s, file=sys.stderr, flush=True),
                compiled=args.compile,
            )
        ref_ms = {(r["shape"], r["variant"]): r["ms"] for r in rows}
        env["load_end"] = _load()
        rows = [
            {**env, **row, "reason": _reason(row, ref_ms[row["shape"], row["compared_to"]])}
            for row in rows
        ]
        print_table(rows)
        write_outputs(rows, out, output_name(env), command.strip())
    return 0


def _parse_shapes(parser: argparse.ArgumentParser, text: str) -> list[tuple[int, ...]]:
    shapes = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            shape = tuple(int(d) for d in item.split("x"))
        except ValueError:
            shape = ()
        if len(shape) not in (2, 4) or min(shape) < 1:
            parser.error(f"--shapes: {item!r} is not NxC or NxCxHxW with positive sizes")
        shapes.append(shape)
    if not shapes:
        parser.error("--shapes: no shape given")
    return shapes


def output_name(env: dict) -> str:
    """``norms-cuda`` on GPU; ``norms-cpu-<threads>t`` on CPU, one file per thread count."""
    if env["device"] == "cpu":
        return f"norms-cpu-{env['threads']}t"
    return f"norms-{env['device']}"


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
        ax.set_xlabel("fwd+bwd time / eager native BN (weight variants: / conv+BN)")
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
