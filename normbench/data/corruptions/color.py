"""Colour-space helpers for the corruptions: luminance and HSV, batched on ``(N, C, H, W)``."""

from __future__ import annotations

import torch
from torch import Tensor

# ITU-R BT.601 luma weights, as OpenCV's COLOR_RGB2GRAY.
LUMA = (0.299, 0.587, 0.114)


def luminance(x: Tensor) -> Tensor:
    """Grey level ``(N, 1, H, W)`` of an RGB batch; a grey batch is returned as it is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def colour(rgb: tuple[float, float, float], channels: int, like: Tensor) -> Tensor:
    """An RGB colour as a ``(1, C, 1, 1)`` tensor; for one channel, its luminance."""
    values = [sum(w * v for w, v in zip(LUMA, rgb, strict=True))] if channels == 1 else list(rgb)
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB ``(N, 3, H, W)`` in [0, 1] to HSV in [0, 1], following skimage.color.rgb2hsv."""
    r, g, b = x.unbind(1)
    v = x.amax(1)
    delta = v - x.amin(1)
    flat = delta == 0
    safe_delta = torch.where(flat, torch.ones_like(delta), delta)
    s = torch.where(flat, torch.zeros_like(v), delta / torch.where(v == 0, torch.ones_like(v), v))
    # skimage assigns red, then green, then blue: the last channel equal to the max wins.
    h = (g - b) / safe_delta
    h = torch.where(g == v, 2.0 + (b - r) / safe_delta, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe_delta, h)
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(flat, torch.zeros_like(h), h)
    return torch.stack((h, s, v), 1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """HSV ``(N, 3, H, W)`` to RGB, following skimage.color.hsv2rgb."""
    h, s, v = hsv.unbind(1)
    h6 = h * 6.0
    sector = torch.floor(h6)
    f = h6 - sector
    sector = torch.remainder(sector, 6).long()
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    table = torch.stack(
        (
            torch.stack((v, t, p), 1),
            torch.stack((q, v, p), 1),
            torch.stack((p, v, t), 1),
            torch.stack((p, q, v), 1),
            torch.stack((t, p, v), 1),
            torch.stack((v, p, q), 1),
        ),
        0,
    )
    index = sector.unsqueeze(0).unsqueeze(2).expand(1, -1, 3, -1, -1)
    return table.gather(0, index).squeeze(0)
