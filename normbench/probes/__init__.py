"""normbench.probes."""
