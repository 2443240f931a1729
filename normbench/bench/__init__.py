"""normbench.bench."""
