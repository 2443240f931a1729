"""Per-layer activation distributions (the BN paper's Figure 1(b, c)).

On a fixed probe batch, the input of every nonlinearity (sigmoid, tanh, ReLU) is captured
with forward pre-hooks (attached only while probing) and summarized:

- ``p15, p50, p85``: percentiles over all units and examples of the layer;
- ``unit_p15, unit_p50, unit_p85``: each unit's percentiles over the probe examples, then
  the median over units: the distribution of a *typical* unit's input, as the paper plots;
- ``mean``, ``std``; ``saturated``: fraction with |x| > ``saturation`` (sigmoid, tanh) or
  x <= 0 (ReLU: inactive).

``mode="batch_stats"`` runs the model as it is during training (normalizations use the
statistics of the probe batch, running estimates untouched); ``mode="eval"`` as at test time.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

PROBED = (nn.Sigmoid, nn.Tanh, nn.ReLU)
QUANTILES = (0.15, 0.50, 0.85)
MAX_VALUES = 1 << 20  # torch.quantile's input limit is 2**24; subsample evenly above this


class ActivationProbe:
    """Captures and summarizes the inputs of a model's nonlinearities on a fixed batch."""

    def __init__(
        self, model: nn.Module, inputs: torch.Tensor, saturation: float, mode: str
    ) -> None:
        self.model = model
        self.inputs = inputs
        self.saturation = saturation
        self.mode = mode
        self.points = [(name, m) for name, m in model.named_modules() if isinstance(m, PROBED)]

    def capture(self) -> dict[str, torch.Tensor]:
        """Run the probe batch; return each nonlinearity's input, keyed by module name."""
        captured: dict[str, torch.Tensor] = {}
        hooks = [
            module.register_forward_pre_hook(
                lambda _m, args, name=name: captured.__setitem__(name, args[0].detach())
            )
            for name, module in self.points
        ]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._norm_context():
                self.model(self.inputs)
        finally:
            for hook in hooks:
                hook.remove()
            self.model.train(was_training)
        return captured

    def _norm_context(self):
        if self.mode == "batch_stats":
            from normbench.norms.stats import use_batch_stats_at_eval

            return use_batch_stats_at_eval(self.model)
        return nullcontext()

    def summarize(self, captured: dict[str, torch.Tensor]) -> list[dict[str, float | str]]:
        """One row of statistics per probed layer."""
        rows = []
        for name, module in self.points:
            x = captured[name].float()
            units = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, N·H·W)
            flat = _subsample(x.reshape(-1))
            q = torch.tensor(QUANTILES, device=x.device)
            pooled = torch.quantile(flat, q)
            # median over units (the mean of the two middle values for an even count)
            per_unit = torch.quantile(torch.quantile(_subsample_cols(units), q, dim=1), 0.5, dim=1)
            if isinstance(module, nn.ReLU):
                saturated = (x <= 0).float().mean()
            else:
                saturated = (x.abs() > self.saturation).float().mean()
            stats = torch.stack([*pooled, *per_unit, x.mean(), x.std(), saturated]).tolist()
            keys = (
                "p15",
                "p50",
                "p85",
                "unit_p15",
                "unit_p50",
                "unit_p85",
                "mean",
                "std",
                "saturated",
            )
            rows.append({"layer": name, **dict(zip(keys, stats, strict=True))})
        return rows


def _subsample(flat: torch.Tensor) -> torch.Tensor:
    stride = -(-flat.numel() // MAX_VALUES)
    return flat[::stride] if stride > 1 else flat


def _subsample_cols(units: torch.Tensor) -> torch.Tensor:
    stride = -(-units.numel() // MAX_VALUES)
    return units[:, ::stride] if stride > 1 else units
