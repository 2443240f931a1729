"""normbench.engine."""
