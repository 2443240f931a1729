"""8-bit image operations for spatter, batched in torch, following OpenCV's definitions.

Images are float tensors ``(N, 1, H, W)`` holding integer grey levels 0..255.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from normbench.data.corruptions.filters import pad2d

_TG22 = 13573  # tan(22.5 deg) in OpenCV's Canny fixed point (15 fractional bits)
_FIX = 1 << 16  # OpenCV's distance-transform fixed point
# OpenCV's DIST_L2 5x5 chamfer mask: axial 1, diagonal 1.4, knight's move 2.1969 (fixed point).
_CHAMFER = tuple(
    [(dy, dx, round(1.0 * _FIX) / _FIX) for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
    + [(dy, dx, round(1.4 * _FIX) / _FIX) for dy in (1, -1) for dx in (1, -1)]
    + [
        (dy, dx, round(2.1969 * _FIX) / _FIX)
        for dy, dx in ((1, 2), (2, 1), (-1, 2), (-2, 1), (1, -2), (2, -1), (-1, -2), (-2, -1))
    ]
)


def canny(img: Tensor, low: float, high: float) -> Tensor:
    """Canny edges (cv2.Canny, 3x3 Sobel, L1 gradient norm): a boolean ``(N, 1, H, W)``.

    Sobel gradients with repeated edges; non-maximum suppression in four directions (OpenCV's
    sector tests and tie rules); hysteresis keeps candidates (norm > low) 8-connected to a
    strong one (norm > high).
    """
    p = pad2d(img, 1, 1, 1, 1, "replicate")
    gx = p[..., :, 2:] - p[..., :, :-2]
    dx = gx[..., :-2, :] + 2 * gx[..., 1:-1, :] + gx[..., 2:, :]
    gy = p[..., 2:, :] - p[..., :-2, :]
    dy = gy[..., :, :-2] + 2 * gy[..., :, 1:-1] + gy[..., :, 2:]
    mag = dx.abs() + dy.abs()
    m = F.pad(mag, (1, 1, 1, 1))
    h, w = img.shape[-2:]

    def nb(oy: int, ox: int) -> Tensor:
        return m[..., 1 + oy : 1 + oy + h, 1 + ox : 1 + ox + w]

    ax = dx.abs().long()
    ay = dy.abs().long() << 15
    tg22x = ax * _TG22
    tg67x = tg22x + (ax << 16)
    horizontal = (mag > nb(0, -1)) & (mag >= nb(0, 1))
    vertical = (mag > nb(-1, 0)) & (mag >= nb(1, 0))
    opposite = (dx < 0) ^ (dy < 0)
    diagonal = torch.where(
        opposite,
        (mag > nb(-1, 1)) & (mag > nb(1, -1)),
        (mag > nb(-1, -1)) & (mag > nb(1, 1)),
    )
    peak = torch.where(ay < tg22x, horizontal, torch.where(ay > tg67x, vertical, diagonal))
    candidate = (mag > int(low)) & peak
    edges = candidate & (mag > int(high))
    while True:
        grown = candidate & (F.max_pool2d(edges.to(img.dtype), 3, 1, 1) > 0)
        if torch.equal(grown, edges):
            return edges
        edges = grown


def chamfer_distance(zero: Tensor, cap: float) -> Tensor:
    """Distance to the nearest ``True`` pixel of ``zero`` under OpenCV's DIST_L2 5x5 mask.

    Exact up to ``cap`` (larger distances are returned as ``cap``); pixels outside the image
    are not zeros. Computed by min-plus relaxation, at most ``cap + 1`` rounds.
    """
    h, w = zero.shape[-2:]
    far = float(cap) + 10.0
    dist = torch.where(zero, 0.0, far).to(torch.float32)
    for _ in range(int(cap) + 1):
        padded = F.pad(dist, (2, 2, 2, 2), value=far)
        relaxed = dist
        for dy, dx, cost in _CHAMFER:
            shifted = padded[..., 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]
            relaxed = torch.minimum(relaxed, shifted + cost)
        if torch.equal(relaxed, dist):
            break
        dist = relaxed
    return dist.clamp(max=cap)


def equalize_hist(img: Tensor) -> Tensor:
    """cv2.equalizeHist per image: the grey-level CDF (from the first used level) stretched to
    0..255 and rounded; a constant image stays constant."""
    n = img.shape[0]
    flat = img.reshape(n, -1).long().clamp(0, 255)
    offsets = 256 * torch.arange(n, device=img.device).unsqueeze(1)
    hist = torch.bincount((flat + offsets).reshape(-1), minlength=256 * n).reshape(n, 256)
    total = flat.shape[1]
    first = (hist > 0).long().argmax(1, keepdim=True)
    first_count = hist.gather(1, first)
    cum = (hist.cumsum(1) - first_count).to(torch.float32)
    scale = 255.0 / (total - first_count).clamp_min(1).to(torch.float32)
    lut = torch.round(cum * scale).clamp(0, 255)
    levels = torch.arange(256, device=img.device).unsqueeze(0)
    lut = torch.where(levels <= first, torch.zeros_like(lut), lut)
    lut = torch.where(first_count == total, first.to(lut.dtype).expand(-1, 256), lut)
    return lut.gather(1, flat).reshape(img.shape).to(img.dtype)
