"""The trainer's fast path: bf16 autocast, channels_last, torch.compile; timing and resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from normbench.engine.fastpath import FastPath, train_step
from normbench.models import build_model
from normbench.norms import build_norm_spec
from normbench.probes.timing import PhaseTimer, images_per_s

CPU = torch.device("cpu")
# A tiny ResNet-50 on small synthetic RGB images, two steps, everything logged and probed.
TINY_CNN = [
    "dataset=synthetic",
    "dataset.image_shape=[3,8,8]",
    "dataset.num_train=64",
    "dataset.num_val=32",
    "dataset.batch_size=8",
    "model=resnet50",
    "model.width=0.0625",
    "model.stem=cifar",
    "trainer.steps=2",
    "trainer.eval_every=1",
    "trainer.log_every=1",
    "trainer.eval_batch_size=16",
    "trainer.threads=1",
    "probes.every=1",
    "probes.hist_every=0",
    "probes.batch_size=16",
]
FAST = ["trainer.amp=bf16", "trainer.channels_last=true"]


def _tiny_resnet() -> nn.Module:
    cfg = OmegaConf.create({"name": "resnet50", "width": 0.0625, "stem": "cifar"})
    return build_model(cfg, build_norm_spec({"name": "batch"}), 10, (3, 8, 8))


def _metrics(run) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv").drop(columns=["time"])


def test_bf16_channels_last_run_is_complete(run_cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, out, err = run_cli("train", *TINY_CNN, *FAST, "hydra.run.dir=fast")
    assert code == 0, out + err
    run = tmp_path / "fast"
    for name in ("metrics.csv", "activations.csv", "summary.json", "ckpt/last.pt"):
        assert (run / name).is_file(), name
    assert "img/s" in out + err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == 2
    assert summary["environment"]["amp"] == "bf16"
    assert summary["environment"]["channels_last"] is True
    assert summary["environment"]["compile"] is False
    assert summary["images_per_s"] > 0
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["step"].tolist() == [0, 1, 2] and metrics["val_loss"].notna().all()
    assert pd.read_csv(run / "activations.csv")["step"].nunique() == 3
    acc = EventAccumulator(str(run))
    acc.Reload()
    assert "time/images_per_s" in acc.Tags()["scalars"]
    state = torch.load(run / "ckpt" / "last.pt", weights_only=False)
    assert state["model"]["conv1.weight"].is_contiguous(memory_format=torch.channels_last)


def test_fast_flags_resume_exactly(run_cli, tmp_path):
    args = [*TINY_CNN, *FAST, "trainer.steps=4", "trainer.eval_every=2"]
    assert run_cli("train", *args, "hydra.run.dir=whole")[0] == 0
    assert run_cli("train", *args, "hydra.run.dir=parts", "trainer.stop_after=2")[0] == 0
    code, out, err = run_cli("train", *args, "hydra.run.dir=parts")
    assert code == 0 and "resuming" in out + err
    pd.testing.assert_frame_equal(_metrics(tmp_path / "whole"), _metrics(tmp_path / "parts"))


def test_channels_last_may_change_on_resume_but_amp_may_not(run_cli, tmp_path):
    args = [*TINY_CNN, "trainer.steps=4"]
    assert run_cli("train", *args, "hydra.run.dir=r", "trainer.stop_after=2")[0] == 0
    code, out, err = run_cli("train", *args, "hydra.run.dir=r", "trainer.amp=bf16")
    assert code == 2 and "trainer.amp" in out + err and "trainer.resume=never" in out + err
    code, out, err = run_cli(
        "train", *args, "hydra.run.dir=r", "trainer.channels_last=true", "+dataset.num_workers=3"
    )
    assert code == 0 and "resuming" in out + err, out + err
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["step"] == 4


@pytest.mark.parametrize("value", ["fp16", "true"])
def test_unknown_amp_is_a_clear_error(run_cli, value):
    code, out, err = run_cli("train", *TINY_CNN, f"trainer.amp={value}")
    assert code == 2 and "trainer.amp=" in out + err and "false, bf16" in out + err
    assert "Traceback" not in out + err


def test_fast_path_unit_behaviour():
    assert FastPath.from_config(OmegaConf.create({"amp": "bf16"}), CPU).precision == "bf16"
    fast = FastPath.from_config(OmegaConf.create({"amp": "bf16", "channels_last": True}), CPU)
    assert fast.precision == "bf16" and fast.as_dict() == {
        "amp": "bf16",
        "channels_last": True,
        "compile": False,
    }
    model = _tiny_resnet()
    assert fast.prepare_model(model) is model
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = fast.prepare_input(torch.rand(4, 3, 8, 8))
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    flat = torch.rand(4, 10)
    assert fast.prepare_input(flat) is flat  # the MLP's inputs are left alone
    with fast.autocast():
        assert model(x).dtype == torch.bfloat16
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.fc.weight.detach().clone()
    loss = train_step(model, x, torch.tensor([0, 1, 2, 3]), opt, fast)
    assert loss.dtype == torch.float32  # cross-entropy runs in fp32 under autocast
    assert model.fc.weight.dtype == torch.float32 and not torch.equal(before, model.fc.weight)
    assert FastPath.from_config(OmegaConf.create({"amp": False}), CPU).precision == "fp32"


def test_phase_timer_uses_perf_counter_on_cpu_and_images_per_s():
    timer = PhaseTimer(CPU)
    with timer.phase("train_step"):
        torch.ones(10).sum()
    assert not timer.cuda and not timer._pending and timer.totals["train_step"] > 0
    assert images_per_s({"train_step": 0.5, "data": 0.5, "eval": 9.0}, 100) == pytest.approx(100.0)
    assert images_per_s({}, 100) == 0.0


def _inductor_builds() -> str | None:
    """None if torch.compile can build a kernel here, else why not."""
    try:
        torch.compile(lambda t: t.sin() + 1)(torch.randn(4))
    except Exception as err:  # no C++ toolchain, broken inductor ...
        return f"torch.compile (inductor) cannot build here: {type(err).__name__}: {err}"
    return None


@pytest.mark.slow
def test_compiled_run_checkpoints_the_plain_module_and_resumes_either_way(run_cli, tmp_path):
    reason = _inductor_builds()
    if reason:
        pytest.skip(reason)
    args = [*TINY_CNN, "trainer.steps=4", "trainer.eval_every=2", "probes.every=2"]
    code, out, err = run_cli(
        "train", *args, "trainer.compile=true", "hydra.run.dir=c", "trainer.stop_after=2"
    )
    assert code == 0, out + err
    state = torch.load(tmp_path / "c" / "ckpt" / "last.pt", weights_only=False)
    assert not any(k.startswith("_orig_mod") for k in state["model"])
    assert _tiny_resnet().load_state_dict(state["model"]) is not None  # a plain model loads it
    code, out, err = run_cli("train", *args, "trainer.compile=false", "hydra.run.dir=c")
    assert code == 0 and "resuming" in out + err, out + err
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == 4
    acts = pd.read_csv(tmp_path / "c" / "activations.csv")  # hooks on the plain module saw it run
    assert sorted(acts["step"].unique()) == [0, 2, 4]


@pytest.mark.gpu
def test_phase_timer_uses_cuda_events_on_gpu():
    timer = PhaseTimer(torch.device("cuda"))
    with timer.phase("train_step"):
        torch.ones(1000, device="cuda").sum()
    assert timer.cuda and len(timer._pending) == 1
    assert timer.window()["train_step"] > 0 and not timer._pending


@pytest.mark.gpu
def test_bf16_channels_last_train_step_on_gpu():
    device = torch.device("cuda")
    fast = FastPath(device, "bf16", True, False)
    model = _tiny_resnet().to(device)
    fast.prepare_model(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = fast.prepare_input(torch.rand(4, 3, 8, 8, device=device))
    loss = train_step(model, x, torch.tensor([0, 1, 2, 3], device=device), opt, fast)
    assert torch.isfinite(loss)
