"""Elastic transform: pixels displaced by a smoothed random field (plus, for CIFAR, an affine warp).

Two methods, one per parameter set:

- ``ElasticField`` (ImageNet-C set, as imagecorruptions carries it to any size): a uniform
  field ``U(-0.005 H, 0.005 H)`` per axis, Gaussian-smoothed with sigma ``0.01 (H, W)``
  (scipy ``reflect`` border, truncate 3) and multiplied by ``alpha``, displaces every pixel;
  bilinear resampling with the ``symmetric`` (scipy ``reflect``) border.
- ``ElasticAffine`` (CIFAR-10-C set, ``make_cifar_c.py``): three reference points around the
  centre are jittered by ``U(-affine, affine)`` and the image warped by the affine map they
  define (bilinear, OpenCV reflect101 border); then a field ``U(-1, 1)`` smoothed with
  ``sigma`` and scaled by ``alpha`` displaces the pixels as above. The published lengths are
  multiples of the side (``IMSIZE = 32``); here of ``min(H, W)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from normbench.data.corruptions.filters import gaussian_filter, sample_bilinear
from normbench.data.corruptions.params import ElasticAffine, ElasticField


def elastic_transform(x: Tensor, p: ElasticField | ElasticAffine, gen: torch.Generator) -> Tensor:
    """Draw the random field (and affine jitter) and apply the set's method."""
    n, _, h, w = x.shape
    dev = x.device
    if isinstance(p, ElasticAffine):
        jitter = torch.rand((n, 3, 2), generator=gen, device=dev, dtype=torch.float64) * 2 - 1
    field = torch.rand((2, n, h, w), generator=gen, device=dev, dtype=x.dtype) * 2 - 1
    if isinstance(p, ElasticAffine):
        return elastic_affine_given(x, p, jitter, field[0], field[1])
    return elastic_field_given(x, p, field[0], field[1])


def elastic_field_given(x: Tensor, p: ElasticField, ux: Tensor, uy: Tensor) -> Tensor:
    """imagecorruptions' elastic transform with given uniform fields ``U(-1, 1)`` ``(N, H, W)``.

    ``ux`` displaces columns, ``uy`` rows.
    """
    h, w = x.shape[-2:]
    bound = p.max_frac * h
    sigma = (p.sigma_frac * h, p.sigma_frac * w)
    dx = _smooth(ux * bound, sigma) * p.alpha
    dy = _smooth(uy * bound, sigma) * p.alpha
    return _displace(x, dx, dy)


def elastic_affine_given(
    x: Tensor, p: ElasticAffine, jitter: Tensor, ux: Tensor, uy: Tensor
) -> Tensor:
    """CIFAR-10-C's elastic transform with given draws, all ``U(-1, 1)``.

    Args:
        x: batch ``(N, C, H, W)``.
        p: the severity's parameters (multiples of ``min(H, W)``).
        jitter: ``(N, 3, 2)`` jitter of the three reference points.
        ux, uy: ``(N, H, W)`` fields displacing columns and rows.
    """
    h, w = x.shape[-2:]
    side = min(h, w)
    warped = _affine_warp(x, _affine_matrices(h, w, jitter * (p.affine * side)))
    dx = _smooth(ux, p.sigma * side) * (p.alpha * side)
    dy = _smooth(uy, p.sigma * side) * (p.alpha * side)
    return _displace(warped, dx, dy)


def _smooth(field: Tensor, sigma: float | tuple[float, float]) -> Tensor:
    return gaussian_filter(field.unsqueeze(1), sigma, mode="symmetric", truncate=3.0)[:, 0]


def _displace(x: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    h, w = x.shape[-2:]
    rows = torch.arange(h, device=x.device, dtype=dy.dtype).view(1, h, 1) + dy
    cols = torch.arange(w, device=x.device, dtype=dx.dtype).view(1, 1, w) + dx
    return sample_bilinear(x, rows, cols, "symmetric")


def _affine_matrices(h: int, w: int, moves: Tensor) -> Tensor:
    """Forward affine maps ``(N, 3, 3)`` taking the reference points to the moved ones.

    The original builds its points from (row, column) pairs and OpenCV reads them as (x, y);
    on square images this is immaterial, and it is kept as is.
    """
    centre_a, centre_b = float(h // 2), float(w // 2)
    half = min(h, w) // 3
    ref = torch.tensor(
        [
            [centre_a + half, centre_b + half],
            [centre_a + half, centre_b - half],
            [centre_a - half, centre_b - half],
        ],
        dtype=torch.float64,
        device=moves.device,
    )
    homog = torch.cat((ref, torch.ones(3, 1, dtype=torch.float64, device=moves.device)), 1)
    forward_t = torch.linalg.solve(homog.expand(moves.shape[0], 3, 3), ref + moves)
    last = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64, device=moves.device)
    return torch.cat((forward_t.transpose(1, 2), last.expand(moves.shape[0], 1, 3)), 1)


def _affine_warp(x: Tensor, forward: Tensor) -> Tensor:
    """``dst(p) = src(forward^-1 p)`` with bilinear interpolation, reflect101 border."""
    h, w = x.shape[-2:]
    inverse = torch.linalg.inv(forward).to(x.dtype)
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)

    def coord(row: int) -> Tensor:
        a = inverse[:, row]
        return a[:, 0, None, None] * xs + a[:, 1, None, None] * ys + a[:, 2, None, None]

    return sample_bilinear(x, coord(1), coord(0), "reflect101")
