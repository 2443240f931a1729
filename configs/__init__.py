"""The Hydra config tree, shipped in the wheel as ``normbench.configs`` (see pyproject.toml)."""
