"""What one probe step records (``probes.*``): the activation statistics of the fixed probe
batch, each parameter's norms and last gradient norm (``probes.params``), the singular values of
the MLP's layer Jacobians at the probe steps that are multiples of ``probes.jacobian``, the loss
landscape along the step and each layer's shift in one step at those that are multiples of
``probes.smoothness``, the gradient with respect to each hidden state of a recurrent model at
those that are multiples of ``probes.hidden_grads`` (and at step 0), and, every
``probes.hist_every`` steps, TensorBoard histograms of activations and parameters."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from normbench.probes.activations import ActivationProbe
from normbench.probes.hidden_grads import HiddenGradProbe
from normbench.probes.jacobian import jacobian_rows
from normbench.probes.params import parameter_rows, parameter_values
from normbench.probes.smoothness import smoothness_rows
from normbench.recorder import tag_layer


def record_probes(
    recorder: Any,
    probe: ActivationProbe,
    model: nn.Module,
    step: int,
    probes: Any,
    batch: tuple[torch.Tensor, torch.Tensor, float] | None = None,
    hidden: HiddenGradProbe | None = None,
) -> None:
    """Probe ``model`` at ``step`` and write it all through ``recorder``; ``batch``: the step's
    training inputs, labels and the next step's learning rate (None at step 0); ``hidden``: the
    run's hidden-state gradient probe (``probes.hidden_grads``), if any."""
    captured = probe.capture()
    recorder.activation_rows(step, probe.summarize(captured))
    if probes.params:
        recorder.parameter_rows(step, parameter_rows(model))
    if probes.jacobian and step % probes.jacobian == 0:
        rows = jacobian_rows(model, probe.inputs, probes.jacobian_examples)
        recorder.jacobian_rows(step, rows)
    if probes.smoothness and step % probes.smoothness == 0 and batch is not None:
        x, y, lr = batch
        if len(x) > 1:  # an online batch of one has no batch statistics
            recorder.smoothness_rows(
                step, *smoothness_rows(model, x, y, lr, probes.smoothness_steps)
            )
    if hidden is not None and hidden.due(step):
        recorder.hidden_grad_rows(step, hidden.rows())
    if probes.hist_every and step % probes.hist_every == 0:
        hists = {f"act_hist/{tag_layer(k)}": v for k, v in captured.items()}
        if probes.params:
            hists |= {f"param_hist/{k}": v for k, v in parameter_values(model).items()}
        recorder.histograms(step, hists)
        recorder.flush()
