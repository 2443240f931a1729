"""Severity parameter tables of Hendrycks & Dietterich's common corruptions.

Two sets, one entry per severity 1..5:

- ``IMAGENET``: ``ImageNet-C/create_c/make_imagenet_c.py`` (github.com/hendrycks/robustness), as
  carried to arbitrary image sizes by the ``imagecorruptions`` package
  (``imagecorruptions/corruptions.py``, github.com/bethgelab/imagecorruptions). Elastic transform
  and motion blur follow ``imagecorruptions`` (size-relative elastic field, no affine step;
  ImageMagick's motion blur as a shifted-copy line kernel).
- ``CIFAR``: ``ImageNet-C/create_c/make_cifar_c.py`` (same repository), the CIFAR-10-C set, for
  images of at most ``SMALL_IMAGE_MAX_SIDE`` pixels.

The numbers are the published ones; only their packaging into named tuples is ours.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, NamedTuple

SMALL_IMAGE_MAX_SIDE = 64


class Disk(NamedTuple):
    """Defocus blur: disk radius (px) and the Gaussian anti-aliasing sigma of the disk."""

    radius: float
    alias_sigma: float


class Glass(NamedTuple):
    """Glass blur: Gaussian sigma, maximal pixel displacement, number of shuffling passes."""

    sigma: float
    max_delta: int
    iterations: int


class Motion(NamedTuple):
    """Motion blur (ImageMagick semantics): kernel radius (px) and Gaussian sigma along the line."""

    radius: int
    sigma: float


class ZoomRange(NamedTuple):
    """Zoom blur: zoom factors ``numpy.arange(start, stop, step)``."""

    start: float
    stop: float
    step: float


class Snow(NamedTuple):
    """Snow: flake noise mean/std, zoom, threshold, motion radius/sigma, image blend weight."""

    loc: float
    scale: float
    zoom: float
    threshold: float
    radius: int
    sigma: float
    blend: float


class Frost(NamedTuple):
    """Frost: image weight, ice weight, and the ice texture's pixel scale (1 = photo size)."""

    image_weight: float
    frost_weight: float
    texture_scale: float


class Fog(NamedTuple):
    """Fog: plasma amplitude and the plasma fractal's wibble decay."""

    amount: float
    decay: float


class Spatter(NamedTuple):
    """Spatter: liquid mean/std, smoothing sigma, threshold, intensity/sigma, 0 water / 1 mud."""

    loc: float
    scale: float
    sigma: float
    threshold: float
    intensity: float
    mud: int


class Saturation(NamedTuple):
    """Saturate: HSV saturation is mapped to ``clip(s * scale + shift, 0, 1)``."""

    scale: float
    shift: float


class ElasticField(NamedTuple):
    """Elastic (imagecorruptions): smoothed uniform field, all lengths relative to image height.

    Displacement = ``alpha * gaussian(U(-max_frac*H, max_frac*H), sigma=sigma_frac*(H, W))``.
    """

    alpha: float
    sigma_frac: float
    max_frac: float


class ElasticAffine(NamedTuple):
    """Elastic (CIFAR-10-C): random affine warp, then a smoothed uniform field.

    All three are multiples of the image side (``IMSIZE`` in the original):
    ``alpha`` scales the field, ``sigma`` smooths it, ``affine`` bounds the corner jitter.
    """

    alpha: float
    sigma: float
    affine: float


def _elastic_field(*alphas: float) -> tuple[ElasticField, ...]:
    return tuple(ElasticField(250 * a, 0.01, 0.005) for a in alphas)


def _table(entries: dict[str, tuple[Any, ...]]) -> MappingProxyType[str, tuple[Any, ...]]:
    assert all(len(v) == 5 for v in entries.values())
    return MappingProxyType(entries)


IMAGENET = _table(
    {
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60, 25, 12, 5, 3),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        "defocus_blur": (Disk(3, 0.1), Disk(4, 0.5), Disk(6, 0.5), Disk(8, 0.5), Disk(10, 0.5)),
        "glass_blur": (
            Glass(0.7, 1, 2),
            Glass(0.9, 2, 1),
            Glass(1, 2, 3),
            Glass(1.1, 3, 2),
            Glass(1.5, 4, 2),
        ),
        "motion_blur": (
            Motion(10, 3),
            Motion(15, 5),
            Motion(15, 8),
            Motion(15, 12),
            Motion(20, 15),
        ),
        "zoom_blur": (
            ZoomRange(1, 1.11, 0.01),
            ZoomRange(1, 1.16, 0.01),
            ZoomRange(1, 1.21, 0.02),
            ZoomRange(1, 1.26, 0.02),
            ZoomRange(1, 1.31, 0.03),
        ),
        "snow": (
            Snow(0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            Snow(0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            Snow(0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            Snow(0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            Snow(0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ),
        "frost": (
            Frost(1, 0.4, 1.0),
            Frost(0.8, 0.6, 1.0),
            Frost(0.7, 0.7, 1.0),
            Frost(0.65, 0.7, 1.0),
            Frost(0.6, 0.75, 1.0),
        ),
        "fog": (Fog(1.5, 2), Fog(2.0, 2), Fog(2.5, 1.7), Fog(2.5, 1.5), Fog(3.0, 1.4)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        "elastic_transform": _elastic_field(0.05, 0.065, 0.085, 0.1, 0.12),
        "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
        "jpeg_compression": (25, 18, 15, 10, 7),
        "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
        "gaussian_blur": (1, 2, 3, 4, 6),
        "spatter": (
            Spatter(0.65, 0.3, 4, 0.69, 0.6, 0),
            Spatter(0.65, 0.3, 3, 0.68, 0.6, 0),
            Spatter(0.65, 0.3, 2, 0.68, 0.5, 0),
            Spatter(0.65, 0.3, 1, 0.65, 1.5, 1),
            Spatter(0.67, 0.4, 1, 0.65, 1.5, 1),
        ),
        "saturate": (
            Saturation(0.3, 0),
            Saturation(0.1, 0),
            Saturation(2, 0),
            Saturation(5, 0.1),
            Saturation(20, 0.2),
        ),
    }
)

CIFAR = _table(
    {
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "shot_noise": (500, 250, 100, 75, 50),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
        "defocus_blur": (
            Disk(0.3, 0.4),
            Disk(0.4, 0.5),
            Disk(0.5, 0.6),
            Disk(1, 0.2),
            Disk(1.5, 0.1),
        ),
        "glass_blur": (
            Glass(0.05, 1, 1),
            Glass(0.25, 1, 1),
            Glass(0.4, 1, 1),
            Glass(0.25, 1, 2),
            Glass(0.4, 1, 2),
        ),
        "motion_blur": (Motion(6, 1), Motion(6, 1.5), Motion(6, 2), Motion(8, 2), Motion(9, 2.5)),
        "zoom_blur": (
            ZoomRange(1, 1.06, 0.01),
            ZoomRange(1, 1.11, 0.01),
            ZoomRange(1, 1.16, 0.01),
            ZoomRange(1, 1.21, 0.01),
            ZoomRange(1, 1.26, 0.01),
        ),
        "snow": (
            Snow(0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            Snow(0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            Snow(0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            Snow(0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            Snow(0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        "frost": (
            Frost(1, 0.2, 0.2),
            Frost(1, 0.3, 0.2),
            Frost(0.9, 0.4, 0.2),
            Frost(0.85, 0.4, 0.2),
            Frost(0.75, 0.45, 0.2),
        ),
        "fog": (Fog(0.2, 3), Fog(0.5, 3), Fog(0.75, 2.5), Fog(1, 2), Fog(1.5, 1.75)),
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
        "elastic_transform": (
            ElasticAffine(0, 0, 0.08),
            ElasticAffine(0.05, 0.2, 0.07),
            ElasticAffine(0.08, 0.06, 0.06),
            ElasticAffine(0.1, 0.04, 0.05),
            ElasticAffine(0.1, 0.03, 0.03),
        ),
        "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
        "jpeg_compression": (80, 65, 58, 50, 40),
        "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
        "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),
        "spatter": (
            Spatter(0.62, 0.1, 0.7, 0.7, 0.5, 0),
            Spatter(0.65, 0.1, 0.8, 0.7, 0.5, 0),
            Spatter(0.65, 0.3, 1, 0.69, 0.5, 0),
            Spatter(0.65, 0.1, 0.7, 0.69, 0.6, 1),
            Spatter(0.65, 0.1, 0.5, 0.68, 0.6, 1),
        ),
        "saturate": (
            Saturation(0.3, 0),
            Saturation(0.1, 0),
            Saturation(1.5, 0),
            Saturation(2, 0.1),
            Saturation(2.5, 0.2),
        ),
    }
)

PARAMETER_SETS = MappingProxyType({"imagenet": IMAGENET, "cifar": CIFAR})


def zoom_factors(r: ZoomRange) -> tuple[float, ...]:
    """The zoom factors ``numpy.arange(start, stop, step)`` would give, computed as numpy does.

    numpy takes ``ceil((stop - start) / step)`` values, ``start + i * ((start + step) - start)``;
    floating point makes e.g. ``arange(1, 1.11, 0.01)`` hold 12 values, 1.11 included.
    """
    count = math.ceil((r.stop - r.start) / r.step)
    delta = (r.start + r.step) - r.start
    return tuple(r.start + i * delta for i in range(count))
