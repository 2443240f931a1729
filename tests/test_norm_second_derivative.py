"""A second derivative through a hand-written backward is one clear error, never a silent zero.

Every ``torch.autograd.Function`` of ``normbench.norms`` has a closed-form, first-order
backward. ``torch.autograd.grad(..., create_graph=True)`` through one must raise a RuntimeError
naming the variant and the twice-differentiable alternatives (before, the gradient silently had
no graph: a gradient penalty lost that layer's part). The variants the message recommends do
support a gradient penalty.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable

import pytest
import torch
from torch import nn

import normbench.norms
from normbench.norms import build_norm_spec
from normbench.norms.evonorm import EvoNormB0Function, EvoNormS0Function
from normbench.norms.first_order import TWICE_DIFFERENTIABLE
from normbench.norms.frn import FilterResponseNormFunction
from normbench.norms.grouped import GroupedBatchNormFunction, NativeGroupedBatchNormFunction
from normbench.norms.normprop import UnitRowsFunction
from normbench.norms.sync_batch import SyncBatchNormFunction

pytestmark = pytest.mark.usefixtures("one_thread")

D = torch.float64
C = 3


def p(*shape: int) -> torch.Tensor:
    return (torch.rand(shape, dtype=D) + 0.5).requires_grad_()


#: Each Function applied to x of shape (4, C, 2, 2) (a weight of shape (4, 12) for unit rows).
CASES: dict[type[torch.autograd.Function], Callable[[torch.Tensor], torch.Tensor]] = {
    GroupedBatchNormFunction: lambda x: GroupedBatchNormFunction.apply(x, p(C), p(C), 1e-5, 2),
    NativeGroupedBatchNormFunction: lambda x: NativeGroupedBatchNormFunction.apply(
        x, p(C), p(C), 1e-5, 2
    ),
    UnitRowsFunction: lambda x: UnitRowsFunction.apply(x.reshape(4, -1), 1.5),
    FilterResponseNormFunction: lambda x: FilterResponseNormFunction.apply(
        x, p(C), p(C), p(C), None, 1e-6
    ),
    EvoNormS0Function: lambda x: EvoNormS0Function.apply(x, p(C), p(C), p(C), 1, 1e-5),
    EvoNormB0Function: lambda x: EvoNormB0Function.apply(x, p(C), p(C), p(C), 1e-5, 2),
    SyncBatchNormFunction: lambda x: (
        _one_process_group() and SyncBatchNormFunction.apply(x, p(C), p(C), 1e-5, None)
    ),
}


def _one_process_group() -> bool:
    """A gloo group of this process alone (the Function all-gathers over the group)."""
    import tempfile

    import torch.distributed as dist

    if not dist.is_initialized():
        store = tempfile.mktemp(prefix="normbench-pg-")
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    return True


@pytest.fixture(autouse=True)
def _no_process_group_left():
    """torch's SyncBatchNorm syncs (and refuses CPU inputs) whenever a group exists."""
    yield
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def custom_functions() -> set[type[torch.autograd.Function]]:
    """Every autograd Function class defined in a module of ``normbench.norms``."""
    found = set()
    for info in pkgutil.iter_modules(normbench.norms.__path__):
        module = importlib.import_module(f"normbench.norms.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, torch.autograd.Function) and obj.__module__ == module.__name__:
                found.add(obj)
    return found


def test_every_custom_function_is_checked_here():
    assert custom_functions() == set(CASES)


@pytest.mark.parametrize("function", list(CASES), ids=lambda f: f.__name__)
@pytest.mark.parametrize("loss", ["sum", "square"])
def test_second_derivative_through_a_custom_function_is_a_clear_error(function, loss):
    x = torch.randn(4, C, 2, 2, dtype=D, requires_grad=True)
    y = CASES[function](x)
    out = y.sum() if loss == "sum" else y.square().sum()
    first = torch.autograd.grad(out, x, retain_graph=True)[0]  # first order: fine
    assert torch.isfinite(first).all()
    with pytest.raises(RuntimeError) as err:
        torch.autograd.grad(out, x, create_graph=True)
    message = str(err.value)
    assert f"hand-written backward ({function.__name__}) with first derivatives only" in message
    assert "norm=" in message.split(":")[0] and TWICE_DIFFERENTIABLE in message


def small_cnn(spec) -> nn.Module:
    act = nn.Identity if spec.includes_activation else nn.ReLU
    return nn.Sequential(
        spec.conv(C, 4, 3, padding=1, bias=not spec.has_shift, input_layer=True),
        spec.layer(4, dims=2),
        act(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        spec.classifier(4, 2),
    )


#: Variants a gradient penalty on the input works with (the message recommends all but NormProp,
#: whose Function differentiates the weights only: a penalty on the input never runs it).
TWICE = [
    ("batch", {}),
    ("sync_batch", {}),
    ("group", {"num_groups": 2}),
    ("layer", {}),
    ("instance", {}),
    ("weight", {}),
    ("weight", {"mean_only_bn": True}),
    ("mean_batch", {}),
    ("noisy_batch", {}),
    ("mean_batch", {"detached": True}),
    ("ws_group", {"num_groups": 2}),
    ("none", {}),
    ("normprop", {}),
]
ONCE = [
    ("batch", {"impl": "closed_form"}),
    ("ghost_batch", {"group_size": 2}),
    ("batch_renorm", {}),
    ("batch_detached", {}),
    ("frn", {}),
    ("evonorm", {"groups": 2}),
    ("evonorm", {"groups": 2, "version": "B0"}),
]


def test_every_variant_is_classified():
    assert {n for n, _ in TWICE + ONCE} == set(normbench.norms.known_norms())
    for name, _ in TWICE[:-1]:
        assert name in TWICE_DIFFERENTIABLE


def gradient_penalty(name: str, options: dict) -> nn.Module:
    torch.manual_seed(0)
    model = small_cnn(build_norm_spec({"name": name, **options})).double().train()
    x = torch.randn(4, C, 4, 4, dtype=D, requires_grad=True)
    (g,) = torch.autograd.grad(model(x).square().sum(), x, create_graph=True)
    g.square().sum().backward()
    return model


@pytest.mark.parametrize(("name", "options"), TWICE, ids=[f"{n}{o}" for n, o in TWICE])
def test_a_gradient_penalty_works_with_the_recommended_variants(name, options):
    model = gradient_penalty(name, options)
    grads = [q.grad for q in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize(("name", "options"), ONCE, ids=[f"{n}{o}" for n, o in ONCE])
def test_a_gradient_penalty_with_a_hand_written_backward_names_the_variant(name, options):
    with pytest.raises(RuntimeError, match=f"norm={name}.*first derivatives only"):
        gradient_penalty(name, options)
