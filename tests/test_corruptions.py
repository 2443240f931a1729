"""Oracle tests: normbench's corruptions against ``imagecorruptions`` (ImageNet-C parameters).

``imagecorruptions`` (github.com/bethgelab/imagecorruptions) carries ImageNet-C's corruption code
to any image size. It is unmaintained, so three things are adapted here, in the test only:
``pkg_resources`` (gone from current setuptools) is stubbed for its import, scikit-image's
``gaussian(multichannel=True)`` is translated to ``channel_axis=-1``, and numpy's removed
``np.float_`` is restored for its plasma fractal.

Units: 8-bit grey levels. The oracle returns ``np.uint8(result)``, which truncates; an exact
match therefore has ``ours * 255 - theirs`` in ``[0, 1]``, and ``excess`` is the distance
outside that interval. Three kinds of comparison (see docs/corruptions.md):

- direct: deterministic corruptions, same input;
- direct given the same draws: the oracle's numpy draws are replayed (same seed, same calls)
  and fed to our ``*_given`` functions;
- statistical: mean and standard deviation of ``corrupted - clean`` over a batch, for our own
  draws against the oracle's.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from normbench.data.corruptions import SEVERITIES, corrupt, severity_parameters
from normbench.data.corruptions.blur import disk_kernel, glass_blur_given
from normbench.data.corruptions.elastic import elastic_field_given
from normbench.data.corruptions.filters import clipped_zoom, line_blur
from normbench.data.corruptions.frost import frost_texture
from normbench.data.corruptions.params import CIFAR, IMAGENET
from normbench.data.corruptions.spatter import spatter_given
from normbench.data.corruptions.weather import fog_given, frost_given, plasma_fractal, snow_given

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

SIZE = 64
SEEDS = (11, 12, 13)


def natural_images(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth colour fields, a gradient, a flat rectangle and fine texture: uint8 (N, H, W, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        base = gaussian_filter(rng.normal(size=(size, size, 3)), (size / 10, size / 10, 0))
        base = (base - base.min()) / (np.ptp(base) + 1e-9)
        img = 0.15 + 0.5 * base + 0.2 * (rng.uniform() * yy + rng.uniform() * xx)[..., None]
        r0, c0 = rng.integers(0, size // 2, 2)
        img[r0 : r0 + size // 3, c0 : c0 + size // 4] = rng.uniform(0, 1, 3)
        img += gaussian_filter(rng.normal(size=(size, size, 3)), (0.7, 0.7, 0)) * 0.05
        out.append(np.clip(img * 255, 0, 255).astype(np.uint8))
    return np.stack(out)


def to_tensor(images: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).to(dtype) / 255


def excess(ours: torch.Tensor, theirs: np.ndarray) -> np.ndarray:
    """Distance of ``ours * 255 - theirs`` outside [0, 1] (the oracle's truncation)."""
    e = ours.clamp(0, 1).double().permute(0, 2, 3, 1).numpy() * 255 - theirs
    return np.maximum(np.maximum(-e, e - 1), 0)


def _gaussian_with_multichannel(image, *args, multichannel=None, **kwargs):
    from skimage.filters import gaussian

    if multichannel:
        kwargs["channel_axis"] = -1
    return gaussian(image, *args, **kwargs)


def _resource_filename(module: str, name: str) -> str:
    return os.path.join(os.path.dirname(sys.modules[module].__file__), name)


def _seeded_from_global_rng(random_noise):
    """scikit-image's random_noise draws from a fresh generator unless given one (the oracle
    gives none): draw its seed from numpy's global RNG, which run_oracle seeds per image, so the
    oracle's impulse noise is the same on every run."""

    def wrapped(image, mode="gaussian", rng=None, clip=True, **kwargs):
        if rng is None:
            rng = np.random.default_rng(np.random.randint(2**31))
        return random_noise(image, mode=mode, rng=rng, clip=clip, **kwargs)

    return wrapped


@pytest.fixture(scope="module")
def oracle():
    """``imagecorruptions``, importable and runnable on current numpy / scikit-image."""
    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    with pytest.MonkeyPatch.context() as mp:
        if importlib.util.find_spec("pkg_resources") is None:
            stub = types.ModuleType("pkg_resources")
            stub.resource_filename = _resource_filename
            mp.setitem(sys.modules, "pkg_resources", stub)
        try:
            module = importlib.import_module("imagecorruptions")
        except ImportError:
            pytest.skip("imagecorruptions is not installed (pip install -e '.[dev]')")
        mp.setattr(module.corruptions, "gaussian", _gaussian_with_multichannel)
        util = module.corruptions.sk.util
        mp.setattr(util, "random_noise", _seeded_from_global_rng(util.random_noise))
        mp.setattr(np, "float_", np.float64, raising=False)
        state = np.random.get_state()
        yield module
        np.random.set_state(state)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return natural_images(len(SEEDS), SIZE, seed=0)


def run_oracle(oracle, name: str, severity: int, images: np.ndarray, seeds) -> np.ndarray:
    """The oracle on each image, numpy's global RNG seeded per image."""
    out = []
    for image, seed in zip(images, seeds, strict=True):
        np.random.seed(seed)
        out.append(oracle.corrupt(image, severity=severity, corruption_name=name))
    return np.stack(out).astype(np.float64)


# --- direct: deterministic corruptions -------------------------------------------------------

# Float32 rounding only: a value on an integer can land either side of it (1e-3 levels).
EXACT = 1e-3


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize(
    "name", ["brightness", "contrast", "saturate", "defocus_blur", "gaussian_blur", "zoom_blur"]
)
def test_deterministic_corruption_matches_oracle(oracle, images, name, severity):
    ours = corrupt(to_tensor(images), name, severity, seed=0, params="imagenet")
    theirs = run_oracle(oracle, name, severity, images, SEEDS)
    assert excess(ours, theirs).max() <= EXACT


@pytest.mark.parametrize("severity", SEVERITIES)
def test_jpeg_is_bit_identical_to_oracle(oracle, images, severity):
    # Both sides run libjpeg with its default (4:2:0, islow DCT) settings on the same 8 bits.
    ours = corrupt(to_tensor(images), "jpeg_compression", severity, seed=0, params="imagenet")
    theirs = run_oracle(oracle, "jpeg_compression", severity, images, SEEDS)
    diff = ours.double().permute(0, 2, 3, 1).numpy() * 255 - theirs
    assert np.abs(diff).max() <= 1e-3


@pytest.mark.parametrize("severity", SEVERITIES)
def test_pixelate_matches_oracle_up_to_pil_rounding(oracle, images, severity):
    # PIL resamples in two passes (rows, then columns), rounding each to 8 bits; the same box
    # weights in float differ from it by at most one level (checked exact with that rounding).
    ours = corrupt(to_tensor(images), "pixelate", severity, seed=0, params="imagenet")
    theirs = run_oracle(oracle, "pixelate", severity, images, SEEDS)
    diff = ours.double().permute(0, 2, 3, 1).numpy() * 255 - theirs
    assert np.abs(diff).max() <= 1 + EXACT


# --- direct given the oracle's draws ---------------------------------------------------------


def replay(seeds, draw):
    """``draw()`` after seeding numpy with each seed: the oracle's draws, in its order."""
    out = []
    for seed in seeds:
        np.random.seed(seed)
        out.append(draw())
    return out


def motion_given(x, p, seeds):
    angles = replay(seeds, lambda: np.random.uniform(-45, 45))
    return line_blur(x, p.radius, p.sigma, torch.tensor(angles))


def glass_given(x, p, seeds):
    d, (h, w) = p.max_delta, x.shape[-2:]

    def draw():
        offsets = np.zeros((p.iterations, 2, h, w), dtype=np.int64)
        for it in range(p.iterations):
            for row in range(h - d, d, -1):
                for col in range(w - d, d, -1):
                    offsets[it, :, row, col] = np.random.randint(-d, d, size=(2,))
        return offsets

    offsets = torch.from_numpy(np.stack(replay(seeds, draw), 1))
    return glass_blur_given(x, p, offsets)


def snow_given_draws(x, p, seeds):
    h, w = x.shape[-2:]

    def draw():
        flakes = np.random.normal(size=(h, w), loc=p.loc, scale=p.scale)
        return flakes, np.random.uniform(-135, -45)

    flakes, angles = zip(*replay(seeds, draw), strict=True)
    return snow_given(x, p, torch.from_numpy(np.stack(flakes)), torch.tensor(angles))


def fog_given_draws(x, p, seeds):
    size = 1 << (max(x.shape[-2:]) - 1).bit_length()

    def uniform(shape, bound):
        return torch.from_numpy(np.random.uniform(-bound, bound, shape[1:])).unsqueeze(0)

    plasma = replay(seeds, lambda: plasma_fractal(1, size, p.decay, uniform))
    return fog_given(x, p, torch.cat(plasma))


def elastic_given_draws(x, p, seeds):
    h, w = x.shape[-2:]
    bound = p.max_frac * h

    def draw():
        return [np.random.uniform(-bound, bound, (h, w)) / bound for _ in range(2)]

    ux, uy = (torch.from_numpy(np.stack(u)) for u in zip(*replay(seeds, draw), strict=True))
    return elastic_field_given(x, p, ux, uy)


def spatter_given_draws(x, p, seeds):
    h, w = x.shape[-2:]
    liquid = replay(seeds, lambda: np.random.normal(size=(h, w), loc=p.loc, scale=p.scale))
    return spatter_given(x, p, torch.from_numpy(np.stack(liquid)))


# name -> (replay function, max excess in levels, max fraction of pixels with any excess)
GIVEN_DRAWS = {
    "motion_blur": (motion_given, EXACT, 0.0),
    "glass_blur": (glass_given, EXACT, 0.0),
    "fog": (fog_given_draws, EXACT, 0.0),
    "elastic_transform": (elastic_given_draws, EXACT, 0.0),
    # The flake layer is rounded to 8 bits: a half level can round either way (1 level).
    "snow": (snow_given_draws, 1.0 + EXACT, 1e-3),
    # Water: the chamfer distance is truncated to 8 bits and equalized; OpenCV's fixed point
    # can put a pixel one level off, which the emboss filter spreads (2 levels); mud: exact.
    "spatter": (spatter_given_draws, 2.0, 1e-3),
}


def check_given_draws(oracle, images, name, severity, params="imagenet"):
    replay_fn, tol, frac = GIVEN_DRAWS[name]
    p = severity_parameters(name, severity, params)
    seeds = SEEDS[: len(images)]
    ours = replay_fn(to_tensor(images, torch.float64), p, seeds)
    theirs = run_oracle(oracle, name, severity, images, seeds)
    e = excess(ours, theirs)
    assert e.max() <= tol
    assert (e > EXACT).mean() <= frac


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", list(GIVEN_DRAWS))
def test_random_corruption_matches_oracle_given_its_draws(oracle, images, name, severity):
    check_given_draws(oracle, images, name, severity)


@pytest.mark.slow
@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", list(GIVEN_DRAWS))
def test_random_corruption_matches_oracle_at_imagenet_size(oracle, name, severity):
    check_given_draws(oracle, natural_images(2, 224, seed=1), name, severity)


@pytest.mark.slow
@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize(
    "name",
    ["brightness", "contrast", "saturate", "defocus_blur", "gaussian_blur", "zoom_blur"],
)
def test_deterministic_corruption_matches_oracle_at_imagenet_size(oracle, name, severity):
    images = natural_images(2, 224, seed=2)
    ours = corrupt(to_tensor(images), name, severity, seed=0)
    assert excess(ours, run_oracle(oracle, name, severity, images, SEEDS[:2])).max() <= EXACT


# --- statistical: our draws against the oracle's -------------------------------------------

# (tolerance on the mean difference in levels, relative tolerance on its standard deviation):
# about four times the spread between seeds measured on these 8 images of 64 x 64.
STATISTICAL = {
    "gaussian_noise": (1.5, 0.02),
    "shot_noise": (1.5, 0.02),
    "impulse_noise": (1.5, 0.02),
    "speckle_noise": (1.5, 0.02),
    "glass_blur": (0.5, 0.08),
    "motion_blur": (3.0, 0.05),
    "snow": (5.0, 0.10),
    "fog": (12.0, 0.2),
    "elastic_transform": (0.5, 0.12),
    "spatter": (4.0, 0.25),
}


@pytest.fixture(scope="module")
def batch8() -> np.ndarray:
    return natural_images(8, SIZE, seed=3)


def difference_stats(corrupted: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    d = corrupted - clean.astype(np.float64)
    return float(d.mean()), float(d.std())


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", list(STATISTICAL))
def test_random_corruption_statistics_match_oracle(oracle, batch8, name, severity):
    mean_tol, std_tol = STATISTICAL[name]
    ours = corrupt(to_tensor(batch8), name, severity, seed=severity, params="imagenet")
    ours = np.floor(ours.double().permute(0, 2, 3, 1).numpy() * 255 + 1e-6)  # as np.uint8
    theirs = run_oracle(oracle, name, severity, batch8, range(100, 108))
    (m_ours, s_ours), (m_theirs, s_theirs) = (difference_stats(a, batch8) for a in (ours, theirs))
    assert abs(m_ours - m_theirs) <= mean_tol
    assert abs(s_ours - s_theirs) <= std_tol * s_theirs


@pytest.mark.parametrize("severity", SEVERITIES)
def test_frost_statistics_match_oracle_given_its_photo(oracle, batch8, severity):
    # Our ice texture is procedural, coloured like the photo the oracle picked for each image.
    # The oracle's crops vary in brightness and clip; so the batch mean may differ by 10 levels
    # (about 12%) and the standard deviation by 20%.
    p = severity_parameters("frost", severity, "imagenet")
    seeds = range(200, 208)
    photo = torch.tensor(replay(seeds, lambda: np.random.randint(5)))
    gen = torch.Generator().manual_seed(severity)
    texture = frost_texture(len(batch8), 3, SIZE, SIZE, p.texture_scale, gen, photo)
    ours = frost_given(to_tensor(batch8, torch.float64), p, texture).clamp(0, 1)
    ours = np.floor(ours.permute(0, 2, 3, 1).numpy() * 255 + 1e-6)
    theirs = run_oracle(oracle, "frost", severity, batch8, seeds)
    (m_ours, s_ours), (m_theirs, s_theirs) = (difference_stats(a, batch8) for a in (ours, theirs))
    assert abs(m_ours - m_theirs) <= 10
    assert 0.8 <= s_ours / s_theirs <= 1.25


# --- building blocks, at the parameters of both sets -----------------------------------------


@pytest.mark.parametrize("p", sorted(set(IMAGENET["defocus_blur"] + CIFAR["defocus_blur"])))
def test_disk_kernel_matches_oracle(oracle, p):
    theirs = oracle.corruptions.disk(radius=p.radius, alias_blur=p.alias_sigma)
    np.testing.assert_allclose(disk_kernel(p.radius, p.alias_sigma).numpy(), theirs, atol=1e-7)


@pytest.mark.parametrize("p", sorted(set(IMAGENET["motion_blur"] + CIFAR["motion_blur"])))
@pytest.mark.parametrize("size", [28, 64])
def test_line_blur_matches_oracle(oracle, p, size):
    image = natural_images(1, size, seed=4)[0]
    theirs = oracle.corruptions._motion_blur(image, radius=p.radius, sigma=p.sigma, angle=-31.7)
    ours = line_blur(
        to_tensor(image[None], torch.float64), p.radius, p.sigma, torch.tensor([-31.7])
    )
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy() * 255, theirs, atol=1e-6)


@pytest.mark.parametrize("size", [28, 32, 64])
def test_clipped_zoom_matches_oracle_for_every_factor(oracle, size):
    from normbench.data.corruptions.params import zoom_factors

    image = natural_images(1, size, seed=5)[0].astype(np.float32) / 255
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    for table in (IMAGENET, CIFAR):
        for r in table["zoom_blur"]:
            for factor in zoom_factors(r):
                theirs = oracle.corruptions.clipped_zoom(image, factor)[:size, :size]
                ours = clipped_zoom(x, factor)[0].permute(1, 2, 0).numpy()
                np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("decay", [1.4, 2.0, 3.0])
@pytest.mark.parametrize("size", [32, 64])
def test_plasma_fractal_matches_oracle_given_its_draws(oracle, decay, size):
    np.random.seed(7)
    theirs = oracle.corruptions.plasma_fractal(mapsize=size, wibbledecay=decay)
    np.random.seed(7)

    def uniform(shape, bound):
        return torch.from_numpy(np.random.uniform(-bound, bound, shape[1:])).unsqueeze(0)

    ours = plasma_fractal(1, size, decay, uniform)[0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
