"""normbench.models."""
