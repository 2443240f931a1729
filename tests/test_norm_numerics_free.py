"""Batch-free and weight-acting variants against float64 formulas written here.

GN / LN / IN, FRN, EvoNorm-S0/B0, Weight Standardization, Weight Normalization (with its
data-dependent init and mean-only BN) and Normalization Propagation. Relative error < 1e-6.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck
from torch.func import functional_call

from normbench.norms import build_norm_spec

pytestmark = pytest.mark.usefixtures("one_thread")


D = torch.float64


def assert_rel(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-6) -> None:
    assert actual.shape == expected.shape
    err = ((actual - expected).norm() / expected.norm()).item()
    assert err < tol, f"relative error {err:.3g}"


def cv(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.view(1, -1, *([1] * (x.dim() - 2)))


def spec(name: str, **options: object):
    return build_norm_spec({"name": name, **options})


def randomize(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.dim() == 1 else 0.0))


def check_module(module: torch.nn.Module, x: torch.Tensor, formula) -> None:
    """Forward equals ``formula(x, params)``; gradients equal autograd of the formula; gradcheck."""
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]
    x = x.clone().requires_grad_()
    dy = torch.randn_like(x)
    y = functional_call(module, dict(zip(names, params, strict=True)), (x,))
    y_ref = formula(x, dict(zip(names, params, strict=True)))
    assert_rel(y, y_ref)
    for a, b in zip(
        torch.autograd.grad(y, [x, *params], dy),
        torch.autograd.grad(y_ref, [x, *params], dy),
        strict=True,
    ):
        assert_rel(a, b)

    def fn(x, *ps):
        return functional_call(module, dict(zip(names, ps, strict=True)), (x,))

    small = x.detach()[:3].clone().requires_grad_()
    assert gradcheck(fn, (small, *params), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)


def group_formula(groups: int, eps: float, affine: bool = True):
    def formula(x, p):
        n = x.shape[0]
        g = x.reshape(n, groups, -1)
        mu = g.mean(2, keepdim=True)
        var = ((g - mu) ** 2).mean(2, keepdim=True)
        y = ((g - mu) / torch.sqrt(var + eps)).reshape(x.shape)
        return cv(p["weight"], x) * y + cv(p["bias"], x) if affine else y

    return formula


@pytest.mark.parametrize(("name", "groups"), [("group", 2), ("layer", 1), ("instance", 6)])
@pytest.mark.parametrize("shape", [(5, 6, 3, 2), (5, 6)])
def test_group_layer_instance_norm_match_their_formula(name, groups, shape):
    if name == "instance" and len(shape) == 2:
        return  # instance statistics need spatial positions (a ConfigError, see test_norms.py)
    options = {"num_groups": groups} if name == "group" else {}
    m = spec(name, eps=1e-3, **options).layer(6, dims=1 if len(shape) == 2 else 2).double()
    randomize(m)
    check_module(m.train(), torch.randn(shape, dtype=D) * 2 + 1, group_formula(groups, 1e-3))


@pytest.mark.parametrize("learnable_eps", [False, True])
@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (4, 3)])
def test_frn_with_tlu_matches_its_formula(learnable_eps, shape):
    m = (
        spec("frn", eps=1e-6, learnable_eps=learnable_eps)
        .layer(3, dims=1 if len(shape) == 2 else 2)
        .double()
    )
    randomize(m)

    def formula(x, p):
        nu2 = (x**2).mean(dim=tuple(range(2, x.dim())), keepdim=True) if x.dim() > 2 else x**2
        eps = 1e-6 + (cv(p["eps_l"].abs(), x) if learnable_eps else 0.0)
        y = cv(p["weight"], x) * x / torch.sqrt(nu2 + eps) + cv(p["bias"], x)
        return torch.where(y > cv(p["tau"], x), y, cv(p["tau"], x).expand_as(y))

    check_module(m, torch.randn(shape, dtype=D), formula)


@pytest.mark.parametrize("shape", [(4, 6, 3, 2), (4, 6)])
def test_evonorm_s0_matches_its_formula(shape):
    m = (
        spec("evonorm", version="S0", groups=3, eps=1e-3)
        .layer(6, dims=1 if len(shape) == 2 else 2)
        .double()
    )
    randomize(m)

    def formula(x, p):
        g = x.reshape(x.shape[0], 3, -1)
        std = torch.sqrt(((g - g.mean(2, keepdim=True)) ** 2).mean(2, keepdim=True) + 1e-3)
        num = x * torch.sigmoid(cv(p["v"], x) * x)
        return cv(p["weight"], x) * (num.reshape(g.shape) / std).reshape(x.shape) + cv(p["bias"], x)

    check_module(m, torch.randn(shape, dtype=D), formula)


@pytest.mark.parametrize("shape", [(5, 3, 3, 2), (6, 3)])
def test_evonorm_b0_matches_its_formula_in_training_and_eval(shape):
    m = (
        spec("evonorm", version="B0", eps=1e-3, momentum=0.25)
        .layer(3, dims=1 if len(shape) == 2 else 2)
        .double()
    )
    randomize(m)
    dims = [0, *range(2, len(shape))]

    def formula(x, p, var_b=None):
        if var_b is None:
            var_b = ((x - x.mean(dims, keepdim=True)) ** 2).mean(dims, keepdim=True)
        if x.dim() > 2:
            sp = tuple(range(2, x.dim()))
            var_i = ((x - x.mean(sp, keepdim=True)) ** 2).mean(sp, keepdim=True)
        else:
            var_i = torch.zeros_like(x)
        den = torch.maximum(torch.sqrt(var_b + 1e-3), cv(p["v"], x) * x + torch.sqrt(var_i + 1e-3))
        return cv(p["weight"], x) * x / den + cv(p["bias"], x)

    x = torch.randn(shape, dtype=D) * 1.5
    check_module(m.train(), x, formula)
    fresh = (
        spec("evonorm", version="B0", eps=1e-3, momentum=0.25)
        .layer(3, dims=1 if len(shape) == 2 else 2)
        .double()
        .train()
    )
    fresh(x)
    assert_rel(fresh.running_var, 0.75 + 0.25 * x.var(dims, correction=1))
    params = dict(fresh.named_parameters())
    xe = torch.randn(shape, dtype=D)
    assert_rel(fresh.eval()(xe), formula(xe, params, var_b=cv(fresh.running_var, xe)))


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_weight_standardization_matches_its_formula(kind):
    s = spec("ws_group", num_groups=2, ws_eps=1e-4)
    layer = (s.conv(3, 4, 3, padding=1) if kind == "conv" else s.linear(5, 4)).double()
    v = layer.parametrizations.weight.original
    x = torch.randn((2, 3, 5, 5) if kind == "conv" else (3, 5), dtype=D)
    flat = v.detach().reshape(4, -1)
    w_hat = (
        (flat - flat.mean(1, keepdim=True))
        / torch.sqrt(flat.var(1, correction=0, keepdim=True) + 1e-4)
    ).view_as(v)
    expected = (
        F.conv2d(x, w_hat, layer.bias, padding=1)
        if kind == "conv"
        else F.linear(x, w_hat, layer.bias)
    )
    assert_rel(layer(x), expected)

    def fn(x, w, b):
        return functional_call(layer, {"parametrizations.weight.original": w, "bias": b}, (x,))

    assert gradcheck(
        fn,
        (
            x.requires_grad_(),
            v.detach().clone().requires_grad_(),
            layer.bias.detach().clone().requires_grad_(),
        ),
        fast_mode=True,
    )


@pytest.mark.parametrize("kind", ["conv", "linear"])
@pytest.mark.parametrize("bias", [True, False])
def test_weight_norm_forward_and_data_dependent_init(kind, bias):
    s = spec("weight")
    layer = (
        s.conv(3, 4, 3, padding=1, bias=bias) if kind == "conv" else s.linear(5, 4, bias=bias)
    ).double()
    x = torch.randn((6, 3, 5, 5) if kind == "conv" else (30, 5), dtype=D) * 3 + 1
    y = layer.train()(x)  # first training batch: g = 1/σ[t], b = −μ[t]/σ[t]
    dims = [0, 2, 3] if kind == "conv" else [0]
    assert bool(layer.wn_initialized)
    if bias:
        assert_rel(y.mean(dims) + 1, torch.ones(4, dtype=D))
    assert_rel(y.var(dims, correction=0), torch.ones(4, dtype=D))
    g, v = layer.parametrizations.weight.original0, layer.parametrizations.weight.original1
    w = g.detach() * v.detach() / v.detach().reshape(4, -1).norm(dim=1).view_as(g)
    b = layer.bias.detach() if bias else None
    x2 = torch.randn_like(x)
    expected = F.conv2d(x2, w, b, padding=1) if kind == "conv" else F.linear(x2, w, b)
    assert_rel(layer(x2), expected)  # no second init

    def fn(x, g, v):
        return functional_call(
            layer,
            {"parametrizations.weight.original0": g, "parametrizations.weight.original1": v},
            (x,),
        )

    assert gradcheck(
        fn,
        (
            x2[:2].clone().requires_grad_(),
            g.detach().clone().requires_grad_(),
            v.detach().clone().requires_grad_(),
        ),
        fast_mode=True,
    )


def test_weight_norm_init_survives_a_state_dict_round_trip():
    s = spec("weight")
    trained = s.linear(5, 4).double().train()
    trained(torch.randn(20, 5, dtype=D))
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    loaded = spec("weight").linear(5, 4).double().train()
    loaded.load_state_dict(torch.load(buffer))
    g_before = loaded.parametrizations.weight.original0.detach().clone()
    loaded(torch.randn(20, 5, dtype=D) * 10)
    torch.testing.assert_close(
        loaded.parametrizations.weight.original0.detach(), g_before, rtol=0, atol=0
    )


def test_mean_only_batch_norm_matches_its_formula():
    m = spec("weight", mean_only_bn=True, momentum=0.3).layer(3, dims=2).double()
    with torch.no_grad():
        m.bias.copy_(torch.randn(3, dtype=D))
    x, dy = torch.randn(4, 3, 2, 2, dtype=D) + 2, torch.randn(4, 3, 2, 2, dtype=D)
    xr = x.clone().requires_grad_()
    y = m.train()(xr)
    dims = (0, 2, 3)
    assert_rel(y, x - cv(x.mean(dims), x) + cv(m.bias.detach(), x))
    (dx,) = torch.autograd.grad(y, xr, dy)
    assert_rel(dx, dy - dy.mean(dims, keepdim=True))  # ∂/∂x of x − mean(x)
    assert_rel(m.running_mean, 0.3 * x.mean(dims))
    assert_rel(m.eval()(x), x - cv(m.running_mean, x) + cv(m.bias.detach(), x))


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("detached", [False, True])
@pytest.mark.parametrize("group_size", [None, 2])
def test_mean_batch_matches_its_formula(affine, detached, group_size):
    """norm=mean_batch: y = x − μ_B (+ β); ∂y/∂x = dy − mean(dy) with the mean in the gradient,
    dy itself with the mean detached; μ_B per group of group_size samples."""
    m = spec("mean_batch", affine=affine, detached=detached, momentum=0.3, group_size=group_size)
    m = m.layer(3, dims=2).double()
    beta = torch.randn(3, dtype=D) if affine else torch.zeros(3, dtype=D)
    if affine:
        with torch.no_grad():
            m.bias.copy_(beta)
    else:
        assert m.bias is None and not [p for p in m.parameters()]
    x, dy = torch.randn(4, 3, 2, 2, dtype=D) + 2, torch.randn(4, 3, 2, 2, dtype=D)
    g = 1 if group_size is None else 4 // group_size
    xg, dyg = x.view(g, -1, 3, 2, 2), dy.view(g, -1, 3, 2, 2)
    dims = (1, 3, 4)  # within a group: samples and positions
    mu = xg.mean(dims, keepdim=True)
    want = (xg - mu).view(x.shape) + cv(beta, x)
    want_dx = dy if detached else (dyg - dyg.mean(dims, keepdim=True)).view(x.shape)
    xr = x.clone().requires_grad_()
    y = m.train()(xr)
    assert_rel(y, want)
    (dx,) = torch.autograd.grad(y, xr, dy)
    assert_rel(dx, want_dx)
    if affine:  # ∂ℓ/∂β = Σ dy over the batch and positions, whichever way the mean goes
        (dbeta,) = torch.autograd.grad(m.train()(x.clone()), m.bias, dy)
        assert_rel(dbeta, dy.sum((0, 2, 3)))
    forwards = 2 if affine else 1  # μ ← μ + 0.3 (mean of the groups' μ_B − μ), from 0
    assert_rel(m.running_mean, (1 - 0.7**forwards) * mu.view(g, 3).mean(0))
    assert_rel(m.eval()(x), x - cv(m.running_mean, x) + cv(beta, x))


def test_a_bias_before_detached_centring_grows_while_the_output_stays():
    """The BN paper's §2: x = u + b, y = x − sg(E[x]). A gradient step moves b by −η Σ ∂ℓ/∂y and
    leaves y unchanged; with the mean in the gradient ∂ℓ/∂b is 0."""
    u, target = torch.randn(16, 3, dtype=D), torch.randn(16, 3, dtype=D)
    for detached in (True, False):
        m = spec("mean_batch", affine=False, detached=detached).layer(3, dims=1).double().train()
        b = torch.zeros(3, dtype=D, requires_grad=True)
        outputs = []
        for _ in range(3):
            y = m(u + b)
            loss = ((y - target) ** 2).sum()
            (grad,) = torch.autograd.grad(loss, b)
            outputs.append(y.detach())
            with torch.no_grad():
                b -= 0.1 * grad
        assert_rel(outputs[0], outputs[-1])  # the output never moves
        dy = 2 * (outputs[0] - target)
        if detached:
            assert_rel(b.detach(), -0.1 * 3 * dy.sum(0))  # three equal steps: linear growth
        else:
            assert b.detach().abs().max() < 1e-12


def test_normprop_constants_are_the_gaussian_moments_of_the_activation():
    from normbench.norms.normprop import ACTIVATION_MOMENTS

    assert math.isclose(ACTIVATION_MOMENTS["relu"][0], 1 / math.sqrt(2 * math.pi), rel_tol=1e-12)
    assert math.isclose(
        ACTIVATION_MOMENTS["relu"][1], math.sqrt(0.5 * (1 - 1 / math.pi)), rel_tol=1e-12
    )
    z = np.linspace(-12, 12, 400001)
    density = np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
    for name, fn in {
        "relu": lambda t: np.maximum(t, 0),
        "leaky_relu": lambda t: np.where(t > 0, t, 0.1 * t),
        "sigmoid": lambda t: 1 / (1 + np.exp(-t)),
        "tanh": np.tanh,
    }.items():
        mean = np.trapezoid(fn(z) * density, z)
        std = math.sqrt(np.trapezoid((fn(z) - mean) ** 2 * density, z))
        assert math.isclose(ACTIVATION_MOMENTS[name][0] + 1, mean + 1, rel_tol=1e-7), name
        assert math.isclose(ACTIVATION_MOMENTS[name][1], std, rel_tol=1e-7), name


def test_normprop_layers_match_their_formula():
    s = spec("normprop", activation="relu")
    first, second = (
        s.linear(5, 4, bias=False, input_layer=True).double(),
        s.conv(4, 3, 3, padding=1, bias=True).double(),
    )
    slot = s.layer(4, dims=1).double()
    randomize(slot)
    x = torch.randn(7, 5, dtype=D)
    w1 = first.parametrizations.weight.original.detach()
    u = x @ (w1 / w1.norm(dim=1, keepdim=True)).T  # the first layer sees the standardized input
    assert_rel(first(x), u)
    assert_rel(slot(u), slot.weight.detach() * u + slot.bias.detach())
    h = torch.relu(torch.randn(2, 4, 5, 5, dtype=D))
    w2 = second.parametrizations.weight.original.detach()
    c1, c2 = 1 / math.sqrt(2 * math.pi), math.sqrt(0.5 * (1 - 1 / math.pi))
    w2_hat = w2 / w2.reshape(3, -1).norm(dim=1).view(3, 1, 1, 1)
    assert_rel(second(h), F.conv2d((h - c1) / c2, w2_hat, second.bias.detach(), padding=1))


def test_normprop_propagates_unit_variance_through_relu_layers():
    s = spec("normprop", activation="relu")
    layers = [s.linear(400, 400, bias=False, input_layer=i == 0).double() for i in range(4)]
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in layers:  # NormProp assumes roughly orthogonal rows: draw them so
            q, _ = torch.linalg.qr(torch.randn(400, 400, dtype=D))
            layer.parametrizations.weight.original.copy_(q)
        h = torch.randn(2000, 400, dtype=D)
        for layer in layers:
            u = layer(h)
            assert abs(u.mean().item()) < 0.05 and abs(u.var().item() - 1) < 0.05
            h = torch.relu(u)


@pytest.mark.parametrize("shape", [(4, 6), (3, 2, 3, 3)])
def test_unit_rows_function_matches_normalize_and_gradcheck(shape):
    from normbench.norms.normprop import UnitRowsFunction

    w = torch.randn(shape, dtype=D, requires_grad=True)
    rows = w.reshape(shape[0], -1)
    expected = (1.7 * rows / torch.sqrt((rows**2).sum(1, keepdim=True))).view(shape)
    got = UnitRowsFunction.apply(w, 1.7)
    assert_rel(got, expected)
    g = torch.randn(shape, dtype=D)
    assert_rel(torch.autograd.grad(got, w, g)[0], torch.autograd.grad(expected, w, g)[0])
    assert gradcheck(lambda t: UnitRowsFunction.apply(t, 1.7), (w,))
