"""Online study, the data: one row per complete run, read from its run directory.

A run's *batching setting* is the ``batching.sizes=[low, high]`` it recorded (summary.json's
``batching``, else its saved config); a run without it trained on a fixed batch of
``dataset.batch_size``, the same as ``[b, b]``. The *reference* is the fixed batch (low = high),
the largest where there are several.

Numbers per run:

- ``test_error``: the error (%) of the final weights on the dataset's test split (the 10,000
  Fashion-MNIST test images) with the running statistics, from the study's ``test`` phase (the
  row ``normbench eval RUN mode=running data.val_split=test`` wrote in evals.csv). Every claim
  uses it.
- ``val_error``: the run's own final validation error (%) on its held-out images (summary.json).
- ``spike``: the largest loss spike, :func:`loss_spike` of metrics.csv's ``train_loss``.
- ``skipped`` and ``images``: summary.json's ``batching.skipped_batches`` (batches a layer could
  not normalize: one value per channel) and ``batching.images`` (images trained on).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from normbench.report.collect import Run
from normbench.report.seeds import by_seed as seed_values
from normbench.studies.small_batch.points import error_on_test_split

NORM_ORDER = ("batch", "batch_renorm", "group", "layer", "frn")
NORM_LABEL = {
    "batch": "BN",
    "batch_renorm": "BRN",
    "group": "GN",
    "layer": "LN",
    "frn": "FRN",
}
NORM_COLOR = {
    "batch": "tab:blue",
    "batch_renorm": "tab:orange",
    "group": "tab:red",
    "layer": "tab:green",
    "frn": "tab:purple",
}
#: claim-key names of the study's settings (others: ``sizes_<low>_<high>``)
SETTING_KEYS = {(2, 64): "varying", (2, 8): "small", (1, 8): "with_one"}
COLUMNS = (
    "norm",
    "setting",
    "low",
    "high",
    "lr_scaling",
    "seed",
    "test_error",
    "val_error",
    "spike",
    "final_loss",
    "skipped",
    "steps",
    "images",
    "epochs",
    "dependent",
    "wall_time_s",
    "run",
)


def sizes_of(run: Run) -> tuple[int, int]:
    """The run's ``batching.sizes`` as (low, high); a fixed batch of b: (b, b)."""
    recorded = (run.summary.get("batching") or {}).get("sizes")
    if recorded is None:
        recorded = (run.config.get("batching") or {}).get("sizes")
    if recorded is None:
        b = int((run.config.get("dataset") or {}).get("batch_size", 0))
        return b, b
    low, high = (int(v) for v in recorded)
    return low, high


def lr_scaling_of(run: Run) -> str:
    """``batching.lr_scaling`` of the run (``fixed`` when it recorded none)."""
    recorded = (run.summary.get("batching") or {}).get("lr_scaling")
    return str(recorded or (run.config.get("batching") or {}).get("lr_scaling") or "fixed")


def label(low: int, high: int) -> str:
    """``fixed 32`` or ``[2, 8]``: how tables name a setting."""
    return f"fixed {low}" if low == high else f"[{low}, {high}]"


def setting_key(low: int, high: int) -> str:
    """The claim-key name of a setting: varying, small, with_one, or sizes_<low>_<high>."""
    return SETTING_KEYS.get((low, high), f"sizes_{low}_{high}")


def loss_spike(losses: Sequence[float]) -> float:
    """The largest rise of the windowed training loss above its lowest earlier window (nats).

    ``losses`` are metrics.csv's ``train_loss`` in step order: each the mean training loss of the
    steps since the previous row (a window of a fixed number of images in this study). The spike
    is max over k of (L_k − min_{j<k} L_j): 0 when the loss never goes above an earlier window;
    nan with no window.
    """
    xs = [float(v) for v in losses if v is not None and math.isfinite(float(v))]
    if not xs:
        return math.nan
    spike, low = 0.0, xs[0]
    for x in xs[1:]:
        spike = max(spike, x - low)
        low = min(low, x)
    return spike


def points(runs: list[Run]) -> pd.DataFrame:
    """One row per complete run (see the module docstring)."""
    rows = []
    for r in runs:
        if r.status != "complete":
            continue
        low, high = sizes_of(r)
        m = r.metrics
        losses = m["train_loss"].tolist() if "train_loss" in m else []
        finite = [x for x in losses if isinstance(x, int | float) and math.isfinite(x)]
        batching = r.summary.get("batching") or {}
        val = r.final_val_error
        rows.append(
            {
                "norm": r.norm,
                "setting": label(low, high),
                "low": low,
                "high": high,
                "lr_scaling": lr_scaling_of(r),
                "seed": r.seed,
                "test_error": error_on_test_split(r),
                "val_error": 100.0 * val if val is not None else math.nan,
                "spike": loss_spike(losses),
                "final_loss": finite[-1] if finite else math.nan,
                "skipped": int(batching.get("skipped_batches", 0)),
                "steps": r.summary.get("step"),
                "images": batching.get("images"),
                "epochs": float(m["epoch"].iloc[-1]) if "epoch" in m and len(m) else math.nan,
                "dependent": r.batch_dependent,
                "wall_time_s": r.summary.get("wall_time_s"),
                "run": str(r.path),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def settings(pts: pd.DataFrame) -> list[tuple[int, int]]:
    """The (low, high) of every setting: the reference first, then by mean size, largest first."""
    pairs = {(int(lo), int(hi)) for lo, hi in zip(pts["low"], pts["high"], strict=True)}
    ref = reference(pts)
    rest = sorted(pairs - {ref} if ref else pairs, key=lambda p: (-(p[0] + p[1]), -p[1]))
    return ([ref] if ref else []) + rest


def reference(pts: pd.DataFrame) -> tuple[int, int] | None:
    """The fixed-batch setting (low = high), the largest batch where there are several."""
    fixed = sorted({int(lo) for lo, hi in zip(pts["low"], pts["high"], strict=True) if lo == hi})
    return (fixed[-1], fixed[-1]) if fixed else None


def by_seed(
    pts: pd.DataFrame, norm: str, sizes: tuple[int, int], column: str = "test_error"
) -> dict[int, float]:
    """``column`` of the (norm, setting) runs, keyed by seed (NaN values left out)."""
    return seed_values(pts, column, norm=norm, low=sizes[0], high=sizes[1])


def norms_of(pts: pd.DataFrame) -> list[str]:
    """The norms of the runs, in the study's order (others after)."""
    present = set(pts["norm"])
    return [n for n in NORM_ORDER if n in present] + sorted(present - set(NORM_ORDER))
