"""``normbench bench norms``: forward+backward time of every normalization variant.

What is timed, per input shape and device, for every registered variant and a few extra cases
(the table: :mod:`normbench.bench.norm_cases`), in eager mode and, unless ``--no-compile`` (or
``--quick`` without ``--compile``), through ``torch.compile`` (the *compiled column*: the case's
module compiled with inductor, forward and the backward AOTAutograd derives from it):

- *slot* variants (everything acting on activations): ``spec.layer(C, dims)`` alone, in
  training mode, forward and backward (gradients of the input and of every parameter for a
  random upstream gradient), relative to native BatchNorm (``norm=batch``) on the same input.
- *weight* variants (those whose spec builds the weight layers: ``weight``, ``normprop``,
  ``ws_group``): ``spec.conv(C, C, 1)`` (``spec.linear(C, C)`` for (N, C) inputs) followed by
  ``spec.layer(C, dims)``, relative to a plain 1×1 conv (linear) followed by native BN
  (``conv+batch``): the weight transform is paid once per step, beside a conv of the same size.

The compiled column is compared with the *eager* reference (native BN, or conv + native BN):
target :data:`~normbench.bench.norm_timing.COMPILED_TARGET` at the 4-d shapes, which is what ``trainer.compile=true`` can buy
a variant without a native kernel. ``compiled_gain`` is eager ms / compiled ms of the same case.

Cases (eager and compiled alike) are timed round-robin within each repeat (so load from other
processes hits them alike); the time of a case is the median over repeats of the mean over an
inner loop sized to last ≥ 5 ms (CUDA events on GPU: :mod:`normbench.bench.norm_timing`).
Results (:mod:`normbench.bench.norm_report`) go to ``<out>/norms-<device>.csv`` (on CPU
``norms-cpu-<threads>t.csv``: one file per thread count), a PNG, and
the ``bench norms`` section of ``<out>/README.md``: the text between ``<!-- bench norms -->``
and ``<!-- /bench norms -->`` (``normbench.bench.readme_sections``), rewritten from every
``norms-<device>.csv`` while the rest of the README (other benchmarks' sections, notes) is
kept. The section records command, hardware, threads, date, the load average before and after
the run, the ``--conditions`` note, the table and the variants missing the 2× CPU target.
"""

from __future__ import annotations

import argparse
import sys

from normbench.bench import options
from normbench.bench.norm_cases import CASES
from normbench.bench.norm_report import (
    SECTION,
    output_name,
    print_table,
    readme_section,
    redraw_figures,
    write_outputs,
)
from normbench.bench.norm_timing import raise_compile_cache_limit, time_shape, with_reasons
from normbench.bench.provenance import environment, load_average
from normbench.bench.readme_sections import rewrite_section

SHAPES: list[tuple[int, ...]] = [(32, 256, 16, 16), (8, 64, 56, 56), (60, 100)]
QUICK_SHAPES: list[tuple[int, ...]] = [(8, 32, 8, 8), (60, 100)]


def main(argv: list[str]) -> int:
    """Entry point of ``normbench bench norms``."""
    parser = options.bench_parser("norms", __doc__.split("\n\n")[0])
    options.add_device(
        parser, "all", every=True, help="where to time (default: CPU, and CUDA when available)"
    )
    options.add_repeats(parser, 15, help="timed repeats per case (median; default 15)")
    options.add_warmup(parser, 3, help="untimed calls per case first (default 3)")
    options.add_threads(parser)
    options.add_output(
        parser,
        readme_only="only redraw the figures and rewrite the README section from the existing CSVs "
        "(no timing)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small shapes, 3 repeats, eager only (add --compile for the compiled column): a "
        "smoke run of seconds",
    )
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
        default=None,
        help="also time every case through torch.compile (the compiled column; default: on, "
        "off with --quick)",
    )
    args = parser.parse_args(argv)
    if args.compile is None:
        args.compile = not args.quick
    out = args.out
    if args.readme_only:
        redraw_figures(out)
        rewrite_section(out, SECTION, readme_section(out))
        return 0
    devices = options.devices(parser, args.device)
    shapes = _parse_shapes(parser, args.shapes) if args.shapes else None
    options.apply_threads(args.threads)
    if args.compile:
        raise_compile_cache_limit()
    shapes = shapes or (QUICK_SHAPES if args.quick else SHAPES)
    repeats, warmup = (3, 1) if args.quick else (args.repeats, args.warmup)
    out.mkdir(parents=True, exist_ok=True)
    command = options.command_line("norms", argv)
    for device in devices:
        env = {**environment(device), "load_start": load_average(), "conditions": args.conditions}
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
        env["load_end"] = load_average()
        rows = [{**env, **row} for row in with_reasons(rows)]
        print_table(rows)
        write_outputs(rows, out, output_name(env), command)
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
