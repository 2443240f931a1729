"""The gradient of the loss with respect to each hidden state of a recurrent model, against time
(``probes.hidden_grads``): does it explode or vanish across time steps? (Cooijmans et al. 2017,
§3 and Fig. 1; docs/papers.md §13.)

At step 0 and at the probe steps that are multiples of ``probes.hidden_grads``, on the fixed probe
batch (the first ``probes.batch_size`` validation examples, x and their labels y), with L the mean
cross-entropy of the batch and h_t^l the hidden state of layer l at time step t (t = 1 … T)::

    grad_norm = ‖∂L/∂h_t^l‖₂     over the (N, hidden) tensor: all examples and units

(hidden_grads.csv: one row per layer and step t). ∂L/∂h_t^l is the total derivative: through
h_{t+1} … h_T (time) and the layers above, as backpropagation through time computes it. The norms
run as ``probes.mode`` says (``batch_stats``: the probe batch's statistics, running estimates
untouched; ``eval``: the running estimates), fp32, on the model itself; its parameters' ``.grad``,
its buffers and torch's random stream are left as they were. The model must provide
``forward_keeping(x) -> (logits, [[h_1 … h_T] per layer])`` (``model=lstm``).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from normbench.errors import ConfigError

COLUMNS = ("layer", "t", "grad_norm")


def hidden_grad_rows(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str = "batch_stats"
) -> list[dict[str, Any]]:
    """One row per layer and time step: ``grad_norm`` = ‖∂L/∂h_t‖₂ (the module docstring)."""
    keeping = getattr(model, "forward_keeping", None)
    if keeping is None:
        raise ConfigError(
            f"probes.hidden_grads needs a recurrent model (model=lstm), not {type(model).__name__}; "
            "set probes.hidden_grads=0."
        )
    was_training = model.training
    model.eval()
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), _norms(model, mode), torch.enable_grad():
            logits, kept = keeping(x)
            loss = F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), y)
            flat = [h for layer in kept for h in layer]
            grads = torch.autograd.grad(loss, flat)
    finally:
        model.train(was_training)
    norms = torch.stack([g.detach().double().norm() for g in grads]).tolist()
    rows, k = [], 0
    for layer, states in enumerate(kept):
        for t in range(len(states)):
            rows.append({"layer": layer, "t": t + 1, "grad_norm": norms[k]})
            k += 1
    return rows


def _norms(model: nn.Module, mode: str):
    if mode == "batch_stats":
        from normbench.norms.stats import use_batch_stats_at_eval

        return use_batch_stats_at_eval(model)
    return nullcontext()


class HiddenGradProbe:
    """The probe of one run: its fixed batch and when it runs."""

    def __init__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, every: int, mode: str
    ) -> None:
        self.model, self.x, self.y, self.every, self.mode = model, x, y, every, mode

    @classmethod
    def of_run(cls, model: nn.Module, data: Any, probes: Any) -> HiddenGradProbe | None:
        """The probe ``probes.hidden_grads`` asks for (None when it is 0), on the first
        ``probes.batch_size`` validation examples."""
        every = int(probes.get("hidden_grads") or 0)
        if not every:
            return None
        x, y = next(iter(data.val_batches(int(probes.batch_size))))
        return cls(model, x, y, every, probes.mode)

    def due(self, step: int) -> bool:
        """Whether the probe runs at ``step`` (0 and the multiples of ``every``)."""
        return step % self.every == 0

    def rows(self) -> list[dict[str, Any]]:
        return hidden_grad_rows(self.model, self.x, self.y, self.mode)
