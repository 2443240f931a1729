"""``normbench <command> ...``: strips the sub-command and hands the rest to its handler.

``train`` hands everything to Hydra, so ``-m``, ``--cfg job``, ``--info`` and ``--help``
work behind it exactly as behind a plain Hydra app.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from normbench.errors import NormbenchError

USAGE = """usage: normbench <command> [args]

commands:
  train [overrides]   train one configuration (Hydra overrides; -m for a multirun sweep,
                      --cfg job to print the composed config, --help for the config groups)
  report DIR...       turn run or sweep directories into the paper's figure, CSV and README
  data                list every dataset: found or not, where, and how to get it
  bench NAME          benchmarks (`normbench bench NAME --help` for options):
                        norms   forward+backward time of every norm variant
                        models  our ResNet-50 / VGG-16 forward time against torchvision's
                        train   share of training-step time in normalization layers, eager vs
                                compiled, fp32 vs bf16; images/s and the data share of a step

examples:
  normbench train experiment=bn_fig1 norm=batch trainer.steps=2000
  normbench train -m experiment=bn_fig1
  normbench report runs/bn_fig1 --out results/bn_fig1
  normbench bench train --threads 1
"""

# Benchmark name -> module with a `main(argv) -> int`.
BENCHMARKS = {
    "norms": "normbench.bench.norms",
    "models": "normbench.bench.models",
    "train": "normbench.bench.train",
}


def _train(argv: list[str]) -> int:
    from normbench.engine.train import hydra_main

    return hydra_main(argv)


def _report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="normbench report",
        description=(
            "Collect run directories (searched recursively) and draw the study's figure, "
            "the CSV it plotted and a README table beside the paper's numbers."
        ),
    )
    parser.add_argument("dirs", nargs="+", help="run or sweep directories")
    parser.add_argument(
        "--out", default=None, help="output directory (default: <first DIR>/report)"
    )
    args = parser.parse_args(argv)
    from normbench.report.make import make_report

    make_report(args.dirs, args.out)
    return 0


def _data(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="normbench data",
        description=("List every dataset: whether and where it was found, and how to get it."),
    )
    parser.add_argument(
        "--root", default=None, help="data root to search (default: $NORMBENCH_DATA or ./data)"
    )
    parser.add_argument("--check", metavar="NAME", help="exit 0 if dataset NAME is found, 1 if not")
    parser.add_argument(
        "--download", metavar="NAME", help="download dataset NAME into --root (needs network)"
    )
    args = parser.parse_args(argv)
    from normbench.data.datasets import data_command

    return data_command(root=args.root, check=args.check, download_name=args.download)


def _bench(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: normbench bench {{{','.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[argv[0]])
    return module.main(argv[1:])


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": _train,
    "report": _report,
    "data": _data,
    "bench": _bench,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``normbench`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"normbench: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](rest) or 0
    except NormbenchError as err:
        print(f"normbench {command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
