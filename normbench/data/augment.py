"""On-device augmentation for datasets held in memory: random crop with zero padding and
random horizontal flip, vectorized over the batch.

A batch is padded once, then each example's crop (and, when flipped, its mirrored crop) is
read with one ``gather`` whose per-pixel indices carry the per-example offsets; no
per-example Python loop. Example ``i`` of a batch becomes::

    crop_i = pad(x_i, p)[:, dy_i : dy_i + H, dx_i : dx_i + W]      dy_i, dx_i ~ U{0, ..., 2p}
    out_i  = crop_i.flip(-1) if flip_i else crop_i                  flip_i ~ Bernoulli(1/2)

Padding is with zeros of the stored tensor: when the dataset is standardized, that is the
per-channel training mean. The random parameters are drawn by the caller from a generator it
controls (the loader draws one per example slot of each epoch from (seed, epoch)), so a
resumed run sees exactly the same augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from normbench.errors import ConfigError


class CropFlipParams(NamedTuple):
    """Per-example random parameters: row and column offsets into the padded image, flip mask."""

    dy: torch.Tensor  # int64 (B,), in 0..2p
    dx: torch.Tensor  # int64 (B,), in 0..2p
    flip: torch.Tensor  # bool (B,)

    def slice(self, start: int, stop: int) -> CropFlipParams:
        """The parameters of examples ``start:stop``."""
        return CropFlipParams(self.dy[start:stop], self.dx[start:stop], self.flip[start:stop])


@dataclass(frozen=True)
class RandomCropFlip:
    """Random ``padding``-padded crop to the input size, then a random horizontal flip.

    Attributes:
        padding: zero padding on each side before cropping (0: no crop).
        flip: mirror each example left-right with probability 1/2.
    """

    padding: int = 4
    flip: bool = True

    def draw(
        self, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> CropFlipParams:
        """Draw parameters for ``n`` examples from ``generator`` (CPU) and put them on ``device``."""
        span = 2 * self.padding + 1
        dy = torch.randint(span, (n,), generator=generator)
        dx = torch.randint(span, (n,), generator=generator)
        if self.flip:
            flip = torch.rand(n, generator=generator) < 0.5
        else:
            flip = torch.zeros(n, dtype=torch.bool)
        return CropFlipParams(*(t.to(device, non_blocking=True) for t in (dy, dx, flip)))

    def apply(self, x: torch.Tensor, params: CropFlipParams) -> torch.Tensor:
        """Augment a batch ``x`` (B, C, H, W) with ``params`` (on ``x``'s device)."""
        if x.ndim != 4:
            raise ConfigError(
                f"crop/flip augmentation needs image batches (B, C, H, W), got shape {tuple(x.shape)}; "
                "set dataset.augment=false."
            )
        b, c, h, w = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p)) if p else x
        j = torch.arange(w, device=x.device)
        cols = torch.where(params.flip[:, None], w - 1 - j, j) + params.dx[:, None]  # (B, W)
        rows = params.dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
        # flat index of each output pixel in its padded image, shared by the channels
        flat = (rows[:, :, None] * (w + 2 * p) + cols[:, None, :]).reshape(b, 1, h * w)
        out = padded.reshape(b, c, -1).gather(2, flat.expand(b, c, h * w))
        return out.reshape(b, c, h, w)


def augmentation_from_config(cfg: DictConfig, in_shape: tuple[int, ...]) -> RandomCropFlip | None:
    """The augmentation a dataset config asks for (``augment``, ``crop_padding``, ``flip``), or None.

    Raises:
        ConfigError: a negative padding, one as large as the image, or augmentation of
            non-image examples.
    """
    if not cfg.get("augment", False):
        return None
    padding = cfg.get("crop_padding", 0)
    flip = bool(cfg.get("flip", False))
    if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
        raise ConfigError(f"dataset.crop_padding must be an integer >= 0, got {padding!r}.")
    if padding == 0 and not flip:
        return None
    if len(in_shape) != 3:
        raise ConfigError(
            f"dataset.augment=true needs image examples (C, H, W), but {cfg.name} gives shape "
            f"{tuple(in_shape)}; set dataset.augment=false."
        )
    if padding >= min(in_shape[1:]):
        raise ConfigError(
            f"dataset.crop_padding={padding} is not smaller than the images ({in_shape[1]}x{in_shape[2]}); "
            "lower it (4 is the usual value for 32x32)."
        )
    return RandomCropFlip(padding=padding, flip=flip)
