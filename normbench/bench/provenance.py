"""What every benchmark row records about where it ran (device, torch, threads, date and the
machine's load), and writing the rows."""

from __future__ import annotations

import csv
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from normbench.engine.environment import cpu_name


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


def load_average() -> str:
    """The 1-minute load average (other processes competing for the CPU), or '' if unknown."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return ""


def write_rows(out: Path, name: str, columns: Sequence[str], rows: list[dict]) -> Path:
    """Write ``rows`` to ``out/name`` as a CSV of ``columns`` (``out`` is created), say so on
    stderr, and return the path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}", file=sys.stderr)
    return path
