"""The ``ddp`` variant: real devices against simulated ones, and synchronized BN.

Runs of ``per_device.mode=ddp`` (N images on each of 2 torchrun processes) beside runs of the
same settings on one process (``per_device.mode=real per_device.devices=2``), paired by norm, N
and seed; norms BN (statistics per device) and synchronized BN (``norm=sync_batch``: statistics
over every device, 2N images; on one process it is BN over the whole batch of 2N).

Both modes see the same global batches in the same order and normalize each device's images
alone, so their parameters differ only by floating-point order; their running statistics
differ by construction (DDP keeps rank 0's; real mode averages every group's), and so may their
error, which uses them. Claims (keys shared with the other settings where the claim is the
same): ``simulated_devices`` (ddp ≈ real, an equivalence test), ``sync_bn`` (MegDet: synchronized
BN beats per-device BN at a small N) and ``bn_rise`` on the DDP runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from normbench.report.collect import Run
from normbench.report.output import md_table, write_tables
from normbench.report.papers import MEGDET
from normbench.report.verdicts import SHOWN, Claim, judge_difference, judge_equivalence, paired
from normbench.studies.small_batch.bn_stats import run_row
from normbench.studies.small_batch.claims import (
    Setting,
    bn_rise,
    combine,
    difference,
    effect,
    ns_of,
)
from normbench.studies.small_batch.points import by_seed, points
from normbench.studies.small_batch.report import runs_lines, setting
from normbench.studies.study import CLAIMS_HERE

MEGDET_SOURCE = "Peng et al. 2018, MegDet (docs/papers.md §2.7)"
NORMS = {"batch": "BN (per device)", "sync_batch": "SyncBN"}


def comparison_table(done: list[Run]) -> pd.DataFrame:
    """One row per complete run: N, mode, processes, batch, steps, errors (%), time."""
    runs = {str(r.path): r for r in done}
    rows = []
    for p in points(done).to_dict("records"):
        r = runs[p["run"]]
        rows.append(
            {
                "norm": p["norm"],
                "N": p["images"],
                "seed": p["seed"],
                "mode": p["mode"],
                "processes": (r.summary.get("distributed") or {}).get("world_size", 1),
                "batch": p["batch"],
                "steps": p["steps"],
                "median last evals %": round(p["error"], 2),
                "test error %": round(p["test_error"], 2),
                "precise stats %": round((run_row(r) or {}).get("precise", math.nan), 2),
                "wall s": round(float(p["wall_time_s"] or math.nan), 1),
                "run": r.path.name,
            }
        )
    if not rows:
        return pd.DataFrame()
    order = ["norm", "N", "seed", "mode"]
    return pd.DataFrame(rows).sort_values(order, ascending=[True, False, True, True])


def pairs_table(table: pd.DataFrame) -> pd.DataFrame:
    """ddp minus real, per (norm, N, seed) where both ran."""
    if table.empty:
        return pd.DataFrame()
    rows = []
    for (norm, n, seed), g in table.groupby(["norm", "N", "seed"], sort=False):
        ddp, real = g[g["mode"] == "ddp"], g[g["mode"] == "real"]
        if ddp.empty or real.empty:
            continue
        d, o = ddp.iloc[0], real.iloc[0]
        rows.append(
            {
                "norm": norm,
                "N": n,
                "seed": seed,
                "same batch and steps": bool(d["batch"] == o["batch"] and d["steps"] == o["steps"]),
                **{
                    f"ddp − real, {col}": round(d[col] - o[col], 2)
                    for col in ("test error %", "median last evals %", "precise stats %")
                },
            }
        )
    return pd.DataFrame(rows)


def simulated_devices_claim(pts: pd.DataFrame, s: Setting) -> Claim:
    """Each (norm, N): the 95% interval of ddp − real inside ± the minimum effect."""
    parts, rows = [], []
    on_ddp, on_real = pts[pts["mode"] == "ddp"], pts[pts["mode"] == "real"]
    for norm in [n for n in NORMS if n in set(pts["norm"])]:
        for n in ns_of(on_ddp, norm):
            d = paired(by_seed(on_real, norm, n), by_seed(on_ddp, norm, n))
            margin = effect(on_ddp, s, (norm, n))
            rows.append(f"{NORMS[norm]} N = {n}: {d.text()}")
            parts.append((f"{NORMS[norm]} N = {n}", judge_equivalence(d, margin)))
    return Claim(
        "small_batch",
        "simulated_devices",
        "N images on each of 2 processes (DDP) give the error of 2 simulated devices of N images "
        "on one process (per_device.mode=real), the setting every other result here stands on",
        "normbench per_device (docs/papers.md §2.1: the paper's BN statistics are per GPU)",
        "– (the premise of simulating the paper's 8 GPUs)",
        "ddp − real, error on the 10,000 test images of the final weights, paired by seed: "
        + ("; ".join(rows) or "no pair"),
        "the 95% interval inside ± the minimum effect (max(0.5, 2 binomial se)), for each norm and N",
        combine(parts) if parts else "not enough runs: needs ddp and real runs of one norm and N",
        s.scale,
    )


def sync_bn_claim(pts: pd.DataFrame, s: Setting) -> Claim:
    """At the smallest N both ran (ddp mode): BN − SyncBN > 0; BN's own penalty beside it."""
    ddp = pts[pts["mode"] == "ddp"]
    common = sorted(set(ns_of(ddp, "batch")) & set(ns_of(ddp, "sync_batch")))
    text = MEGDET["claims"]["sync_bn"]
    if not common:
        needs = "not enough runs: needs BN and SyncBN runs under DDP at one N, same seeds"
        return Claim(
            "small_batch", "sync_bn", text, MEGDET_SOURCE, "qualitative", "–", "–", needs, s.scale
        )
    small, top = common[0], max(ns_of(ddp, "batch"))
    d = difference(ddp, ("sync_batch", small), ("batch", small))
    penalty = difference(ddp, ("batch", top), ("batch", small))
    pen = judge_difference(penalty, +1, effect(ddp, s, ("batch", top), ("batch", small)))
    context = (
        f"; BN's own penalty BN({small}) − BN({top}) {penalty.text()}, shown: SyncBN takes back "
        f"{100 * d.mean / penalty.mean:.0f}% of it"
        if pen == SHOWN
        else f"; BN's own penalty BN({small}) − BN({top}) {penalty.text()} is {pen}: at this scale "
        "there is little or no penalty for SyncBN to remove"
    )
    return Claim(
        "small_batch",
        "sync_bn",
        f"{text}; here at N = {small} images per process on 2 processes (SyncBN's statistics "
        f"span {2 * small} images), holding {s.held_fixed}",
        MEGDET_SOURCE,
        "qualitative (abstract: cross-GPU BN lets a large-batch detector train, with better "
        "accuracy); no number transcribed",
        f"BN − SyncBN at N = {small} (DDP), error on the 10,000 test images of the final weights, "
        f"paired by seed: {d.text()}{context}",
        "BN − SyncBN > 0, effect ≥ the minimum (max(0.5, 2 binomial se))",
        judge_difference(d, +1, effect(ddp, s, ("batch", small), ("sync_batch", small))),
        s.scale,
    )


def ddp_report(runs: list[Run], out_dir: Path, left_out: list[str]) -> tuple[str, list[Claim]]:
    """The README text (before the claims table) and the claims of the ddp variant."""
    done = [r for r in runs if r.status == "complete"]
    raw = points(done).assign(measured=True)
    s = setting(done, raw)
    table = comparison_table(done)
    pairs = pairs_table(table)
    write_tables({"ddp_compare": table, "ddp_pairs": pairs}, out_dir)
    claims = [
        simulated_devices_claim(raw, s),
        sync_bn_claim(raw, s),
        bn_rise(raw[(raw["mode"] == "ddp") & (raw["norm"] == "batch")], s),
    ]
    lines = [
        "# Images per device: real processes (DDP) against simulated devices, and synchronized BN\n",
        __doc__.split("\n\n", 1)[1].split("\n\nBoth")[0].replace("\n", " ") + "\n",
        "Per run: the median val error of the last 5 evaluations (the small-batch tables' number), "
        "the error of the final weights on the 10,000 test images (the claims' number) and, where "
        "the `bn_stats` phase ran, the held-out error with Precise BN statistics (which takes the "
        "running statistics out of the comparison): [ddp_compare.csv](ddp_compare.csv)\n",
        md_table(table) if not table.empty else "(no complete runs)\n",
        "Paired by norm, N and seed: [ddp_pairs.csv](ddp_pairs.csv)\n",
        md_table(pairs) if not pairs.empty else "(no pair of a ddp run and a real-mode run)\n",
        "Why they can differ: the parameters follow the same arithmetic up to the order of "
        "floating-point sums (tests/test_ddp.py checks 20 steps to 1e-4); the error with running "
        "statistics uses rank 0's alone under DDP (torch broadcasts rank 0's buffers before every "
        "forward), and in real mode the mean of every group's; Precise BN recomputes them.\n",
        CLAIMS_HERE,
        *runs_lines(runs, left_out, "ddp_compare.csv"),
    ]
    return "\n".join(lines) + "\n", claims
