"""``normbench eval``'s machinery: statistics modes, tent, per-layer KL, evals.csv records."""
