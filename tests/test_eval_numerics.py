"""The numbers behind `normbench eval`, each against a float64 formula written here: Precise BN,
AdaBN, partial adaptation (Schneider et al. 2020), Tent, ECE, the input adapter."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from normbench.engine.evaluate import Metrics
from normbench.errors import ConfigError
from normbench.evaluation.data import DataChoice, input_adapter
from normbench.evaluation.modes import Knobs, Progress, run_mode, training_batches
from normbench.evaluation.run import EvalJob, LoadedRun, read_run_config
from normbench.evaluation.tent import (
    SMALL_DATA_RECIPE,
    norm_affine_parameters,
    prediction_entropy,
    tent_mode,
    tent_optimizer,
    tent_step,
)
from normbench.norms.stats import (
    bn_layers,
)

from .test_eval_cli import copy_run, sha256, train_runs
from .test_norm_stats import mlp_or_conv

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_runs(tmp_path_factory.mktemp("eval_numerics_runs"))


def loaded(run: Path) -> LoadedRun:
    return LoadedRun(run, read_run_config(run), "cpu")


def evaluated(run: LoadedRun, mode: str, knobs: Knobs | None = None):
    """Run ``mode`` through the mode dispatcher; the model keeps what the mode did to it."""
    knobs = knobs or Knobs()
    setup = run.setup(run.eval_data(DataChoice()), Progress("test", every_s=math.inf))
    return run_mode(mode, knobs, setup), setup


def test_precise_sets_population_statistics_of_each_layer_input(trained, tmp_path):
    run_dir = copy_run(trained["bn"], tmp_path)
    ckpt = sha256(run_dir / "ckpt" / "last.pt")
    run = loaded(run_dir)
    outcome, setup = evaluated(run, "precise")
    assert outcome.status == "ok" and outcome.knobs.samples == 480  # the whole training set
    # The reference: the checkpoint's model in float64, BN on batch statistics (as in training),
    # fed the same 30 training batches; each BN layer's inputs captured by a hook.
    reference = copy.deepcopy(run.built.model).double()
    reference.load_state_dict(run.state)
    reference.eval()
    inputs: dict[nn.Module, list[torch.Tensor]] = {m: [] for m in bn_layers(reference)}
    for layer in inputs:
        layer.train()
        layer.track_running_stats = False
        layer.register_forward_pre_hook(lambda m, args: inputs[m].append(args[0].detach()))
    with torch.no_grad():
        for x, _ in training_batches(run.built.data, 16, 480, seed=0):
            reference(x.double())
    got = bn_layers(setup.model)
    assert len(got) == len(inputs) == 3
    for layer, (_, captured) in zip(got, inputs.items(), strict=True):
        values = torch.cat(captured)  # (480, C): an MLP's BN input
        assert values.shape == (480, 32)
        mean = values.sum(0) / 480
        var = ((values - mean) ** 2).sum(0) / 479  # unbiased, as BN's running variance
        torch.testing.assert_close(layer.running_mean.double(), mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer.running_var.double(), var, rtol=1e-5, atol=1e-7)
    stored = run.state["hidden.2.norm.running_var"].double()
    assert not torch.allclose(got[2].running_var.double(), stored, rtol=1e-3)  # not a no-op
    row = run.evaluate(EvalJob("precise"))
    assert row["samples"] == 480 and row["status"] == "ok"
    for name, value in run.built.model.state_dict().items():  # reloaded after the evaluation
        assert torch.equal(value, run.state[name]), name
    assert sha256(run_dir / "ckpt" / "last.pt") == ckpt


def test_adapt_on_the_own_validation_data_moves_less_than_the_seed_spread(trained):
    errors = {}
    for name in ("bn", "bn_seed1"):
        run = loaded(trained[name])
        running, _ = evaluated(run, "running")
        adapt, _ = evaluated(run, "adapt")
        assert adapt.knobs.samples == 240 and adapt.status == "ok"
        errors[name] = (running.metrics["val_error"], adapt.metrics["val_error"])
    spread = abs(errors["bn"][0] - errors["bn_seed1"][0])
    assert spread >= 0.05, errors  # two seeds of this tiny run differ by several points
    for running, adapt in errors.values():
        # AdaBN re-estimates the statistics on data of the training distribution: its error
        # moves by sampling noise only, less than the difference between two seeds.
        assert abs(adapt - running) < spread, errors


def test_one_tent_step_lowers_the_entropy_of_its_batch():
    torch.manual_seed(1)
    model = mlp_or_conv(1).float()
    x = torch.randn(32, 6) * 2
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    frozen = [p.detach().clone() for p in (model[0].weight, model[3].weight)]
    with tent_mode(model) as params:
        assert len(params) == 4  # γ and β of the two BN layers
        with torch.no_grad():
            before = prediction_entropy(model(x)).mean()
        optimizer = tent_optimizer(params, SMALL_DATA_RECIPE, 1e-3)
        tent_step(model, x, optimizer, None)
        with torch.no_grad():
            after = prediction_entropy(model(x)).mean()
    assert after < before
    for p, old in zip((model[0].weight, model[3].weight), frozen, strict=True):
        assert torch.equal(p, old)  # only the affine parameters move
    for k, v in buffers.items():
        assert torch.equal(model.state_dict()[k], v)  # batch statistics, buffers untouched
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_prediction_entropy_is_the_formula():
    logits = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, -1.0]], dtype=D)
    p = torch.tensor([[1 / 3] * 3, [math.exp(3), 1.0, math.exp(-1)]], dtype=D)
    p = p / p.sum(1, keepdim=True)
    torch.testing.assert_close(prediction_entropy(logits), -(p * p.log()).sum(1))
    assert prediction_entropy(logits)[0].item() == pytest.approx(math.log(3))


def test_tent_adapts_the_affine_parameters_of_a_group_norm_model(trained):
    run = loaded(trained["gn"])
    outcome, setup = evaluated(run, "tent", Knobs(batch_size=16))
    assert outcome.applied and outcome.status == "ok" and outcome.knobs.steps == 1
    assert outcome.knobs.lr == pytest.approx(0.001 * 16 / 128)
    adapted = dict(setup.model.named_parameters())
    norms = {
        n for n, p in adapted.items() if any(p is q for q in norm_affine_parameters(setup.model))
    }
    assert norms == {f"hidden.{i}.norm.{w}" for i in range(3) for w in ("weight", "bias")}
    for name, value in adapted.items():
        changed = not torch.equal(value, run.state[name])
        assert changed == (name in norms), name


def test_ece_is_the_binned_formula():
    # confidences chosen so that bins hold several predictions, right and wrong together:
    # (0.6, 2/3] holds 3, (14/15, 1] holds 2, (0.4, 7/15] holds 2, (1/3, 0.4] holds 1
    conf = torch.tensor([0.62, 0.63, 0.65, 0.95, 0.97, 0.41, 0.45, 0.35], dtype=D)
    right = torch.tensor([1, 1, 0, 1, 0, 0, 1, 1], dtype=torch.bool)
    rest = (1 - conf) / 2  # class 0 has probability conf, classes 1 and 2 share the rest
    logits = torch.stack([conf.log(), rest.log(), rest.log()], 1).float()
    labels = torch.where(right, 0, 1)
    metrics = Metrics("cpu")
    metrics.add(logits[:3], labels[:3])  # over two batches
    metrics.add(logits[3:], labels[3:])
    got = metrics.result()
    probs = logits.double().softmax(1)
    p_hat, pred = probs.max(1)
    ece = 0.0
    for b in range(15):  # bin b: (b/15, (b+1)/15]
        members = [i for i in range(8) if b / 15 < p_hat[i].item() <= (b + 1) / 15]
        if members:
            acc = sum(float(pred[i] == labels[i]) for i in members) / len(members)
            avg = sum(p_hat[i].item() for i in members) / len(members)
            ece += len(members) / 8 * abs(acc - avg)
    assert got["ece"] == pytest.approx(ece, abs=1e-12)
    per_sample = (right.double() - p_hat).abs().mean().item()
    assert ece < per_sample - 0.05  # bins average right and wrong: not one bin per prediction
    assert got["val_error"] == 3 / 8
    nll = (torch.logsumexp(logits.double(), 1) - logits.double()[torch.arange(8), labels]).mean()
    assert got["val_loss"] == pytest.approx(nll.item(), rel=1e-6)


def test_input_adapter_converts_channels_and_size():
    grey = torch.rand(2, 1, 4, 4, dtype=D)
    rgb = input_adapter((1, 4, 4), (3, 4, 4))(grey)
    assert torch.equal(rgb, grey.expand(-1, 3, -1, -1))  # grey repeated on each channel
    colour = torch.rand(2, 3, 4, 4, dtype=D)
    torch.testing.assert_close(input_adapter((3, 4, 4), (1, 4, 4))(colour), colour.mean(1, True))
    flat = torch.full((2, 1, 8, 8), 0.25, dtype=D)
    small = input_adapter((1, 8, 8), (3, 4, 4))(flat)
    assert small.shape == (2, 3, 4, 4)
    torch.testing.assert_close(small, torch.full_like(small, 0.25))  # a constant image stays
    assert input_adapter((1, 4, 4), (1, 4, 4)) is None
    with pytest.raises(ConfigError, match="only grey"):
        input_adapter((2, 4, 4), (3, 4, 4))
