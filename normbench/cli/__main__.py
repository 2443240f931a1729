"""``python -m normbench.cli``: the same as the ``normbench`` command."""

from normbench.cli.command import main

if __name__ == "__main__":
    raise SystemExit(main())
