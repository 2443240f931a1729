"""Statistics over groups of consecutive samples (images per device) against float64 formulas.

Batch Renorm's microbatches, detached BN, EvoNorm-B0 and mean-only BN with ``group_size``,
and the two grouped-BN Functions (closed form and torch kernels) under ``gradcheck``.
Relative error < 1e-6; references are written here and differentiated by autograd.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

from normbench.norms import build_norm_spec
from normbench.norms.grouped import GroupedBatchNormFunction, NativeGroupedBatchNormFunction

D = torch.float64
IMPLS = ["native", "closed_form"]


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_rel(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-6) -> None:
    assert actual.shape == expected.shape
    err = ((actual - expected).norm() / expected.norm().clamp_min(1e-300)).item()
    assert err < tol, f"relative error {err:.3g}"


def cv(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.view(1, -1, *([1] * (x.dim() - 2)))


def dims_of(x: torch.Tensor) -> list[int]:
    return [0, *range(2, x.dim())]


def groups_of(n: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def layer(name: str, channels: int, dims: int, **options: object) -> torch.nn.Module:
    module = build_norm_spec({"name": name, **options}).layer(channels, dims).double()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + 1.0)
    return module


def grads(module, x, dy):
    x = x.clone().requires_grad_()
    params = list(module.parameters())
    y = module(x)
    return (y.detach(), *torch.autograd.grad(y, [x, *params], dy))


def reference_grads(y_ref, x, params, dy):
    return torch.autograd.grad(y_ref, [x, *params], dy)


# ---------------------------------------------------------------- batch renorm microbatches


def brn_group_formula(x, gamma, beta, mean, var, eps, r_lim, d_lim):
    """Ioffe 2017, Alg. 1 on one microbatch; r and d are constants (stop-gradient)."""
    dims = dims_of(x)
    mu_b = x.mean(dims)
    sigma_b = torch.sqrt(((x - cv(mu_b, x)) ** 2).mean(dims) + eps)
    sigma = torch.sqrt(var + eps)
    r = torch.clamp(sigma_b / sigma, 1 / r_lim, r_lim).detach()
    d = torch.clamp((mu_b - mean) / sigma, -d_lim, d_lim).detach()
    xhat = (x - cv(mu_b, x)) / cv(sigma_b, x)
    return cv(gamma, x) * (xhat * cv(r, x) + cv(d, x)) + cv(beta, x)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("n", "tail"), [(12, (3, 2, 2)), (14, (3, 2, 2)), (12, (5,))])
def test_brn_microbatches_match_the_paper_per_group(impl, n, tail):
    opts = {"warmup_steps": 0, "r_max_steps": 10, "d_max_steps": 10, "momentum": 0.2}
    m = layer("batch_renorm", tail[0], 1 if len(tail) == 1 else 2, group_size=4, eps=1e-3, **opts)
    m.impl = impl
    with torch.no_grad():
        m.running_mean.copy_(torch.randn(tail[0], dtype=D) * 0.3)
        m.running_var.copy_(torch.rand(tail[0], dtype=D) * 2 + 0.5)
        m.step.fill_(5)  # r_max(5) = 2, d_max(5) = 2.5
    mean0, var0 = m.running_mean.clone(), m.running_var.clone()
    x, dy = torch.randn(n, *tail, dtype=D) * 1.5 + 0.4, torch.randn(n, *tail, dtype=D)
    params = [p.detach().clone().requires_grad_() for p in (m.weight, m.bias)]
    xr = x.clone().requires_grad_()
    y_ref = torch.cat(
        [brn_group_formula(xr[g], *params, mean0, var0, 1e-3, 2.0, 2.5) for g in groups_of(n, 4)]
    )
    y, *ours = grads(m.train(), x, dy)
    assert_rel(y, y_ref)
    for a, b in zip(ours, reference_grads(y_ref, xr, params, dy), strict=True):
        assert_rel(a, b)
    full = [g for g in groups_of(n, 4) if g.stop - g.start == 4]  # complete groups only
    dims = dims_of(x)
    assert_rel(
        m.running_mean, 0.8 * mean0 + 0.2 * torch.stack([x[g].mean(dims) for g in full]).mean(0)
    )
    var_k = torch.stack([x[g].var(dims, correction=1) for g in full]).mean(0)
    assert_rel(m.running_var, 0.8 * var0 + 0.2 * var_k)
    assert m.step.item() == 6


@pytest.mark.parametrize("impl", IMPLS)
def test_grouped_brn_with_r_max_1_and_d_max_0_equals_ghost_batch_norm(impl):
    brn = layer("batch_renorm", 4, 2, r_max=1.0, d_max=0.0, warmup_steps=0, group_size=3)
    ghost = layer("ghost_batch", 4, 2, group_size=3, momentum=0.01, impl=impl)
    brn.impl = impl
    ghost.load_state_dict({k: v for k, v in brn.state_dict().items() if k != "step"})
    for _ in range(3):
        x, dy = torch.randn(9, 4, 3, 3, dtype=D) * 2 + 1, torch.randn(9, 4, 3, 3, dtype=D)
        for a, b in zip(grads(brn.train(), x, dy), grads(ghost.train(), x, dy), strict=True):
            assert_rel(a, b)
    assert_rel(brn.running_mean, ghost.running_mean)
    assert_rel(brn.running_var, ghost.running_var)


@pytest.mark.parametrize("impl", IMPLS)
def test_grouped_brn_gradcheck_where_r_and_d_are_clipped(impl):
    # Finite differences see r and d move unless they are clipped (they are stop-gradient).
    m = layer("batch_renorm", 3, 2, warmup_steps=0, r_max_steps=1, d_max_steps=1, group_size=2)
    m.impl = impl
    with torch.no_grad():
        m.step.fill_(10)
        m.running_var.fill_(1e4)  # r = 1/r_max in every group
        m.running_mean.fill_(1e3)  # d = −d_max in every group
    names = [n for n, _ in m.named_parameters()]
    state = {n: b.clone() for n, b in m.named_buffers()}

    def fn(x, *params):
        buffers = {n: b.clone() for n, b in state.items()}
        return functional_call(m, {**dict(zip(names, params, strict=True)), **buffers}, (x,))

    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    x = torch.randn(6, 3, 2, 2, dtype=D, requires_grad=True)
    assert gradcheck(fn, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- the two Functions


@pytest.mark.parametrize("function", [GroupedBatchNormFunction, NativeGroupedBatchNormFunction])
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("shape", [(6, 4, 2, 3), (6, 5)])
@pytest.mark.parametrize("mode", ["plain", "renorm", "detached", "no_affine"])
def test_grouped_functions_match_the_formula_and_gradcheck(function, groups, shape, mode):
    x = torch.randn(shape, dtype=D, requires_grad=True)
    w, b = (torch.randn(shape[1], dtype=D, requires_grad=True) for _ in range(2))
    dy = torch.randn(shape, dtype=D)

    def renorm(mean, invstd):  # some function of the statistics, a constant for autograd
        return 0.5 + 1 / (invstd * 2), 0.3 * mean - 0.1

    def reference(x, w, b):
        size = shape[0] // groups
        pieces = []
        for g in groups_of(shape[0], size):
            xg = x[g]
            dims = dims_of(xg)
            mu = xg.mean(dims)
            var = ((xg - cv(mu, xg)) ** 2).mean(dims)
            if mode == "detached":
                mu, var = mu.detach(), var.detach()
            xhat = (xg - cv(mu, xg)) / torch.sqrt(cv(var, xg) + 1e-5)
            if mode == "renorm":
                r, d = renorm(mu.detach(), torch.rsqrt(var.detach() + 1e-5))
                xhat = xhat * cv(r, xg) + cv(d, xg)
            pieces.append(xhat if mode == "no_affine" else cv(w, xg) * xhat + cv(b, xg))
        return torch.cat(pieces)

    args = (x, None, None) if mode == "no_affine" else (x, w, b)
    extra = {"plain": (), "no_affine": (), "renorm": (renorm,), "detached": (None, True)}[mode]

    def ours(*t):
        return function.apply(*t, 1e-5, groups, *extra)

    def constant_renorm(mean, invstd):  # for gradcheck: r, d must not move with x
        return torch.full_like(mean, 1.3), torch.full_like(mean, -0.2)

    def checked(*t):
        t = t if mode != "no_affine" else (t[0], None, None)
        more = (constant_renorm,) if mode == "renorm" else extra
        return function.apply(*t, 1e-5, groups, *more)

    inputs = [t for t in args if t is not None]
    y, y_ref = ours(*args), reference(x, w, b)
    assert_rel(y, y_ref)
    for a, r in zip(
        torch.autograd.grad(y, inputs, dy), torch.autograd.grad(y_ref, inputs, dy), strict=True
    ):
        assert_rel(a, r)
    if mode != "detached":  # finite differences see the statistics move, which detached ignores
        assert gradcheck(checked, inputs)


@pytest.mark.parametrize("function", [GroupedBatchNormFunction, NativeGroupedBatchNormFunction])
@pytest.mark.parametrize("groups", [1, 3])
def test_grouped_functions_update_the_running_estimates(function, groups):
    x = torch.randn(12, 3, 2, 2, dtype=D) * 2 + 1
    mean, var = torch.randn(3, dtype=D), torch.rand(3, dtype=D) + 0.5
    running = (mean.clone(), var.clone(), 0.3)
    function.apply(x, None, None, 1e-5, groups, None, False, running)
    parts = x.view(groups, -1, 3, 2, 2)
    mean_k = torch.stack([p.mean((0, 2, 3)) for p in parts]).mean(0)
    var_k = torch.stack([p.var((0, 2, 3), correction=1) for p in parts]).mean(0)
    assert_rel(running[0], 0.7 * mean + 0.3 * mean_k)
    assert_rel(running[1], 0.7 * var + 0.3 * var_k)


# ---------------------------------------------------------------- other grouped variants


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(12, 3, 2, 2), (12, 5)])
def test_grouped_detached_bn_uses_constant_group_statistics(impl, shape):
    m = layer("batch_detached", shape[1], 1 if len(shape) == 2 else 2, group_size=4, eps=1e-3)
    m.impl = impl
    x, dy = torch.randn(shape, dtype=D) + 0.5, torch.randn(shape, dtype=D)
    gamma, beta = m.weight.detach(), m.bias.detach()
    y, dx, dg, db = grads(m.train(), x, dy)
    y_ref, dx_ref, dg_ref = [], [], []
    for g in groups_of(12, 4):
        xg, dims = x[g], dims_of(x)
        mu, var = xg.mean(dims), xg.var(dims, correction=0)
        xhat = (xg - cv(mu, xg)) / torch.sqrt(cv(var, xg) + 1e-3)
        y_ref.append(cv(gamma, xg) * xhat + cv(beta, xg))
        dx_ref.append(cv(gamma / torch.sqrt(var + 1e-3), xg) * dy[g])  # ∂y/∂x = γ/σ_k
        dg_ref.append((dy[g] * xhat).sum(dims))
    assert_rel(y, torch.cat(y_ref))
    assert_rel(dx, torch.cat(dx_ref))
    assert_rel(dg, torch.stack(dg_ref).sum(0))
    assert_rel(db, dy.sum(dims_of(x)))


@pytest.mark.parametrize("shape", [(12, 3, 3, 2), (12, 3)])
def test_grouped_evonorm_b0_divides_by_each_groups_batch_std(shape):
    m = layer("evonorm", 3, 1 if len(shape) == 2 else 2, version="B0", eps=1e-3, group_size=4)
    m.momentum = 0.25
    x = torch.randn(shape, dtype=D) * 1.5
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    p = dict(zip(names, params, strict=True))

    def formula(x):
        out = []
        for g in groups_of(12, 4):
            xg, dims = x[g], dims_of(x)
            var_b = ((xg - xg.mean(dims, keepdim=True)) ** 2).mean(dims, keepdim=True)
            if xg.dim() > 2:
                sp = tuple(range(2, xg.dim()))
                var_i = ((xg - xg.mean(sp, keepdim=True)) ** 2).mean(sp, keepdim=True)
            else:
                var_i = torch.zeros_like(xg)
            inst = cv(p["v"], xg) * xg + torch.sqrt(var_i + 1e-3)
            den = torch.maximum(torch.sqrt(var_b + 1e-3), inst)
            out.append(cv(p["weight"], xg) * xg / den + cv(p["bias"], xg))
        return torch.cat(out)

    xr = x.clone().requires_grad_()
    y = functional_call(m.train(), p, (xr,))
    y_ref = formula(xr)
    assert_rel(y, y_ref)
    dy = torch.randn_like(x)
    for a, b in zip(
        torch.autograd.grad(y, [xr, *params], dy),
        torch.autograd.grad(y_ref, [xr, *params], dy),
        strict=True,
    ):
        assert_rel(a, b)
    var_k = torch.stack([x[g].var(dims_of(x), correction=1) for g in groups_of(12, 4)]).mean(0)
    assert_rel(m.running_var, 0.75 + 0.25 * var_k)


@pytest.mark.parametrize("train", [True, False])
def test_evonorm_b0_gradcheck_in_training_and_eval(train):
    m = layer("evonorm", 3, 2, version="B0", group_size=3).train(train)
    names = [n for n, _ in m.named_parameters()]
    state = {n: b.clone() for n, b in m.named_buffers()}

    def fn(x, *params):
        buffers = {n: b.clone() for n, b in state.items()}
        return functional_call(m, {**dict(zip(names, params, strict=True)), **buffers}, (x,))

    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    x = torch.randn(6, 3, 2, 2, dtype=D, requires_grad=True)
    assert gradcheck(fn, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("n", [12, 14])
def test_grouped_mean_only_bn_subtracts_each_groups_mean(n):
    m = build_norm_spec({"name": "weight", "mean_only_bn": True, "momentum": 0.3, "group_size": 4})
    m = m.layer(3, dims=2).double()
    with torch.no_grad():
        m.bias.copy_(torch.randn(3, dtype=D))
    x, dy = torch.randn(n, 3, 2, 2, dtype=D) + 2, torch.randn(n, 3, 2, 2, dtype=D)
    xr = x.clone().requires_grad_()
    y = m.train()(xr)
    dims = (0, 2, 3)
    beta = cv(m.bias.detach(), x)
    assert_rel(y, torch.cat([x[g] - cv(x[g].mean(dims), x) + beta for g in groups_of(n, 4)]))
    (dx,) = torch.autograd.grad(y, xr, dy)
    assert_rel(dx, torch.cat([dy[g] - dy[g].mean(dims, keepdim=True) for g in groups_of(n, 4)]))
    full = [g for g in groups_of(n, 4) if g.stop - g.start == 4]
    assert_rel(m.running_mean, 0.3 * torch.stack([x[g].mean(dims) for g in full]).mean(0))


def test_auto_picks_torch_kernels_for_small_single_groups_and_the_closed_form_otherwise():
    from normbench.norms.grouped import LARGE_INPUT, grouped_function

    small, large = torch.zeros(4, 8), torch.zeros(LARGE_INPUT // 8, 8)
    assert grouped_function(small, "auto", 1) is NativeGroupedBatchNormFunction
    assert grouped_function(small, "auto", 2) is GroupedBatchNormFunction
    assert grouped_function(large, "auto", 1) is GroupedBatchNormFunction
    assert grouped_function(large, "native", 1) is NativeGroupedBatchNormFunction
    assert grouped_function(small, "closed_form", 1) is GroupedBatchNormFunction
