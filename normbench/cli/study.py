"""``normbench study list | plan | run | report | status NAME [--variant V] [jobs=N] [overrides]``."""

from __future__ import annotations

from pathlib import Path

from normbench.errors import ConfigError

HELP = """usage: normbench study list
       normbench study plan|run|status|report NAME [--variant V] [jobs=N] [results=DIR] [overrides]
       normbench study report all

A study is one declared unit (normbench/studies/): a training grid, evaluation phases, a report
with its claims.

  list      the studies and their variants
  plan      how many runs and evaluations, how many are done, and a time estimate
  run       train the grid, evaluate every phase, write the report; interrupted (Ctrl-C,
            SIGTERM, a kill), the same command goes on where it stopped
  status    what is done, and each run that failed or is unfinished
  report    the study's report from its runs (README.md, CSV, PNG, claims.csv)
  report all   results/README.md: the claims index, from every study folder's claims.csv

options:
  --variant V     another setting of the study (normbench study list shows them)
  jobs=N          N processes at once, for training (Hydra's joblib launcher) and evaluation
                  (one run directory per process); default 1
  results=DIR     write the report here instead of the study's results folder
  overrides       Hydra overrides for training, e.g. seed=0,1,2 trainer.steps=100: a list
                  sweeps; a key of the study's grid is replaced

examples:
  normbench study plan domain_shift
  normbench study run small_batch jobs=2
  normbench study run small_batch --variant long jobs=2
"""

ACTIONS = ("list", "plan", "run", "status", "report")


def main(argv: list[str]) -> int:
    """The ``study`` command; returns the exit status.

    Raises:
        ConfigError: a bad action, study, variant or option.
    """
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(HELP)
        return 0
    action, rest = argv[0], argv[1:]
    if action not in ACTIONS:
        raise ConfigError(f"unknown study action {action!r}; one of {', '.join(ACTIONS)}.")
    if action == "list":
        return list_studies()
    if not rest:
        raise ConfigError(f"name a study: normbench study {action} NAME (normbench study list)")
    if action == "report" and rest[0] == "all":
        from normbench.studies.index import write_index

        write_index(Path("results"))
        return 0
    from normbench.studies import run

    sel = selection(rest)
    return {"plan": run.plan, "run": run.run, "status": run.status, "report": run.report}[action](
        sel
    )


def selection(args: list[str]):
    """The study, variant, options and training overrides of the arguments."""
    from normbench.studies import get_study
    from normbench.studies.run import Selection

    study = get_study(args[0])
    variant_name, jobs, results, overrides = None, 1, None, []
    rest = iter(args[1:])
    for token in rest:
        if token == "--variant":
            variant_name = next(rest, None)
            if variant_name is None:
                raise ConfigError("--variant needs a name: --variant long")
        elif token.startswith("--variant="):
            variant_name = token.split("=", 1)[1]
        elif token.startswith("jobs="):
            value = token.split("=", 1)[1]
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"jobs={value}: jobs is a number of processes >= 1, e.g. jobs=2.")
            jobs = int(value)
        elif token.startswith("results="):
            results = Path(token.split("=", 1)[1])
        elif token.startswith("-"):
            raise ConfigError(f"unknown option {token}; see normbench study --help.")
        else:
            overrides.append(token)
    try:
        variant = study.variant(variant_name)
    except KeyError:
        choices = ", ".join(study.variants) or "none"
        raise ConfigError(
            f"study {study.name} has no variant {variant_name!r}; its variants: {choices}."
        ) from None
    return Selection(study, variant, overrides, jobs, results)


def list_studies() -> int:
    from normbench.studies import get_study, names

    for name in names():
        try:
            study = get_study(name)
        except (ImportError, AttributeError) as err:  # a study module being written
            print(f"{name:14} (cannot be loaded: {err})")
            continue
        print(f"{name:14} {study.title}")
        for v in study.variants.values():
            print(f"  --variant {v.name:8} {v.about}  -> {v.results}/")
    return 0
