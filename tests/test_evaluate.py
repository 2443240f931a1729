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


@pytest.mark.parametrize("batch_stats", [False, True])
def test_batch_stats_normalizes_each_batch_by_its_own_statistics(batch_stats):
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm1d(3)
    bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
    bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0]))
    x, y = 3 * torch.randn(40, 3) + 1, torch.randint(0, 3, (40,))
    xd = x.double().view(4, 10, 3)  # batches of 10
    if batch_stats:  # the formula: each batch's mean and biased variance
        mean, var = xd.mean(1, keepdim=True), xd.var(1, correction=0, keepdim=True)
    else:
        mean, var = bn.running_mean.double(), bn.running_var.double()
    logits = ((xd - mean) / torch.sqrt(var + bn.eps)).view(40, 3)
    expected = (torch.logsumexp(logits, 1) - logits[torch.arange(40), y]).mean().item()
    buffers = [b.clone() for b in bn.buffers()]
    got = evaluate(bn, zip(x.split(10), y.split(10), strict=True), batch_stats=batch_stats)
    assert got["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert bn.training and all(
        torch.equal(a, b) for a, b in zip(buffers, bn.buffers(), strict=True)
    )
