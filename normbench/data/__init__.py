"""normbench.data."""
