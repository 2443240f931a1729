"""Activation probes against percentiles computed in float64 numpy; the phase timer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normbench.models.mlp import MLP
from normbench.norms import build_norm_spec
from normbench.probes.activations import ActivationProbe
from normbench.probes.timing import PhaseTimer


def _expected_rows(pre_acts: list[np.ndarray], saturation: float) -> list[dict]:
    rows = []
    for z in pre_acts:
        per_unit = np.quantile(z, [0.15, 0.5, 0.85], axis=0)  # (3, units)
        rows.append(
            {
                "p15": np.quantile(z, 0.15),
                "p50": np.quantile(z, 0.5),
                "p85": np.quantile(z, 0.85),
                "unit_p15": np.median(per_unit[0]),
                "unit_p50": np.median(per_unit[1]),
                "unit_p85": np.median(per_unit[2]),
                "mean": z.mean(),
                "std": z.std(ddof=1),
                "saturated": np.mean(np.abs(z) > saturation),
            }
        )
    return rows


def _forward_by_hand(model: MLP, x: np.ndarray, bn: bool, eps: float = 1e-5) -> list[np.ndarray]:
    """Each sigmoid's input, recomputed in float64 from the model's parameters."""
    h, out = x.reshape(len(x), -1), []
    for layer in model.hidden:
        w = layer.linear.weight.detach().double().numpy()
        z = h @ w.T
        if layer.linear.bias is not None:
            z = z + layer.linear.bias.detach().double().numpy()
        if bn:  # the probe batch's own statistics (biased variance), as in training
            g, b = (
                layer.norm.weight.detach().double().numpy(),
                layer.norm.bias.detach().double().numpy(),
            )
            z = (z - z.mean(0)) / np.sqrt(z.var(0) + eps) * g + b
        out.append(z)
        h = 1.0 / (1.0 + np.exp(-z))
    return out


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_probe_statistics_match_numpy(norm):
    spec = build_norm_spec({"name": norm})
    model = MLP(spec, 20, 3, [16, 12, 8], init_std=0.8)
    if norm == "batch":  # non-trivial affine parameters and running statistics
        for layer in model.hidden:
            torch.nn.init.normal_(layer.norm.weight, 1.0, 0.5)
            torch.nn.init.normal_(layer.norm.bias, 0.0, 0.5)
            layer.norm.running_mean.fill_(3.0)
    x = torch.randn(200, 20)
    buffers_before = [b.clone() for b in model.buffers()]
    probe = ActivationProbe(model, x, saturation=1.5, mode="batch_stats")
    rows = probe.summarize(probe.capture())
    expected = _expected_rows(_forward_by_hand(model, x.double().numpy(), norm == "batch"), 1.5)
    assert [r["layer"] for r in rows] == ["hidden.0.act", "hidden.1.act", "hidden.2.act"]
    for got, want in zip(rows, expected, strict=True):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    assert all(torch.equal(a, b) for a, b in zip(buffers_before, model.buffers(), strict=True))
    assert model.training


def test_probe_eval_mode_uses_running_statistics():
    model = MLP(build_norm_spec({"name": "batch"}), 6, 2, [5], init_std=1.0)
    model.hidden[0].norm.running_mean.fill_(2.0)
    model.hidden[0].norm.running_var.fill_(4.0)
    x = torch.randn(64, 6)
    rows = ActivationProbe(model, x, 4.0, mode="eval").summarize(
        ActivationProbe(model, x, 4.0, "eval").capture()
    )
    z = x.double() @ model.hidden[0].linear.weight.detach().double().T
    expected = ((z - 2.0) / np.sqrt(4.0 + 1e-5)).numpy()
    assert rows[0]["mean"] == pytest.approx(expected.mean(), abs=1e-5)


def test_relu_saturation_is_the_inactive_fraction():
    model = MLP(build_norm_spec({"name": "none"}), 10, 2, [32], activation="relu", init_std=1.0)
    x = torch.randn(100, 10)
    probe = ActivationProbe(model, x, 4.0, mode="eval")
    z = model.hidden[0].linear(x).detach()
    assert probe.summarize(probe.capture())[0]["saturated"] == pytest.approx(
        (z <= 0).float().mean().item()
    )


def test_phase_timer_accumulates_and_windows():
    timer = PhaseTimer(torch.device("cpu"))
    for _ in range(3):
        with timer.phase("a"):
            sum(range(1000))
    window = timer.window()
    assert window["a"] > 0 and timer.totals["a"] == pytest.approx(window["a"])
    assert timer.window() == {}


def test_parameter_rows_match_the_least_squares_gradient_formula():
    """probes.params: each parameter's norm, mean, std (numpy) and the gradient norm of the last
    backward, against the float64 closed form of a linear least-squares layer:
    L = ½ mean_n ‖W x_n + b − t_n‖², ∂L/∂W = mean_n r_n x_nᵀ, ∂L/∂b = mean_n r_n."""
    from normbench.probes.params import COLUMNS, parameter_rows

    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 3).double()
    frozen = torch.nn.Linear(3, 2, bias=False).double().requires_grad_(False)
    model = torch.nn.Sequential(layer, torch.nn.Identity(), frozen).requires_grad_(False)
    layer.requires_grad_(True)
    x, t = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    loss = 0.5 * ((layer(x) - t) ** 2).sum(1).mean()
    loss.backward()
    rows = {r["param"]: r for r in parameter_rows(model)}
    assert list(rows) == ["0.weight", "0.bias", "2.weight"]
    assert all(list(r) == list(COLUMNS) for r in rows.values())
    assert [r["module"] for r in rows.values()] == ["Linear", "Linear", "Linear"]
    xn, tn = x.numpy(), t.numpy()
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    r = xn @ w.T + b - tn
    want_gw, want_gb = r.T @ xn / len(xn), r.mean(0)
    assert rows["0.weight"]["grad_norm"] == pytest.approx(np.linalg.norm(want_gw), rel=1e-12)
    assert rows["0.bias"]["grad_norm"] == pytest.approx(np.linalg.norm(want_gb), rel=1e-12)
    assert np.isnan(rows["2.weight"]["grad_norm"])  # no gradient: NaN, not 0
    for name, p in (("0.weight", w), ("0.bias", b)):
        assert rows[name]["norm"] == pytest.approx(np.linalg.norm(p), rel=1e-12)
        assert rows[name]["mean"] == pytest.approx(p.mean(), rel=1e-12)
        assert rows[name]["std"] == pytest.approx(p.std(), rel=1e-12)
        assert rows[name]["numel"] == p.size


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_layer_jacobians_match_finite_differences(norm):
    """probes.jacobian: the singular values of ∂s_l/∂s_{l−1} (and of the whole map s_0 → s_{L−1})
    equal those of central finite-difference Jacobians of the same maps, in float64, with BN's
    statistics held at the probe batch's estimates; the model's own buffers are untouched."""
    import copy

    from normbench.norms.stats import bn_layers, recompute_bn_stats
    from normbench.probes.jacobian import jacobian_rows, slot_maps, slot_outputs

    torch.manual_seed(0)
    model = MLP(build_norm_spec({"name": norm}), 6, 3, [5, 4, 4], init_std=0.5).double()
    x = torch.randn(16, 6, dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = {r["map"]: r for r in jacobian_rows(model, x, examples=5)}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert list(rows) == ["1→2", "2→3", "1→3"]

    frozen = copy.deepcopy(model)
    if bn_layers(frozen):
        recompute_bn_stats(frozen, [x])
    frozen.eval()
    with torch.no_grad():
        s = slot_outputs(frozen, x[:5])
    maps = slot_maps(frozen)

    def fd(f, point: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
        cols = []
        for k in range(point.numel()):
            e = torch.zeros_like(point)
            e[k] = h
            cols.append((f(point + e) - f(point - e)) / (2 * h))
        return torch.stack(cols, dim=1)

    def whole(v: torch.Tensor) -> torch.Tensor:
        for f in maps:
            v = f(v)
        return v

    with torch.no_grad():
        for name, f, inputs in (
            ("1→2", maps[0], s[0]),
            ("2→3", maps[1], s[1]),
            ("1→3", whole, s[0]),
        ):
            sv = torch.cat([torch.linalg.svdvals(fd(f, p)) for p in inputs])
            q = torch.quantile(sv, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
            assert rows[name]["p50"] == pytest.approx(q[1].item(), rel=1e-6)
            assert rows[name]["p10"] == pytest.approx(q[0].item(), rel=1e-6)
            assert rows[name]["max"] == pytest.approx(sv.max().item(), rel=1e-6)
            assert rows[name]["log_dist"] == pytest.approx(sv.log().abs().median().item(), rel=1e-6)
