"""The small-batch README's scale table: the paper's setup beside what our runs trained with.

Everything is read from the runs: their saved config (``.hydra/config.yaml``, whose step counts
may be written relative to the run length, ``${nb_step_at:${trainer.steps},0.5}``: resolved here
with the trainer's own resolver) and summary.json (the batch, lr and steps ``per_device``
resolved to). Where runs differ by N (real mode scales batch, lr and steps with N), each N's
values are listed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from normbench.report.collect import Run
from normbench.report.output import SCALE_HEADER
from normbench.report.papers import GN_PAPER
from normbench.studies.small_batch.points import LAST_EVALS, images_per_device, recorded_setting


def resolved(run: Run, key: str) -> Any:
    """A dotted key of the run's saved config with its interpolations resolved (None: absent)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    from normbench.config import register_resolvers

    register_resolvers()
    value = OmegaConf.select(OmegaConf.create(run.config), key, default=None)
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def step_factor(run: Run) -> int:
    """How much ``per_device`` multiplied the run's step counts (real/ddp mode: batch / (D·N))."""
    base = int((run.config.get("trainer") or {}).get("steps") or 0)
    steps = recorded_setting(run)["steps"]
    return int(steps) // base if base and steps else 1


def milestones(run: Run) -> list[int]:
    """The lr drops the run trained with, in its own steps."""
    return [int(m) * step_factor(run) for m in resolved(run, "optim.milestones") or []]


def brn_steps(run: Run) -> dict[str, int]:
    """Batch Renorm's warm-up and r/d schedule the run trained with, in its own steps."""
    keys = ("warmup_steps", "d_max_steps", "r_max_steps")
    return {k: int(resolved(run, f"norm.{k}")) * step_factor(run) for k in keys}


def per_n(runs: list[Run], describe: Callable[[Run], str]) -> str:
    """``describe`` of the runs: one text when every run gives the same, else one per N."""
    by_n: dict[int | None, set[str]] = {}
    for r in runs:
        by_n.setdefault(images_per_device(r), set()).add(describe(r))
    texts = {t for ts in by_n.values() for t in ts}
    if len(texts) == 1:
        return texts.pop()
    order = sorted(by_n, key=lambda n: -(n or 0))
    return "; ".join(f"N = {n}: {' / '.join(sorted(by_n[n]))}" for n in order)


def _optimizer(r: Run) -> str:
    s = recorded_setting(r)
    return f"batch {s['batch']}, lr {float(s['lr']):.4g}, {int(s['steps']):,} steps"


def _schedule(r: Run) -> str:
    o = r.config["optim"]
    if o.get("schedule") != "step":
        return str(o.get("schedule"))
    return f"×{o.get('gamma')} at steps {', '.join(f'{m:,}' for m in milestones(r))}"


def _brn(r: Run) -> str:
    b = brn_steps(r)
    return (
        f"plain BN for {b['warmup_steps']:,} steps, d_max reached at {b['d_max_steps']:,}, "
        f"r_max at {b['r_max_steps']:,}"
    )


def scale_lines(runs: list[Run], pts: pd.DataFrame, devices_text: str) -> list[str]:
    """The scale table (markdown lines) of ``runs`` (complete ones, or all when none is)."""
    cfg = runs[0].config
    setup, d, m, o, t = (
        GN_PAPER["setup"],
        cfg["dataset"],
        cfg["model"],
        cfg["optim"],
        cfg["trainer"],
    )
    groups = sorted(
        {r.config["norm"].get("num_groups") for r in runs if r.norm == "group"} - {None}
    )
    val = (
        f"{d.get('holdout_size')} images held out of the training set"
        if d.get("val_split") == "holdout"
        else f"the {d.get('val_split')} split"
    )
    epochs = pts["epochs"].dropna()
    params = sorted({r.summary.get("num_params") for r in runs if r.summary.get("num_params")})
    brn = [r for r in runs if r.norm == "batch_renorm"]
    env = runs[0].summary.get("environment") or {}
    rows = [
        (
            "data",
            setup["data"],
            f"{d['name']}, validation = {val}, claims on the 10,000-image test split, "
            f"augmentation {'on' if d.get('augment') else 'off'}, standardized: {d.get('standardize')}",
        ),
        (
            "model",
            setup["model"],
            f"{m['name']}"
            + (f" width {m['width']}, {m.get('stem')} stem" if "width" in m else "")
            + f" ({', '.join(f'{p:,}' for p in params)} parameters)"
            + (f", GN with G = {groups[0]}" if groups else ""),
        ),
        ("devices", setup["devices"], f"one {env.get('device', '?')}; {devices_text}"),
        (
            "optimizer",
            setup["optim"],
            f"SGD momentum {o['momentum']}, weight decay {o['weight_decay']} (all parameters); "
            + per_n(runs, _optimizer)
            + (f" ({epochs.min():.2f} epochs)" if len(epochs) else ""),
        ),
        ("schedule", "lr ÷10 at epochs 30, 60, 90 of 100", per_n(runs, _schedule)),
        (
            "init",
            setup["init"],
            "He init"
            + (
                f"; γ = 0 in each block's last norm: {m['zero_init_last_norm']}"
                if "zero_init_last_norm" in m
                else ""
            ),
        ),
        (
            "metric",
            setup["metric"],
            f"tables: median val error of the last {LAST_EVALS} evaluations (every "
            f"{t['eval_every']} steps of the reference batch); claims: error of the final "
            "weights on the test split",
        ),
        (
            "seeds",
            "1 run per setting",
            f"{pts['seed'].nunique()} ({', '.join(map(str, sorted(set(pts['seed']))))})",
        ),
    ]
    if brn:
        n = brn[0].config["norm"]
        rows.append(
            (
                "BRN",
                "r_max 1.5, d_max 0.5 (tuned at 4/GPU)",
                f"r_max {n['r_max']}, d_max {n['d_max']}, running-estimate rate {n['momentum']}; "
                + per_n(brn, _brn),
            )
        )
    return [*SCALE_HEADER, *(f"| {a} | {b} | {c} |" for a, b, c in rows), ""]
