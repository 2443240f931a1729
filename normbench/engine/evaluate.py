"""Validation: error and loss of a model on a split held in memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict[str, float]:
    """Top-1 error and mean cross-entropy of ``model`` in eval mode (one host sync at the end)."""
    was_training = model.training
    model.eval()
    wrong = torch.zeros((), device=x.device)
    loss = torch.zeros((), device=x.device)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        logits = model(xb)
        wrong += (logits.argmax(1) != yb).sum()
        loss += F.cross_entropy(logits.float(), yb, reduction="sum")
    model.train(was_training)
    wrong_n, loss_sum = torch.stack([wrong, loss]).tolist()
    return {"val_error": wrong_n / len(x), "val_loss": loss_sum / len(x)}
