"""The loss landscape along the training step, and how far each layer's input moves in one step
(``probes.smoothness``): Santurkar et al. 2018, "How does batch normalization help
optimization?" (§3.1, "gradient predictiveness"; docs/papers.md §16).

At the probe steps that are multiples of ``probes.smoothness`` (never at step 0: it needs a
training batch), on the batch (x, y) of the step just taken, at the weights w it left, with
g = ∇L(w) the gradient of that batch's mean cross-entropy and η_k = k · lr for each multiple k of
``probes.smoothness_steps`` (lr: the rate the next step uses)::

    loss          L(w − η_k g)                  (loss0 = L(w): the loss variation is their range)
    grad_change   ‖∇L(w − η_k g) − g‖₂           the ℓ2 change of the gradient along the step
    rel_change    grad_change / ‖g‖₂
    beta          grad_change / ‖η_k g‖₂         the "effective β-smoothness" along the step

(smoothness.csv, one row per k). Everything is computed on a copy of the model in training
mode, fp32, whose buffers are put back before every forward: the norms use the batch's
statistics as in training, a layer whose forward draws noise (``norm=noisy_batch``) draws the
same noise at every point, and dropout draws the same masks (torch's generator is reseeded
before every forward, inside a fork: the run's own random stream is left as it was), so the
numbers describe one loss surface.

Internal covariate shift, as the BN paper means it (shift.csv, one row per nonlinearity, by its
module name as in activations.csv): the input of every sigmoid/tanh/ReLU on the batch x at w,
and at w − lr·g with the model's state advanced by one training forward, i.e. what the next
training forward would see after one plain SGD step on this batch (noisy BN has drawn its next
noise). Per channel c (unit, for the MLP; over examples and positions), with mean μ_c and
standard deviation σ_c before, μ'_c and σ'_c after::

    shift_mean  = median over c of |μ'_c − μ_c| / σ_c
    shift_scale = median over c of |ln(σ'_c / σ_c)|
    shift_shape = median over c of max over q ∈ {15, 50, 85}% of |z'_c,q − z_c,q|

with z_c,q the q-th percentile of the channel's values standardized by its own μ_c and σ_c: the
change of the distribution's shape, which a norm that pins each channel's mean and variance on
the batch (BN) does not fix, and which an affine per-channel noise (noisy BN) moves only in the
layers after the one it is added to (through their nonlinearities).

The probe runs on one process (rank 0, its own part of the batch); torchrun runs refuse it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from normbench.probes.activations import PROBED

SMOOTHNESS_COLUMNS = (
    "multiple",
    "eta",
    "loss0",
    "loss",
    "grad_norm0",
    "grad_change",
    "rel_change",
    "beta",
)
SHIFT_COLUMNS = ("layer", "shift_mean", "shift_scale", "shift_shape")
QUANTILES = (0.15, 0.50, 0.85)
MAX_VALUES = 1 << 23  # torch.quantile's input limit is 2**24: a channel subsampled evenly above
EPS = 1e-12
MASK_SEED = 20180529  # any constant: what matters is that every point draws the same


class _Point:
    """A model copy whose weights are moved along one direction, state reset before each use."""

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.w0 = [p.detach().clone() for p in self.params]
        self.buffers = {k: b.detach().clone() for k, b in self.model.named_buffers()}

    @torch.no_grad()
    def move(self, direction: Sequence[torch.Tensor], eta: float, reset: bool = True) -> None:
        """Weights w − η·direction; buffers as they were at the start (``reset``) or as the
        forwards since left them."""
        for p, w, d in zip(self.params, self.w0, direction, strict=True):
            p.copy_(w - eta * d)
        if not reset:
            return
        for k, b in self.model.named_buffers():
            b.copy_(self.buffers[k])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(MASK_SEED)  # the same dropout masks at every point
        return self.model(x)

    def loss_and_grad(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        loss = F.cross_entropy(self.forward(x), y)
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        flat = [
            torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads, strict=True)
        ]
        return loss.item(), flat

    @torch.no_grad()
    def layer_inputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each nonlinearity's input on ``x`` (one training forward: the state advances)."""
        captured: dict[str, torch.Tensor] = {}
        hooks = [
            m.register_forward_pre_hook(
                lambda _m, args, name=name: captured.__setitem__(name, args[0].detach())
            )
            for name, m in self.model.named_modules()
            if isinstance(m, PROBED)
        ]
        try:
            self.forward(x)
        finally:
            for h in hooks:
                h.remove()
        return captured


def _norm(tensors: Sequence[torch.Tensor]) -> float:
    return torch.sqrt(sum((t.double() ** 2).sum() for t in tensors)).item()


def channel_moments(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel (dimension 1) mean, std and standardized 15/50/85th percentiles (C, 3) over
    examples and positions, float64."""
    per_channel = a.double().transpose(0, 1).reshape(a.shape[1], -1)
    mu, sd = per_channel.mean(1), per_channel.std(1, unbiased=False)
    stride = -(-per_channel.numel() // MAX_VALUES)
    z = (per_channel[:, ::stride] - mu[:, None]) / sd.clamp_min(EPS)[:, None]
    q = torch.quantile(z, torch.tensor(QUANTILES, dtype=z.dtype, device=z.device), dim=1).T
    return mu, sd, q


def shift_rows(
    before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]
) -> list[dict[str, float | str]]:
    """shift.csv's rows (see the module docstring), in ``before``'s order."""
    rows = []
    for name, a in before.items():
        mu, sd, q = channel_moments(a)
        mu2, sd2, q2 = channel_moments(after[name])
        rows.append(
            {
                "layer": name,
                "shift_mean": ((mu2 - mu).abs() / sd.clamp_min(EPS)).median().item(),
                "shift_scale": (sd2.clamp_min(EPS) / sd.clamp_min(EPS)).log().abs().median().item(),
                "shift_shape": (q2 - q).abs().amax(1).median().item(),
            }
        )
    return rows


def smoothness_rows(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, multiples: Sequence[float]
) -> tuple[list[dict[str, float]], list[dict[str, float | str]]]:
    """(smoothness.csv rows, shift.csv rows) at the model's weights on the batch (x, y); the
    model itself, its buffers and gradients, and torch's random stream are left as they were."""
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return _probe(model, x, y, lr, multiples)


def _probe(model, x, y, lr, multiples):
    point = _Point(model)
    zero = [torch.zeros_like(w) for w in point.w0]
    point.move(zero, 0.0)
    loss0, g = point.loss_and_grad(x, y)
    g_norm = _norm(g)
    rows = []
    for k in multiples:
        eta = float(k) * lr
        point.move(g, eta)
        loss, g2 = point.loss_and_grad(x, y)
        change = _norm([a - b for a, b in zip(g2, g, strict=True)])
        rows.append(
            {
                "multiple": float(k),
                "eta": eta,
                "loss0": loss0,
                "loss": loss,
                "grad_norm0": g_norm,
                "grad_change": change,
                "rel_change": change / max(g_norm, EPS),
                "beta": change / max(eta * g_norm, EPS),
            }
        )
    point.move(zero, 0.0)
    before = point.layer_inputs(x)  # a training forward: the state advances by one
    point.move(g, lr, reset=False)
    after = point.layer_inputs(x)
    return rows, shift_rows(before, after)
