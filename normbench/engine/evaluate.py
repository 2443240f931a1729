"""Validation: error and loss of a model over a split's batches."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from normbench.norms.stats import use_batch_stats_at_eval

if TYPE_CHECKING:
    from normbench.engine.fastpath import FastPath


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    fast: FastPath | None = None,
    batch_stats: bool = False,
) -> dict[str, float]:
    """Top-1 error and mean cross-entropy of ``model`` in eval mode over ``(x, y)`` batches
    (sums stay on the device: one host sync at the end). With ``fast``, inputs take the
    model's memory format and the forward runs under the training autocast. With
    ``batch_stats``, BN layers normalize each batch by its own statistics (prediction-time BN,
    :func:`~normbench.norms.stats.use_batch_stats_at_eval`) instead of their running ones."""
    was_training = model.training
    model.eval()
    try:
        if not batch_stats:
            return _evaluate(model, batches, fast)
        with use_batch_stats_at_eval(model):
            return _evaluate(model, batches, fast)
    finally:
        model.train(was_training)


def _evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    fast: FastPath | None,
) -> dict[str, float]:
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
    wrong, loss_sum, count = totals.tolist()
    return {"val_error": wrong / count, "val_loss": loss_sum / count}
