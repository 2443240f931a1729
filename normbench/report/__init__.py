"""normbench.report."""
