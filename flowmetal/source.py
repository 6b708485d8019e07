"""Program text from files: reading a script and its optional ``#!`` line."""

from __future__ import annotations

from pathlib import Path


def strip_shebang(text: str) -> str:
    """Blank out a leading ``#!`` line, keeping its newline so line numbers stay right."""
    if not text.startswith("#!"):
        return text
    end = text.find("\n")
    return "" if end < 0 else text[end:]


def read_script(path: str | Path) -> str:
    """The program text of the file at ``path`` (UTF-8, without its ``#!`` line).

    Raises OSError if the file cannot be read and UnicodeDecodeError if it is not UTF-8.
    """
    with open(path, encoding="utf-8-sig") as f:
        return strip_shebang(f.read())
