"""Corruption building blocks without a packaged oracle, checked against OpenCV and scipy.

- CIFAR-10-C's elastic transform (``make_cifar_c.py``): a reference composed here from
  ``cv2.getAffineTransform`` / ``cv2.warpAffine`` and scipy's ``gaussian_filter`` /
  ``map_coordinates``, fed the same draws.
- spatter's 8-bit steps: ``cv2.Canny``, ``cv2.distanceTransform`` and ``cv2.equalizeHist``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from normbench.data.corruptions import SEVERITIES, severity_parameters
from normbench.data.corruptions.edges import canny, chamfer_distance, equalize_hist
from normbench.data.corruptions.elastic import elastic_affine_given
from tests.test_corruptions import natural_images

pytestmark = pytest.mark.usefixtures("one_thread")


# --- CIFAR-10-C elastic: no packaged oracle; OpenCV and scipy composed as make_cifar_c does ---


def cifar_elastic_reference(image: np.ndarray, p, jitter, ux, uy) -> np.ndarray:
    import cv2
    from scipy.ndimage import map_coordinates

    size = image.shape[0]
    centre, half = size // 2, size // 3
    ref = np.float32([[centre + half] * 2, [centre + half, centre - half], [centre - half] * 2])
    moved = (ref + jitter * p.affine * size).astype(np.float32)
    warp = cv2.getAffineTransform(ref, moved)
    warped = cv2.warpAffine(image, warp, (size, size), borderMode=cv2.BORDER_REFLECT_101)
    dx = gaussian_filter(ux, p.sigma * size, mode="reflect", truncate=3) * p.alpha * size
    dy = gaussian_filter(uy, p.sigma * size, mode="reflect", truncate=3) * p.alpha * size
    rows, cols = np.mgrid[0:size, 0:size]
    channels = [
        map_coordinates(warped[..., c], [rows + dy, cols + dx], order=1, mode="reflect")
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(channels, -1), 0, 1)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("size", [28, 32])
def test_cifar_elastic_matches_opencv_reference(severity, size):
    pytest.importorskip("cv2")
    p = severity_parameters("elastic_transform", severity, "cifar")
    images = natural_images(2, size, seed=6).astype(np.float32) / 255
    rng = np.random.default_rng(severity)
    jitter = rng.uniform(-1, 1, (2, 3, 2))
    ux, uy = rng.uniform(-1, 1, (2, 2, size, size))
    ours = elastic_affine_given(
        torch.from_numpy(images).permute(0, 3, 1, 2).double(),
        p,
        torch.from_numpy(jitter),
        torch.from_numpy(ux),
        torch.from_numpy(uy),
    ).clamp(0, 1)
    for i in range(2):
        theirs = cifar_elastic_reference(images[i], p, jitter[i], ux[i], uy[i])
        np.testing.assert_allclose(ours[i].permute(1, 2, 0).numpy(), theirs, atol=1e-3)


# --- spatter's 8-bit building blocks against OpenCV -----------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edge_helpers_match_opencv(seed):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(0.65, 0.3, (2, 48, 40)), (0, 2, 2))
    levels = np.where(field < 0.66, 0, field * 255).astype(np.uint8)  # drops on a dark ground
    levels[1] = np.clip(gaussian_filter(rng.random((48, 40)), 1.2) * 600 - 150, 0, 255)
    ours = torch.from_numpy(levels).float().unsqueeze(1)
    edges = canny(ours, 50, 150)
    dist = chamfer_distance(edges, 20.0)
    equalized = equalize_hist(ours)
    for i in range(2):
        theirs_edges = cv2.Canny(levels[i], 50, 150)
        assert theirs_edges.any()
        np.testing.assert_array_equal(edges[i, 0].numpy(), theirs_edges > 0)
        theirs_dist = cv2.distanceTransform(255 - theirs_edges, cv2.DIST_L2, 5)
        np.testing.assert_allclose(dist[i, 0].numpy(), np.minimum(theirs_dist, 20), atol=1e-4)
        np.testing.assert_array_equal(equalized[i, 0].numpy(), cv2.equalizeHist(levels[i]))
