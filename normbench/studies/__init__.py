"""Studies: each a declared unit (training grid, evaluation phases, report, claims).

``STUDIES`` names the module of each study; the module defines ``STUDY``, a
:class:`normbench.studies.study.Study`. Modules are imported when a study is asked for, so
listing studies imports no torch. :func:`register` adds a study declared elsewhere (a test's
own study): nothing else has to change for a new study.
"""

from __future__ import annotations

import difflib
import importlib

from normbench.errors import ConfigError
from normbench.studies.study import Study

STUDIES: dict[str, str] = {
    "bn_fig1": "normbench.studies.bn_fig1",
    "small_batch": "normbench.studies.small_batch",
    "domain_shift": "normbench.studies.domain_shift",
    "inference_batch": "normbench.studies.inference_batch",
    "non_iid": "normbench.studies.non_iid",
    "online": "normbench.studies.online",
    "population_stats": "normbench.studies.population_stats",
    "detached_bias": "normbench.studies.detached_bias",
    "gradient_flow": "normbench.studies.gradient_flow",
    "gamma_beta": "normbench.studies.gamma_beta",
    "vgg16_activations": "normbench.studies.vgg16_activations",
    "jacobian": "normbench.studies.jacobian",
    "covariate_shift": "normbench.studies.covariate_shift",
    "weightnorm_normprop": "normbench.studies.weightnorm_normprop",
    "recurrent": "normbench.studies.recurrent",
}
_REGISTERED: dict[str, Study] = {}


def register(study: Study) -> Study:
    """Add ``study`` to the registry of this process (a study declared outside the package)."""
    _REGISTERED[study.name] = study
    return study


def names() -> list[str]:
    """Every study's name, the package's first."""
    return [*STUDIES, *(n for n in _REGISTERED if n not in STUDIES)]


def get_study(name: str) -> Study:
    """The study called ``name``.

    Raises:
        ConfigError: no such study (the message lists them).
    """
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in STUDIES:
        close = difflib.get_close_matches(name, names(), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(
            f"no study called {name!r}; {hint}the studies are {', '.join(names())} "
            "(normbench study list)."
        )
    return importlib.import_module(STUDIES[name]).STUDY


def study_of_run_name(run_name: str) -> tuple[Study, str | None] | None:
    """The study (and variant) whose runs record ``name: run_name``, or None."""
    for name in names():
        study = get_study(name)
        if run_name == study.name:
            return study, None
        for variant in study.variants.values():
            if f"name={run_name}" in variant.overrides:
                return study, variant.name
    return None
