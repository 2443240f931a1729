"""What a study declares: its training grid, its evaluation phases, its variants and its report.

A study module builds one :class:`Study` and the registry (``normbench/studies/__init__.py``)
names it. Nothing here runs anything: :mod:`normbench.studies.run` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from normbench.report.collect import Run
from normbench.report.verdicts import Claim

#: ``Phase.grid["step"] = KEPT``: every model the run kept (``trainer.keep_every``), per run.
KEPT = "kept"


@dataclass(frozen=True)
class Phase:
    """Named ``normbench eval`` jobs over the runs ``select`` accepts.

    ``grid`` maps eval keys to comma lists (``{"mode": "running,precise", "samples": "1000"}``);
    it is expanded by ``normbench eval -m``'s own rules (:func:`normbench.cli.eval.make_jobs`).
    ``"step": KEPT`` stands for every step whose model the run kept (its own list).
    ``select`` sees what a run records (its config, summary.json and overrides), never its path.
    """

    name: str
    grid: Mapping[str, str]
    select: Callable[[Run], bool] = lambda run: True
    about: str = ""


@dataclass(frozen=True)
class Variant:
    """Another setting of the same study: extra training overrides and its own results folder.

    ``overrides`` must set ``name=...`` (runs are grouped by the name they record) unless the
    variant only changes what is evaluated.
    """

    name: str
    overrides: tuple[str, ...]
    results: str
    about: str = ""
    phases: tuple[Phase, ...] | None = None  # None: the study's phases
    #: > 1: each run is one torchrun of this many processes (DDP), one run after another; or a
    #: function of a job's overrides (``{"per_device.mode": "ddp", ...}``) giving its count.
    processes: int | Callable[[Mapping[str, str]], int] = 1

    def processes_of(self, job: Mapping[str, str]) -> int:
        """How many processes train the run of ``job`` (1: a plain run)."""
        return self.processes(job) if callable(self.processes) else self.processes

    @property
    def distributed(self) -> bool:
        """Whether some run of the variant trains under torchrun."""
        return callable(self.processes) or self.processes > 1


@dataclass
class ReportInput:
    """What a study's report is given: its runs (complete or not) and where to write."""

    study: Study
    variant: Variant | None
    runs: list[Run]
    dirs: list[str]
    out_dir: Path
    command: str  # the `normbench study run ...` command that makes these runs


#: Where a study's README text wants the claims table (write_report puts it there; without the
#: mark it goes at the end, before "How this was made").
CLAIMS_HERE = "<!-- claims -->"


@dataclass
class ReportOutput:
    """A study report's README text and its claims (written to claims.csv for the index)."""

    text: str
    claims: list[Claim] = field(default_factory=list)


@dataclass(frozen=True)
class Study:
    """One declared study.

    Args:
        name: the registry name; also the ``name`` its runs record (``runs/<name>/``).
        title: one line: the paper result it reproduces.
        experiment: ``configs/experiment/<experiment>.yaml``; its ``hydra.sweeper.params`` is
            the training grid. None: the grid is ``params`` alone.
        params: more grid axes or fixed overrides (``{"seed": "0,1,2"}``), after the experiment's.
        overrides: fixed training overrides (e.g. a tiny dataset in a test study).
        phases: the evaluation phases, in order.
        report: ``ReportInput -> ReportOutput``: tables, figures, claims.
        variants: other settings (e.g. small_batch's long / real / ddp).
        results: the results folder of the main setting.
        scale: one line on the scale of the runs (for the claims index).
    """

    name: str
    title: str
    report: Callable[[ReportInput], ReportOutput]
    experiment: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()
    phases: tuple[Phase, ...] = ()
    variants: Mapping[str, Variant] = field(default_factory=dict)
    results: str = ""
    scale: str = ""

    def results_dir(self, variant: Variant | None) -> Path:
        return Path(variant.results if variant else (self.results or f"results/{self.name}"))

    def phases_of(self, variant: Variant | None) -> tuple[Phase, ...]:
        return variant.phases if variant and variant.phases is not None else self.phases

    def variant(self, name: str | None) -> Variant | None:
        """The variant called ``name`` (None: the main setting).

        Raises:
            KeyError: no such variant (the caller names the choices).
        """
        return None if name in (None, "", "main") else self.variants[name]


def recorded(run: Run, key: str, default: Any = None) -> Any:
    """A dotted key of the run's saved config (``per_device.mode``), or ``default``."""
    node: Any = run.config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def uses_batch_statistics(run: Run) -> bool:
    """Whether the run's norm normalizes by batch statistics (as its summary.json records)."""
    return run.batch_dependent
