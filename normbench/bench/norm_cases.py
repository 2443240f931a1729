"""The case table of ``normbench bench norms``, derived from the norm registry.

Every registered variant (``normbench.norms.VARIANTS``) is one case, timed with its shipped
``configs/norm/<name>.yaml`` (plus the few bench settings in :data:`TIMED_WITH`, which its label
names); a variant that builds its own weight layers (overrides ``weight_layer``) is a
*weight* case, every other a *slot* case. A new variant is therefore benchmarked without an
edit here. :data:`EXTRA_CASES` adds what the registry cannot name: implementation choices of a
variant (BN's closed form, EvoNorm-B0, mean-only BN) and the weight cases' reference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from torch import nn

from normbench.bench.variants import acts_on_weights, fit_groups, shipped_config
from normbench.engine.build import build_norm
from normbench.norms import VARIANTS


@dataclass(frozen=True)
class Case:
    """One timed configuration: a label, the norm config, slot or weight kind, a miss reason."""

    label: str
    cfg: dict = field(hash=False)
    kind: str = "slot"
    reason: str = ""


REFERENCE = {"slot": "batch", "weight": "conv+batch"}
BN_OPS = (
    "native BN is one fused C++ kernel each way (4 aten ops per step, counted with a dispatch mode)"
)
GROUP_NORM_KERNEL = "torch's CPU group-norm kernel is slower than its BN kernel"

#: Settings a variant is timed with over its shipped config (shown in its label).
TIMED_WITH: dict[str, dict[str, object]] = {
    "batch_renorm": {"warmup_steps": 0},  # r and d in use from the first step
    "ghost_batch": {"group_size": 4},  # the small groups of the paper: 15 at (60, 100)
}

#: Why a registered variant may miss the target (variant name -> reason).
REASONS: dict[str, str] = {
    "batch_detached": "statistics as constants need torch's BN kernel plus a separate gradient "
    "multiply (small inputs) or the closed-form Function (large ones)",
    "batch_renorm": "around torch's BN kernel, r and d against the running estimates, the "
    "schedule step and the corrected affine are ~20 more ops on per-channel vectors (25 aten "
    f"ops per step), and the backward is a Python autograd.Function; {BN_OPS}",
    "ghost_batch": "groups of 4 samples (15 at 60x100): torch's BN kernel needs a transposed "
    "(group, G·C) copy in and out (3.3x measured at 60x100), so the closed form runs: 47 aten "
    f"ops per step and a Python backward; {BN_OPS}",
    "group": GROUP_NORM_KERNEL,
    "layer": GROUP_NORM_KERNEL,
    "instance": GROUP_NORM_KERNEL,
    "frn": "no native kernel. (N, C): the per-value formula is 8 autograd ops (34 aten ops per "
    "step with their backward); (N, C, H, W): a closed-form Function with 4 passes forward "
    f"and 8 backward; {BN_OPS}",
    "evonorm": "no native kernel: group statistics (torch's group-norm kernel), σ(v x) twice "
    "(forward, and recomputed backward: exp-heavy), about 18 passes over the tensor and 3 "
    "new tensors per step against BN's 2 new tensors; 48 aten ops per step on small inputs, "
    "with a Python backward",
    "weight": "weight_norm recomputes g·v/‖v‖ and its backward every step",
    "normprop": "unit-norm rows every step (a closed-form Function) and the input correction "
    "(x − c₁): 38 aten ops per step against 12 for linear + BN",
    "ws_group": "weight standardization every step plus the CPU group-norm kernel",
}

#: Cases beyond one per registered variant; ``cfg`` is applied over the shipped config.
EXTRA_CASES = [
    Case(
        "batch[closed_form]",
        {"name": "batch", "impl": "closed_form"},
        reason="the closed form is a Python autograd.Function by definition: 41 aten ops per "
        "step (sums, the per-channel coefficients, two fused multiply-adds, views), each "
        f"a few µs of dispatch on 100-value vectors, plus the Python backward call; {BN_OPS}",
    ),
    Case(
        "evonorm[B0]",
        {"name": "evonorm", "version": "B0"},
        reason="no native kernel: instance statistics (group-norm kernel), max/reciprocal and "
        "x/den forward (6 passes, 2 new tensors), a backward split into batch and instance "
        "branches through a masked copy (17 passes, 2 new tensors); 59-70 aten ops per step, "
        "with a Python backward",
    ),
    Case("conv+batch", {"name": "batch"}, "weight"),
    Case(
        "weight[mean_only_bn]",
        {"name": "weight", "mean_only_bn": True},
        "weight",
        reason="weight-norm recompute plus mean-only BN as composite ops (mean, subtract)",
    ),
]


def registry_cases() -> list[Case]:
    """One case per registered variant and the extra cases: slot cases before weight cases,
    BN's (the references) first in each, then in registry order, each variant before its extras."""
    cases = []
    for name in VARIANTS:
        options = TIMED_WITH.get(name, {})
        label = name + (f"[{','.join(f'{k}={v}' for k, v in options.items())}]" if options else "")
        kind = "weight" if acts_on_weights(name) else "slot"
        cfg = {**shipped_config(name), **options}
        cases.append(Case(label, cfg, kind, REASONS.get(name, "")))
    cases += [
        dataclasses.replace(c, cfg={**shipped_config(c.cfg["name"]), **c.cfg}) for c in EXTRA_CASES
    ]
    order = list(VARIANTS)
    bn = REFERENCE["slot"]  # both references are BN cases
    return sorted(
        cases, key=lambda c: (c.kind != "slot", c.cfg["name"] != bn, order.index(c.cfg["name"]))
    )


CASES = registry_cases()


def build_case(case: Case, shape: tuple[int, ...]) -> nn.Module:
    """The timed module of ``case`` for inputs of ``shape`` (raises ConfigError if undefined).

    Slot cases: ``spec.layer``. Weight cases: a 1×1 conv (linear for (N, C)) built by the spec,
    then ``spec.layer``. Group counts are lowered to one that divides the channels.
    """
    channels, dims = shape[1], 1 if len(shape) == 2 else 2
    cfg, _ = fit_groups(case.cfg, [channels])
    spec = build_norm(cfg)
    if case.kind == "slot":
        return spec.layer(channels, dims)
    weight_layer = spec.linear if dims == 1 else (lambda i, o, bias: spec.conv(i, o, 1, bias=bias))
    if cfg["name"] == "normprop":  # time a layer after an activation (with the input correction)
        weight_layer(channels, channels, bias=False)
    return nn.Sequential(
        weight_layer(channels, channels, bias=not spec.has_shift), spec.layer(channels, dims)
    )
