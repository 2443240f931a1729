"""Validation: error, loss and calibration of a model over a split's batches.

:class:`Metrics` accumulates, on the device, over any number of ``(logits, labels)`` batches:

- top-1 error and mean cross-entropy (NLL);
- expected calibration error over ``bins`` equal-width confidence bins (Naeini et al. 2015;
  Guo et al. 2017, 15 bins), with confidence p̂_i = max_k softmax(z_i)_k and bin
  B_b = {i : p̂_i ∈ ((b − 1)/bins, b/bins]}::

      ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)| = (1/n) Σ_b |Σ_{i∈B_b} (1[ŷ_i = y_i] − p̂_i)|

  The softmax and the bin sums are computed in float64.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from normbench.norms.stats import use_batch_stats_at_eval

if TYPE_CHECKING:
    from normbench.engine.fastpath import FastPath

#: Confidence bins of the expected calibration error (Guo et al. 2017).
ECE_BINS = 15


class Metrics:
    """Sums of errors, cross-entropy and per-bin calibration over batches (one host sync at
    :meth:`result`)."""

    def __init__(
        self, device: torch.device | str, calibration: bool = True, bins: int = ECE_BINS
    ) -> None:
        self.bins = bins
        self.totals = torch.zeros(3, device=device)  # wrong, loss sum, count
        # per bin: Σ (correct − confidence), in float64; None: calibration not asked for
        self.gap = torch.zeros(bins, dtype=torch.float64, device=device) if calibration else None

    @torch.no_grad()
    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Count one batch of logits (N, K) and labels (N,)."""
        labels = labels.to(logits.device)
        predicted = logits.argmax(1)
        self.totals[0] += (predicted != labels).sum()
        self.totals[1] += F.cross_entropy(logits.float(), labels, reduction="sum")
        self.totals[2] += len(labels)
        if self.gap is None:
            return
        confidence = logits.double().softmax(1).amax(1)
        # bin b holds ((b − 1)/bins, b/bins]: index ceil(p·bins) − 1
        index = (confidence * self.bins).ceil().long().sub_(1).clamp_(0, self.bins - 1)
        correct = (predicted == labels).double()
        self.gap.index_add_(0, index, correct - confidence)

    def result(self) -> dict[str, float]:
        """``val_error`` and ``val_loss`` (mean NLL), and ``ece`` when calibration is counted."""
        wrong, loss_sum, count = self.totals.tolist()
        out = {"val_error": wrong / count, "val_loss": loss_sum / count}
        if self.gap is not None:
            out["ece"] = self.gap.abs().sum().item() / count
        return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    fast: FastPath | None = None,
    batch_stats: bool = False,
    calibration: bool = False,
) -> dict[str, float]:
    """Top-1 error and mean cross-entropy of ``model`` in eval mode over ``(x, y)`` batches
    (sums stay on the device: one host sync at the end). With ``fast``, inputs take the
    model's memory format and the forward runs under the training autocast. With
    ``batch_stats``, BN layers normalize each batch by its own statistics (prediction-time BN,
    :func:`~normbench.norms.stats.use_batch_stats_at_eval`) instead of their running ones.
    With ``calibration``, the result also holds ``ece`` (see :class:`Metrics`)."""
    was_training = model.training
    model.eval()
    try:
        if not batch_stats:
            return _evaluate(model, batches, fast, calibration)
        with use_batch_stats_at_eval(model):
            return _evaluate(model, batches, fast, calibration)
    finally:
        model.train(was_training)


def predict(model: nn.Module, xb: torch.Tensor, fast: FastPath | None) -> torch.Tensor:
    """Logits of ``model`` for one batch, on the model's device (fast path when given)."""
    device = next(model.parameters()).device
    xb = xb.to(device, non_blocking=True)
    if fast is None:
        return model(xb)
    xb = fast.prepare_input(xb)
    with fast.autocast():
        return model(xb)


def _evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    fast: FastPath | None,
    calibration: bool,
) -> dict[str, float]:
    metrics = Metrics(next(model.parameters()).device, calibration)
    for xb, yb in batches:
        metrics.add(predict(model, xb, fast), yb)
    return metrics.result()
