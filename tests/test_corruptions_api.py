"""``corrupt``'s contract: names, errors, shapes, determinism, devices, dtypes, grey images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normbench.data.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    corrupt,
    parameter_set_for,
)
from normbench.data.corruptions.blur import _glass_pass
from normbench.errors import ConfigError, DataError
from tests.test_corruptions import natural_images

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning"),
]

RANDOM = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
    "speckle_noise",
    "spatter",
)
DETERMINISTIC = tuple(n for n in ALL_CORRUPTIONS if n not in RANDOM)


def rgb(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(natural_images(n, size, seed)).permute(0, 3, 1, 2).float() / 255


def grey(n: int, size: int, seed: int = 0) -> torch.Tensor:
    x = rgb(n, size, seed)
    return (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]).clamp(0, 1)


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    """Grey and RGB batches in the CIFAR (28, 32 px) and ImageNet (72 px) size ranges."""
    return {"grey28": grey(2, 28), "rgb32": rgb(2, 32), "grey72": grey(2, 72), "rgb72": rgb(2, 72)}


def test_names_follow_the_paper():
    assert CORRUPTIONS == (
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "defocus_blur",
        "glass_blur",
        "motion_blur",
        "zoom_blur",
        "snow",
        "frost",
        "fog",
        "brightness",
        "contrast",
        "elastic_transform",
        "pixelate",
        "jpeg_compression",
    )
    assert EXTRA_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert ALL_CORRUPTIONS == CORRUPTIONS + EXTRA_CORRUPTIONS


def test_unknown_name_lists_the_names():
    with pytest.raises(ConfigError, match="unknown corruption 'fogg'") as info:
        corrupt(rgb(1, 32), "fogg", 1, seed=0)
    for name in ALL_CORRUPTIONS:
        assert name in str(info.value)


@pytest.mark.parametrize("severity", [0, 6, -1, 2.0, "3", True, None])
def test_severity_outside_1_to_5_is_refused(severity):
    with pytest.raises(ConfigError, match="severity must be an integer from 1 to 5"):
        corrupt(rgb(1, 32), "fog", severity, seed=0)


def test_numpy_integer_severity_is_accepted():
    assert corrupt(rgb(1, 32), "contrast", np.int64(2), seed=0).shape == (1, 3, 32, 32)


def test_unknown_parameter_set_is_refused():
    with pytest.raises(ConfigError, match="unknown corruption parameter set 'tiny'"):
        corrupt(rgb(1, 32), "fog", 1, seed=0, params="tiny")


@pytest.mark.parametrize(
    "x",
    [torch.rand(3, 32, 32), torch.rand(1, 2, 32, 32), torch.rand(1, 4, 8, 8)],
    ids=["no-batch-dim", "two-channels", "four-channels"],
)
def test_bad_batch_shape_is_refused(x):
    with pytest.raises(DataError, match=r"\(N, C, H, W\) with C = 1 or 3"):
        corrupt(x, "fog", 1, seed=0)


def test_integer_images_are_refused():
    with pytest.raises(DataError, match="divide by 255"):
        corrupt(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "fog", 1, seed=0)


def test_parameter_set_is_chosen_by_size_and_overridable():
    assert parameter_set_for(28, 28) == "cifar"
    assert parameter_set_for(64, 64) == "cifar"
    assert parameter_set_for(65, 40) == "imagenet"
    assert parameter_set_for(224, 224) == "imagenet"
    small, large = rgb(1, 32), rgb(1, 72)
    cifar, imagenet = (corrupt(small, "contrast", 5, 0, params=p) for p in ("cifar", "imagenet"))
    assert torch.equal(corrupt(small, "contrast", 5, 0), cifar)
    assert not torch.equal(cifar, imagenet)
    assert torch.equal(
        corrupt(large, "contrast", 5, 0), corrupt(large, "contrast", 5, 0, "imagenet")
    )


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_every_corruption_keeps_shape_dtype_and_range(inputs, name, severity):
    for x in inputs.values():
        before = x.clone()
        y = corrupt(x, name, severity, seed=severity)
        assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
        assert torch.isfinite(y).all()
        assert y.min() >= 0 and y.max() <= 1
        assert torch.equal(x, before)  # the input is not modified


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_same_seed_same_output(inputs, name):
    for x in (inputs["grey28"], inputs["rgb72"]):
        assert torch.equal(corrupt(x, name, 3, seed=5), corrupt(x, name, 3, seed=5))


@pytest.mark.parametrize("name", RANDOM)
def test_different_seed_different_output(inputs, name):
    for x in (inputs["grey28"], inputs["rgb72"]):
        assert not torch.equal(corrupt(x, name, 3, seed=5), corrupt(x, name, 3, seed=6))


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_corruption_ignores_the_seed(inputs, name):
    x = inputs["rgb32"]
    assert torch.equal(corrupt(x, name, 3, seed=5), corrupt(x, name, 3, seed=6))


@pytest.mark.parametrize("name", RANDOM)
def test_global_random_state_is_untouched(inputs, name):
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    corrupt(inputs["rgb32"], name, 4, seed=1)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(
        np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True)
    )


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_float64_and_half_precision_inputs(inputs, name):
    x = inputs["rgb32"]
    reference = corrupt(x, name, 4, seed=2)
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        y = corrupt(x.to(dtype), name, 4, seed=2)
        assert y.dtype == dtype
        if name in DETERMINISTIC and dtype == torch.float64:
            # float64 against float32 arithmetic; JPEG rounds both to the same 8 bits
            torch.testing.assert_close(y.float(), reference, atol=1e-5, rtol=0)


def test_empty_batch():
    x = torch.zeros(0, 3, 32, 32)
    assert corrupt(x, "snow", 2, seed=0).shape == (0, 3, 32, 32)


def test_requires_grad_input_is_accepted():
    x = rgb(1, 32).requires_grad_()
    assert not corrupt(x, "fog", 2, seed=0).requires_grad


# Grey images: a grey image replicated to RGB must give the same result in each channel where
# the corruption treats channels alike (channel 0 for saturate, whose grey result is the value
# channel); colour-blending corruptions give the luminance of the RGB result (before clipping).
SAME_AS_RGB_CHANNEL = tuple(
    n
    for n in ALL_CORRUPTIONS
    if n not in ("gaussian_noise", "shot_noise", "impulse_noise")
    and n not in ("speckle_noise", "frost", "spatter")
)


@pytest.mark.parametrize("name", SAME_AS_RGB_CHANNEL)
@pytest.mark.parametrize("size", [28, 72])
def test_grey_equals_replicated_rgb(name, size):
    g = grey(2, size, seed=3)
    for severity in SEVERITIES:
        ours = corrupt(g, name, severity, seed=4)
        as_rgb = corrupt(g.expand(-1, 3, -1, -1), name, severity, seed=4)
        torch.testing.assert_close(ours, as_rgb[:, :1], atol=2e-5, rtol=0)


@pytest.mark.parametrize("name", ["frost", "spatter"])
def test_grey_colour_blends_are_the_luminance_of_rgb(name):
    g = grey(2, 72, seed=5) * 0.5  # dark images: nothing clips
    for severity in SEVERITIES:
        ours = corrupt(g, name, severity, seed=4)
        as_rgb = corrupt(g.expand(-1, 3, -1, -1), name, severity, seed=4)
        unclipped = (as_rgb < 1).all(1, keepdim=True) & (ours < 1)
        luma = 0.299 * as_rgb[:, :1] + 0.587 * as_rgb[:, 1:2] + 0.114 * as_rgb[:, 2:]
        torch.testing.assert_close(ours[unclipped], luma[unclipped], atol=1e-4, rtol=0)


def test_saturate_leaves_grey_images_alone():
    g = grey(2, 32)
    for severity in SEVERITIES:
        assert torch.equal(corrupt(g, "saturate", severity, seed=0), g)


def glass_pass_loop(x: np.ndarray, offsets: np.ndarray, d: int) -> np.ndarray:
    """The original's loop on one (H, W, C) image: copy x[h', w'] into x[h, w] in turn."""
    x = x.copy()
    h, w = x.shape[:2]
    for row in range(h - d, d, -1):
        for col in range(w - d, d, -1):
            dx, dy = offsets[:, row, col]
            x[row, col] = x[row + dy, col + dx]
    return x


@pytest.mark.parametrize("d", [1, 2, 4])
def test_vectorized_glass_pass_equals_the_sequential_loop(d):
    rng = np.random.default_rng(d)
    x = rng.random((3, 2, 20, 17))
    offsets = rng.integers(-d, d, (3, 2, 20, 17))
    ours = _glass_pass(torch.from_numpy(x), torch.from_numpy(offsets), d).numpy()
    for i in range(3):
        loop = glass_pass_loop(x[i].transpose(1, 2, 0), offsets[i], d)
        np.testing.assert_array_equal(ours[i], loop.transpose(2, 0, 1))


@pytest.mark.gpu
@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_cuda_batch_stays_on_device_and_is_deterministic(name):
    x = rgb(2, 72)
    y = corrupt(x.cuda(), name, 3, seed=1)
    assert y.device.type == "cuda" and y.dtype == x.dtype
    assert torch.equal(y, corrupt(x.cuda(), name, 3, seed=1))
    if name in DETERMINISTIC:
        torch.testing.assert_close(y.cpu(), corrupt(x, name, 3, seed=1), atol=1e-4, rtol=0)
    else:
        mean_change = ((y.cpu() - x).abs().mean(), (corrupt(x, name, 3, seed=1) - x).abs().mean())
        assert abs(mean_change[0] - mean_change[1]) <= 0.5 * mean_change[1] + 0.01
