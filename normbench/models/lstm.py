"""LSTM classifier of an image read as a sequence, with the norm slot inside the cell
(docs/papers.md §13).

The cell (Hochreiter & Schmidhuber 1997, torch's gate order i, f, g, o), with the normalized
form of Cooijmans et al. 2017 (Recurrent Batch Normalization, arXiv 1603.09025, eq. 6) and of
Ba et al. 2016 (Layer Normalization, arXiv 1607.06450, §3.1), at step t of layer l::

    (ĩ, f̃, g̃, õ) = N_h,t(W_hh h_{t−1}) + N_x,t(W_ih x_t) + b_ih + b_hh
    c_t = σ(f̃) ⊙ c_{t−1} + σ(ĩ) ⊙ tanh(g̃)
    h_t = σ(õ) ⊙ tanh(N_c,t(c_t))

h_0 = c_0 = 0; x_t is the input sequence (layer 1) or the layer below's h_t. Each N is a norm slot
``spec.layer(C, dims=1)`` on (N, C) inputs (C = 4·hidden for the two transforms, hidden for the
cell), so the kind of normalization comes from the ``norm`` config group: ``norm=batch`` is BN,
``norm=layer`` is LN (Ba et al.'s LN-LSTM), ``norm=none`` leaves the plain LSTM. The weight layers
are ``spec.linear`` (Weight Normalization acts there). The bias b_ih + b_hh is added after the
slots, as Cooijmans et al.'s b (the slots' own β are redundant with it). Where the slots are and
what statistics BN keeps is ``model.placement``:

- ``vertical`` (Laurent et al. 2016): N_x only, on the input-to-hidden transform of every layer,
  with statistics over the batch *and* all time steps (their sequence-wise normalization): one
  slot call on the (T·N, 4·hidden) projections. N_h and N_c are the identity.
- ``shared``: N_x, N_h, N_c at every step, one module each for all steps: in training each step
  normalizes with its own batch's statistics, and one set of running estimates is updated at
  every step (so it averages over time, weighted to the late steps); evaluation normalizes every
  step with that set (statistics shared across time).
- ``per_step`` (Cooijmans et al.): the same slots, with separate statistics per time step: one
  module per step whose running estimates are buffers of their own (``norm_x.slots.<t>.running_mean``
  in the state_dict, restored from checkpoints), all sharing one γ and β. Steps past the
  training length T (a longer sequence than the model was built for) use step T's statistics.
  With a norm that keeps no statistics (LN) this is the same function as ``shared``.

``model.gamma_init`` sets every slot's initial γ (Cooijmans et al.: 0.1, as γ = 1 saturates the
gates and the gradient vanishes); null keeps the norm's own (1).

``model.sequence``: ``rows`` reads a (C, H, W) image as H steps of C·W values (28 × 28 for
Fashion-MNIST), ``pixels`` as H·W steps of C values (784 × 1); ``permute`` shuffles the pixel
order by a fixed permutation drawn from ``permute_seed`` (permuted MNIST). The classifier reads
the top layer's last h_T.

``model.impl``: ``auto`` runs ``torch.nn.LSTM`` when the slots are empty and the weight layers
plain (``norm=none``): the same function and parametrization (weights ~ U(−1/√hidden,
1/√hidden), the init of both), torch's fused kernel; ``cell`` always runs the cell above.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.utils import parametrize

from normbench.errors import ConfigError
from normbench.norms.spec import NormSpec

PLACEMENTS = ("vertical", "shared", "per_step")
SEQUENCES = ("rows", "pixels")
IMPLS = ("auto", "cell", "torch")
DEFAULTS: dict[str, Any] = {
    "hidden": 100,
    "layers": 1,
    "sequence": "rows",
    "permute": False,
    "permute_seed": 0,
    "placement": "per_step",
    "gamma_init": None,
    "impl": "auto",
}

#: A list per layer of that layer's h_1 … h_T, filled by :meth:`LSTMClassifier.forward_keeping`.
Kept = list[list[torch.Tensor]]


def lstm_update(
    gates: torch.Tensor, c: torch.Tensor, norm_c: nn.Module | None, t: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(h_t, c_t) from the pre-activations (ĩ, f̃, g̃, õ) and c_{t−1} (the module docstring)."""
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    cn = c if norm_c is None else norm_c(c, t)
    return torch.sigmoid(o) * torch.tanh(cn), c


class StepSlots(nn.Module):
    """Norm slots indexed by time step: ``steps`` modules sharing their parameters (γ, β) and
    keeping their own buffers (running statistics). Step t uses module min(t, steps − 1)."""

    def __init__(self, spec: NormSpec, channels: int, steps: int) -> None:
        super().__init__()
        self.slots = nn.ModuleList(spec.layer(channels, dims=1) for _ in range(steps))
        first = self.slots[0]
        for slot in self.slots[1:]:
            for name, param in first.named_parameters():
                owner, _, leaf = name.rpartition(".")
                setattr(slot.get_submodule(owner), leaf, param)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return self.slots[min(t, len(self.slots) - 1)](x)


def _slots(spec: NormSpec, channels: int, steps: int) -> StepSlots | None:
    """The step slots, or None when the slot is empty (``norm=none``: nothing to call)."""
    slots = StepSlots(spec, channels, steps)
    return None if isinstance(slots.slots[0], nn.Identity) else slots


class NormLSTMLayer(nn.Module):
    """One LSTM layer unrolled over time, norm slots where ``placement`` puts them."""

    def __init__(
        self,
        spec: NormSpec,
        in_features: int,
        hidden: int,
        placement: str,
        steps: int,
        input_layer: bool = False,
    ) -> None:
        super().__init__()
        self.hidden, self.placement = hidden, placement
        self.ih = spec.linear(in_features, 4 * hidden, bias=False, input_layer=input_layer)
        self.hh = spec.linear(hidden, 4 * hidden, bias=False)
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden))
        self.norm_seq: nn.Module | None = None
        self.norm_x = self.norm_h = self.norm_c = None
        if placement == "vertical":
            slot = spec.layer(4 * hidden, dims=1)
            self.norm_seq = None if isinstance(slot, nn.Identity) else slot
        else:
            n = steps if placement == "per_step" else 1
            self.norm_x = _slots(spec, 4 * hidden, n)
            self.norm_h = _slots(spec, 4 * hidden, n)
            self.norm_c = _slots(spec, hidden, n)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """torch.nn.LSTM's initialization: every plain weight and bias ~ U(−1/√hidden, 1/√hidden)."""
        bound = 1.0 / math.sqrt(self.hidden)
        for layer in (self.ih, self.hh):
            if isinstance(layer, nn.Linear) and not parametrize.is_parametrized(layer):
                nn.init.uniform_(layer.weight, -bound, bound)
        nn.init.uniform_(self.bias_ih, -bound, bound)
        nn.init.uniform_(self.bias_hh, -bound, bound)

    def slot_modules(self) -> list[nn.Module]:
        """The norm slots this layer holds (for ``gamma_init``)."""
        found = [self.norm_seq] + [s.slots[0] for s in (self.norm_x, self.norm_h, self.norm_c) if s]
        return [m for m in found if m is not None]

    def forward(self, x: torch.Tensor, keep: list[torch.Tensor] | None = None) -> torch.Tensor:
        """(T, N, F) -> (T, N, hidden): h_1 … h_T; each h_t is also appended to ``keep``."""
        steps, n = x.shape[:2]
        proj = self.ih(x.reshape(steps * n, -1))
        if self.norm_seq is not None:
            proj = self.norm_seq(proj)  # statistics over the batch and all steps (vertical)
        bias = self.bias_ih + self.bias_hh
        if self.norm_x is None:
            proj = proj + bias
        # unbind, not proj[t]: one backward for all steps (indexing a step at a time would
        # scatter each step's gradient into a zero tensor of the whole sequence: quadratic in T)
        inputs = proj.view(steps, n, -1).unbind(0)
        h = x.new_zeros(n, self.hidden)
        c = x.new_zeros(n, self.hidden)
        outs = []
        for t in range(steps):
            a = inputs[t] if self.norm_x is None else self.norm_x(inputs[t], t) + bias
            r = self.hh(h)
            gates = a + (r if self.norm_h is None else self.norm_h(r, t))
            h, c = lstm_update(gates, c, self.norm_c, t)
            outs.append(h)
        if keep is not None:
            keep.extend(outs)
        return torch.stack(outs)


def torch_lstm_steps(lstm: nn.LSTM, seq: torch.Tensor, kept: Kept) -> torch.Tensor:
    """``lstm(seq)``'s output unrolled step by step with its own weights, appending each layer's
    h_t to ``kept`` (the fused kernel hides them from autograd)."""
    x = seq
    for layer in range(lstm.num_layers):
        w_ih, w_hh, b_ih, b_hh = (
            getattr(lstm, f"{k}_l{layer}") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        steps, n = x.shape[:2]
        proj = (x.reshape(steps * n, -1) @ w_ih.T + b_ih + b_hh).view(steps, n, -1).unbind(0)
        h = x.new_zeros(n, lstm.hidden_size)
        c = x.new_zeros(n, lstm.hidden_size)
        outs = []
        for t in range(steps):
            h, c = lstm_update(proj[t] + h @ w_hh.T, c, None, t)
            outs.append(h)
        kept.append(outs)
        x = torch.stack(outs)
    return x


class LSTMClassifier(nn.Module):
    """Image → sequence → stacked LSTM → linear classifier on the last hidden state."""

    def __init__(
        self,
        spec: NormSpec,
        in_shape: tuple[int, ...],
        num_classes: int,
        hidden: int = 100,
        layers: int = 1,
        sequence: str = "rows",
        permute: bool = False,
        permute_seed: int = 0,
        placement: str = "per_step",
        gamma_init: float | None = None,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        channels, height, width = in_shape
        self.sequence = sequence
        self.steps, features = (
            (height, channels * width) if sequence == "rows" else (height * width, channels)
        )
        order = None
        if permute:
            gen = torch.Generator().manual_seed(permute_seed)
            order = torch.randperm(height * width, generator=gen)
        self.register_buffer("order", order, persistent=False)
        self.fast = impl == "torch" or (impl == "auto" and is_plain(spec))
        if self.fast:
            self.rnn: nn.Module = nn.LSTM(features, hidden, num_layers=layers)
        else:
            self.layers = nn.ModuleList(
                NormLSTMLayer(
                    spec, features if k == 0 else hidden, hidden, placement, self.steps, k == 0
                )
                for k in range(layers)
            )
        self.head = spec.classifier(hidden, num_classes)
        if gamma_init is not None:
            self._init_gamma(gamma_init)

    @torch.no_grad()
    def _init_gamma(self, value: float) -> None:
        slots = [] if self.fast else [m for layer in self.layers for m in layer.slot_modules()]
        weights = [getattr(m, "weight", None) for m in slots]
        if not slots or any(not isinstance(w, nn.Parameter) for w in weights):
            raise ConfigError(
                f"model.gamma_init={value} needs norm slots with a learned scale γ, but this "
                "model's slots have none (norm=none, or norm.affine=false); set "
                "model.gamma_init=null."
            )
        for w in weights:
            w.fill_(value)

    def to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (T, N, F) sequences (see the module docstring)."""
        n, c = x.shape[:2]
        if self.sequence == "rows":
            return x.permute(2, 0, 1, 3).reshape(x.shape[2], n, -1)
        seq = x.reshape(n, c, -1)
        if self.order is not None:
            seq = seq[:, :, self.order]
        return seq.permute(2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.to_sequence(x)
        if self.fast:
            out = self.rnn(seq)[0]
        else:
            out = seq
            for layer in self.layers:
                out = layer(out)
        return self.head(out[-1])

    def forward_keeping(self, x: torch.Tensor) -> tuple[torch.Tensor, Kept]:
        """The logits, and every layer's h_1 … h_T as nodes of the autograd graph (the hidden
        gradient probe, ``probes.hidden_grads``)."""
        seq, kept = self.to_sequence(x), []
        if self.fast:
            out = torch_lstm_steps(self.rnn, seq, kept)
        else:
            out = seq
            for layer in self.layers:
                kept.append([])
                out = layer(out, kept[-1])
        return self.head(out[-1]), kept


def is_plain(spec: NormSpec) -> bool:
    """Whether ``spec`` leaves the LSTM as it is: empty slots and plain linear weight layers."""
    linear = spec.linear(1, 1, bias=False)
    empty = isinstance(spec.layer(4, dims=1), nn.Identity)
    return empty and type(linear) is nn.Linear and not parametrize.is_parametrized(linear)


def build_lstm(
    cfg: DictConfig | dict[str, Any], spec: NormSpec, num_classes: int, in_shape: tuple[int, ...]
) -> LSTMClassifier:
    """The LSTM of a ``model=lstm`` config; bad options are one clear error each.

    Raises:
        ConfigError: an unknown option, a value out of its choices, a norm that cannot sit in
            the cell, or an input that is not an image.
    """
    options = (
        OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    )
    options.pop("name", None)
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"model=lstm has no option {', '.join(unknown)}; its options are: {', '.join(DEFAULTS)}."
        )
    o = {**DEFAULTS, **options}
    for key, choices in (("placement", PLACEMENTS), ("sequence", SEQUENCES), ("impl", IMPLS)):
        if o[key] not in choices:
            raise ConfigError(f"model.{key}={o[key]!r} is not one of {', '.join(choices)}.")
    for key, allowed in (("hidden", range(1, 1 << 20)), ("layers", (1, 2))):
        if isinstance(o[key], bool) or not isinstance(o[key], int) or o[key] not in allowed:
            what = "a positive integer" if key == "hidden" else "1 or 2"
            raise ConfigError(f"model.{key} must be {what}, got {o[key]!r}.")
    gamma = o["gamma_init"]
    if gamma is not None and (
        isinstance(gamma, bool) or not isinstance(gamma, int | float) or gamma <= 0
    ):
        raise ConfigError(f"model.gamma_init must be a number > 0 or null, got {gamma!r}.")
    if o["permute"] and o["sequence"] != "pixels":
        raise ConfigError(
            "model.permute=true shuffles the pixel order: it needs model.sequence=pixels."
        )
    if spec.includes_activation:
        raise ConfigError(
            f"norm={spec.name} carries its own nonlinearity, which the LSTM cell cannot take in a "
            "norm slot; use a plain normalization (norm=batch, norm=layer, norm=group ...)."
        )
    if o["impl"] == "torch" and not is_plain(spec):
        raise ConfigError(
            f"model.impl=torch runs torch.nn.LSTM, which has no norm slots; norm={spec.name} "
            "needs model.impl=auto or cell."
        )
    if len(in_shape) != 3:
        raise ConfigError(
            f"model=lstm reads (C, H, W) images as sequences, but the dataset gives examples of "
            f"shape {tuple(in_shape)}."
        )
    return LSTMClassifier(spec, tuple(in_shape), num_classes, **o)
