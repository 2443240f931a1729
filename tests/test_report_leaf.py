"""The report is a leaf: it reads run directories and imports nothing from norms, models or
engine (whatever it needs to know about a run, the run records in summary.json)."""

from __future__ import annotations

import ast
import importlib.util
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import normbench.report

UPSTREAM = (
    "normbench.norms",
    "normbench.models",
    "normbench.engine",
    "normbench.evaluation",
)
# The report side of the studies too: each study's package (declaration, tables, claims) and
# the study report/index writers; not the runner (run, evaluate, grid), which drives training.
STUDY_PACKAGES = ("bn_fig1", "small_batch", "domain_shift")
MODULES = sorted(
    [f"normbench.report.{m.name}" for m in pkgutil.iter_modules(normbench.report.__path__)]
    + ["normbench.studies", "normbench.studies.study", "normbench.studies.report"]
    + ["normbench.studies.index"]
    + [f"normbench.studies.{p}" for p in STUDY_PACKAGES]
    + [
        f"normbench.studies.{p}.{m.name}"
        for p in STUDY_PACKAGES
        for m in pkgutil.iter_modules(
            [str(Path(normbench.report.__path__[0]).parent / "studies" / p)]
        )
    ]
)


def test_the_report_package_has_the_modules_checked_below():
    assert {"normbench.report.make", "normbench.report.verdicts"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_a_report_module_imports_nothing_upstream(module):
    # a fresh interpreter: in this one, other tests have imported everything already
    code = (
        f"import json, sys, {module}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({UPSTREAM!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout.splitlines()[-1]) == [], f"{module} imports {done.stdout}"


@pytest.mark.parametrize("module", MODULES)
def test_no_import_of_upstream_packages_anywhere_in_a_report_module(module):
    """Also imports inside functions, which importing the module does not run."""
    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    names += [  # from normbench import norms
        f"{n.module}.{a.name}"
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module == "normbench"
        for a in n.names
    ]
    assert not [n for n in names if n.startswith(UPSTREAM)]
