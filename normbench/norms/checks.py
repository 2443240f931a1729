"""Shape-only checks shared by the variants (cheap, no device sync, one clear message each), and
the shape helpers they use."""

from __future__ import annotations

import math

import torch

from normbench.errors import ConfigError

#: The input shape a norm slot built with ``dims`` takes, by ``dims``.
SLOT_SHAPES = {1: "(N, C)", 2: "(N, C, H, W)"}


def check_slot_input(x: torch.Tensor, dims: int, channels: int, owner: str) -> None:
    """Reject an input that is not what a slot built with ``dims`` for ``channels`` takes.

    A ``dims=1`` slot takes 2-d (N, C) inputs, a ``dims=2`` slot 4-d (N, C, H, W) inputs (as
    torch's ``BatchNorm2d`` does: ``expected 4D input (got 3D input)``), whatever the variant.

    Raises:
        ValueError: naming ``owner`` (the module), the expected shape and the shape given.
    """
    rank = 2 * dims
    if x.dim() != rank or x.shape[1] != channels:
        expected = SLOT_SHAPES[dims].replace("C", str(channels))
        raise ValueError(
            f"{owner}: this norm slot was built with dims={dims} for {channels} channels, so it "
            f"expects {rank}D input {expected}, got {x.dim()}D input of shape {tuple(x.shape)}."
        )


def channel_view(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-channel vector ``t`` (C,) to broadcast against channels-first ``x``."""
    return t.view(1, -1, *([1] * (x.dim() - 2)))


def reduce_dims(x: torch.Tensor) -> list[int]:
    """Dimensions a batch statistic reduces over: the batch and every spatial dimension."""
    return [0, *range(2, x.dim())]


def values_per_channel(x: torch.Tensor) -> int:
    """Number of values each channel of a channels-first batch holds (N · H · W)."""
    return x.shape[0] * math.prod(x.shape[2:])


def check_batch_values(x: torch.Tensor, variant: str, group_size: int | None = None) -> None:
    """Reject a training batch whose channels hold a single value each (batch statistics undefined).

    With ``group_size``, the check is for a group of that many samples (statistics per group).

    Raises:
        ConfigError: naming the batch-independent alternatives and the larger-batch fix.
    """
    n = x.shape[0] if group_size is None else min(group_size, x.shape[0])
    if n * math.prod(x.shape[2:]) <= 1:
        where = "" if n == x.shape[0] else f" in each group of {n} samples"
        raise ConfigError(
            f"norm={variant} in training needs more than one value per channel{where} to compute "
            f"batch statistics, but got an input of shape {tuple(x.shape)} (one value per "
            "channel). Use a batch-independent normalization (norm=group, norm=layer, "
            "norm=instance or norm=normprop) or a larger batch."
        )


def check_groups(num_groups: int, num_channels: int, variant: str, key: str = "num_groups") -> None:
    """Reject a group count that does not divide the channel count, naming both numbers.

    Raises:
        ConfigError: ``num_groups`` does not divide ``num_channels``.
    """
    if num_groups < 1 or num_channels % num_groups != 0:
        divisors = [d for d in range(1, num_channels + 1) if num_channels % d == 0]
        raise ConfigError(
            f"norm={variant}: {key}={num_groups} does not divide the {num_channels} channels "
            f"of this layer. Choose a group count that divides {num_channels} "
            f"(one of {', '.join(map(str, divisors))})."
        )


def check_group_size(variant: str, group_size: int | None) -> None:
    """Reject a statistics group size that is not a positive integer or ``None``.

    Raises:
        ConfigError: naming the variant and the bad value.
    """
    if group_size is not None and (
        isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1
    ):
        raise ConfigError(
            f"norm={variant}: group_size must be a positive integer or null, got {group_size!r}."
        )
