"""probes.smoothness (normbench/probes/smoothness.py) against a float64 formula written here: the
loss and gradient of a one-hidden-layer BN network along −g, each sigmoid input's shift after one
SGD step, the noise of norm=noisy_batch held fixed along the step and drawn anew for the shift,
and the probed model left untouched; then through `normbench train`."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from torch import nn

from normbench.norms.noisy_batch import NoisyBatchNorm
from normbench.probes.smoothness import smoothness_rows

EPS = 1e-5


def tiny(norm: nn.Module) -> nn.Sequential:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4), norm, nn.Sigmoid(), nn.Linear(4, 3)).double()
    with torch.no_grad():  # γ, β away from 1, 0 so that they enter the formula
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    return model


def formula_preact(w: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The sigmoid's input: BN(x W1ᵀ + b1) with the batch's statistics, then γ, β."""
    w1, b1, gamma, beta = w[:4]
    h = x @ w1.T + b1
    mu = h.mean(0)
    var = ((h - mu) ** 2).mean(0)
    return (h - mu) / torch.sqrt(var + EPS) * gamma + beta


def formula_loss(w: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of sigmoid(BN(x W1ᵀ + b1)) W2ᵀ + b2."""
    logits = torch.sigmoid(formula_preact(w, x)) @ w[4].T + w[5]
    logp = logits - torch.logsumexp(logits, 1, keepdim=True)
    return -logp[torch.arange(len(y)), y].mean()


def loss_grad(w, x, y):
    w = [t.detach().clone().requires_grad_(True) for t in w]
    loss = formula_loss(w, x, y)
    return loss.item(), [t.detach() for t in torch.autograd.grad(loss, w)]


def flat_norm(ts) -> float:
    return torch.sqrt(sum((t**2).sum() for t in ts)).item()


def test_landscape_and_shift_match_the_formula():
    model = tiny(nn.BatchNorm1d(4, eps=EPS))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 5, dtype=torch.float64, generator=g)
    y = torch.randint(0, 3, (16,), generator=g)
    w = [p.detach().clone() for p in model.parameters()]
    lr, multiples = 0.3, [0.5, 2.0]
    rows, shifts = smoothness_rows(model, x, y, lr, multiples)

    loss0, g0 = loss_grad(w, x, y)
    assert [r["multiple"] for r in rows] == multiples
    for r, k in zip(rows, multiples, strict=True):
        eta = k * lr
        loss, g1 = loss_grad([a - eta * b for a, b in zip(w, g0, strict=True)], x, y)
        change = flat_norm([a - b for a, b in zip(g1, g0, strict=True)])
        assert r["eta"] == pytest.approx(eta)
        assert r["loss0"] == pytest.approx(loss0, rel=1e-10)
        assert r["loss"] == pytest.approx(loss, rel=1e-10)
        assert r["grad_norm0"] == pytest.approx(flat_norm(g0), rel=1e-10)
        assert r["grad_change"] == pytest.approx(change, rel=1e-8)
        assert r["rel_change"] == pytest.approx(change / flat_norm(g0), rel=1e-8)
        assert r["beta"] == pytest.approx(change / (eta * flat_norm(g0)), rel=1e-8)
    assert rows[0]["loss"] != pytest.approx(rows[1]["loss"])  # the step sizes do differ

    before = formula_preact(w, x)
    after = formula_preact([a - lr * b for a, b in zip(w, g0, strict=True)], x)
    sd = before.std(0, unbiased=False)
    want_mean = ((after.mean(0) - before.mean(0)).abs() / sd).median().item()
    want_scale = (after.std(0, unbiased=False) / sd).log().abs().median().item()
    want_shape = (z_quantiles(after) - z_quantiles(before)).abs().amax(1).median().item()
    assert [s["layer"] for s in shifts] == ["2"]  # the Sigmoid's module name
    assert shifts[0]["shift_mean"] == pytest.approx(want_mean, rel=1e-8)
    assert shifts[0]["shift_scale"] == pytest.approx(want_scale, rel=1e-8)
    assert shifts[0]["shift_shape"] == pytest.approx(want_shape, rel=1e-8)
    assert want_mean > 0 and want_shape > 0


def z_quantiles(a: torch.Tensor) -> torch.Tensor:
    """(C, 3): each column's 15/50/85th percentile after standardizing it, by sorting: the
    linear interpolation between order statistics at position q·(n − 1)."""
    z = (a - a.mean(0)) / a.std(0, unbiased=False)
    srt, n = z.sort(0).values, len(z)
    cols = []
    for q in (0.15, 0.5, 0.85):
        pos = q * (n - 1)
        lo, frac = int(pos), pos - int(pos)
        hi = min(lo + 1, n - 1)
        cols.append(srt[lo] + frac * (srt[hi] - srt[lo]))
    return torch.stack(cols, 1)


def test_the_probed_model_is_left_as_it_was():
    model = tiny(nn.BatchNorm1d(4, eps=EPS))
    x, y = torch.randn(8, 5, dtype=torch.float64), torch.arange(8) % 3
    nn.functional.cross_entropy(model(x), y).backward()
    state = copy.deepcopy(model.state_dict())
    grads = [p.grad.clone() for p in model.parameters()]
    model.eval()
    smoothness_rows(model, x, y, 0.1, [1.0])
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    for p, gr in zip(model.parameters(), grads, strict=True):
        assert torch.equal(p.grad, gr)


def test_noisy_bn_noise_is_fixed_along_the_step_and_redrawn_for_the_shift():
    """With a vanishing step the loss stays (the same noise at every point), while the sigmoid
    inputs move by what the next noise draw predicts: z = s·BN(h) + m, so per unit
    |μ' − μ|/σ = |m' − m|/(s·σ_BN) and |ln σ'/σ| = |ln s'/s|."""
    norm = NoisyBatchNorm(
        4, dims=1, eps=EPS, momentum=0.1, affine=False, noise_mean=0.5, noise_scale=2.0
    )
    model = tiny(nn.BatchNorm1d(4, eps=EPS))
    model[1] = norm.double()
    x, y = torch.randn(32, 5, dtype=torch.float64), torch.arange(32) % 3
    step0 = int(norm.noise_step)
    rows, shifts = smoothness_rows(model, x, y, 1e-12, [1.0])
    assert int(norm.noise_step) == step0  # the probe drew on a copy
    assert rows[0]["loss"] == pytest.approx(rows[0]["loss0"], abs=1e-9)

    draws = copy.deepcopy(norm)
    m, s = draws.draw(x)
    m2, s2 = draws.draw(x)
    h = model[0](x).detach()
    sd_bn = ((h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + EPS)).std(0, unbiased=False)
    want_mean = ((m2 - m).abs() / (s * sd_bn)).median().item()
    want_scale = (s2 / s).log().abs().median().item()
    assert shifts[0]["shift_mean"] == pytest.approx(want_mean, rel=1e-6)
    assert shifts[0]["shift_scale"] == pytest.approx(want_scale, rel=1e-6)
    assert want_mean > 0.01  # the noise does move it
    assert shifts[0]["shift_shape"] < 1e-6  # ... but not the standardized shape: it is affine


def test_dropout_masks_are_the_same_at_every_point_and_the_random_stream_is_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 50), nn.ReLU(), nn.Dropout(0.5), nn.Linear(50, 3)).double()
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.arange(16) % 3
    state = torch.get_rng_state()
    rows, _ = smoothness_rows(model, x, y, 1e-12, [1.0])
    assert torch.equal(torch.get_rng_state(), state)
    assert rows[0]["loss"] == pytest.approx(rows[0]["loss0"], abs=1e-9)
    assert rows[0]["grad_change"] < 1e-6 * rows[0]["grad_norm0"]


FAST = [
    "dataset=synthetic",
    "dataset.num_train=256",
    "dataset.num_val=128",
    "dataset.batch_size=16",
    "trainer.steps=20",
    "trainer.eval_every=10",
    "probes.every=5",
    "probes.batch_size=64",
    "model.hidden=[16,16]",
]


def test_train_records_smoothness_at_its_steps(run_cli, tmp_path):
    code, out, err = run_cli(
        "train", "experiment=bn_fig1", "norm=noisy_batch", *FAST, "probes.smoothness=10"
    )
    assert code == 0, out + err
    (run,) = (tmp_path / "runs" / "bn_fig1").iterdir()
    smooth, shift = pd.read_csv(run / "smoothness.csv"), pd.read_csv(run / "shift.csv")
    assert list(smooth["step"]) == [10] * 4 + [20] * 4  # never step 0: it has no batch
    assert list(smooth["multiple"]) == [0.5, 1, 2, 4] * 2
    assert (smooth["grad_change"] > 0).all() and (smooth["loss0"] > 0).all()
    assert sorted(set(shift["layer"])) == ["hidden.0.act", "hidden.1.act"]
    assert (shift["shift_mean"] > 0).all()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("probes.smoothness=7", "probes.smoothness=7 must be a multiple of probes.every=5"),
        ("probes.smoothness_steps=[1,-2]", "must be one or more positive multiples"),
    ],
)
def test_the_smoothness_probe_refuses_bad_settings(run_cli, override, message):
    extra = [] if "smoothness=" in override else ["probes.smoothness=10"]
    code, out, err = run_cli("train", "experiment=bn_fig1", *FAST, *extra, override)
    assert code == 2 and message in out + err
