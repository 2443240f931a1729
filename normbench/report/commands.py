"""The ``normbench train`` commands that make a report's runs again, for its README."""

from __future__ import annotations

import shlex

from normbench.report.collect import Run


def training_command(runs: list[Run]) -> str:
    """The ``normbench train`` command that makes these runs: one run, or one multirun whose
    swept keys list every value the runs took."""
    values: dict[str, list[str]] = {}
    for r in runs:
        for override in r.overrides:
            key, _, value = override.partition("=")
            if value not in values.setdefault(key, []):
                values[key].append(value)
    multi = len(runs) > 1
    args = [shlex.quote(f"{k}={','.join(v)}") for k, v in values.items()]
    return "normbench train " + ("-m " if multi else "") + " ".join(args)


def training_commands(runs: list[Run]) -> list[str]:
    """``normbench train -m`` commands that make these runs: runs whose overrides differ only in
    per_device.images and seed share one command."""
    groups: dict[tuple[str, ...], dict[str, list[str]]] = {}
    for r in runs:
        fixed = tuple(
            o for o in r.overrides if o.partition("=")[0] not in ("per_device.images", "seed")
        )
        values = groups.setdefault(fixed, {"per_device.images": [], "seed": []})
        for o in r.overrides:
            key, _, value = o.partition("=")
            if key in values and value not in values[key]:
                values[key].append(value)
    cmds = []
    for fixed, values in groups.items():
        swept = [
            f"{k}={','.join(sorted(v, key=_number, reverse=k == 'per_device.images'))}"
            for k, v in values.items()
            if v
        ]
        args = sorted(fixed, key=lambda o: not o.startswith("experiment=")) + swept
        cmds.append("normbench train -m " + " ".join(shlex.quote(a) for a in args))
    return sorted(cmds)


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("inf")
