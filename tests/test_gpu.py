"""GPU code paths (skipped without CUDA): every norm variant on the GPU against the same layer
on the CPU in float64, compiled norm layers on the GPU against eager, and a CNN run of
``normbench train`` / ``normbench eval`` on ``trainer.device=cuda`` with bf16 and channels_last."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from normbench.bench.norm_cases import CASES, build_case

pytestmark = pytest.mark.gpu
SHAPE = (8, 16, 6, 6)
SLOTS = [c.label for c in CASES if c.kind == "slot"]


def _step(module, x, dy):
    x = x.clone().requires_grad_(True)
    y = module(x)
    grads = torch.autograd.grad(y, [x, *module.parameters()], dy)
    return y.detach(), grads


@pytest.mark.parametrize("label", SLOTS)
def test_slot_variant_on_gpu_equals_cpu_in_float64(label):
    """Two training steps and an eval forward; outputs, gradients and buffers agree."""
    case = next(c for c in CASES if c.label == label)
    cpu = build_case(case, SHAPE).double().train()
    gpu = copy.deepcopy(cpu).cuda()
    for _ in range(2):
        x, dy = torch.randn(SHAPE, dtype=torch.float64), torch.randn(SHAPE, dtype=torch.float64)
        (y_c, g_c), (y_g, g_g) = _step(cpu, x, dy), _step(gpu, x.cuda(), dy.cuda())
        torch.testing.assert_close(y_g.cpu(), y_c, rtol=1e-9, atol=1e-9)
        for a, b in zip(g_g, g_c, strict=True):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-8, atol=1e-9)
    for (name, a), b in zip(cpu.named_buffers(), gpu.buffers(), strict=True):
        torch.testing.assert_close(b.cpu(), a, msg=f"buffer {name}")
    cpu.eval(), gpu.eval()
    x = torch.randn(SHAPE, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("label", ["batch", "group", "frn", "evonorm", "ghost_batch[group_size=4]"])
def test_compiled_slot_on_gpu_equals_eager(label):
    torch._dynamo.reset()
    case = next(c for c in CASES if c.label == label)
    eager = build_case(case, SHAPE).cuda().train()
    module = copy.deepcopy(eager)
    compiled = torch.compile(module)
    for _ in range(2):
        x, dy = torch.randn(SHAPE, device="cuda"), torch.randn(SHAPE, device="cuda")
        x = x.clone().requires_grad_(True)
        y_e, g_e = _step(eager, x, dy)
        xc = x.detach().clone().requires_grad_(True)
        y_c = compiled(xc)
        g_c = torch.autograd.grad(y_c, [xc, *module.parameters()], dy)
        torch.testing.assert_close(y_c.detach(), y_e, rtol=1e-4, atol=1e-4)
        for a, b in zip(g_c, g_e, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


CNN = [
    "dataset=synthetic",
    "dataset.num_train=256",
    "dataset.num_val=128",
    "dataset.batch_size=32",
    "dataset.image_shape=[3,16,16]",
    "model=resnet50",
    "model.width=0.125",
    "model.stem=cifar",
    "norm=group",
    "norm.num_groups=4",
    "trainer.device=cuda",
    "trainer.amp=bf16",
    "trainer.channels_last=true",
    "trainer.steps=30",
    "trainer.eval_every=10",
    "trainer.log_every=10",
    "trainer.ckpt_every=10",
    "probes.every=10",
    "probes.hist_every=10",
    "probes.batch_size=32",
]


def test_cnn_train_and_eval_on_gpu(run_cli, tmp_path):
    """A CNN run on CUDA (bf16, channels_last) completes; `normbench eval` on CUDA with the
    running statistics reproduces its final validation error (same data, same model)."""
    import pandas as pd

    code, out, err = run_cli("train", "experiment=bn_fig1", "name=gpu", *CNN)
    assert code == 0, out + err
    [run] = list((tmp_path / "runs" / "gpu").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["environment"]["device"] == "cuda"
    assert summary["environment"]["amp"] == "bf16" and summary["environment"]["channels_last"]
    code, out, err = run_cli("eval", str(run), "mode=running")
    assert code == 0, out + err
    evals = pd.read_csv(run / "evals.csv")
    assert len(evals) == 1 and evals["mode"][0] == "running"
    assert abs(evals["error"][0] - summary["final"]["val_error"]) < 0.02


@pytest.mark.parametrize("label", SLOTS)
def test_slot_variant_on_gpu_takes_channels_last(label):
    """trainer.channels_last=true feeds NHWC-strided activations to every slot (CUDA kernels
    such as group norm refuse them unless made contiguous)."""
    case = next(c for c in CASES if c.label == label)
    plain = build_case(case, SHAPE).double().cuda().train()
    nhwc = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    x = torch.randn(SHAPE, dtype=torch.float64, device="cuda")
    dy = torch.randn(SHAPE, dtype=torch.float64, device="cuda")
    (y_p, g_p) = _step(plain, x, dy)
    (y_n, g_n) = _step(
        nhwc,
        x.contiguous(memory_format=torch.channels_last),
        dy.contiguous(memory_format=torch.channels_last),
    )
    torch.testing.assert_close(y_n, y_p, rtol=1e-9, atol=1e-9)
    for a, b in zip(g_n, g_p, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("label", SLOTS)
def test_slot_variant_on_gpu_under_bf16_autocast(label):
    """trainer.amp=bf16: bf16 activations (a conv's output under autocast) go through every slot
    forward and backward; the output is bf16 or float32 and near the float64 result."""
    case = next(c for c in CASES if c.label == label)
    exact = build_case(case, SHAPE).double().cuda().train()
    module = copy.deepcopy(exact).float()
    x = torch.randn(SHAPE, dtype=torch.float64, device="cuda")
    dy = torch.randn(SHAPE, dtype=torch.float64, device="cuda")
    y_ref, g_ref = _step(exact, x, dy)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        xb = x.to(torch.bfloat16).requires_grad_(True)
        y = module(xb)
    grads = torch.autograd.grad(y, [xb, *module.parameters()], dy.to(y.dtype))
    # bf16, or float32 where torch's CUDA autocast runs the op in float32 (group_norm, layer_norm)
    assert y.dtype in (torch.bfloat16, torch.float32)
    torch.testing.assert_close(y.double(), y_ref, rtol=0.05, atol=0.05)
    for a, b in zip(grads, g_ref, strict=True):
        assert torch.isfinite(a).all()
        rel = (a.double() - b).norm() / b.norm().clamp_min(1e-12)
        assert rel < 0.05, f"{label}: relative gradient error {rel:.3g}"
