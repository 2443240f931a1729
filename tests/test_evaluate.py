"""Evaluation: error and mean cross-entropy against the float64 formula, whatever the batching."""

from __future__ import annotations

import pytest
import torch

from normbench.engine.evaluate import evaluate


@pytest.mark.parametrize("batch_size", [7, 50, 1000])
def test_error_and_loss_match_the_formula(batch_size):
    model = torch.nn.Linear(5, 3)
    model.train()
    x, y = torch.randn(50, 5), torch.randint(0, 3, (50,))
    logits = x.double() @ model.weight.double().T + model.bias.double()
    expected_error = (logits.argmax(1) != y).double().mean().item()
    expected_loss = (torch.logsumexp(logits, 1) - logits[torch.arange(50), y]).mean().item()
    batches = zip(x.split(batch_size), y.split(batch_size), strict=True)
    got = evaluate(model, batches)
    assert got["val_error"] == pytest.approx(expected_error, abs=1e-12)
    assert got["val_loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert model.training  # mode restored
