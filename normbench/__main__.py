"""``python -m normbench``: the same as the ``normbench`` command (what torchrun's ``-m`` runs)."""

from normbench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
