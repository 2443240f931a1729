"""A procedural ice texture standing in for the frost photographs of the original.

Hendrycks & Dietterich blend a random crop of one of five photographs of frost on glass
(``frost1.png`` .. ``frost5.jpg``) into the image. No image file ships with normbench; instead
each image gets a synthetic texture made by spectral synthesis on its device:

- crystals: ``K`` fields of Gaussian noise, each low-passed by an anisotropic Gaussian
  (long along a random direction, thin across it); ``1 - tanh(|z|)`` turns each field's
  zero crossings into thin bright needles; smooth random weights (a softmax of
  low-frequency noise) give each region of the image a dominant needle direction, like the
  feathered domains of window frost;
- background: ``1/f^0.9``-amplitude (``1/f^1.8`` power) noise, the measured power slope of
  the photos (between -1.3 and -2.1 per octave);
- the sum is standardized per image and coloured with the per-channel mean and standard
  deviation of one of the five photographs, chosen uniformly per image (``PHOTO_PROFILES``,
  measured by us on the photos distributed with imagecorruptions).

Lengths are in photo pixels and multiplied by ``scale``: 1 for the ImageNet-C set (crops
at the photos' resolution), 0.2 for CIFAR-10-C (which shrinks the photos by 5 first).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from normbench.data.corruptions.color import luminance

# (RGB mean, RGB std) of frost1.png, frost2.png, frost3.png, frost4.jpg, frost5.jpg.
PHOTO_PROFILES = (
    ((0.305, 0.585, 0.650), (0.106, 0.065, 0.060)),
    ((0.787, 0.805, 0.841), (0.084, 0.087, 0.089)),
    ((0.787, 0.805, 0.841), (0.084, 0.087, 0.089)),
    ((0.540, 0.599, 0.648), (0.112, 0.112, 0.117)),
    ((0.441, 0.484, 0.528), (0.174, 0.170, 0.163)),
)

_DIRECTIONS = 4  # needle fields per image
_NEEDLE_LENGTH = 10.0  # Gaussian sigma along a needle, photo pixels
_NEEDLE_WIDTH = 1.2  # Gaussian sigma across a needle, photo pixels
_DOMAIN_SIZE = 30.0  # Gaussian sigma of the direction-choosing fields, photo pixels
_DOMAIN_SHARPNESS = 2.5  # softmax temperature of the direction choice
_BACKGROUND_WEIGHT = 0.6  # of the background relative to the crystals
_BACKGROUND_CUTOFF = 1 / 64  # cycles per photo pixel, below which the 1/f spectrum flattens


def _standardize(z: Tensor, dims: tuple[int, ...]) -> Tensor:
    z = z - z.mean(dim=dims, keepdim=True)
    return z / z.std(dim=dims, keepdim=True).clamp_min(1e-12)


def ice_pattern(n: int, h: int, w: int, scale: float, gen: torch.Generator) -> Tensor:
    """Standardized grey ice texture ``(N, H, W)``, float64, on the generator's device."""
    dev = gen.device
    k = _DIRECTIONS
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=dev).view(h, 1) * scale
    fx = torch.fft.fftfreq(w, dtype=torch.float64, device=dev).view(1, w) * scale
    spectrum = torch.fft.fft2(
        torch.randn((n, 2 * k + 1, h, w), generator=gen, device=dev, dtype=torch.float64)
    )
    theta = torch.rand((n, k, 1, 1), generator=gen, device=dev, dtype=torch.float64) * math.pi
    along = fx * torch.cos(theta) + fy * torch.sin(theta)
    across = fy * torch.cos(theta) - fx * torch.sin(theta)
    needle = torch.exp(
        -2 * math.pi**2 * ((_NEEDLE_LENGTH * along) ** 2 + (_NEEDLE_WIDTH * across) ** 2)
    )
    fields = _standardize(torch.fft.ifft2(spectrum[:, :k] * needle).real, (2, 3))
    needles = 1 - torch.tanh(1.5 * fields.abs())
    f2 = fy**2 + fx**2
    domain = torch.exp(-2 * math.pi**2 * _DOMAIN_SIZE**2 * f2)
    choice = _standardize(torch.fft.ifft2(spectrum[:, k : 2 * k] * domain).real, (2, 3))
    crystals = (torch.softmax(_DOMAIN_SHARPNESS * choice, dim=1) * needles).sum(1)
    pink = (f2 + _BACKGROUND_CUTOFF**2) ** -0.45
    pink[0, 0] = 0.0
    background = torch.fft.ifft2(spectrum[:, 2 * k] * pink).real
    texture = _standardize(crystals, (1, 2)) + _BACKGROUND_WEIGHT * _standardize(background, (1, 2))
    return _standardize(texture, (1, 2))


def frost_texture(
    n: int,
    channels: int,
    h: int,
    w: int,
    scale: float,
    gen: torch.Generator,
    profiles: Tensor | None = None,
) -> Tensor:
    """Coloured ice texture ``(N, C, H, W)`` in [0, 1], float64, on the generator's device.

    Args:
        n, channels, h, w: output shape; one channel gives the texture's luminance.
        scale: image pixels per photo pixel.
        gen: the random generator (its device is the output's).
        profiles: ``(N,)`` indices into ``PHOTO_PROFILES``; drawn uniformly when omitted.
    """
    dev = gen.device
    if profiles is None:
        profiles = torch.randint(0, len(PHOTO_PROFILES), (n,), generator=gen, device=dev)
    table = torch.tensor(PHOTO_PROFILES, dtype=torch.float64, device=dev)[profiles.to(dev)]
    mean, std = table[:, 0, :, None, None], table[:, 1, :, None, None]
    rgb = (mean + std * ice_pattern(n, h, w, scale, gen).unsqueeze(1)).clamp(0, 1)
    return luminance(rgb) if channels == 1 else rgb
