"""The command line: ``normbench train|eval|study|report|bench|data`` and the Hydra app."""

from normbench.cli.command import main

__all__ = ["main"]
