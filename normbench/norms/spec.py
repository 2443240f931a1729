"""The normalization slot: what a model asks of a normalization variant.

A model receives one :class:`NormSpec` and only ever calls it::

    conv = spec.conv(in_c, out_c, 3, padding=1, bias=not spec.has_shift)
    norm = spec.layer(out_c, dims=2)

A variant is a frozen dataclass deriving from :class:`NormSpec`: its fields are its options,
with their defaults, and nothing else holds them. ``build_norm_spec`` accepts exactly those
fields (types from their annotations), ``configs/norm/<name>.yaml`` repeats them for Hydra (a
test keeps keys and defaults equal), and :meth:`NormSpec.layer` passes them to the module by
keyword. A spec is a pure factory: each call builds new modules from its arguments and the
options alone, so one spec may build any number of models, in any order.

Variants that act on activations override :meth:`NormSpec.layer`; variants that act on
weights (Weight Normalization, Weight Standardization, Normalization Propagation) override
:meth:`NormSpec.weight_layer`, the one hook :meth:`NormSpec.linear` and :meth:`NormSpec.conv`
build their layer through (the signatures of ``linear`` and ``conv`` are written only here).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from normbench.errors import ConfigError
from normbench.norms.checks import check_slot_input


@dataclass(frozen=True, kw_only=True)
class NormSpec:
    """Base spec: plain weight layers and an identity norm slot (``norm=none``).

    Subclasses are ``@dataclass(frozen=True, kw_only=True)`` whose fields are their config keys
    (``configs/norm/<name>.yaml`` minus ``name``); ``__post_init__`` checks choices.

    ``input_layer`` (of :meth:`linear`, :meth:`conv`, :meth:`classifier`) marks the weight
    layer that reads the network's input rather than an activation; only NormProp uses it.
    """

    name: ClassVar[str] = "none"
    #: Whether the variant assumes inputs standardized with dataset statistics (NormProp);
    #: the engine then standardizes the input whatever ``dataset.standardize`` says.
    standardize_input: ClassVar[bool] = False
    #: Whether :meth:`layer` already contains the nonlinearity (FRN's TLU, EvoNorm): the model
    #: should then use identity instead of its own activation right after the norm slot.
    includes_activation: ClassVar[bool] = False
    #: Whether a sample's train-time output depends on the other samples of its batch (batch
    #: statistics): such variants must honour :meth:`per_device`.
    batch_dependent: ClassVar[bool] = False

    def per_device(self, images: int) -> NormSpec:
        """This variant with its batch statistics over groups of ``images`` samples.

        The GroupNorm paper's images per device (``per_device.images``). Variants that are not
        :attr:`batch_dependent` are returned unchanged.
        """
        if self.batch_dependent:
            raise ConfigError(
                f"norm={self.name} cannot compute its statistics over groups of images per device; "
                "leave per_device.images=null for it."
            )
        return self

    def options(self) -> dict[str, Any]:
        """The spec's config keys and values (its dataclass fields), in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def with_options(self, **changes: Any) -> NormSpec:
        """A new spec of the same variant with some options changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        """Return the norm module for ``num_channels`` channels-first features.

        Args:
            num_channels: channels (or features for ``dims=1``).
            dims: 1 for (N, C) inputs (MLP), 2 for (N, C, H, W) inputs (CNNs); the module
                rejects inputs of another rank.
        """
        check_dims(dims)
        return IdentitySlot(num_channels, dims=dims)

    def check_activation(self, activation: str) -> None:
        """Refuse a model whose nonlinearity after the slot the variant was not set up for.

        ``activation`` is the model's (``relu``, ``leaky_relu``, ``sigmoid`` …). Only variants that
        assume one (NormProp's input correction) check it; the others accept any.
        """

    @property
    def has_shift(self) -> bool:
        """Whether :meth:`layer` adds a learned shift, making the weight layer's bias redundant."""
        return False

    def linear(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        input_layer: bool = False,
    ) -> nn.Module:
        """Return the fully connected weight layer (built by :meth:`weight_layer`)."""
        return self.weight_layer(nn.Linear, input_layer, in_features, out_features, bias=bias)

    def classifier(
        self, in_features: int, num_classes: int, *, input_layer: bool = False
    ) -> nn.Module:
        """Return the network's output layer (logits). By default the variant's :meth:`linear`;
        variants whose paper leaves the output layer alone return a plain ``nn.Linear``."""
        return self.linear(in_features, num_classes, bias=True, input_layer=input_layer)

    def conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        groups: int = 1,
        *,
        input_layer: bool = False,
    ) -> nn.Module:
        """Return the 2-d convolution weight layer (built by :meth:`weight_layer`)."""
        return self.weight_layer(
            nn.Conv2d,
            input_layer,
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            bias=bias,
            groups=groups,
        )

    def weight_layer(
        self, kind: type[nn.Linear | nn.Conv2d], input_layer: bool, *args: Any, **kwargs: Any
    ) -> nn.Module:
        """Build the weight layer of :meth:`linear` (``kind`` ``nn.Linear``) or :meth:`conv`
        (``nn.Conv2d``) from that class's arguments: ``kind(*args, **kwargs)`` here, the plain
        layer. Variants acting on weights override this alone; ``input_layer`` marks the layer
        reading the network's input."""
        return kind(*args, **kwargs)


class IdentitySlot(nn.Identity):
    """An empty norm slot (``norm=none``, plain Weight Normalization, NormProp without γ, β)
    that still rejects inputs of the wrong shape, as every slot does."""

    def __init__(self, num_channels: int, *, dims: int) -> None:
        super().__init__()
        self.num_channels, self.dims = num_channels, dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_slot_input(x, self.dims, self.num_channels, type(self).__name__)
        return x

    def extra_repr(self) -> str:
        return f"{self.num_channels}, dims={self.dims}"


def check_dims(dims: int) -> None:
    """Reject a ``dims`` other than 1 (MLP features) or 2 (CNN feature maps)."""
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 (N, C inputs) or 2 (N, C, H, W inputs), got {dims}")
