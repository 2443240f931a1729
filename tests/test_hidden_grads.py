"""probes.hidden_grads: ‖∂L/∂h_t‖ against autograd through a perturbation of each h_t written
here, on tiny LSTMs (torch's fast path and our cell); the run's CSV; and its config checks."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from normbench.errors import ConfigError
from normbench.models import build_model
from normbench.norms import build_norm_spec
from normbench.probes.hidden_grads import hidden_grad_rows
from tests.conftest import make_idx_dataset


def lstm(norm: str, **options):
    cfg = OmegaConf.create({"name": "lstm", "hidden": 4, **options})
    return build_model(cfg, build_norm_spec({"name": norm}), 3, (1, 5, 3))


def perturbed_grads(model, x, y) -> list[torch.Tensor]:
    """∂L/∂δ_t where h_t ← h_t + δ_t inside a one-layer nn.LSTMCell unroll of the same weights:
    the total derivative of L with respect to h_t."""
    rnn = model.rnn if model.fast else None
    cell = nn.LSTMCell(3, 4).double()
    with torch.no_grad():
        if rnn is not None:
            cell.weight_ih.copy_(rnn.weight_ih_l0)
            cell.weight_hh.copy_(rnn.weight_hh_l0)
            cell.bias_ih.copy_(rnn.bias_ih_l0)
            cell.bias_hh.copy_(rnn.bias_hh_l0)
        else:
            layer = model.layers[0]
            cell.weight_ih.copy_(layer.ih.weight)
            cell.weight_hh.copy_(layer.hh.weight)
            cell.bias_ih.copy_(layer.bias_ih)
            cell.bias_hh.copy_(layer.bias_hh)
    seq = model.to_sequence(x)
    deltas = [torch.zeros(len(x), 4, dtype=torch.float64, requires_grad=True) for _ in seq]
    h = c = torch.zeros(len(x), 4, dtype=torch.float64)
    for t, x_t in enumerate(seq):
        h, c = cell(x_t, (h, c))
        h = h + deltas[t]
    loss = F.cross_entropy(model.head(h), y)
    return list(torch.autograd.grad(loss, deltas))


@pytest.mark.parametrize("impl", ["auto", "cell"])
def test_hidden_gradient_norms_match_autograd_through_a_perturbation(impl):
    torch.manual_seed(0)
    model = lstm("none", impl=impl).double()
    assert model.fast == (impl == "auto")
    x, y = torch.randn(6, 1, 5, 3, dtype=torch.float64), torch.randint(0, 3, (6,))
    rows = hidden_grad_rows(model, x, y, "eval")
    assert [(r["layer"], r["t"]) for r in rows] == [(0, t) for t in range(1, 6)]
    expected = [g.norm().item() for g in perturbed_grads(model, x, y)]
    assert [r["grad_norm"] for r in rows] == pytest.approx(expected, rel=1e-10)
    assert all(p.grad is None for p in model.parameters())  # the run's gradients untouched


def test_the_probe_leaves_running_statistics_and_mode_alone():
    torch.manual_seed(0)
    model = lstm("batch", placement="per_step", layers=2).train()
    model(torch.rand(8, 1, 5, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = hidden_grad_rows(model, torch.rand(8, 1, 5, 3), torch.randint(0, 3, (8,)))
    assert model.training and len(rows) == 2 * 5
    assert {r["layer"] for r in rows} == {0, 1}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_other_models_are_refused():
    mlp = build_model(
        OmegaConf.create({"name": "mlp", "hidden": [4], "activation": "sigmoid"}),
        build_norm_spec({"name": "none"}),
        3,
        (1, 2, 2),
    )
    with pytest.raises(ConfigError, match="probes.hidden_grads needs a recurrent model"):
        hidden_grad_rows(mlp, torch.rand(2, 1, 2, 2), torch.tensor([0, 1]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["probes.hidden_grads=10"], "works on model=lstm"),
        (["model=lstm", "probes.every=4", "probes.hidden_grads=10"], "must be a multiple of"),
    ],
)
def test_config_checks(overrides, message):
    from hydra import compose, initialize_config_dir

    from normbench.config import config_dir, register_resolvers, validate

    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def run_config(tmp_path, *more: str):
    from hydra import compose, initialize_config_dir

    from normbench.config import config_dir, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                "model=lstm",
                "model.hidden=8",
                "norm=batch",
                "model.gamma_init=0.1",
                f"dataset.root={tmp_path / 'data'}",
                "dataset.batch_size=16",
                "trainer.steps=4",
                "trainer.eval_every=2",
                "trainer.device=cpu",
                "trainer.threads=1",  # many tiny ops: two threads on a loaded CPU wait on each other
                "probes.every=2",
                "probes.hidden_grads=2",
                "probes.batch_size=16",
                "logging.tensorboard=false",
                *more,
            ],
        )


def test_a_run_writes_hidden_grads_csv_and_resumes_to_the_same_numbers(tmp_path):
    """Per-step BN through the trainer: hidden_grads.csv at step 0 and every N; a run stopped at
    step 2 and resumed from its checkpoint (per-step running statistics included) ends with the
    CSVs of an uninterrupted one."""
    from normbench.engine.train import train

    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=64, n_val=32)
    train(run_config(tmp_path), tmp_path / "whole")
    rows = pd.read_csv(tmp_path / "whole" / "hidden_grads.csv")
    assert sorted(set(rows["step"])) == [0, 2, 4]
    assert list(rows[rows["step"] == 0]["t"]) == list(range(1, 29))
    assert (rows["grad_norm"] > 0).all()
    train(run_config(tmp_path, "trainer.stop_after=2"), tmp_path / "split")
    assert sorted(set(pd.read_csv(tmp_path / "split" / "hidden_grads.csv")["step"])) == [0, 2]
    train(run_config(tmp_path), tmp_path / "split")
    for name in ("hidden_grads.csv", "params.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "split" / name), pd.read_csv(tmp_path / "whole" / name)
        )
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "split" / "metrics.csv").drop(columns=["time"]),
        pd.read_csv(tmp_path / "whole" / "metrics.csv").drop(columns=["time"]),
    )
