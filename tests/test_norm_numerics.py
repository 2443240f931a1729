"""Each variant's forward pass and gradients against a float64 formula written here.

Fresh random inputs, relative error below 1e-6; ``gradcheck`` where the variant is smooth.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck
from torch.func import functional_call

from normbench.norms import build_norm_spec
from normbench.norms.grouped import GroupedBatchNormFunction

pytestmark = pytest.mark.usefixtures("one_thread")


D = torch.float64
TOL = 1e-6


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm().clamp_min(1e-300)).item()


def assert_rel(actual: torch.Tensor, expected: torch.Tensor, tol: float = TOL) -> None:
    assert actual.shape == expected.shape
    err = rel_err(actual, expected)
    assert err < tol, f"relative error {err:.3g}"


def layer(name: str, channels: int, dims: int, **options: object) -> nn.Module:
    return build_norm_spec({"name": name, **options}).layer(channels, dims).double()


def cv(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-channel vector viewed against channels-first x."""
    return t.view(1, -1, *([1] * (x.dim() - 2)))


def batch_dims(x: torch.Tensor) -> list[int]:
    return [0, *range(2, x.dim())]


def bn_formula(x, gamma, beta, eps):
    """Ioffe & Szegedy Alg. 1: biased batch variance."""
    dims = batch_dims(x)
    mu = x.mean(dims, keepdim=True)
    var = ((x - mu) ** 2).mean(dims, keepdim=True)
    xhat = (x - mu) / torch.sqrt(var + eps)
    return cv(gamma, x) * xhat + cv(beta, x), xhat, var


def bn_grad_formula(dy, xhat, var, gamma, eps):
    """dL/dx = γ/σ (dy − mean(dy) − x̂ mean(dy x̂)); dL/dγ = Σ dy x̂; dL/dβ = Σ dy."""
    dims = batch_dims(dy)
    dx = (
        cv(gamma, dy)
        / torch.sqrt(var + eps)
        * (dy - dy.mean(dims, keepdim=True) - xhat * (dy * xhat).mean(dims, keepdim=True))
    )
    return dx, (dy * xhat).sum(dims), dy.sum(dims)


def grads(module: nn.Module, x: torch.Tensor, dy: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.clone().requires_grad_()
    y = module(x)
    params = [p for p in module.parameters()]
    out = torch.autograd.grad(y, [x, *params], dy)
    return (y.detach(), *out)


def pure(module: nn.Module):
    """(function of (x, *params) with the module's buffers fresh on each call, param tensors)."""
    names = [n for n, _ in module.named_parameters()]
    state = {n: b.detach().clone() for n, b in module.named_buffers()}

    def fn(x, *params):
        buffers = {n: b.clone() for n, b in state.items()}
        return functional_call(module, {**dict(zip(names, params, strict=True)), **buffers}, (x,))

    return fn, [p.detach().clone().requires_grad_() for p in module.parameters()]


def check_gradcheck(module: nn.Module, x: torch.Tensor) -> None:
    fn, params = pure(module)
    assert gradcheck(fn, (x.clone().requires_grad_(), *params), eps=1e-6, atol=1e-6, rtol=1e-5)


def randomize_affine(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.dim() == 1 else 0.0))


SHAPES = [(6, 5), (4, 3, 3, 2)]


# ---------------------------------------------------------------- batch / closed_form / detached


@pytest.mark.parametrize("impl", ["native", "closed_form"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_forward_and_gradients_match_the_paper(impl, shape, affine):
    m = layer(
        "batch",
        shape[1],
        len(shape) - 1 if len(shape) == 2 else 2,
        impl=impl,
        affine=affine,
        eps=1e-3,
    )
    if affine:
        randomize_affine(m)
    x, dy = torch.randn(shape, dtype=D) * 2 + 1, torch.randn(shape, dtype=D)
    gamma = m.weight.detach() if affine else torch.ones(shape[1], dtype=D)
    beta = m.bias.detach() if affine else torch.zeros(shape[1], dtype=D)
    y_ref, xhat, var = bn_formula(x, gamma, beta, 1e-3)
    dx_ref, dg_ref, db_ref = bn_grad_formula(dy, xhat, var, gamma, 1e-3)
    y, dx, *dparams = grads(m.train(), x, dy)
    assert_rel(y, y_ref)
    assert_rel(dx, dx_ref)
    if affine:
        assert_rel(dparams[0], dg_ref)
        assert_rel(dparams[1], db_ref)


@pytest.mark.parametrize("shape", SHAPES)
def test_closed_form_backward_matches_autograd_of_the_formula(shape):
    x = torch.randn(shape, dtype=D, requires_grad=True)
    gamma = torch.randn(shape[1], dtype=D, requires_grad=True)
    beta = torch.randn(shape[1], dtype=D, requires_grad=True)
    dy = torch.randn(shape, dtype=D)
    ours = torch.autograd.grad(
        GroupedBatchNormFunction.apply(x, gamma, beta, 1e-5, 1), [x, gamma, beta], dy
    )
    ref = torch.autograd.grad(bn_formula(x, gamma, beta, 1e-5)[0], [x, gamma, beta], dy)
    for a, b in zip(ours, ref, strict=True):
        assert_rel(a, b)
    assert gradcheck(lambda *t: GroupedBatchNormFunction.apply(*t, 1e-5, 1), (x, gamma, beta))


@pytest.mark.parametrize(
    ("name", "options"),
    [("batch", {}), ("batch", {"impl": "closed_form"}), ("batch_detached", {}), ("sync_batch", {})],
)
def test_running_estimates_use_the_unbiased_variance(name, options):
    ema = layer(name, 3, 2, momentum=0.3, **options).train()
    cumulative = layer(name, 3, 2, momentum=None, **options).train()
    batches = [torch.randn(5, 3, 2, 2, dtype=D) * (i + 1) + i for i in range(4)]
    mean, var = torch.zeros(3, dtype=D), torch.ones(3, dtype=D)
    for x in batches:
        ema(x), cumulative(x)
        mean = 0.7 * mean + 0.3 * x.mean((0, 2, 3))
        var = 0.7 * var + 0.3 * x.var((0, 2, 3), correction=1)  # m/(m−1) σ²_B
    assert_rel(ema.running_mean, mean)
    assert_rel(ema.running_var, var)
    assert_rel(cumulative.running_mean, torch.stack([x.mean((0, 2, 3)) for x in batches]).mean(0))
    assert_rel(cumulative.running_var, torch.stack([x.var((0, 2, 3)) for x in batches]).mean(0))
    x = torch.randn(7, 3, 2, 2, dtype=D)
    expected = (x - cv(ema.running_mean, x)) / torch.sqrt(cv(ema.running_var, x) + 1e-5)
    assert_rel(ema.eval()(x), expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_detached_treats_statistics_as_constants(shape):
    m = layer("batch_detached", shape[1], 1 if len(shape) == 2 else 2, eps=1e-3)
    randomize_affine(m)
    x, dy = torch.randn(shape, dtype=D) + 0.5, torch.randn(shape, dtype=D)
    y_ref, xhat, var = bn_formula(x, m.weight.detach(), m.bias.detach(), 1e-3)
    y, dx, dg, db = grads(m.train(), x, dy)
    assert_rel(y, y_ref)
    assert_rel(dx, cv(m.weight.detach(), x) / torch.sqrt(var + 1e-3) * dy)  # ∂y/∂x = γ/σ_B
    assert_rel(dg, (dy * xhat).sum(batch_dims(x)))
    assert_rel(db, dy.sum(batch_dims(x)))
    # No gradcheck: finite differences see the statistics move, which this variant ignores.


@pytest.mark.parametrize("shape", SHAPES)
def test_noisy_batch_is_bn_then_a_fresh_per_channel_scale_and_shift_each_step(shape):
    """z = s_c · BN(x) + m_c with m_c ∈ [−0.3, 0.3], s_c ∈ [1, 2] constant over the batch and
    positions of a channel, redrawn at every training forward, constants for autograd
    (∂z/∂x = s_c · ∂BN/∂x); evaluation applies the noise's expectation, E[s] = 1.5 and
    E[m] = 0; a loaded state draws the same noise."""
    c = shape[1]
    m = layer(
        "noisy_batch", c, 1 if len(shape) == 2 else 2, eps=1e-3, noise_mean=0.3, noise_scale=2.0
    )
    randomize_affine(m)
    x, dy = torch.randn(shape, dtype=D) + 0.5, torch.randn(shape, dtype=D)
    y_ref, xhat, var = bn_formula(x, m.weight.detach(), m.bias.detach(), 1e-3)
    z, dx, dg, db = grads(m.train(), x, dy)
    # recover each channel's (s, m) from z against the formula's y: z is exactly affine in y
    dims = batch_dims(x)
    yc, zc = y_ref - y_ref.mean(dims, keepdim=True), z - z.mean(dims, keepdim=True)
    s = (yc * zc).sum(dims) / (yc * yc).sum(dims)
    shift = (z - cv(s, x) * y_ref).mean(dims)
    assert_rel(z, cv(s, x) * y_ref + cv(shift, x))
    assert ((s >= 1) & (s <= 2)).all() and (shift.abs() <= 0.3).all()
    assert s.std() > 0 and shift.std() > 0  # per channel, not one number
    dx_ref, _, _ = bn_grad_formula(cv(s, x) * dy, xhat, var, m.weight.detach(), 1e-3)
    assert_rel(dx, dx_ref)
    assert_rel(db, (cv(s, x) * dy).sum(dims))
    assert_rel(dg, (cv(s, x) * dy * xhat).sum(dims))
    copy = layer(
        "noisy_batch", c, 1 if len(shape) == 2 else 2, eps=1e-3, noise_mean=0.3, noise_scale=2.0
    )
    copy.load_state_dict(m.state_dict())  # its noise seed and step: the next step's noise
    z2 = m.train()(x)
    assert not torch.allclose(z2, z)  # a new step, new noise
    torch.testing.assert_close(copy.train()(x), z2, rtol=0, atol=0)  # resumed: the same noise
    bn = layer("batch", c, 1 if len(shape) == 2 else 2, eps=1e-3)
    bn.load_state_dict(m.state_dict(), strict=False)  # all but the noise seed and step
    torch.testing.assert_close(m.eval()(x), 1.5 * bn.eval()(x), rtol=1e-12, atol=0)


# ---------------------------------------------------------------- batch renormalization


def brn_formula(x, gamma, beta, mean, var, eps, r_lim, d_lim):
    dims = batch_dims(x)
    mu_b = x.mean(dims)
    sigma_b = torch.sqrt(((x - cv(mu_b, x)) ** 2).mean(dims) + eps)
    sigma = torch.sqrt(var + eps)
    r = torch.clamp(sigma_b / sigma, 1 / r_lim, r_lim)
    d = torch.clamp((mu_b - mean) / sigma, -d_lim, d_lim)
    xhat = (x - cv(mu_b, x)) / cv(sigma_b, x)
    return cv(gamma, x) * (xhat * cv(r, x) + cv(d, x)) + cv(beta, x), xhat, r, d, sigma_b


def test_brn_schedule_follows_the_paper_defaults():
    m = layer("batch_renorm", 2, 1)
    expected = {
        0: (1, 0),
        4999: (1, 0),
        5000: (1, 0),
        22500: (1 + 2 * 17500 / 35000, 5 * 17500 / 20000),
        40000: (3, 5),
        10**6: (3, 5),
    }
    for step, (r_lim, d_lim) in expected.items():
        m.step.fill_(step)
        r, d = m.limits()
        assert math.isclose(float(r), r_lim, rel_tol=1e-12) and math.isclose(
            float(d), d_lim, abs_tol=1e-12
        )


@pytest.mark.parametrize("shape", SHAPES)
def test_brn_forward_and_gradients_match_the_paper(shape):
    opts = {"warmup_steps": 0, "r_max_steps": 10, "d_max_steps": 10, "momentum": 0.2, "eps": 1e-3}
    m = layer("batch_renorm", shape[1], 1 if len(shape) == 2 else 2, **opts)
    randomize_affine(m)
    with torch.no_grad():
        m.running_mean.copy_(torch.randn(shape[1], dtype=D) * 0.3)
        m.running_var.copy_(torch.rand(shape[1], dtype=D) * 2 + 0.5)
        m.step.fill_(5)  # r_max(5) = 2, d_max(5) = 2.5
    mean0, var0 = m.running_mean.clone(), m.running_var.clone()
    x, dy = torch.randn(shape, dtype=D) * 1.5 + 0.4, torch.randn(shape, dtype=D)
    gamma, beta = m.weight.detach(), m.bias.detach()
    y_ref, xhat, r, d, sigma_b = brn_formula(x, gamma, beta, mean0, var0, 1e-3, 2.0, 2.5)
    y, dx, dg, db = grads(m.train(), x, dy)
    dims = batch_dims(x)
    assert_rel(y, y_ref)
    # r, d are constants: BN's gradient with γ·r in place of γ.
    dx_ref = cv(gamma * r / sigma_b, x) * (
        dy - dy.mean(dims, keepdim=True) - xhat * (dy * xhat).mean(dims, keepdim=True)
    )
    assert_rel(dx, dx_ref)
    assert_rel(dg, (dy * (xhat * cv(r, x) + cv(d, x))).sum(dims))
    assert_rel(db, dy.sum(dims))
    assert_rel(m.running_mean, 0.8 * mean0 + 0.2 * x.mean(dims))
    assert_rel(m.running_var, 0.8 * var0 + 0.2 * x.var(dims, correction=1))
    assert m.step.item() == 6
    xe = torch.randn(shape, dtype=D)
    expected = cv(gamma, xe) * (xe - cv(m.running_mean, xe)) / torch.sqrt(
        cv(m.running_var, xe) + 1e-3
    ) + cv(beta, xe)
    assert_rel(m.eval()(xe), expected)


def test_brn_gradcheck_where_r_and_d_are_clipped():
    m = layer("batch_renorm", 3, 2, warmup_steps=0, r_max_steps=1, d_max_steps=1)
    randomize_affine(m)
    with torch.no_grad():
        m.step.fill_(10)
        m.running_var.fill_(1e4)  # σ_B/σ ≪ 1/r_max: r = 1/r_max
        m.running_mean.fill_(1e3)  # (μ_B − μ)/σ ≪ −d_max: d = −d_max
    check_gradcheck(m.train(), torch.randn(4, 3, 2, 2, dtype=D))


def test_brn_with_r_max_1_and_d_max_0_equals_batch_norm():
    brn = layer("batch_renorm", 4, 2, r_max=1.0, d_max=0.0, warmup_steps=0, momentum=0.1)
    bn = layer("batch", 4, 2, momentum=0.1)
    randomize_affine(brn)
    bn.load_state_dict({k: v for k, v in brn.state_dict().items() if k != "step"})
    for _ in range(3):
        x, dy = torch.randn(6, 4, 3, 3, dtype=D) * 2 + 1, torch.randn(6, 4, 3, 3, dtype=D)
        for a, b in zip(grads(brn.train(), x, dy), grads(bn.train(), x, dy), strict=True):
            assert_rel(a, b)
    assert_rel(brn.running_mean, bn.running_mean)
    assert_rel(brn.running_var, bn.running_var)


# ---------------------------------------------------------------- ghost batch

GHOST_IMPLS = ["auto", "native", "closed_form"]


@pytest.mark.parametrize("impl", GHOST_IMPLS)
def test_ghost_batch_with_group_size_equal_to_the_batch_equals_batch_norm(impl):
    ghost = layer("ghost_batch", 4, 2, group_size=8, impl=impl)
    bn = layer("batch", 4, 2)
    randomize_affine(ghost)
    bn.load_state_dict(ghost.state_dict())
    x, dy = torch.randn(8, 4, 3, 3, dtype=D), torch.randn(8, 4, 3, 3, dtype=D)
    for a, b in zip(grads(ghost.train(), x, dy), grads(bn.train(), x, dy), strict=True):
        assert_rel(a, b)
    assert_rel(ghost.running_var, bn.running_var)


@pytest.mark.parametrize("impl", GHOST_IMPLS)
@pytest.mark.parametrize(("n", "shape_tail"), [(12, (3, 2, 2)), (14, (3, 2, 2)), (12, (5,))])
def test_ghost_batch_normalizes_each_group_by_its_own_statistics(impl, n, shape_tail):
    dims = 1 if len(shape_tail) == 1 else 2
    m = layer("ghost_batch", shape_tail[0], dims, group_size=4, momentum=0.5, impl=impl)
    randomize_affine(m)
    x, dy = torch.randn(n, *shape_tail, dtype=D) * 2 + 1, torch.randn(n, *shape_tail, dtype=D)
    gamma, beta = m.weight.detach(), m.bias.detach()
    starts = list(range(0, n, 4))
    pieces = [bn_formula(x[s : s + 4], gamma, beta, 1e-5)[0] for s in starts]
    y, dx, *_ = grads(m.train(), x, dy)
    assert_rel(y, torch.cat(pieces))
    x_req = x.clone().requires_grad_()
    y_req = torch.cat([bn_formula(x_req[s : s + 4], gamma, beta, 1e-5)[0] for s in starts])
    assert_rel(dx, torch.autograd.grad(y_req, x_req, dy)[0])
    dims = batch_dims(x)
    full = [s for s in starts if s + 4 <= n]  # complete groups update the running estimates
    assert_rel(m.running_mean, 0.5 * torch.stack([x[s : s + 4].mean(dims) for s in full]).mean(0))
    var_groups = torch.stack([x[s : s + 4].var(dims, correction=1) for s in full]).mean(0)
    assert_rel(m.running_var, 0.5 + 0.5 * var_groups)


@pytest.mark.parametrize("impl", GHOST_IMPLS)
@pytest.mark.parametrize("n", [8, 6])
def test_ghost_batch_gradcheck(impl, n):
    m = layer("ghost_batch", 2, 2, group_size=4, impl=impl).train()
    randomize_affine(m)
    check_gradcheck(m, torch.randn(n, 2, 2, 1, dtype=D))
