"""Noise corruptions: Gaussian, shot (Poisson), impulse (salt and pepper), speckle.

Each takes a float batch ``(N, C, H, W)`` in [0, 1], its severity's parameter and a
``torch.Generator`` on the batch's device; noise is drawn independently per element.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gaussian_noise(x: Tensor, std: float, gen: torch.Generator) -> Tensor:
    """``x + N(0, std^2)``."""
    return x + std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)


def shot_noise(x: Tensor, photons: float, gen: torch.Generator) -> Tensor:
    """``Poisson(x * photons) / photons``: photon noise at ``photons`` counts for white."""
    return torch.poisson(x * photons, generator=gen) / photons


def impulse_noise(x: Tensor, amount: float, gen: torch.Generator) -> Tensor:
    """Salt and pepper: each element is, with probability ``amount``, set to 0 or 1 (even odds).

    As skimage.util.random_noise(mode="s&p", salt_vs_pepper=0.5), per element and channel.
    """
    hit = torch.rand(x.shape, generator=gen, device=x.device) < amount
    salt = torch.rand(x.shape, generator=gen, device=x.device) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def speckle_noise(x: Tensor, std: float, gen: torch.Generator) -> Tensor:
    """Multiplicative noise ``x + x * N(0, std^2)``."""
    return x + x * std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
