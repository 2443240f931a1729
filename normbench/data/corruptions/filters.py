"""Batched image filters the corruptions share: borders, Gaussian and box filters, resampling.

Every function takes a float batch ``(N, C, H, W)`` and works on its device. Border modes name
the extension of the image beyond its edge, in scipy / OpenCV terms:

- ``"replicate"``: ``a a | a b c | c c`` (scipy ``nearest``, OpenCV ``BORDER_REPLICATE``);
- ``"symmetric"``: ``b a | a b c | c b`` (scipy ``reflect``);
- ``"reflect101"``: ``c b | a b c | b a`` (OpenCV ``BORDER_REFLECT_101``, torch ``reflect``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Border = Literal["replicate", "symmetric", "reflect101"]


def border_index(i: Tensor, n: int, mode: Border) -> Tensor:
    """Map integer positions (any range) onto ``[0, n)`` under a border mode."""
    if mode == "replicate" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "symmetric":
        i = torch.remainder(i, 2 * n)
        return torch.where(i >= n, 2 * n - 1 - i, i)
    period = 2 * n - 2
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def pad2d(x: Tensor, top: int, bottom: int, left: int, right: int, mode: Border) -> Tensor:
    """Pad the last two dimensions by any amount under a border mode."""
    h, w = x.shape[-2:]
    rows = border_index(torch.arange(-top, h + bottom, device=x.device), h, mode)
    cols = border_index(torch.arange(-left, w + right, device=x.device), w, mode)
    return x.index_select(-2, rows).index_select(-1, cols)


def correlate2d(x: Tensor, kernel: Tensor, mode: Border) -> Tensor:
    """Correlate every channel with a centred 2-D kernel, output the input's size (cv2.filter2D)."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    xp = pad2d(
        x.reshape(n * c, 1, h, w), kh // 2, kh - 1 - kh // 2, kw // 2, kw - 1 - kw // 2, mode
    )
    out = F.conv2d(xp, kernel.to(device=x.device, dtype=x.dtype).view(1, 1, kh, kw))
    return out.reshape(n, c, h, w)


def gaussian_kernel1d(sigma: float, truncate: float) -> Tensor:
    """scipy's Gaussian taps: radius ``int(truncate * sigma + 0.5)``, normalized, float64."""
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_filter(
    x: Tensor,
    sigma: float | tuple[float, float],
    mode: Border = "replicate",
    truncate: float = 4.0,
) -> Tensor:
    """Separable Gaussian filter over H and W, as scipy.ndimage.gaussian_filter (per channel).

    Args:
        x: batch ``(N, C, H, W)``.
        sigma: one sigma, or ``(sigma_rows, sigma_cols)``; a sigma ``<= 1e-15`` skips its axis.
        mode: border mode (skimage's ``gaussian`` default is ``"replicate"``).
        truncate: kernel radius in sigmas.
    """
    sy, sx = (sigma, sigma) if isinstance(sigma, int | float) else sigma
    n, c, h, w = x.shape
    out = x.reshape(n * c, 1, h, w)
    if sy > 1e-15:
        k = gaussian_kernel1d(sy, truncate).to(device=x.device, dtype=x.dtype)
        r = (k.numel() - 1) // 2
        out = F.conv2d(pad2d(out, r, r, 0, 0, mode), k.view(1, 1, -1, 1))
    if sx > 1e-15:
        k = gaussian_kernel1d(sx, truncate).to(device=x.device, dtype=x.dtype)
        r = (k.numel() - 1) // 2
        out = F.conv2d(pad2d(out, 0, 0, r, r, mode), k.view(1, 1, 1, -1))
    return out.reshape(n, c, h, w)


def box_blur3(x: Tensor) -> Tensor:
    """cv2.blur with a normalized 3x3 box and OpenCV's default border (reflect101)."""
    kernel = torch.full((3, 3), 1.0 / 9.0, dtype=torch.float64, device=x.device)
    return correlate2d(x, kernel, "reflect101")


def sample_bilinear(x: Tensor, rows: Tensor, cols: Tensor, mode: Border) -> Tensor:
    """Bilinear interpolation at per-image coordinates, the image extended by a border mode.

    Args:
        x: batch ``(N, C, H, W)``.
        rows: row coordinates ``(N, H', W')`` in pixels (0 = centre of the first row).
        cols: column coordinates, same shape.

    Returns:
        ``(N, C, H', W')``; equals scipy's ``map_coordinates(order=1)`` for the same mode.
    """
    n, c, h, w = x.shape
    r0f, c0f = rows.floor(), cols.floor()
    fr, fc = (rows - r0f).to(x.dtype), (cols - c0f).to(x.dtype)
    r0, c0 = r0f.long(), c0f.long()
    flat = x.reshape(n, c, h * w)
    out = torch.zeros((n, c) + rows.shape[1:], dtype=x.dtype, device=x.device)
    for dr, wr in ((0, 1 - fr), (1, fr)):
        ri = border_index(r0 + dr, h, mode)
        for dc, wc in ((0, 1 - fc), (1, fc)):
            ci = border_index(c0 + dc, w, mode)
            idx = (ri * w + ci).reshape(n, 1, -1).expand(n, c, -1)
            out += flat.gather(2, idx).reshape(out.shape) * (wr * wc).unsqueeze(1)
    return out


def zoom_centre(x: Tensor, factor: float) -> Tensor:
    """The central ``ceil(side / factor)`` window resized to ``round(window * factor)``.

    Corner-aligned bilinear interpolation, as scipy's ``zoom(order=1)``; the result may overhang
    the image by a pixel or two.
    """
    h, w = x.shape[-2:]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top : top + ch, left : left + cw]
    size = (round(ch * factor), round(cw * factor))
    return F.interpolate(crop, size=size, mode="bilinear", align_corners=True)


def clipped_zoom(x: Tensor, factor: float) -> Tensor:
    """Zoom into the centre by ``factor``, keeping the size: ``zoom_centre``, centre window."""
    h, w = x.shape[-2:]
    zoomed = zoom_centre(x, factor)
    top, left = (zoomed.shape[-2] - h) // 2, (zoomed.shape[-1] - w) // 2
    return zoomed[..., top : top + h, left : left + w]


def shift_replicate(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Translate each image by integer ``(dy[n], dx[n])`` pixels, repeating the edge pixels."""
    n, c, h, w = x.shape
    rows = (torch.arange(h, device=x.device)[None] - dy[:, None]).clamp(0, h - 1)
    cols = (torch.arange(w, device=x.device)[None] - dx[:, None]).clamp(0, w - 1)
    out = x.gather(2, rows[:, None, :, None].expand(n, c, h, w))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def line_blur(x: Tensor, radius: int, sigma: float, angles: Tensor) -> Tensor:
    """ImageMagick's motion blur: a one-sided Gaussian-weighted line kernel at a per-image angle.

    The kernel has ``2 * radius + 1`` taps ``exp(-i^2 / (2 sigma^2))`` (normalized); tap ``i``
    adds the image shifted ``i`` pixels along the angle, rounded to the pixel grid, with edge
    pixels repeated. Taps whose shift leaves the image are dropped, as in imagecorruptions.

    Args:
        x: batch ``(N, C, H, W)``.
        radius: kernel radius in pixels.
        sigma: Gaussian sigma along the line, in taps.
        angles: ``(N,)`` angles in degrees.
    """
    h, w = x.shape[-2:]
    width = 2 * radius + 1
    taps = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(taps**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    rad = torch.deg2rad(angles.detach().to("cpu", torch.float64))
    py, px = width * torch.sin(rad), width * torch.cos(rad)
    hyp = torch.hypot(py, px)
    dy = -torch.ceil(taps[:, None] * py[None] / hyp - 0.5).long()
    dx = -torch.ceil(taps[:, None] * px[None] / hyp - 0.5).long()
    inside = (dy.abs() < h) & (dx.abs() < w)
    alive = torch.cumprod(inside.long(), dim=0).to(torch.float64)
    tap_weights = (weights[:, None] * alive).to(device=x.device, dtype=x.dtype)
    dy, dx = dy.to(x.device), dx.to(x.device)
    out = torch.zeros_like(x)
    for i in range(width):
        out += tap_weights[i].view(-1, 1, 1, 1) * shift_replicate(x, dy[i], dx[i])
    return out
