"""On-device crop + flip against a per-example formula; determinism and exact resume of the loader."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from normbench.data.augment import CropFlipParams, RandomCropFlip, augmentation_from_config
from normbench.data.datasets import load_dataset
from normbench.data.memory import InMemoryLoader
from normbench.errors import ConfigError


def reference(x: torch.Tensor, p: int, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """One example: zero-pad by p, take the H x W window at (dy, dx), mirror it if asked."""
    c, h, w = x.shape
    padded = torch.zeros(c, h + 2 * p, w + 2 * p, dtype=x.dtype)
    padded[:, p : p + h, p : p + w] = x
    crop = padded[:, dy : dy + h, dx : dx + w]
    return crop.flip(-1) if flip else crop


@pytest.mark.parametrize(("padding", "flip"), [(4, True), (2, False), (0, True)])
def test_apply_equals_the_formula(padding, flip):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 10, 12, dtype=torch.float64, generator=gen)
    aug = RandomCropFlip(padding=padding, flip=flip)
    params = aug.draw(64, gen)
    # the extreme offsets too
    params = CropFlipParams(
        torch.cat([params.dy[:-2], torch.tensor([0, 2 * padding])]),
        torch.cat([params.dx[:-2], torch.tensor([2 * padding, 0])]),
        params.flip,
    )
    out = aug.apply(x, params)
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(64):
        expected = reference(
            x[i], padding, int(params.dy[i]), int(params.dx[i]), bool(params.flip[i])
        )
        assert torch.equal(out[i], expected), i


def test_centre_offset_without_flip_is_the_identity():
    x = torch.randn(5, 2, 8, 8)
    params = CropFlipParams(
        torch.full((5,), 4), torch.full((5,), 4), torch.zeros(5, dtype=torch.bool)
    )
    assert torch.equal(RandomCropFlip(4, True).apply(x, params), x)
    flipped = CropFlipParams(params.dy, params.dx, torch.ones(5, dtype=torch.bool))
    assert torch.equal(RandomCropFlip(4, True).apply(x, flipped), x.flip(-1))


def test_drawn_offsets_and_flips_are_uniform():
    n, p = 40000, 4
    params = RandomCropFlip(p, True).draw(n, torch.Generator().manual_seed(1))
    for offsets in (params.dy, params.dx):
        counts = torch.bincount(offsets, minlength=2 * p + 1)
        assert len(counts) == 2 * p + 1 and counts.min() > 0
        # each of the 9 offsets has probability 1/9: counts within 5 sigma of n/9
        sigma = (n * (1 / 9) * (8 / 9)) ** 0.5
        assert (counts.double() - n / 9).abs().max() < 5 * sigma
    assert abs(params.flip.double().mean().item() - 0.5) < 5 * (0.25 / n) ** 0.5
    assert abs(torch.corrcoef(torch.stack([params.dy, params.dx]).double())[0, 1].item()) < 0.03
    assert not RandomCropFlip(p, flip=False).draw(100, torch.Generator()).flip.any()


def _images(n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    return x, torch.arange(n)


def _matches_some_crop(out: torch.Tensor, original: torch.Tensor, p: int) -> bool:
    return any(
        torch.equal(out, reference(original, p, dy, dx, f))
        for dy in range(2 * p + 1)
        for dx in range(2 * p + 1)
        for f in (False, True)
    )


def test_loader_batches_are_crops_of_the_right_examples():
    x, y = _images()
    loader = InMemoryLoader(x, y, batch_size=8, seed=0, augment=RandomCropFlip(2, True))
    same = 0
    for _ in range(6):  # across an epoch boundary (3 batches per epoch)
        xb, yb = loader.next()
        for out, label in zip(xb, yb, strict=True):
            assert _matches_some_crop(out, x[label], 2)
            same += torch.equal(out, x[label])
    assert same < 48  # most examples are moved or mirrored


def test_loader_is_deterministic_and_resumes_exactly():
    x, y = _images()
    aug = RandomCropFlip(2, True)
    a = InMemoryLoader(x, y, batch_size=8, seed=5, augment=aug)
    b = InMemoryLoader(x, y, batch_size=8, seed=5, augment=aug)
    for _ in range(4):
        (xa, ya), (xb, yb) = a.next(), b.next()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    state = a.state_dict()
    expected = [a.next() for _ in range(5)]
    resumed = InMemoryLoader(x, y, batch_size=8, seed=5, augment=aug)
    resumed.load_state_dict(state)
    for xe, ye in expected:
        xr, yr = resumed.next()
        assert torch.equal(xe, xr) and torch.equal(ye, yr)
    other = InMemoryLoader(x, y, batch_size=8, seed=6, augment=aug)
    assert not torch.equal(other.next()[0], InMemoryLoader(x, y, 8, 5, aug).next()[0])


def test_augmentation_keeps_the_shuffle_of_the_plain_loader():
    x, y = _images()
    plain = InMemoryLoader(x, y, batch_size=8, seed=3)
    augmented = InMemoryLoader(x, y, batch_size=8, seed=3, augment=RandomCropFlip(2, True))
    for _ in range(5):
        assert torch.equal(plain.next()[1], augmented.next()[1])


def _cfg(**kw):
    base = {
        "name": "synthetic",
        "root": "unused",
        "batch_size": 16,
        "val_split": "test",
        "holdout_size": 10,
        "standardize": False,
        "download": False,
        "num_train": 64,
        "num_val": 32,
        "num_classes": 3,
        "image_shape": [3, 8, 8],
    }
    return OmegaConf.create({**base, **kw})


def test_config_turns_augmentation_on_and_validation_is_never_augmented():
    splits = load_dataset(_cfg(augment=True, crop_padding=2, flip=True), torch.device("cpu"))
    assert splits.augment == RandomCropFlip(2, True)
    val = torch.cat([xb for xb, _ in splits.val_batches(10)])
    assert torch.equal(val, splits.val_x) and torch.equal(splits.probe_inputs(5), splits.val_x[:5])
    assert (
        load_dataset(_cfg(augment=False, crop_padding=2, flip=True), torch.device("cpu")).augment
        is None
    )
    assert load_dataset(_cfg(), torch.device("cpu")).augment is None


@pytest.mark.parametrize(
    ("kw", "shape", "message"),
    [
        ({"crop_padding": -1}, (3, 8, 8), "dataset.crop_padding must be an integer >= 0"),
        ({"crop_padding": 8}, (3, 8, 8), "dataset.crop_padding=8 is not smaller than the images"),
        ({"crop_padding": 2}, (10,), "needs image examples"),
    ],
)
def test_bad_augmentation_settings_are_clear_errors(kw, shape, message):
    with pytest.raises(ConfigError, match=message):
        augmentation_from_config(
            OmegaConf.create({"name": "x", "augment": True, "flip": True, **kw}), shape
        )


@pytest.mark.gpu
def test_cuda_augmentation_equals_cpu():
    x = torch.randn(256, 3, 32, 32)
    aug = RandomCropFlip(4, True)
    params = aug.draw(256, torch.Generator().manual_seed(0))
    on_gpu = aug.apply(x.cuda(), CropFlipParams(*(t.cuda() for t in params)))
    assert torch.equal(on_gpu.cpu(), aug.apply(x, params))
