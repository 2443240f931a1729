"""Per-parameter norms and gradient norms (``probes.params``): the bias that grows in the BN
paper's §2 counter-example, the weights the detached variance lets explode, γ and β leaving
1 and 0, and the gradient that vanishes or explodes across depth.

At each probe step (``probes.every``), for every parameter tensor of the model, by its name in
``model.named_parameters()`` (``hidden.0.linear.bias``, ``layer1.0.bn1.weight``, ...) and the
class of the module that holds it (``Linear``, ``Conv2d``, ``BatchNorm`` ...)::

    norm = ‖p‖₂     mean, std = over p's entries     grad_norm = ‖∂L/∂p‖₂

The gradient is that of the training step just taken (the probe runs after it, before the next
step clears it): the loss of that step's batch, averaged over its examples (and, under
torchrun, over the processes, as DDP reduces it). ``grad_norm`` is NaN where the step left no
gradient (an online batch that was skipped, a frozen parameter).
"""

from __future__ import annotations

import math

import torch
from torch import nn

COLUMNS = ("param", "module", "numel", "norm", "mean", "std", "grad_norm")


@torch.no_grad()
def parameter_rows(model: nn.Module) -> list[dict[str, float | int | str]]:
    """One row per parameter tensor, in ``named_parameters`` order (see the module docstring)."""
    owners = {
        f"{prefix}.{key}" if prefix else key: type(m).__name__
        for prefix, m in model.named_modules()
        for key, _ in m.named_parameters(recurse=False)
    }
    named = list(model.named_parameters())
    if not named:
        return []
    nan = torch.tensor(math.nan, dtype=torch.float64, device=named[0][1].device)
    stats = []
    for _, p in named:  # on the parameters' device; one transfer for all below (no sync each)
        values = p.detach().double()
        grad = p.grad.detach().double().norm() if p.grad is not None else nan
        stats.append(torch.stack([values.norm(), values.mean(), values.std(unbiased=False), grad]))
    numbers = torch.stack(stats).tolist()
    return [
        {
            "param": name,
            "module": owners.get(name, ""),
            "numel": p.numel(),
            "norm": norm,
            "mean": mean,
            "std": std,
            "grad_norm": grad_norm,
        }
        for (name, p), (norm, mean, std, grad_norm) in zip(named, numbers, strict=True)
    ]


def parameter_values(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter tensor, detached, by name (for TensorBoard histograms)."""
    return {name: p.detach() for name, p in model.named_parameters()}
