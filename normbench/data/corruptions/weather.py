"""Weather corruptions: snow, frost and fog (spatter lives in its own module).

Each takes a float batch ``(N, C, H, W)`` in [0, 1], its severity's parameters and a
``torch.Generator`` on the batch's device. The ``*_given`` functions take the random draws
explicitly, so that tests can feed them the draws the reference implementation made.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from normbench.data.corruptions.color import luminance
from normbench.data.corruptions.filters import line_blur, zoom_centre
from normbench.data.corruptions.frost import frost_texture
from normbench.data.corruptions.params import Fog, Frost, Snow

UniformDraw = Callable[[tuple[int, ...], float], Tensor]


def snow(x: Tensor, p: Snow, gen: torch.Generator) -> Tensor:
    """Falling snow: zoomed, thresholded, motion-blurred noise flakes over a brightened image."""
    n, _, h, w = x.shape
    flakes = p.loc + p.scale * torch.randn((n, h, w), generator=gen, device=x.device)
    angles = torch.rand(n, generator=gen, device=x.device, dtype=torch.float64) * 90 - 135
    return snow_given(x, p, flakes.to(x.dtype), angles)


def snow_given(x: Tensor, p: Snow, flakes: Tensor, angles: Tensor) -> Tensor:
    """Snow with given flake noise ``(N, H, W)`` (mean ``p.loc``) and blur angles ``(N,)``.

    The flake layer is zoomed (without trimming the overhang), thresholded, clipped, blurred
    along the angle, rounded to 8 bits, cropped to the image from the top-left (as
    imagecorruptions), and added to the image twice, the second time rotated by 180 degrees.
    """
    h, w = x.shape[-2:]
    layer = zoom_centre(flakes.unsqueeze(1), p.zoom)
    layer = torch.where(layer < p.threshold, torch.zeros_like(layer), layer).clamp(0, 1)
    layer = line_blur(layer, p.radius, p.sigma, angles)
    layer = (torch.round(layer * 255) / 255)[..., :h, :w]
    x = p.blend * x + (1 - p.blend) * torch.maximum(x, luminance(x) * 1.5 + 0.5)
    return x + layer + layer.flip(-2, -1)


def frost(x: Tensor, p: Frost, gen: torch.Generator) -> Tensor:
    """Blend the image with a procedural ice texture (see ``corruptions_frost``)."""
    n, c, h, w = x.shape
    texture = frost_texture(n, c, h, w, p.texture_scale, gen).to(x.dtype)
    return frost_given(x, p, texture)


def frost_given(x: Tensor, p: Frost, texture: Tensor) -> Tensor:
    """``image_weight * x + frost_weight * texture``."""
    return p.image_weight * x + p.frost_weight * texture


def plasma_fractal(
    n: int, size: int, decay: float, uniform: UniformDraw, device: torch.device | str = "cpu"
) -> Tensor:
    """Diamond-square plasma fractal ``(N, size, size)`` in [0, 1], float64.

    ``size`` is a power of two. Each midpoint is the mean of its four neighbours (periodic)
    plus ``wibble * U(-wibble, wibble)``; ``wibble`` starts at 100 and is divided by ``decay``
    at every halving of the step. ``uniform(shape, bound)`` draws ``U(-bound, bound)`` float64.
    """
    grid = torch.zeros((n, size, size), dtype=torch.float64, device=device)
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        corner = grid[:, 0::step, 0::step]
        square = corner + corner.roll(-1, 1)
        square = square + square.roll(-1, 2)
        grid[:, half::step, half::step] = square / 4 + wibble * uniform(square.shape, wibble)
        centre = grid[:, half::step, half::step]
        corner = grid[:, 0::step, 0::step]
        left = (centre + centre.roll(1, 1)) + (corner + corner.roll(-1, 2))
        grid[:, 0::step, half::step] = left / 4 + wibble * uniform(left.shape, wibble)
        top = (centre + centre.roll(1, 2)) + (corner + corner.roll(-1, 1))
        grid[:, half::step, 0::step] = top / 4 + wibble * uniform(top.shape, wibble)
        step //= 2
        wibble /= decay
    grid = grid - grid.amin(dim=(1, 2), keepdim=True)
    return grid / grid.amax(dim=(1, 2), keepdim=True)


def fog(x: Tensor, p: Fog, gen: torch.Generator) -> Tensor:
    """Add a plasma fractal (side: the next power of two of the image side) and rescale."""
    n, _, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()

    def uniform(shape: tuple[int, ...], bound: float) -> Tensor:
        u = torch.rand(shape, generator=gen, device=x.device, dtype=torch.float64)
        return (2 * u - 1) * bound

    return fog_given(x, p, plasma_fractal(n, size, p.decay, uniform, x.device))


def fog_given(x: Tensor, p: Fog, plasma: Tensor) -> Tensor:
    """Fog with a given plasma ``(N, S, S)``, ``S >= H, W``: ``(x + a*plasma) * m / (m + a)``.

    ``m`` is the image's maximum over all channels and pixels, ``a`` the fog amount.
    """
    h, w = x.shape[-2:]
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    fogged = x + p.amount * plasma[:, None, :h, :w].to(x.dtype)
    return fogged * peak / (peak + p.amount)
