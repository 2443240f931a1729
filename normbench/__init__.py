"""normbench: reproduce the published results on batch normalization and its variants."""

__version__ = "0.1.0"
