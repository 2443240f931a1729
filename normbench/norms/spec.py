"""The normalization slot: what a model asks of a normalization variant.

A model receives one :class:`NormSpec` and only ever calls it::

    conv = spec.conv(in_c, out_c, 3, padding=1, bias=not spec.has_shift)
    norm = spec.layer(out_c, dims=2)

Variants that act on activations override :meth:`NormSpec.layer`; variants that act on
weights (Weight Normalization, Weight Standardization, Normalization Propagation) override
:meth:`NormSpec.linear` / :meth:`NormSpec.conv`.
"""

from __future__ import annotations

from torch import nn

from normbench.errors import ConfigError


class NormSpec:
    """Base spec: plain weight layers and an identity norm slot (``norm=none``).

    Subclasses take their config keys (``configs/norm/<name>.yaml`` minus ``name``) as
    keyword arguments of ``__init__``, so an unknown key is a clear error.
    """

    name = "none"
    #: Whether the variant assumes inputs standardized with dataset statistics (NormProp);
    #: the engine then standardizes the input whatever ``dataset.standardize`` says.
    standardize_input: bool = False
    #: Whether :meth:`layer` already contains the nonlinearity (FRN's TLU, EvoNorm): the model
    #: should then use identity instead of its own activation right after the norm slot.
    includes_activation: bool = False
    #: Whether a sample's train-time output depends on the other samples of its batch (batch
    #: statistics): such variants must honour :meth:`per_device`.
    batch_dependent: bool = False

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

    def options(self) -> dict[str, object]:
        """The spec's config keys and values (its ``__init__`` keyword arguments)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def with_options(self, **changes: object) -> NormSpec:
        """A new spec of the same variant with some options changed."""
        return type(self)(**{**self.options(), **changes})

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        """Return the norm module for ``num_channels`` channels-first features.

        Args:
            num_channels: channels (or features for ``dims=1``).
            dims: 1 for (N, C) inputs (MLP), 2 for (N, C, H, W) inputs (CNNs).
        """
        check_dims(dims)
        return nn.Identity()

    @property
    def has_shift(self) -> bool:
        """Whether :meth:`layer` adds a learned shift, making the weight layer's bias redundant."""
        return False

    def linear(self, in_features: int, out_features: int, bias: bool = True) -> nn.Module:
        """Return the fully connected weight layer."""
        return nn.Linear(in_features, out_features, bias=bias)

    def classifier(self, in_features: int, num_classes: int) -> nn.Module:
        """Return the network's output layer (logits). By default the variant's :meth:`linear`;
        variants whose paper leaves the output layer alone return a plain ``nn.Linear``."""
        return self.linear(in_features, num_classes, bias=True)

    def conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        groups: int = 1,
    ) -> nn.Module:
        """Return the 2-d convolution weight layer."""
        return nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            bias=bias,
            groups=groups,
        )

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


def check_dims(dims: int) -> None:
    """Reject a ``dims`` other than 1 (MLP features) or 2 (CNN feature maps)."""
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 (N, C inputs) or 2 (N, C, H, W inputs), got {dims}")
