"""How ``normbench bench norms`` times a case: forward+backward of the case's module in training
mode, eager and (optionally) through ``torch.compile``, every case of a shape timed round-robin
within each repeat; the time of a case is the median over repeats of the mean over an inner
loop sized to last at least :data:`MIN_REPEAT_S` (CUDA events on GPU). The cases are
:data:`~normbench.bench.norm_cases.CASES`; a case missing :data:`TARGET` gets a reason.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from normbench.bench.clock import per_call_timer
from normbench.bench.norm_cases import CASES, REFERENCE, build_case
from normbench.errors import ConfigError

TARGET = 2.0
COMPILED_TARGET = 1.5  # compiled case / eager reference, at the 4-d shapes
MIN_REPEAT_S = 0.005


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


def raise_compile_cache_limit() -> None:
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
    timer = per_call_timer(device)
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


def _reason(row: dict, reference_ms: float) -> str:
    """The row's note, or why its case misses the target (empty when it does not)."""
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


def with_reasons(rows: list[dict]) -> list[dict]:
    """``rows`` (of :func:`time_shape`) each with its ``reason``: its note, or why it misses."""
    ref_ms = {(r["shape"], r["variant"]): r["ms"] for r in rows}
    return [
        {**row, "reason": _reason(row, ref_ms[row["shape"], row["compared_to"]])} for row in rows
    ]
