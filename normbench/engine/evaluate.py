"""Validation: error and loss of a model over a split's batches."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Top-1 error and mean cross-entropy of ``model`` in eval mode over ``(x, y)`` batches
    (sums stay on the device: one host sync at the end)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = torch.zeros(3, device=device)  # wrong, loss sum, count
    for xb, yb in batches:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        logits = model(xb)
        totals[0] += (logits.argmax(1) != yb).sum()
        totals[1] += F.cross_entropy(logits.float(), yb, reduction="sum")
        totals[2] += len(yb)
    model.train(was_training)
    wrong, loss_sum, count = totals.tolist()
    return {"val_error": wrong / count, "val_loss": loss_sum / count}
