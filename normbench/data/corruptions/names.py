"""The names of the common corruptions (Hendrycks & Dietterich, ICLR 2019), without the code:
``normbench.data.corruptions`` implements them; the report reads run directories by these names."""

#: The 15 corruptions of the benchmark (and of mCE), in the paper's order.
CORRUPTIONS: tuple[str, ...] = (
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
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
