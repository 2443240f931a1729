"""Blur corruptions: defocus, glass, motion, zoom and Gaussian blur.

Each takes a float batch ``(N, C, H, W)`` in [0, 1], its severity's parameters and a
``torch.Generator`` on the batch's device. The ``*_given`` functions take the random draws
explicitly, so that tests can feed them the draws the reference implementation made.
"""

from __future__ import annotations

import torch
from torch import Tensor

from normbench.data.corruptions.filters import (
    clipped_zoom,
    correlate2d,
    gaussian_filter,
    line_blur,
)
from normbench.data.corruptions.params import Disk, Glass, Motion, ZoomRange, zoom_factors


def disk_kernel(radius: float, alias_sigma: float) -> Tensor:
    """The original's anti-aliased disk: a normalized disk blurred by a small Gaussian.

    The disk lives on a 17 x 17 grid (``2 * radius + 1`` beyond radius 8), and is smoothed by a
    3 x 3 (5 x 5 beyond radius 8) Gaussian with OpenCV's reflect101 border. Float64.
    """
    if radius <= 8:
        coords, size = torch.arange(-8, 9, dtype=torch.float64), 3
    else:
        coords, size = torch.arange(-radius, radius + 1, dtype=torch.float64), 5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    disk = (xx**2 + yy**2 <= radius**2).to(torch.float64)
    disk = disk / disk.sum()
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * alias_sigma**2))
    g = g / g.sum()
    return correlate2d(disk[None, None], torch.outer(g, g), "reflect101")[0, 0]


def defocus_blur(x: Tensor, p: Disk, gen: torch.Generator) -> Tensor:
    """Correlate with the anti-aliased disk of radius ``p.radius`` (reflect101 border)."""
    return correlate2d(x, disk_kernel(p.radius, p.alias_sigma).to(x.device), "reflect101")


def gaussian_blur(x: Tensor, sigma: float, gen: torch.Generator) -> Tensor:
    """Gaussian filter (skimage defaults: truncate 4, repeated edge)."""
    return gaussian_filter(x, sigma)


def motion_blur(x: Tensor, p: Motion, gen: torch.Generator) -> Tensor:
    """Line blur at an angle drawn uniformly in [-45, 45) degrees per image."""
    angles = torch.rand(x.shape[0], generator=gen, device=x.device, dtype=torch.float64)
    return line_blur(x, p.radius, p.sigma, angles * 90 - 45)


def zoom_blur(x: Tensor, p: ZoomRange, gen: torch.Generator) -> Tensor:
    """Average of the image and its central zooms by each factor of the range."""
    factors = zoom_factors(p)
    out = x.clone()
    for factor in factors:
        out += clipped_zoom(x, factor)
    return out / (len(factors) + 1)


def glass_offsets(
    n: int, h: int, w: int, p: Glass, gen: torch.Generator, device: torch.device
) -> Tensor:
    """Random offsets ``(iterations, N, 2, H, W)`` in ``[-max_delta, max_delta)``: (dx, dy)."""
    d = p.max_delta
    return torch.randint(-d, d, (p.iterations, n, 2, h, w), generator=gen, device=device)


def glass_blur(x: Tensor, p: Glass, gen: torch.Generator) -> Tensor:
    """Blur, quantize to 8 bits, locally shuffle pixels ``p.iterations`` times, blur again."""
    n, _, h, w = x.shape
    return glass_blur_given(x, p, glass_offsets(n, h, w, p, gen, x.device))


def glass_blur_given(x: Tensor, p: Glass, offsets: Tensor) -> Tensor:
    """Glass blur with given offsets ``(iterations, N, 2, H, W)`` (column, row) per pixel."""
    x = gaussian_filter(x, p.sigma)
    x = torch.floor(x.clamp(0, 1) * 255) / 255
    for it in range(p.iterations):
        x = _glass_pass(x, offsets[it], p.max_delta)
    return gaussian_filter(x, p.sigma)


def _glass_pass(x: Tensor, offsets: Tensor, d: int) -> Tensor:
    """One pass of the original's pixel loop, vectorized.

    The original visits rows ``H-d .. d+1`` and columns ``W-d .. d+1`` in reverse raster order and
    executes ``x[h, w], x[h', w'] = x[h', w'], x[h, w]``. On an RGB numpy array both sides are
    views, so this copies ``x[h', w']`` into ``x[h, w]`` and leaves ``x[h', w']`` unchanged (it
    is not a swap); that copy is what made the published datasets, and what is done here. When
    the source was visited before (later in raster order, inside the region), it already holds
    its new value: new values are found by following these chains with pointer jumping.
    """
    n, c, h, w = x.shape
    dev = x.device
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    pos = (rows * w + cols).expand(n, h, w)

    def in_region(r: Tensor, q: Tensor) -> Tensor:
        return (r >= d + 1) & (r <= h - d) & (q >= d + 1) & (q <= w - d)

    region = in_region(rows, cols).expand(n, h, w)
    src_r, src_c = rows + offsets[:, 1], cols + offsets[:, 0]
    src = torch.where(region, src_r * w + src_c, pos)
    chained = region & in_region(src_r, src_c) & (src > pos)
    nxt = torch.where(chained, src, pos).reshape(n, h * w)
    leaf = torch.where(region & ~chained, src, pos).reshape(n, h * w)
    while True:
        jumped = nxt.gather(1, nxt)
        if torch.equal(jumped, nxt):
            break
        nxt = jumped
    final = leaf.gather(1, nxt)
    flat = x.reshape(n, c, h * w)
    return flat.gather(2, final.unsqueeze(1).expand(n, c, h * w)).reshape(n, c, h, w)
