"""Online learning (``batching.sizes=[low, high]``): the batch size changes every step, drawn
from (seed, step); a run of [b, b] is the fixed-batch run; a batch of one value per channel is
skipped and counted, leaving weights and statistics as they were; a killed run resumes exactly
(a real subprocess, SIGKILL, the same command)."""

from __future__ import annotations

import json
import signal
import time

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from normbench.engine.fastpath import FastPath
from normbench.engine.online import VariableBatches
from normbench.errors import ConfigError
from tests.test_interrupt import _finish, _run, _start, _wait_for, assert_same_run

SMALL = [
    "dataset=synthetic",
    "dataset.num_train=256",
    "dataset.num_val=256",
    "model.hidden=[16,16]",
    "trainer.steps=40",
    "trainer.eval_every=10",
    "trainer.threads=1",
    "probes.every=10",
    "probes.batch_size=32",
    "logging.tensorboard=false",
]


def cfg(**batching) -> OmegaConf:
    return OmegaConf.create(
        {
            "seed": 3,
            "dataset": {"batch_size": 32},
            "per_device": {"images": None},
            "batching": {"classes": None, "sizes": [2, 9], "lr_scaling": "fixed", **batching},
        }
    )


def test_sizes_are_in_range_and_a_function_of_seed_and_step():
    sizes = VariableBatches(cfg(), 1)
    drawn = [sizes.size(t) for t in range(400)]
    assert set(drawn) == set(range(2, 10))
    assert drawn == [VariableBatches(cfg(), 1).size(t) for t in range(400)]
    assert VariableBatches(cfg(sizes=[5, 5]), 1).size(7) == 5
    linear = VariableBatches(cfg(lr_scaling="linear"), 1)
    assert linear.lr_factor(8) == pytest.approx(0.25) and sizes.lr_factor(8) == 1.0


@pytest.mark.parametrize(
    "change,message",
    [
        ({"sizes": [0, 4]}, "1 <= low <= high"),
        ({"sizes": [5, 3]}, "1 <= low <= high"),
        ({"classes": 2}, "batching.sizes and batching.classes=2 cannot be combined"),
    ],
)
def test_bad_settings_are_one_clear_error(change, message):
    with pytest.raises(ConfigError, match=message):
        VariableBatches(cfg(**change), 1)
    with pytest.raises(ConfigError, match="without torchrun"):
        VariableBatches(cfg(), 2)


def test_a_batch_of_one_is_skipped_and_changes_nothing():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Sigmoid(), nn.Linear(4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    fast = FastPath(torch.device("cpu"))
    online = VariableBatches(cfg(sizes=[1, 4]), 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(1, 5), torch.tensor([2])
    assert online.train_step(model, x, y, opt, fast, [0.5]) is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert online.skipped == 1 and online.images == 0
    loss = online.train_step(model, torch.randn(3, 5), torch.tensor([0, 1, 2]), opt, fast, [0.5])
    assert loss is not None and online.images == 3
    assert not torch.equal(before["1.running_mean"], model.state_dict()["1.running_mean"])


def test_a_fixed_range_is_the_fixed_batch_run(run_cli, tmp_path):
    code, out, err = run_cli("train", *SMALL, "dataset.batch_size=16", "hydra.run.dir=fixed")
    assert code == 0, out + err
    code, out, err = run_cli(
        "train", *SMALL, "dataset.batch_size=16", "batching.sizes=[16,16]", "hydra.run.dir=range"
    )
    assert code == 0, out + err
    a, b = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("fixed", "range"))
    cols = ["step", "train_loss", "val_error", "val_loss", "lr"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert (tmp_path / "fixed" / "activations.csv").read_bytes() == (
        tmp_path / "range" / "activations.csv"
    ).read_bytes()


ONLINE = ["batching.sizes=[1,24]", "batching.lr_scaling=linear", "trainer.ckpt_minutes=0.002"]


def test_sigkill_resumes_exactly_and_skipped_batches_are_counted(tmp_path):
    code, out = _run(tmp_path, "ref", *ONLINE)
    assert code == 0, out
    summary = json.loads((tmp_path / "ref" / "summary.json").read_text())
    skipped = summary["batching"]["skipped_batches"]
    assert skipped > 0 and summary["status"] == "complete"  # about 1 in 24 of 3,000 steps
    proc = _start(tmp_path, "kill", *ONLINE)
    _wait_for(tmp_path / "kill" / "ckpt" / "last.pt", proc)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, _finish(proc)[1]
    code, out = _run(tmp_path, "kill", *ONLINE)
    assert code == 0 and "from its checkpoint at step" in out, out
    assert_same_run(tmp_path / "kill", tmp_path / "ref")
