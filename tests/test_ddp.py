"""One run on two processes (torch.distributed, gloo on the CPU): synchronized BN against the
BN formula over both processes' samples, DDP runs against single-process runs of the same
global batch (norm=sync_batch: against BN over it), and a 2-process run killed with SIGKILL then
resumed by the same command."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from normbench.engine.build import build_norm
from normbench.norms.stats import use_batch_stats_at_eval

C, B, HW, STEPS, MOMENTUM, EPS = 3, 4, 5, 3, 0.1, 1e-5


def _sync_bn_worker(rank: int, world: int, store: str, out: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world,
        timeout=dt.timedelta(seconds=60),
    )
    try:
        layer = build_norm({"name": "sync_batch", "momentum": MOMENTUM, "eps": EPS}).layer(C, 2)
        layer = layer.double().train()
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            layer.weight.copy_(torch.rand(C, generator=gen, dtype=torch.float64) + 0.5)
            layer.bias.copy_(torch.randn(C, generator=gen, dtype=torch.float64))
        results = []
        for _ in range(STEPS):
            x = torch.randn(world * B, C, HW, HW, generator=gen, dtype=torch.float64) * 3 + 1
            dy = torch.randn(world * B, C, HW, HW, generator=gen, dtype=torch.float64)
            mine = slice(rank * B, (rank + 1) * B)
            xp = x[mine].clone().requires_grad_(True)
            y = layer(xp)
            gx, gw, gb = torch.autograd.grad(y, [xp, layer.weight, layer.bias], dy[mine])
            results.append({"y": y.detach(), "gx": gx, "gw": gw, "gb": gb})
        buffers = {"mean": layer.running_mean.clone(), "var": layer.running_var.clone()}
        probe = None
        if rank == 0:  # what rank 0's activation probe does alone: BN over its batch, no sync
            with use_batch_stats_at_eval(layer), torch.no_grad():
                probe = layer(x[:B])
        dist.barrier()  # were the probe synchronized, it would wait here (and time out)
        saved = {"steps": results, "buffers": buffers, "probe": probe, "x": x[:B]}
        torch.save(saved, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _bn_formula(x, weight, bias, dy):
    """BN over all of ``x`` in float64, with its gradients by autograd of the formula."""
    x = x.clone().requires_grad_(True)
    w, b = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    y = (x - mean) / torch.sqrt(var + EPS) * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
    gx, gw, gb = torch.autograd.grad(y, [x, w, b], dy)
    n = x.numel() // x.shape[1]
    return y.detach(), gx, gw, gb, mean.flatten().detach(), var.flatten().detach() * n / (n - 1)


def test_sync_batch_norm_over_two_processes_equals_bn_over_both_batches(tmp_path):
    world = 2
    mp.start_processes(
        _sync_bn_worker,
        args=(world, str(tmp_path / "store"), str(tmp_path)),
        nprocs=world,
        join=True,
        start_method="spawn",
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    gen = torch.Generator().manual_seed(0)
    weight = torch.rand(C, generator=gen, dtype=torch.float64) + 0.5
    bias = torch.randn(C, generator=gen, dtype=torch.float64)
    running_mean, running_var = (
        torch.zeros(C, dtype=torch.float64),
        torch.ones(C, dtype=torch.float64),
    )
    for step in range(STEPS):
        x = torch.randn(world * B, C, HW, HW, generator=gen, dtype=torch.float64) * 3 + 1
        dy = torch.randn(world * B, C, HW, HW, generator=gen, dtype=torch.float64)
        y, gx, gw, gb, mean, var = _bn_formula(x, weight, bias, dy)
        got = [r["steps"][step] for r in ranks]
        torch.testing.assert_close(torch.cat([g["y"] for g in got]), y, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(torch.cat([g["gx"] for g in got]), gx, rtol=1e-9, atol=1e-10)
        # each process holds its own samples' share of dγ, dβ (DDP sums / averages them)
        torch.testing.assert_close(sum(g["gw"] for g in got), gw, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(sum(g["gb"] for g in got), gb, rtol=1e-9, atol=1e-10)
        running_mean = (1 - MOMENTUM) * running_mean + MOMENTUM * mean
        running_var = (1 - MOMENTUM) * running_var + MOMENTUM * var
    for r in ranks:
        torch.testing.assert_close(r["buffers"]["mean"], running_mean, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(r["buffers"]["var"], running_var, rtol=1e-10, atol=1e-12)
    # rank 0's probe: BN over its own batch alone, and the buffers untouched
    y, *_ = _bn_formula(ranks[0]["x"], weight, bias, torch.zeros_like(ranks[0]["x"]))
    torch.testing.assert_close(ranks[0]["probe"], y, rtol=1e-10, atol=1e-10)


def test_ddp_takes_a_sync_batch_model_on_the_cpu(tmp_path):
    """DDP refuses every ``nn.SyncBatchNorm`` on CPU ("SyncBatchNorm layers only work with GPU
    modules"): normbench's layer is not one, and its state dict is that of one."""
    layer = build_norm({"name": "sync_batch"}).layer(4, 1)
    assert not isinstance(layer, nn.SyncBatchNorm)
    assert layer.state_dict().keys() == nn.SyncBatchNorm(4).state_dict().keys()
    store = tmp_path / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        model = nn.Sequential(nn.Linear(3, 4), layer)
        ddp = nn.parallel.DistributedDataParallel(model)
        ddp(torch.randn(5, 3)).sum().backward()
    finally:
        dist.destroy_process_group()


# --- whole runs under torchrun ------------------------------------------------------------------

RUN = [
    "experiment=bn_fig1",
    "dataset=synthetic",
    "dataset.num_train=256",
    "dataset.num_val=64",
    "dataset.batch_size=16",
    "model.hidden=[32,32]",
    "trainer.steps=20",
    "trainer.eval_every=10",
    "trainer.log_every=10",
    "trainer.threads=1",
    "probes.every=10",
    "probes.hist_every=0",
    "probes.batch_size=32",
    "optim.lr=0.1",
]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _command(procs: int, *args: str) -> list[str]:
    prefix = [sys.executable, "-m", "normbench", "train"]
    if procs > 1:
        prefix = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={procs}",
            "-m",
            "normbench",
            "train",
        ]
    return [*prefix, *RUN, *args]


def _run(cwd: Path, procs: int, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        _command(procs, *args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _run_dir(cwd: Path, name: str) -> Path:
    [summary] = list((cwd / "runs" / name).glob("*/summary.json"))
    return summary.parent


def _params(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "ckpt" / "last.pt", weights_only=True)["model"]
    return {k: v for k, v in state.items() if "running" not in k and "num_batches" not in k}


def _assert_same_parameters(a: Path, b: Path) -> None:
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        torch.testing.assert_close(pa[key], pb[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize(
    ("norm_ddp", "norm_single"),
    [
        pytest.param(
            ["norm=group", "norm.num_groups=4"],
            ["norm=group", "norm.num_groups=4"],
            marks=pytest.mark.slow,  # 12 s; the batch case below runs in the fast set
        ),
        # per-device statistics: each process's 8 samples, as ghost BN over groups of B/2 = 8
        (["norm=batch"], ["norm=ghost_batch", "norm.group_size=8"]),
    ],
    ids=["group", "batch-vs-ghost"],
)
def test_two_process_run_equals_single_process_run(tmp_path, norm_ddp, norm_single):
    two = _run(tmp_path, 2, *norm_ddp, "name=ddp")
    assert (two.stdout + two.stderr).count("done: val_err") == 1  # rank 0's line alone
    _run(tmp_path, 1, *norm_single, "name=single")
    ddp, single = _run_dir(tmp_path, "ddp"), _run_dir(tmp_path, "single")
    _assert_same_parameters(ddp, single)
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["distributed"]["world_size"] == 2
    assert summary["distributed"]["backend"] == "gloo"
    assert not list(ddp.glob("*.rank1*"))  # rank 1 writes nothing of its own
    # `normbench eval` (one process) rebuilds the run with its process count and reproduces
    # rank 0's final validation error
    done = subprocess.run(
        [sys.executable, "-m", "normbench", "eval", str(ddp), "mode=running"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    evals = pd.read_csv(ddp / "evals.csv")
    assert abs(evals["error"].iloc[0] - summary["final"]["val_error"]) < 1e-9


@pytest.mark.slow  # 21 s; the fast set has DDP around the layer and its two-process numerics
def test_sync_batch_run_on_two_processes_equals_bn_over_the_global_batch(tmp_path):
    """norm=sync_batch under torchrun (two gloo processes, 8 samples each): synchronized BN over
    the two shards of each global batch of 16 is BN over that batch, so the run equals a
    single-process norm=batch run of the same global batch. The tolerances allow float32
    summation-order differences over 20 steps (the statistics are combined from per-process
    means and variances); per-device statistics (plain norm=batch under torchrun) change the
    parameters by far more than rtol 1e-4 (the test above: they equal ghost BN over 8)."""
    _run(tmp_path, 2, "norm=sync_batch", "trainer.device=cpu", "name=sync")
    _run(tmp_path, 1, "norm=batch", "trainer.device=cpu", "name=single")
    sync, single = _run_dir(tmp_path, "sync"), _run_dir(tmp_path, "single")
    summary = json.loads((sync / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == 20
    assert summary["distributed"]["world_size"] == 2
    a, b = pd.read_csv(sync / "metrics.csv"), pd.read_csv(single / "metrics.csv")
    assert a["step"].tolist() == b["step"].tolist() == [0, 10, 20]
    # the training loss is averaged over the processes: the mean over the global batch
    assert a["train_loss"].iloc[1:].tolist() == pytest.approx(b["train_loss"].iloc[1:], rel=1e-5)
    # the same parameters and running statistics: at most a near-tie among the 64 validation
    # samples can flip, and none does at these settings
    assert a["val_error"].tolist() == b["val_error"].tolist()
    assert a["val_loss"].tolist() == pytest.approx(b["val_loss"], rel=1e-4)
    _assert_same_parameters(sync, single)
    buffers = [
        {
            k: v
            for k, v in torch.load(run / "ckpt" / "last.pt", weights_only=True)["model"].items()
            if "running" in k
        }
        for run in (sync, single)
    ]
    assert buffers[0].keys() == buffers[1].keys() and buffers[0]
    for key in buffers[0]:
        torch.testing.assert_close(buffers[0][key], buffers[1][key], rtol=1e-4, atol=1e-5, msg=key)


def test_killed_two_process_run_resumes_to_the_same_metrics(tmp_path):
    args = ["norm=batch", "trainer.steps=60", "trainer.ckpt_every=10", "name=kill"]
    full = tmp_path / "full"
    full.mkdir()
    _run(full, 2, *args)
    proc = subprocess.Popen(
        _command(2, *args),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ckpt = tmp_path / "runs" / "kill"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # wait for a checkpoint past step 10, then kill all
            found = list(ckpt.glob("*/metrics.csv"))
            if found and len(found[0].read_text().splitlines()) >= 4:  # header + steps 0, 10, 20
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run wrote no metrics in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    run = _run_dir(tmp_path, "kill")
    summary = (run / "summary.json").read_text()
    assert '"complete"' not in summary
    done = _run(tmp_path, 2, *args)
    assert "resuming" in done.stdout + done.stderr
    reference = _run_dir(full, "kill")
    for name in ("metrics.csv", "activations.csv"):
        a, b = pd.read_csv(run / name), pd.read_csv(reference / name)
        pd.testing.assert_frame_equal(
            a.drop(columns="time", errors="ignore"), b.drop(columns="time", errors="ignore")
        )


@pytest.mark.slow
def test_resume_with_another_process_count_is_refused(tmp_path):
    _run(tmp_path, 2, "norm=batch", "trainer.stop_after=10", "name=count")
    done = subprocess.run(
        _command(1, "norm=batch", "trainer.stop_after=10", "name=count"),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "a checkpoint of a run on 2 process(es); this run has 1" in done.stdout + done.stderr
    assert "torchrun --nproc_per_node=2" in done.stdout + done.stderr


@pytest.mark.slow
def test_submitit_job_of_two_tasks_runs_ddp(tmp_path):
    """hydra/launcher=slurm_local with tasks_per_node=2 (as hydra/launcher=slurm on a node): the
    job's two tasks become the two ranks of one run."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

    done = subprocess.run(
        [sys.executable, "-m", "normbench", "train", "-m", *RUN, "norm=batch", "seed=0", "name=sub"]
        + ["hydra/launcher=slurm_local", "hydra.launcher.tasks_per_node=2"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "multirun: 1 jobs: 1 complete" in done.stderr  # the job's two tasks count once
    summary = json.loads((_run_dir(tmp_path, "sub") / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["distributed"]["world_size"] == 2
