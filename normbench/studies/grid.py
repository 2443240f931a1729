"""A study's training grid: the jobs of its multirun, and which run directories answer them.

The grid is the experiment's ``hydra.sweeper.params``, then the study's ``params``, then the
variant's overrides, then the command line's (a later axis replaces an earlier one of the same
key). A run answers a job when the overrides it recorded (``.hydra/overrides.yaml``) equal the
job's, leaving out the keys Hydra leaves out of run directory names (``trainer.threads`` …):
what the run records, never its directory name.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from normbench.cli.values import split_values
from normbench.errors import ConfigError
from normbench.report.collect import Run, collect

# Keys that do not change what a run computes (configs/hydra/default.yaml's exclude_keys).
IGNORED_KEYS = ("trainer.device", "trainer.resume", "trainer.threads", "dataset.root", "name")


def _key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def experiment_params(experiment: str) -> dict[str, str]:
    """``hydra.sweeper.params`` of ``configs/experiment/<experiment>.yaml`` as strings.

    Raises:
        ConfigError: no such experiment.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from normbench.config import config_dir, register_resolvers

    if not (config_dir() / "experiment" / f"{experiment}.yaml").is_file():
        raise ConfigError(
            f"no experiment config {experiment}: add configs/experiment/{experiment}.yaml"
        )
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params or {}
    return {str(k): str(v) for k, v in params.items()}


@dataclass(frozen=True)
class Grid:
    """The training jobs: ``fixed`` overrides for every job, ``axes`` swept (key → values)."""

    fixed: tuple[str, ...]
    axes: tuple[tuple[str, tuple[str, ...]], ...]

    def jobs(self) -> list[dict[str, str]]:
        """Every job's overrides as key → value (fixed and swept), in the multirun's order."""
        fixed = dict(o.split("=", 1) for o in self.fixed if "=" in o)
        keys = [k for k, _ in self.axes]
        return [
            {**fixed, **dict(zip(keys, combo, strict=True))}
            for combo in itertools.product(*(values for _, values in self.axes))
        ]

    def argv(self) -> list[str]:
        """``normbench train -m``'s arguments for the whole grid."""
        return [*self.fixed, *(f"{k}={','.join(v)}" for k, v in self.axes)]


def make_grid(layers: list[list[str]]) -> Grid:
    """The grid of override layers, each a list of ``key=value`` (``value`` may be ``a,b``).

    Raises:
        ConfigError: an override that is not ``key=value``.
    """
    merged: dict[str, str] = {}
    for layer in layers:
        for override in layer:
            if "=" not in override:
                raise ConfigError(
                    f"{override!r} is not a key=value override (e.g. seed=0,1,2 or "
                    "trainer.steps=100)."
                )
            key, value = override.split("=", 1)
            merged.pop(key, None)  # a later layer replaces the key, and moves it last
            merged[key] = value
    fixed, axes = [], []
    for key, value in merged.items():
        values = split_values(value)
        if len(values) > 1:
            axes.append((key, tuple(values)))
        else:
            fixed.append(f"{key}={value}")
    return Grid(tuple(fixed), tuple(axes))


def canonical(value: str) -> str:
    """A float as Hydra's sweeper records it (``1e30`` → ``1e+30``, ``1e-3`` → ``0.001``), so
    that a job written either way finds its run; any other value unchanged."""
    text = str(value)
    if any(c in text for c in ".eE"):
        try:
            return str(float(text))
        except ValueError:
            return text
    return text


def identity(overrides: dict[str, str]) -> frozenset[tuple[str, str]]:
    """What makes a job one run: its overrides without the ignored keys, floats canonical."""
    return frozenset(
        (_key(k), canonical(v)) for k, v in overrides.items() if _key(k) not in IGNORED_KEYS
    )


def recorded_identity(run: Run) -> frozenset[tuple[str, str]]:
    return identity(dict(o.split("=", 1) for o in run.overrides if "=" in o))


def match_runs(grid: Grid, runs_root: Path) -> list[tuple[dict[str, str], Run | None]]:
    """Each job of the grid with the run directory that answers it (None: not started)."""
    runs = (
        collect([runs_root]) if runs_root.is_dir() and any(runs_root.rglob("config.yaml")) else []
    )
    by_identity = {recorded_identity(r): r for r in runs}
    return [(job, by_identity.get(identity(job))) for job in grid.jobs()]
