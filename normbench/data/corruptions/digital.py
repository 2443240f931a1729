"""Digital corruptions: brightness, contrast, saturate, pixelate and JPEG compression.

Each takes a float batch ``(N, C, H, W)`` in [0, 1], its severity's parameter and a
``torch.Generator`` (unused: these corruptions are deterministic).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.io import decode_jpeg, encode_jpeg

from normbench.data.corruptions.color import hsv_to_rgb, rgb_to_hsv
from normbench.data.corruptions.params import Saturation


def brightness(x: Tensor, shift: float, gen: torch.Generator) -> Tensor:
    """Add ``shift`` to the HSV value channel (clipped); on grey images, to the grey level."""
    if x.shape[1] == 1:
        return (x + shift).clamp(0, 1)
    hsv = rgb_to_hsv(x)
    hsv = torch.stack((hsv[:, 0], hsv[:, 1], (hsv[:, 2] + shift).clamp(0, 1)), 1)
    return hsv_to_rgb(hsv)


def contrast(x: Tensor, factor: float, gen: torch.Generator) -> Tensor:
    """Scale each channel's deviation from its spatial mean by ``factor``."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * factor + mean


def saturate(x: Tensor, p: Saturation, gen: torch.Generator) -> Tensor:
    """Map the HSV saturation to ``clip(s * scale + shift)``; grey images are left unchanged.

    A grey image has no hue: the original, given one, converts it to RGB, saturates towards
    red and keeps the first channel, which is the unchanged value channel. So: identity.
    """
    if x.shape[1] == 1:
        return x.clone()
    hsv = rgb_to_hsv(x)
    sat = (hsv[:, 1] * p.scale + p.shift).clamp(0, 1)
    return hsv_to_rgb(torch.stack((hsv[:, 0], sat, hsv[:, 2]), 1))


def _box_down(n_in: int, n_out: int) -> Tensor:
    """PIL's BOX reduction as a ``(n_out, n_in)`` matrix: mean of the pixels whose centres fall
    in each output pixel's footprint ``(-1/2, 1/2]`` (in output pixels)."""
    scale = n_in / n_out
    centre = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale
    arg = (torch.arange(n_in, dtype=torch.float64)[None] - centre[:, None] + 0.5) * (1.0 / scale)
    weights = ((arg > -0.5) & (arg <= 0.5)).to(torch.float64)
    return weights / weights.sum(1, keepdim=True)


def _nearest_up(n_small: int, n_out: int) -> Tensor:
    """Nearest-neighbour enlargement as a ``(n_out, n_small)`` 0/1 matrix (PIL NEAREST)."""
    src = ((2 * torch.arange(n_out) + 1) * n_small) // (2 * n_out)
    return torch.nn.functional.one_hot(src, n_small).to(torch.float64)


def pixelate(x: Tensor, factor: float, gen: torch.Generator) -> Tensor:
    """Box-reduce to ``int(side * factor)`` pixels, then enlarge back by nearest neighbour."""
    h, w = x.shape[-2:]
    sh, sw = max(int(h * factor), 1), max(int(w * factor), 1)
    rows = (_nearest_up(sh, h) @ _box_down(h, sh)).to(device=x.device, dtype=x.dtype)
    cols = (_nearest_up(sw, w) @ _box_down(w, sw)).to(device=x.device, dtype=x.dtype)
    return rows @ x @ cols.T


def jpeg_compression(x: Tensor, quality: int, gen: torch.Generator) -> Tensor:
    """Round to 8 bits, encode as JPEG at ``quality`` and decode (libjpeg via torchvision, CPU).

    Grey batches are encoded as greyscale JPEGs.
    """
    pixels = (x.detach() * 255).round().clamp(0, 255).to("cpu", torch.uint8)
    encoded = encode_jpeg([img.contiguous() for img in pixels], quality=quality)
    decoded = torch.stack(decode_jpeg(encoded))
    return decoded.to(device=x.device, dtype=x.dtype) / 255
