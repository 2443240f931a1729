"""The CIFAR-10-C parameter set, which has no packaged oracle.

Its numbers are checked against the table of ``ImageNet-C/create_c/make_cifar_c.py``
(github.com/hendrycks/robustness), written out below as published. Its methods are the
oracle-checked ImageNet-C ones (tests/test_corruptions.py) except the elastic transform, checked
against an OpenCV reference (tests/test_corruptions_opencv.py). Here: an error-free proxy, the
mean absolute change of the image, must grow with severity wherever the published parameters
imply it, on RGB 32 x 32 and on grey 28 x 28 images. Where they do not, the order that the parameters do imply is tested, and
docs/corruptions.md says why.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normbench.data.corruptions import ALL_CORRUPTIONS, SEVERITIES, corrupt
from normbench.data.corruptions.params import CIFAR, IMAGENET, zoom_factors
from tests.test_corruptions import natural_images

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning"),
]

IMSIZE = 32
# make_cifar_c.py, as published: one list per corruption, severities 1..5.
PUBLISHED = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "speckle_noise": [0.06, 0.1, 0.12, 0.16, 0.2],
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1],
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "zoom_blur": [
        np.arange(1, 1.06, 0.01),
        np.arange(1, 1.11, 0.01),
        np.arange(1, 1.16, 0.01),
        np.arange(1, 1.21, 0.01),
        np.arange(1, 1.26, 0.01),
    ],
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
    "snow": [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ],
    "spatter": [
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
    "jpeg_compression": [80, 65, 58, 50, 40],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "elastic_transform": [
        (IMSIZE * 0, IMSIZE * 0, IMSIZE * 0.08),
        (IMSIZE * 0.05, IMSIZE * 0.2, IMSIZE * 0.07),
        (IMSIZE * 0.08, IMSIZE * 0.06, IMSIZE * 0.06),
        (IMSIZE * 0.1, IMSIZE * 0.04, IMSIZE * 0.05),
        (IMSIZE * 0.1, IMSIZE * 0.03, IMSIZE * 0.03),
    ],
}


def test_every_corruption_has_a_published_cifar_row():
    assert set(PUBLISHED) == set(ALL_CORRUPTIONS) == set(CIFAR) == set(IMAGENET)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_cifar_parameters_are_the_published_ones(name):
    for ours, published in zip(CIFAR[name], PUBLISHED[name], strict=True):
        if name == "zoom_blur":
            np.testing.assert_array_equal(zoom_factors(ours), published)
        elif name == "frost":
            assert ours[:2] == published and ours.texture_scale == 0.2  # photos shrunk by 0.2
        elif name == "elastic_transform":
            np.testing.assert_allclose([v * IMSIZE for v in ours], published, rtol=1e-12)
        else:
            assert ours == published


@pytest.mark.parametrize("table", [IMAGENET, CIFAR], ids=["imagenet", "cifar"])
def test_zoom_factors_are_numpy_arange(table):
    for r in table["zoom_blur"]:
        np.testing.assert_array_equal(zoom_factors(r), np.arange(r.start, r.stop, r.step))


# Corruptions whose published severities strictly increase the change, on every input.
MONOTONE = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "defocus_blur",
    "gaussian_blur",
    "zoom_blur",
    "snow",
    "fog",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
)
# The others: the orders the published parameters imply (severity pairs (weaker, stronger)).
PARTIAL_ORDER = {
    # (radius, sigma) = (6, 2) and (8, 2): the taps past 6 weigh exp(-169 / 8) < 1e-9.
    "motion_blur": ((1, 2), (2, 3), (4, 5)),
    # sigma 0.25 and 0.4 each come with 1 then 2 shuffling passes; more blur alone can reduce
    # the change a shuffle makes.
    "glass_blur": ((2, 4), (3, 5)),
    # image weight 1 for severities 1-2, then falls while the ice weight rises.
    "frost": ((1, 2),),
    # water drops for 1-3, mud for 4-5.
    "spatter": ((1, 2), (2, 3), (4, 5)),
    # 1-2 desaturate (x0.3, x0.1), 3-5 saturate; grey images are left alone (tested apart).
    "saturate": ((1, 2), (3, 4), (4, 5)),
    # severity 1 is a pure affine warp of up to 8% of the side; none is implied.
    "elastic_transform": (),
}


def image_sets() -> dict[str, torch.Tensor]:
    x = torch.from_numpy(natural_images(16, 32, seed=8)).permute(0, 3, 1, 2).float() / 255
    g = torch.from_numpy(natural_images(16, 28, seed=9)).permute(0, 3, 1, 2).float() / 255
    return {"rgb32": x, "grey28": (0.299 * g[:, :1] + 0.587 * g[:, 1:2] + 0.114 * g[:, 2:])}


@pytest.fixture(scope="module")
def changes() -> dict[tuple[str, str], list[float]]:
    """Mean absolute change per severity, CIFAR set, for each corruption and input kind."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the function-scoped ``one_thread``
    out = {}
    try:
        for kind, x in image_sets().items():
            for name in ALL_CORRUPTIONS:
                out[kind, name] = [
                    float((corrupt(x, name, s, seed=7, params="cifar") - x).abs().mean())
                    for s in SEVERITIES
                ]
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("kind", ["rgb32", "grey28"])
@pytest.mark.parametrize("name", MONOTONE)
def test_change_grows_with_severity(changes, kind, name):
    v = changes[kind, name]
    assert all(b > a for a, b in zip(v[:-1], v[1:], strict=True)), v


@pytest.mark.parametrize("kind", ["rgb32", "grey28"])
@pytest.mark.parametrize("name", sorted(PARTIAL_ORDER))
def test_change_follows_the_order_the_parameters_imply(changes, kind, name):
    v = changes[kind, name]
    assert min(v) > 0 or (name == "saturate" and kind == "grey28")
    if name == "saturate" and kind == "grey28":
        assert max(v) == 0
        return
    for weaker, stronger in PARTIAL_ORDER[name]:
        assert v[stronger - 1] > v[weaker - 1], v
    if name == "motion_blur":
        assert v[3] == pytest.approx(v[2], rel=1e-4)


def test_every_corruption_is_ordered_somehow():
    assert set(MONOTONE) | set(PARTIAL_ORDER) == set(ALL_CORRUPTIONS)
    assert not set(MONOTONE) & set(PARTIAL_ORDER)
