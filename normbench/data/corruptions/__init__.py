"""Common corruptions (Hendrycks & Dietterich, ICLR 2019), batched in torch on the batch's device.

``corrupt(x, name, severity, seed)`` applies one of the 15 benchmark corruptions
(``CORRUPTIONS``, in the paper's order) or of the 4 held-out ones (``EXTRA_CORRUPTIONS``) at
severity 1..5 to a float batch ``(N, C, H, W)`` in [0, 1] with one (grey) or three (RGB)
channels. Parameters come from the ImageNet-C set for large images and the CIFAR-10-C set for
images of at most 64 pixels a side (28 x 28 Fashion-MNIST included); ``params`` overrides the
choice. Randomness comes from a ``torch.Generator`` seeded with ``seed`` on the batch's device:
the same seed on the same device gives the same output; no global RNG state is used.

See docs/corruptions.md for the sources of the parameters and every difference of method.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from normbench.data.corruptions import blur, digital, noise, weather
from normbench.data.corruptions.elastic import elastic_transform
from normbench.data.corruptions.names import CORRUPTIONS, EXTRA_CORRUPTIONS
from normbench.data.corruptions.params import PARAMETER_SETS, SMALL_IMAGE_MAX_SIDE
from normbench.data.corruptions.spatter import spatter
from normbench.errors import ConfigError, DataError

ALL_CORRUPTIONS: tuple[str, ...] = CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
PARAMS: tuple[str, ...] = tuple(PARAMETER_SETS)

Corruption = Callable[[Tensor, Any, torch.Generator], Tensor]

_FUNCTIONS: MappingProxyType[str, Corruption] = MappingProxyType(
    {
        "gaussian_noise": noise.gaussian_noise,
        "shot_noise": noise.shot_noise,
        "impulse_noise": noise.impulse_noise,
        "defocus_blur": blur.defocus_blur,
        "glass_blur": blur.glass_blur,
        "motion_blur": blur.motion_blur,
        "zoom_blur": blur.zoom_blur,
        "snow": weather.snow,
        "frost": weather.frost,
        "fog": weather.fog,
        "brightness": digital.brightness,
        "contrast": digital.contrast,
        "elastic_transform": elastic_transform,
        "pixelate": digital.pixelate,
        "jpeg_compression": digital.jpeg_compression,
        "speckle_noise": noise.speckle_noise,
        "gaussian_blur": blur.gaussian_blur,
        "spatter": spatter,
        "saturate": digital.saturate,
    }
)


def parameter_set_for(height: int, width: int) -> str:
    """``"cifar"`` for images of at most 64 pixels a side, else ``"imagenet"``."""
    return "cifar" if max(height, width) <= SMALL_IMAGE_MAX_SIDE else "imagenet"


def severity_parameters(name: str, severity: int, params: str) -> Any:
    """The published parameters of corruption ``name`` at ``severity`` in set ``params``."""
    _check_name(name)
    level = _check_severity(severity)
    if params not in PARAMETER_SETS:
        raise ConfigError(
            f"unknown corruption parameter set {params!r}; use one of {', '.join(PARAMS)} "
            "(or leave it unset to choose by image size)"
        )
    return PARAMETER_SETS[params][name][level - 1]


def corrupt(x: Tensor, name: str, severity: int, seed: int, params: str | None = None) -> Tensor:
    """Corrupt a batch of images.

    Args:
        x: float batch ``(N, C, H, W)`` in [0, 1], ``C`` 1 (grey) or 3 (RGB), on any device.
        name: a name from ``CORRUPTIONS`` or ``EXTRA_CORRUPTIONS``.
        severity: 1 (mildest) to 5.
        seed: seed of the generator all random draws come from.
        params: ``"imagenet"`` or ``"cifar"``; by default chosen by image size
            (``parameter_set_for``).

    Returns:
        The corrupted batch: same shape, dtype and device, clipped to [0, 1].

    Raises:
        ConfigError: unknown corruption, severity outside 1..5 or unknown parameter set.
        DataError: ``x`` is not a float ``(N, 1|3, H, W)`` batch.
    """
    _check_batch(x)
    chosen = params if params is not None else parameter_set_for(*x.shape[-2:])
    p = severity_parameters(name, severity, chosen)
    if x.numel() == 0:
        return x.clone()
    work = x.detach()
    if work.dtype not in (torch.float32, torch.float64):
        work = work.float()
    gen = torch.Generator(device=x.device)
    gen.manual_seed(int(seed))
    return _FUNCTIONS[name](work, p, gen).clamp(0, 1).to(x.dtype)


def _check_name(name: str) -> None:
    if name not in _FUNCTIONS:
        raise ConfigError(
            f"unknown corruption {name!r}; the corruptions are: {', '.join(CORRUPTIONS)}; "
            f"held out: {', '.join(EXTRA_CORRUPTIONS)}"
        )


def _check_severity(severity: int) -> int:
    try:
        level = operator.index(severity)
    except TypeError:
        level = None
    if isinstance(severity, bool) or level not in SEVERITIES:
        raise ConfigError(f"corruption severity must be an integer from 1 to 5, got {severity!r}")
    return level


def _check_batch(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise DataError(f"corrupt expects an image batch (N, C, H, W) with C = 1 or 3, got {shape}")
    if not x.is_floating_point():
        raise DataError(f"corrupt expects floats in [0, 1], got dtype {x.dtype}; divide by 255")
