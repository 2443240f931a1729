"""The command-line options every ``normbench bench`` command shares, written once.

Where to time (``--device``), how often (``--repeats``, ``--warmup``), with how many CPU threads
(``--threads``), and where the results go (``--out``, ``--conditions``, ``--readme-only``); with
the checks and the recorded command line that go with them. Each benchmark adds its own options
beside these and passes its own defaults.

The output folder defaults to :data:`DEFAULT_OUT`, outside ``results/``: a benchmark run from a
checkout never overwrites the committed numbers. ``--out results/bench`` (:data:`COMMITTED_OUT`)
writes them when that is the point. Every bench says where it wrote.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from pathlib import Path

import torch

#: Where the benchmarks write unless told otherwise (``runs/`` is not committed).
DEFAULT_OUT = Path("runs/bench")
#: The committed benchmark results, written only when asked: ``--out results/bench``.
COMMITTED_OUT = Path("results/bench")


def bench_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The parser of ``normbench bench NAME``."""
    return argparse.ArgumentParser(prog=f"normbench bench {name}", description=description)


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= low``, else a message naming the bound."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def add_device(
    parser: argparse.ArgumentParser,
    default: str | None = "cpu",
    *,
    every: bool = False,
    help: str | None = None,  # noqa: A002 (argparse's name)
) -> None:
    """``--device``: ``cpu`` or ``cuda`` (and ``all`` with ``every``: CPU, and CUDA if present)."""
    choices = ["cpu", "cuda", "all"] if every else ["cpu", "cuda"]
    parser.add_argument(
        "--device", choices=choices, default=default, help=help or f"default: {default}"
    )


def add_repeats(
    parser: argparse.ArgumentParser,
    default: int | None,
    *,
    help: str | None = None,  # noqa: A002 (argparse's name)
) -> None:
    """``--repeats``: timed repeats, of which the median is reported; at least 1."""
    _count(parser, "--repeats", 1, default, help or f"timed repeats (median; default {default})")


def add_warmup(
    parser: argparse.ArgumentParser,
    default: int | None,
    *,
    help: str | None = None,  # noqa: A002
) -> None:
    """``--warmup``: untimed runs before the timed ones; at least 0."""
    _count(parser, "--warmup", 0, default, help or f"untimed runs first (default {default})")


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads``: torch's CPU threads (default: torch's own choice)."""
    _count(parser, "--threads", 1, None, "torch CPU threads (default: torch's)")


def _count(
    parser: argparse.ArgumentParser, flag: str, low: int, default: int | None, text: str
) -> None:
    parser.add_argument(flag, type=_at_least(low), default=default, help=text)


def add_output(
    parser: argparse.ArgumentParser,
    readme_only: str | None = "only rewrite the README section from the existing CSVs (no timing)",
) -> None:
    """``--out``, ``--conditions`` and (unless ``readme_only`` is None, with that help)
    ``--readme-only``."""
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output directory (default: {DEFAULT_OUT}; --out {COMMITTED_OUT} updates the "
        "committed results)",
    )
    parser.add_argument(
        "--conditions", default="", help="free text recorded with the rows (e.g. machine load)"
    )
    if readme_only is not None:
        parser.add_argument("--readme-only", action="store_true", help=readme_only)


def devices(parser: argparse.ArgumentParser, choice: str) -> list[torch.device]:
    """The devices of ``--device`` (``all``: CPU, and CUDA when available); exits with a usage
    error for ``cuda`` without a CUDA device."""
    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        parser.error("--device cuda: no CUDA device is available; use --device cpu")
    if choice == "all":
        return [torch.device("cpu")] + ([torch.device("cuda")] if cuda else [])
    return [torch.device(choice)]


def apply_threads(threads: int | None) -> None:
    """Set torch's CPU threads when ``--threads`` was given."""
    if threads:
        torch.set_num_threads(threads)


def command_line(name: str, argv: list[str]) -> str:
    """The command as typed, shell-quoted, recorded beside the rows."""
    return shlex.join(["normbench", "bench", name, *argv])
