"""How ``normbench bench train`` measures: warm-up, timed repeats split into data and compute as
the trainer splits them, the profiled norm share, and one row per variant and mode.

All setups are built and warmed up first (compiling, in compiled modes), then timed
round-robin across modes and variants (:func:`run_all`), so that load from other processes
hits all alike. The columns are described in :mod:`normbench.bench.train`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from typing import Any

import torch

from normbench.bench.attribution import STEP_SCOPE, ModuleScopes, ModuleShare, module_share
from normbench.bench.clock import sync
from normbench.bench.train_setup import REFERENCE, Setup, build_reference_setup, build_setup
from normbench.probes.timing import PhaseTimer


def warm_up(setup: Setup, steps: int, device: torch.device) -> None:
    """Untimed steps (the compile happens here in compiled modes); records their seconds."""
    start = time.perf_counter()
    for _ in range(steps):
        setup.step()
    sync(device)
    setup.warmup_s = time.perf_counter() - start


def timed(setup: Setup, steps: int, device: torch.device) -> None:
    """``steps`` steps split into data and compute as the trainer does; appends seconds per step."""
    timer = PhaseTimer(device)
    for _ in range(steps):
        with timer.phase("data"):
            x, y = setup.loader.next()
            x = setup.fast.prepare_input(x)
        with timer.phase("train_step"):
            setup.train_step(setup.step_model, x, y, setup.optimizer, setup.fast)
    window = timer.window()
    setup.step_s.append((window["data"] + window["train_step"]) / steps)
    setup.data_s.append(window["data"] / steps)


def profile_steps(setup: Setup, steps: int, device: torch.device) -> tuple[Any, float]:
    """Profile ``steps`` steps of ``setup``, each in a ``STEP_SCOPE`` range, after one profiled,
    discarded step that warms the profiler up; the finished profiler and the wall seconds of
    the kept steps."""
    from torch.profiler import ProfilerActivity, profile, record_function, schedule

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    plan = schedule(wait=0, warmup=1, active=steps, repeat=1)
    start = time.perf_counter()
    with profile(activities=activities, schedule=plan) as prof:
        for i in range(steps + 1):
            if i == 1:
                start = time.perf_counter()
            with record_function(STEP_SCOPE):
                setup.step()
            sync(device)
            prof.step()
    return prof, time.perf_counter() - start


def profiled(setup: Setup, steps: int, device: torch.device) -> ModuleShare:
    """Profile ``steps`` steps with the norm modules scoped; the time in them."""
    with ModuleScopes(setup.norm_modules):
        prof, _ = profile_steps(setup, steps, device)
    return module_share(prof.events(), cuda=device.type == "cuda")


def profiled_columns(share: ModuleShare, steps: int, range_overhead_s: float) -> dict[str, float]:
    """Per-step milliseconds and the profiled share, less the attribution's own cost: the time a
    range around an identity slot takes (``range_overhead_s``, measured on the baseline) for
    every module forward, taken off the forward time and off the step."""
    hooks = range_overhead_s * share.ranges
    forward = max(0.0, share.forward_s - hooks)
    step = share.step_s - hooks
    return {
        "profiled_step_ms": 1000 * step / steps,
        "norm_fwd_ms": 1000 * forward / steps,
        "norm_bwd_ms": 1000 * share.backward_s / steps,
        "hook_overhead_ms": 1000 * hooks / steps,
        "norm_share_profiled": (forward + share.backward_s) / step if step > 0 else math.nan,
    }


def run_all(
    args: argparse.Namespace, modes: list[str], variants: list[str], data: Any, device: torch.device
) -> list[dict[str, Any]]:
    """Every variant in every mode: build and warm up all, time them round-robin (so load from
    other processes hits every mode and variant alike), profile the eager ones; a row each."""
    if any(m.startswith("compiled") for m in modes):
        _fresh_compile_cache(len(modes) * (len(variants) + 1))
    setups: dict[str, list[Setup]] = {}
    for mode in modes:
        setups[mode] = []
        for variant in variants + ([REFERENCE] if args.reference else []):
            if variant == REFERENCE:
                setup = build_reference_setup(args, mode, data, device)
            else:
                setup = build_setup(args, variant, mode, data, device)
            log(
                f"[{mode}] {setup.label}: {args.warmup} warm-up step(s)"
                + (" (compiling)" if setup.fast.compile else "")
            )
            warm_up(setup, args.warmup, device)
            log(f"[{mode}] {setup.label}: warm-up took {setup.warmup_s:.1f} s")
            setups[mode].append(setup)
    for r in range(args.repeats):
        for mode, group in setups.items():
            for setup in group:
                timed(setup, args.steps, device)
            log(
                f"repeat {r + 1}/{args.repeats} [{mode}]: "
                + ", ".join(f"{s.label} {1000 * s.step_s[-1]:.1f} ms" for s in group)
            )
    rows = []
    for mode, group in setups.items():
        for setup in group:
            rows.append(_row(args, mode, setup, group[0], device))
    return with_reference_ratio(rows)


def with_reference_ratio(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``vs_reference`` on each ``batch`` row: its images/s over the reference's, same mode."""
    reference = {r["mode"]: r["images_per_s"] for r in rows if r["variant"] == REFERENCE}
    for row in rows:
        row["vs_reference"] = (
            row["images_per_s"] / reference[row["mode"]]
            if row["variant"] == "batch" and row["mode"] in reference
            else math.nan
        )
    return rows


def _row(
    args: argparse.Namespace, mode: str, setup: Setup, baseline: Setup, device: torch.device
) -> dict[str, Any]:
    """Medians over repeats; the differential pairs each repeat with the baseline's same repeat
    (timed moments apart, under the same load)."""
    step_s, data_s = statistics.median(setup.step_s), statistics.median(setup.data_s)
    pairs = list(zip(setup.step_s, baseline.step_s, strict=True))
    row: dict[str, Any] = {
        "variant": setup.label,
        "mode": mode,
        "precision": setup.fast.precision,
        "compiled": setup.fast.compile,
        "step_ms": 1000 * step_s,
        "images_per_s": args.batch / step_s,
        "data_ms": 1000 * data_s,
        "data_share": data_s / step_s,
        "warmup_s": setup.warmup_s,
        # every repeat's ms per step, in order: repeat i of every variant and mode was timed in
        # the same round, so two variants pair repeat by repeat (a paired interval of a ratio)
        "step_ms_repeats": " ".join(f"{1000 * s:.3f}" for s in setup.step_s),
        "norm_ms_differential": 1000 * statistics.median(v - b for v, b in pairs),
        "norm_share_differential": min(
            1.0, max(0.0, statistics.median((v - b) / v for v, b in pairs))
        ),
        "profiled_step_ms": math.nan,
        "norm_fwd_ms": math.nan,
        "norm_bwd_ms": math.nan,
        "hook_overhead_ms": math.nan,
        "norm_share_profiled": math.nan,
        "note": "",
    }
    if setup.variant == REFERENCE:
        row["note"] = (
            "torchvision's resnet50 in its reference training loop; the norm shares are not "
            "measured for it"
        )
        row["norm_ms_differential"] = row["norm_share_differential"] = math.nan
    elif setup.fast.compile:
        row["note"] = "compiled: norm work is fused into generated kernels; differential share only"
    elif not args.profile:
        row["note"] = "not profiled (--no-profile); differential share only"
    else:
        log(f"[{mode}] {setup.label}: profiling {args.steps} step(s)")
        share = profiled(setup, args.steps, device)
        if setup is baseline and share.ranges:  # profiled first: identity slots, pure overhead
            setup.range_overhead_s = share.forward_s / share.ranges
        row.update(profiled_columns(share, args.steps, baseline.range_overhead_s))
    return row


def _fresh_compile_cache(models: int) -> None:
    """Forget earlier modes' compiled code, and let every model of this mode keep its own: the
    models share their ``forward`` code objects, and dynamo caches a limited number of
    compilations per code object (beyond it, it would silently run the model eagerly)."""
    import torch._dynamo

    torch._dynamo.reset()
    config = torch._dynamo.config
    for key in ("recompile_limit", "cache_size_limit"):  # the name changed across versions
        if hasattr(config, key):
            setattr(config, key, max(getattr(config, key), 2 * models + 8))
            break


def log(message: str) -> None:
    """Progress, to stderr."""
    print(message, file=sys.stderr, flush=True)
