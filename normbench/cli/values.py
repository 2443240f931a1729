"""Comma lists in command-line values, shared by ``normbench eval -m`` and ``normbench study``."""

from __future__ import annotations

OPEN, CLOSE = "[{(", "]})"


def split_values(text: str) -> list[str]:
    """``a,b,[1,2]`` → ``["a", "b", "[1,2]"]``: commas outside brackets separate values."""
    values, depth, current = [], 0, ""
    for ch in text:
        depth += (ch in OPEN) - (ch in CLOSE)
        if ch == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += ch
    return [*values, current]
