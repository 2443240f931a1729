"""The papers' numbers the domain-shift report sets beside ours, transcribed from docs/papers.md
(§7 Tent, §9 Schneider et al. 2020), which gives their sources; tests/test_domain_shift_paper.py
checks that they are the ones there."""

from __future__ import annotations

from normbench.data.corruptions.names import CORRUPTIONS

#: Tent's README (DequanWang/tent), docs/papers.md §7: CIFAR-10-C severity 5, WRN-28-10, error (%)
#: per corruption: source model, "norm" (each test batch's own statistics, batch 200) and Tent
#: (Adam lr 1e-3, one update per batch of 200: 50 updates over a corruption's 10,000 images).
TENT_TABLE: dict[str, dict[str, float]] = {
    "source": {
        "gaussian_noise": 72.3,
        "shot_noise": 65.7,
        "impulse_noise": 72.9,
        "defocus_blur": 46.9,
        "glass_blur": 54.3,
        "motion_blur": 34.8,
        "zoom_blur": 42.0,
        "snow": 25.1,
        "frost": 41.3,
        "fog": 26.0,
        "brightness": 9.3,
        "contrast": 46.7,
        "elastic_transform": 26.6,
        "pixelate": 58.5,
        "jpeg_compression": 30.3,
    },
    "norm": {
        "gaussian_noise": 28.1,
        "shot_noise": 26.1,
        "impulse_noise": 36.3,
        "defocus_blur": 12.8,
        "glass_blur": 35.3,
        "motion_blur": 14.2,
        "zoom_blur": 12.1,
        "snow": 17.3,
        "frost": 17.4,
        "fog": 15.3,
        "brightness": 8.4,
        "contrast": 12.6,
        "elastic_transform": 23.8,
        "pixelate": 19.7,
        "jpeg_compression": 27.3,
    },
    "tent": {
        "gaussian_noise": 24.8,
        "shot_noise": 23.5,
        "impulse_noise": 33.0,
        "defocus_blur": 12.0,
        "glass_blur": 31.8,
        "motion_blur": 13.7,
        "zoom_blur": 10.8,
        "snow": 15.9,
        "frost": 16.2,
        "fog": 13.7,
        "brightness": 7.9,
        "contrast": 12.1,
        "elastic_transform": 22.0,
        "pixelate": 17.3,
        "jpeg_compression": 24.2,
    },
}
#: The README's "mean" column (the mean over the 15 corruptions).
TENT_MEAN = {"source": 43.5, "norm": 20.4, "tent": 18.6}
TENT_SETTING = "CIFAR-10-C severity 5, WRN-28-10, mean of the 15 corruptions"
TENT_BATCH, TENT_UPDATES = 200, 50

#: Schneider et al. 2020, docs/papers.md §9: ImageNet-C mCE (%), ResNet-50.
SCHNEIDER_MCE = {"running": 76.7, "partial": 65.0, "adapt": 62.2, "group": 72.4}
SCHNEIDER_SETTING = "ImageNet-C mCE, ResNet-50"

#: The corruptions of docs/papers.md's claim "largest for noise and blur, smallest for
#: brightness and jpeg": the benchmark's first seven (three noises, four blurs), and two others.
NOISE_AND_BLUR = CORRUPTIONS[:7]
BRIGHTNESS_AND_JPEG = ("brightness", "jpeg_compression")


def tent_gain(corruption: str) -> float:
    """The paper's gain of test-time normalization on ``corruption``: source − norm (points)."""
    return TENT_TABLE["source"][corruption] - TENT_TABLE["norm"][corruption]


def tent_pattern() -> tuple[float, float]:
    """The paper's mean gain over noise and blur and over brightness and JPEG (points)."""
    high = sum(tent_gain(c) for c in NOISE_AND_BLUR) / len(NOISE_AND_BLUR)
    low = sum(tent_gain(c) for c in BRIGHTNESS_AND_JPEG) / len(BRIGHTNESS_AND_JPEG)
    return high, low
