"""Norm layers under ``torch.compile`` (``trainer.compile=true``, the compiled column of ``bench
norms``): the same values and gradients as eager over several training steps, compiled once."""

from __future__ import annotations

import copy

import pytest
import torch._dynamo

from normbench.bench.norm_cases import CASES, build_case
from normbench.engine.build import build_norm

pytestmark = pytest.mark.usefixtures("one_thread")
SHAPE = (6, 8, 4, 4)


def _compiles_or_skip(fn):
    try:
        return fn()
    except Exception as err:  # noqa: BLE001
        if "C++ compiler" in str(err) or type(err).__module__.startswith("torch._inductor"):
            pytest.skip(f"inductor cannot build here: {err}")
        raise


def _check_case(label: str, steps: int = 3, eager: torch.nn.Module | None = None) -> None:
    """Compiled vs eager over ``steps`` training steps: outputs, every gradient, the buffers."""
    torch._dynamo.reset()
    if eager is None:
        case = next(c for c in CASES if c.label == label)
        eager = build_case(case, SHAPE).train().double()
    compiled_module = copy.deepcopy(eager)
    compiled = torch.compile(compiled_module, dynamic=False)
    counters = torch._dynamo.utils.counters
    counters.clear()
    for step in range(steps):
        x = torch.randn(SHAPE, dtype=torch.float64)
        dy = torch.randn(SHAPE, dtype=torch.float64)
        outs = []
        for module, forward in ((eager, eager), (compiled_module, compiled)):
            xi = x.clone().requires_grad_(True)
            y = _compiles_or_skip(lambda f=forward, xi=xi: f(xi))
            grads = torch.autograd.grad(y, [xi, *module.parameters()], dy)
            outs.append((y.detach(), grads))
        (y_e, g_e), (y_c, g_c) = outs
        torch.testing.assert_close(y_c, y_e, rtol=1e-9, atol=1e-10, msg=f"{label} step {step}")
        for a, b in zip(g_c, g_e, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=f"{label} step {step}")
    for (name, a), b in zip(eager.named_buffers(), compiled_module.buffers(), strict=True):
        torch.testing.assert_close(b, a, msg=f"{label}: buffer {name}")
    frames = counters["stats"]["unique_graphs"]
    assert frames <= 2, f"{label}: {frames} graphs compiled over {steps} steps (recompiling)"


def test_batch_renorm_compiles_once_and_matches_eager():
    """Its r/d schedule reads the step counter: a Python number under compile would recompile
    at every step (and fall back to eager once dynamo's cache is full)."""
    _check_case("batch_renorm[warmup_steps=0]", steps=4)


@pytest.mark.parametrize("group_size", [None, 3, 4])
def test_batch_renorm_compiled_gradients_with_r_and_d_in_use(group_size):
    """r and d away from 1 and 0 and not clipped (r_max, d_max reached after one step, running
    estimates unlike the batch's, a large momentum): compiled, ∂L/∂x and ∂L/∂γ depend on r, d
    being those of this step, not of the next (the buffers are updated during the forward).
    Group size 4 leaves a trailing partial group of 2 of the 6 samples."""
    spec = build_norm(
        {
            "name": "batch_renorm",
            "warmup_steps": 0,
            "r_max_steps": 1,
            "d_max_steps": 1,
            "momentum": 0.3,
            "group_size": group_size,
        }
    )
    eager = spec.layer(SHAPE[1], 2).train().double()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        eager.running_mean.copy_(torch.rand(SHAPE[1], generator=generator) - 0.5)
        eager.running_var.copy_(torch.rand(SHAPE[1], generator=generator) + 0.5)
        eager.weight.copy_(torch.rand(SHAPE[1], generator=generator) + 0.5)
    _check_case(f"batch_renorm[group_size={group_size}]", steps=4, eager=eager)


@pytest.mark.slow
@pytest.mark.parametrize(
    "label",
    [c.label for c in CASES if c.kind == "slot" and c.label != "batch_renorm[warmup_steps=0]"],
)
def test_every_slot_variant_compiles_and_matches_eager(label):
    _check_case(label)
