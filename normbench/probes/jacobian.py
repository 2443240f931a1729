"""Singular values of layer Jacobians (``probes.jacobian``): the BN paper's conjecture (§3.4) that
BN keeps them close to 1.

For the MLP (``model=mlp_sigmoid``), with s_l the output of hidden layer l's norm slot (its
pre-activation when the slot is empty), the map between consecutive slots is::

    s_l = f_l(s_{l−1}) = norm_l(W_l · act(s_{l−1}) [+ b_l])

and its Jacobian J_l = ∂s_l/∂s_{l−1} (100 × 100) is taken per example at the probe batch's
first ``probes.jacobian_examples`` examples, with ``torch.func.jacrev`` and ``vmap``. The whole
network's is J = J_{L−1} ⋯ J_1 = ∂s_{L−1}/∂s_0. The BN paper's argument treats the normalization
as a fixed affine map: each BN layer normalizes with statistics estimated on the probe batch
(population estimates, :func:`~normbench.norms.stats.recompute_bn_stats`), held constant in the
Jacobian; the model's own running estimates are restored afterwards.

One row per (step, map): the 10th, 50th and 90th percentile, min and max of the singular values
over the examples, and ``log_dist``, the median of |ln σ| (the distance from 1 on a log scale).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import jacrev, vmap

from normbench.errors import ConfigError
from normbench.norms.stats import bn_layers, recompute_bn_stats

COLUMNS = ("map", "p10", "p50", "p90", "min", "max", "log_dist")


def slot_maps(model: nn.Module) -> list:
    """f_1 … f_{L−1} of an MLP (see the module docstring), each on one example's (d,) vector."""
    hidden = getattr(model, "hidden", None)
    if hidden is None:
        raise ConfigError(
            "probes.jacobian works on model=mlp_sigmoid (its hidden layers); set "
            "probes.jacobian=0 for other models."
        )

    def make(prev: nn.Module, layer: nn.Module):
        def f(s: torch.Tensor) -> torch.Tensor:
            return layer.norm(layer.linear(prev.act(s.unsqueeze(0)))).squeeze(0)

        return f

    return [make(hidden[i - 1], hidden[i]) for i in range(1, len(hidden))]


def slot_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """s_0 … s_{L−1} of the MLP on the batch ``x`` (the model's current mode)."""
    h, outs = x.flatten(1), []
    for layer in model.hidden:
        s = layer.norm(layer.linear(h))
        outs.append(s)
        h = layer.act(s)
    return outs


def _row(name: str, sv: torch.Tensor) -> dict[str, float | str]:
    v = sv.flatten().double()
    q = torch.quantile(v, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    return {
        "map": name,
        "p10": q[0].item(),
        "p50": q[1].item(),
        "p90": q[2].item(),
        "min": v.min().item(),
        "max": v.max().item(),
        "log_dist": v.clamp_min(1e-300).log().abs().median().item(),
    }


def jacobian_rows(model: nn.Module, x: torch.Tensor, examples: int) -> list[dict[str, float | str]]:
    """The rows of one probe step on the batch ``x`` (see the module docstring)."""
    maps = slot_maps(model)
    frozen = copy.deepcopy(model)  # the model's own buffers and modes stay as they are
    if bn_layers(frozen):
        recompute_bn_stats(frozen, [x])
    frozen.eval()
    rows = []
    with torch.no_grad():
        s = slot_outputs(frozen, x[:examples])
    maps = slot_maps(frozen)
    total = None
    for i, f in enumerate(maps, start=1):
        j = vmap(jacrev(f))(s[i - 1].detach())  # (n, d_i, d_{i−1})
        rows.append(_row(f"{i}→{i + 1}", torch.linalg.svdvals(j)))
        total = j if total is None else j @ total
    if total is not None:
        rows.append(_row(f"1→{len(maps) + 1}", torch.linalg.svdvals(total)))
    return rows
