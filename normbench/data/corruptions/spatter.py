"""Spatter: water drops (severities with ``mud == 0``) or mud splashes (``mud == 1``).

A liquid layer ``N(loc, scale^2)`` per pixel is Gaussian-smoothed (``sigma``) and zeroed
below ``threshold``.

- Water: the layer, quantized to 8 bits, is shaded by its distance to the drops' edges: Canny
  edges (thresholds 50, 150), distance to them (OpenCV's 5x5 chamfer L2, truncated at 20),
  3x3 box blur, 8-bit histogram equalization, an emboss filter and another box blur. The
  product of layer and shading, scaled to a peak of ``intensity``, adds pale turquoise
  (175, 238, 238) to the image.
- Mud: the layer's support is smoothed with sigma ``intensity``; where that exceeds 0.8 the
  image is replaced in proportion by mud brown (63, 42, 20).

On grey images the colour is replaced by its luminance.
"""

from __future__ import annotations

import torch
from torch import Tensor

from normbench.data.corruptions.color import colour
from normbench.data.corruptions.edges import canny, chamfer_distance, equalize_hist
from normbench.data.corruptions.filters import box_blur3, correlate2d, gaussian_filter
from normbench.data.corruptions.params import Spatter

WATER = (175 / 255, 238 / 255, 238 / 255)
MUD = (63 / 255, 42 / 255, 20 / 255)
_EMBOSS = ((-2.0, -1.0, 0.0), (-1.0, 1.0, 1.0), (0.0, 1.0, 2.0))


def spatter(x: Tensor, p: Spatter, gen: torch.Generator) -> Tensor:
    """Draw the liquid layer and apply ``spatter_given``."""
    n, _, h, w = x.shape
    liquid = p.loc + p.scale * torch.randn((n, h, w), generator=gen, device=x.device)
    return spatter_given(x, p, liquid.to(x.dtype))


def spatter_given(x: Tensor, p: Spatter, liquid: Tensor) -> Tensor:
    """Spatter with a given raw liquid layer ``(N, H, W)`` drawn from ``N(loc, scale^2)``."""
    layer = gaussian_filter(liquid.unsqueeze(1), p.sigma)
    layer = torch.where(layer < p.threshold, torch.zeros_like(layer), layer)
    if p.mud:
        return _mud(x, layer, p)
    return _water(x, layer, p)


def _mud(x: Tensor, layer: Tensor, p: Spatter) -> Tensor:
    mask = gaussian_filter((layer > p.threshold).to(layer.dtype), p.intensity)
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask).to(x.dtype)
    return x * (1 - mask) + mask * colour(MUD, x.shape[1], x)


def _water(x: Tensor, layer: Tensor, p: Spatter) -> Tensor:
    # The original casts to uint8 (values above 255 would wrap around; they are clipped here).
    level = torch.floor(layer * 255).clamp(0, 255).to(torch.float32)
    shade = _edge_shading(level)
    m = level * shade
    peak = m.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    m = (m / peak * p.intensity).to(x.dtype)
    return x + m * colour(WATER, x.shape[1], x)


def _edge_shading(level: Tensor) -> Tensor:
    """The original's shading from 8-bit liquid levels ``(N, 1, H, W)``; integer-valued."""
    edges = canny(level, 50, 150)
    # OpenCV blurs the float distances in double precision, then truncates to uint8.
    dist = box_blur3(chamfer_distance(edges, 20.0).double())
    dist = equalize_hist(torch.floor(dist + 1e-6).float())
    emboss = torch.tensor(_EMBOSS, dtype=torch.float32, device=level.device)
    dist = correlate2d(dist, emboss, "reflect101").round().clamp(0, 255)
    return box_blur3(dist).round()
