"""Validation: error and loss of a model over a split's batches."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from normbench.engine.fastpath import FastPath


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    fast: FastPath | None = None,
) -> dict[str, float]:
    """Top-1 error and mean cross-entropy of ``model`` in eval mode over ``(x, y)`` batches
    (sums stay on the device: one host sync at the end). With ``fast``, inputs take the
    model's memory format and the forward runs under the training autocast."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = torch.zeros(3, device=device)  # wrong, loss sum, count
    for xb, yb in batches:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if fast is not None:
            xb = fast.prepare_input(xb)
            with fast.autocast():
                logits = model(xb)
        else:
            logits = model(xb)
        totals[0] += (logits.argmax(1) != yb).sum()
        totals[1] += F.cross_entropy(logits.float(), yb, reduction="sum")
        totals[2] += len(yb)
    model.train(was_training)
    wrong, loss_sum, count = totals.tolist()
    return {"val_error": wrong / count, "val_loss": loss_sum / count}
