"""Domain-shift study, the claims: each a :class:`~normbench.report.verdicts.Claim` judged by the
shared rule (normbench/report/verdicts.py).

A difference is paired by seed: per seed, each mode's mean error over the cells (corruption,
severity) both modes hold, then ``b − a``; the 95% Student-t interval over seeds decides, with
the minimum effect ``min_effect(error, images)``, where ``error`` is the reference mode's mean
error and ``images`` the images of one evaluation (1,000 held-out or 10,000 test images). A
claim about models with batch statistics is one claim per (model, norm). Where a claim can be
measured on the 10,000 test images, it is; otherwise on the held-out images, and ``ours`` says
which. The papers' numbers come from :mod:`normbench.studies.domain_shift.paper`.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from normbench.report.flags import not_enough
from normbench.report.verdicts import (
    BY_CONSTRUCTION,
    Claim,
    estimate,
    judge_difference,
    judge_equivalence,
    min_effect,
    paired,
)
from normbench.studies.domain_shift.comparisons import SPLIT_TEXT
from normbench.studies.domain_shift.data import (
    CELL,
    TENT_REF,
    TEST,
    VAL,
    Baseline,
    at_severity,
    clean,
    corrupted,
    groups_of,
    label,
    mode_rows,
    of_group,
    shared_by_seed,
)
from normbench.studies.domain_shift.paper import BRIGHTNESS_AND_JPEG, NOISE_AND_BLUR
from normbench.studies.domain_shift.specs import SPECS, Spec
from normbench.studies.domain_shift.tables import severity_text

Select = Callable[[pd.DataFrame], pd.Series]
Options = list[tuple[str, pd.DataFrame]]  # (split, cells), the preferred split first
STUDY = "domain_shift"


def _claim(
    spec: Spec, group: tuple[str, str] | None, ours: str, verdict: str, rule: str = ""
) -> Claim:
    where = f" ({label(group)})" if group else ""
    return Claim(
        STUDY,
        spec.key + (f":{label(group)}" if group else ""),
        spec.claim + where,
        spec.source,
        spec.paper,
        ours,
        spec.rule + rule,
        verdict,
        "",
    )


def _effect(rows: pd.DataFrame) -> float:
    """The minimum effect (points, rounded to 0.01) for the error of ``rows``."""
    images = rows["images"].dropna()
    effect = min_effect(float(rows["error"].mean()), int(images.median()) if len(images) else None)
    return round(effect, 2)


def _mean(values: dict) -> float:
    return estimate(values.values()).mean


def _where(rows: pd.DataFrame, split: str) -> str:
    bad = rows[corrupted(rows)]
    if bad.empty:
        return f"clean, {SPLIT_TEXT.get(split, split)} images"
    sev = severity_text(set(bad["severity"]))
    n = bad["corruption"].nunique()
    where = SPLIT_TEXT.get(split, split)
    return f"{n} corruption{'s' * (n != 1)} at severity {sev}, {where} images"


def _measured(options: Options, group, a: str, b: str, select: Select):
    """The first split of ``options`` where ``a`` and ``b`` share cells in ``group``."""
    for split, cells in options:
        ra, rb = mode_rows(cells, group, a, select), mode_rows(cells, group, b, select)
        sides = shared_by_seed(ra, rb)
        if sides[0]:
            return split, ra, sides
    return None


def pair_claims(
    spec: Spec,
    options: Options,
    a: str,
    b: str,
    select: Select,
    sign: int,
    groups: list[tuple[str, str]],
    equivalence: bool = False,
) -> list[Claim]:
    """One claim per group: ``b − a`` judged as a difference (``sign``) or an equivalence."""
    claims = []
    for group in groups:
        found = _measured(options, group, a, b, select)
        if found is None:
            needs = f"mode={a} and mode={b} of {label(group)} on the same cells"
            claims.append(_claim(spec, group, "not measured", not_enough(needs)))
            continue
        split, ref, (sa, sb) = found
        d, effect = paired(sa, sb), _effect(ref)
        ours = (
            f"{_where(ref, split)}: {a} {_mean(sa):.1f}, {b} {_mean(sb):.1f}; {b} − {a} {d.text()}"
        )
        verdict = judge_equivalence(d, effect) if equivalence else judge_difference(d, sign, effect)
        claims.append(_claim(spec, group, ours, verdict, f"; minimum effect {effect:.2f}"))
    return claims or [
        _claim(spec, None, "not measured", not_enough(f"runs under mode={a} and mode={b}"))
    ]


def _gain(cells: pd.DataFrame, group, select: Select) -> dict:
    """Per seed: running − adapt over the cells ``select`` keeps that both hold."""
    running, adapt = shared_by_seed(
        *(mode_rows(cells, group, m, select) for m in ("running", "adapt"))
    )
    return {s: running[s] - adapt[s] for s in running}


def _difference_of_gains(
    spec: Spec, cells: pd.DataFrame, groups, high: Select, low: Select, names: tuple[str, str]
) -> list[Claim]:
    claims = []
    for group in groups:
        gh, gl = _gain(cells, group, high), _gain(cells, group, low)
        d = paired(gl, gh)
        if not d.n:
            needs = f"running and adapt of {label(group)} {names[0]} and {names[1]}"
            claims.append(_claim(spec, group, "not measured", not_enough(needs)))
            continue
        effect = _effect(mode_rows(cells, group, "running", high))
        ours = (
            f"{SPLIT_TEXT[VAL]} images: gain {names[0]} {_mean(gh):+.1f}, {names[1]} "
            f"{_mean(gl):+.1f}; difference {d.text()}"
        )
        claims.append(
            _claim(
                spec, group, ours, judge_difference(d, +1, effect), f"; minimum effect {effect:.2f}"
            )
        )
    return claims or [
        _claim(spec, None, "not measured", not_enough("runs under running and adapt"))
    ]


def _in(corruptions: tuple[str, ...], severity: int) -> Select:
    return lambda df: at_severity(severity)(df) & df["corruption"].isin(corruptions)


def partial_prior_claims(ev: pd.DataFrame, groups) -> list[Claim]:
    """The main partial setting against the same batch size without the prior (prior 0, or
    mode=batch at that batch size), on the cells both hold."""
    spec, claims = SPECS["partial_prior"], []
    own = ev[ev["own_data"] & corrupted(ev) & ev["applied"]]
    for group in groups:
        g = of_group(own, group)
        part = g[(g["mode"] == "partial") & (g["prior"] > 0)]
        if part.empty:
            continue
        setting = part.groupby("setting").size().sort_values(ascending=False).index[0]
        main = part[part["setting"] == setting].drop_duplicates(CELL, keep="last")
        n = main["batch_size"].iloc[0]
        refs = [
            g[(g["mode"] == "partial") & (g["prior"] == 0) & (g["batch_size"] == n)],
            g[(g["mode"] == "batch") & (g["batch_size"] == n)],
        ]
        ref = next((r for r in refs if len(r)), g.iloc[0:0]).drop_duplicates(CELL, keep="last")
        sa, sb = shared_by_seed(ref, main)
        if not sa:
            continue
        d, effect = paired(sa, sb), _effect(ref)
        where = _where(pd.merge(ref, main[CELL], on=CELL), VAL)
        ours = f"{where}: prior 0 {_mean(sa):.1f}, {setting} {_mean(sb):.1f}; difference {d.text()}"
        verdict = judge_difference(d, -1, effect)
        claims.append(_claim(spec, group, ours, verdict, f"; minimum effect {effect:.2f}"))
    needs = "mode=partial with a prior > 0 and with prior 0 (or mode=batch) at the same batch size"
    return claims or [_claim(spec, None, "not measured", not_enough(needs))]


def batch_free_claims(ev_cells: pd.DataFrame) -> list[Claim]:
    """Adapt against running for the models without batch statistics: by construction when
    every adapt evaluation is recorded as not applied, else judged as an equivalence."""
    spec = SPECS["batch_free"]
    groups = groups_of(ev_cells, False)
    adapt = ev_cells[(ev_cells["mode"] == "adapt") & ~ev_cells["batch_dependent"]]
    if adapt.empty:
        return [
            _claim(
                spec,
                None,
                "not measured",
                not_enough("runs of a norm without batch statistics under mode=adapt"),
            )
        ]
    if not adapt["applied"].any():
        ours = (
            f"mode=adapt recorded as not applied in all {len(adapt)} evaluations of "
            f"{', '.join(map(label, groups))}: their errors are the running ones"
        )
        return [
            _claim(
                spec,
                None,
                ours,
                f"{BY_CONSTRUCTION}: statistics adaptation does not "
                "apply to a norm that keeps no statistics",
            )
        ]
    options = [(VAL, ev_cells)]
    return pair_claims(spec, options, "running", "adapt", corrupted, 0, groups, equivalence=True)


def norm_claims(cells: pd.DataFrame, baseline: Baseline) -> list[Claim]:
    """Each ResNet norm without batch statistics against the baseline BN model, unadapted and
    adapted, paired by seed over the cells both hold."""
    on = ["seed", "corruption", "severity"]
    bn = (baseline.model, baseline.norm)
    claims = []
    for group in [g for g in groups_of(cells, False) if g[0] == baseline.model]:
        own = mode_rows(cells, group, "running")
        for key, bn_mode in (("norm_vs_bn", "running"), ("bn_adapt_vs_norm", "adapt")):
            spec, ref = SPECS[key], mode_rows(cells, bn, bn_mode)
            a, b = (ref, own) if key == "norm_vs_bn" else (own, ref)
            sa, sb = shared_by_seed(a, b, on=on)
            if not sa:
                needs = f"{label(bn)} under mode={bn_mode} with the seeds of {label(group)}"
                claims.append(_claim(spec, group, "not measured", not_enough(needs)))
                continue
            d, effect = paired(sa, sb), _effect(a)
            names = (f"{label(bn)} {bn_mode}", f"{label(group)} running")
            if key == "bn_adapt_vs_norm":
                names = names[::-1]
            ours = (
                f"{_where(pd.merge(a, b[on], on=on), VAL)}: {names[0]} {_mean(sa):.1f}, "
                f"{names[1]} {_mean(sb):.1f}; difference {d.text()}"
            )
            claims.append(
                _claim(
                    spec,
                    group,
                    ours,
                    judge_difference(d, -1, effect),
                    f"; minimum effect {effect:.2f}",
                )
            )
    return claims


def kl_claim(kl: pd.DataFrame, groups: list[tuple[str, str]]) -> Claim:
    """The KL claim: by construction; ours gives the measured means (kl_summary's rows of the
    models with batch statistics)."""
    spec = SPECS["kl"]
    rows = [r for _, r in kl.iterrows() if (r["model"], r["norm"]) in groups]
    if not rows:
        needs = "kl.csv rows (normbench eval ... kl=true) of runs with batch statistics"
        return _claim(spec, None, "not measured", not_enough(needs))
    parts = [
        f"{r['model']}/{r['norm']}: {r['mean KL, running']:.3g} → {r['mean KL, adapt']:.2g} "
        f"({r['layers']} layers)"
        for r in rows
    ]
    ours = "mean KL over layers, running → adapt: " + "; ".join(parts)
    verdict = (
        f"{BY_CONSTRUCTION}: under adapt each domain is normalized by its own statistics, so "
        "the KL of the norm outputs is about 0 whatever the shift"
    )
    return _claim(spec, None, ours, verdict)


def all_claims(
    val: pd.DataFrame, test: pd.DataFrame, ev: pd.DataFrame, kl: pd.DataFrame, baseline: Baseline
) -> list[Claim]:
    """Every claim of the study, in the README's order.

    Args:
        val: the main cells on the held-out images (with Tent's batch reference added).
        test: the main cells on the 10,000 test images (with Tent's batch reference added).
        ev: every evaluation (for the partial-prior settings).
        kl: kl_summary's table.
        baseline: the BN model the norms without batch statistics are set against.
    """
    bn = groups_of(pd.concat([val, test]), True)
    both: Options = [(TEST, test), (VAL, val)]
    sev5 = at_severity(5)
    return [
        *pair_claims(SPECS["adapt"], both, "running", "adapt", sev5, -1, bn),
        *_difference_of_gains(
            SPECS["severity"], val, bn, sev5, at_severity(1), ("at severity 5", "at severity 1")
        ),
        *_difference_of_gains(
            SPECS["pattern"],
            val,
            bn,
            _in(NOISE_AND_BLUR, 5),
            _in(BRIGHTNESS_AND_JPEG, 5),
            ("on noise and blur", "on brightness and JPEG"),
        ),
        *partial_prior_claims(ev, bn),
        *pair_claims(SPECS["partial"], [(VAL, val)], "running", "partial", corrupted, -1, bn),
        *pair_claims(SPECS["clean"], both, "running", "adapt", clean, 0, bn, equivalence=True),
        *pair_claims(SPECS["tent"], both, TENT_REF, "tent", sev5, -1, bn),
        *pair_claims(SPECS["tent_adapt"], both, "adapt", "tent", sev5, -1, bn),
        *batch_free_claims(val),
        *norm_claims(val, baseline),
        kl_claim(kl, bn),
    ]
