"""``normbench bench train --compare-ops``: operator by operator, where our training step and
torchvision's reference step differ.

``bench train --reference`` gives one number per mode (our images/s over the reference's). This
says where a gap comes from: for each mode, ``steps`` steps of ours (``batch``) and of the
reference (torchvision's ResNet-50 in its reference loop, same batches, precision, memory
format and compile mode) run under ``torch.profiler`` after their warm-up, and every operator
(aten ops, CUDA runtime calls such as ``cudaLaunchKernel``, compiled graphs, autograd nodes) is
counted: calls per step, self CPU ms per step and, on a GPU, self device ms per step (compiled
graphs under one name: their hashes differ between the two models). Rows are
written to ``ops-vs-reference-<device>.csv`` sorted by the largest difference, and the step
totals (wall ms per step with the profiler on, kernel count) are printed per mode.

Profiler times include the profiler's own cost per recorded event; they rank differences, the
unprofiled ``bench train --reference`` gives the speed.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import re
import shlex
from pathlib import Path
from typing import Any

import torch

from normbench.bench.train_setup import build_reference_setup, build_setup
from normbench.bench.train_timing import profile_steps, warm_up
from normbench.engine.environment import environment
from normbench.files import write_atomic

#: What is counted per operator, each per step.
MEASURES = ("calls", "cpu_ms", "device_ms")

#: Names that differ between two compiled models for the same thing: a compiled graph's hash,
#: dynamo's frame number. Replaced, so that ours and the reference's are counted together.
RENAMES = (
    (re.compile(r"(CompiledFxGraph) \w+"), r"\1"),
    (re.compile(r"(Torch-Compiled Region): \d+/\d+"), r"\1"),
)


def op_name(key: str) -> str:
    """The profiler's event name with graph hashes and frame numbers taken out."""
    for pattern, replacement in RENAMES:
        key = pattern.sub(replacement, key)
    return key


def op_table(setup: Any, steps: int, device: torch.device) -> tuple[dict[str, dict], float]:
    """Profile ``steps`` steps of ``setup``: per operator, calls, self CPU ms and self device ms,
    each per step; and the wall ms per step under the profiler."""
    prof, wall_s = profile_steps(setup, steps, device)
    table: dict[str, dict] = {}
    for avg in prof.key_averages():
        device_us = getattr(avg, "self_device_time_total", None)
        if device_us is None:  # older torch
            device_us = getattr(avg, "self_cuda_time_total", 0.0)
        entry = table.setdefault(op_name(avg.key), dict.fromkeys(MEASURES, 0.0))
        entry["calls"] += avg.count / steps
        entry["cpu_ms"] += avg.self_cpu_time_total / 1000 / steps
        entry["device_ms"] += device_us / 1000 / steps
    return table, 1000 * wall_s / steps


def compare(ours: dict[str, dict], reference: dict[str, dict]) -> list[dict[str, Any]]:
    """One row per operator seen in either step, the largest |time difference| first."""
    zero = dict.fromkeys(MEASURES, 0.0)
    rows = []
    for op in sorted(set(ours) | set(reference)):
        a, b = ours.get(op, zero), reference.get(op, zero)
        row: dict[str, Any] = {"op": op}
        for key in MEASURES:
            digits = 2 if key == "calls" else 4
            row[f"{key}_ours"] = round(a[key], digits)
            row[f"{key}_reference"] = round(b[key], digits)
        for key in ("cpu_ms", "device_ms"):
            row[f"{key}_diff"] = round(a[key] - b[key], 4)
        rows.append(row)
    rows.sort(key=lambda r: -max(abs(r["cpu_ms_diff"]), abs(r["device_ms_diff"])))
    return rows


def run(
    args: argparse.Namespace, argv: list[str], data: Any, device: torch.device, log: Any
) -> Path:
    """Profile ours and the reference in every mode of ``args``; write the CSV, log the totals."""
    env = environment(device)
    date = dt.date.today().isoformat()
    command = "normbench bench train " + shlex.join(argv)
    out_rows = []
    for mode in args.mode_list:
        tables = []
        for reference in (False, True):
            setup = (
                build_reference_setup(args, mode, data, device)
                if reference
                else build_setup(args, "batch", mode, data, device)
            )
            warm_up(setup, args.warmup, device)
            tables.append(op_table(setup, args.steps, device))
            del setup  # one model in memory at a time
        (ours, wall_ours), (ref, wall_ref) = tables
        rows = compare(ours, ref)
        launches = {
            name: table.get("cudaLaunchKernel", {}).get("calls", 0.0)
            for name, table in (("ours", ours), ("reference", ref))
        }
        log(
            f"[{mode}] wall ms/step under the profiler: ours {wall_ours:.1f}, reference "
            f"{wall_ref:.1f}; cudaLaunchKernel calls/step: ours {launches['ours']:.0f}, reference "
            f"{launches['reference']:.0f}"
        )
        for row in rows[:12]:
            log(
                f"  {row['op'][:60]:60s} calls {row['calls_ours']:8.1f} vs "
                f"{row['calls_reference']:8.1f}  cpu ms {row['cpu_ms_diff']:+8.3f}  device ms "
                f"{row['device_ms_diff']:+8.3f}"
            )
        for row in rows:
            out_rows.append(
                {
                    "device": device.type,
                    "device_name": env["device_name"],
                    "torch": env["torch"],
                    "threads": env["threads"],
                    "date": date,
                    "git": env["git"],
                    "batch": args.batch,
                    "channels_last": args.channels_last,
                    "steps": args.steps,
                    "mode": mode,
                    "wall_ms_ours": round(wall_ours, 3),
                    "wall_ms_reference": round(wall_ref, 3),
                    **row,
                    "conditions": args.conditions,
                    "command": command,
                }
            )
    path = args.out / f"ops-vs-reference-{device.type}.csv"

    def write(handle: Any) -> None:
        writer = csv.DictWriter(handle, fieldnames=list(out_rows[0]))
        writer.writeheader()
        writer.writerows(out_rows)

    write_atomic(path, write)
    return path
