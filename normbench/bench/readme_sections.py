"""Sections of a shared README that each benchmark rewrites on its own.

A section is the text between ``<!-- NAME -->`` and ``<!-- /NAME -->`` (NAME e.g. ``bench
train``). Writing one replaces only its text, or appends it when it is new; everything outside
it (other benchmarks' sections, notes added by hand) is kept as it is.
"""

from __future__ import annotations

import sys
from pathlib import Path

from normbench.files import write_atomic


def markers(name: str) -> tuple[str, str]:
    """The opening and closing comment of section ``name``."""
    return f"<!-- {name} -->", f"<!-- /{name} -->"


def read_section(path: Path, name: str) -> str | None:
    """The text of section ``name`` in ``path`` (without the markers), or None if absent."""
    if not path.exists():
        return None
    text = path.read_text()
    begin, end = markers(name)
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    if start < 0 or stop < 0:
        return None
    return text[start + len(begin) : stop].strip("\n")


def update_section(path: Path, name: str, body: str) -> None:
    """Write ``body`` as section ``name`` of ``path`` (created if missing), atomically."""
    begin, end = markers(name)
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else ""
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    if start >= 0 and stop >= 0:
        text = text[:start] + block + text[stop + len(end) :]
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    write_atomic(path, lambda f: f.write(text))


def rewrite_section(out: Path, name: str, body: str) -> None:
    """``--readme-only``: write ``body`` as section ``name`` of ``<out>/README.md``, and say so."""
    update_section(out / "README.md", name, body)
    print(f"rewrote the '{name}' section of {out / 'README.md'}", file=sys.stderr)
