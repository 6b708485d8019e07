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


def not_utf8(path: str | Path) -> str:
    """``PATH:LINE:COL: not UTF-8 text (byte 0xNN)``: where the file at ``path``, which
    ``read_script`` found is not UTF-8, stops being UTF-8 text (column in characters)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        col = len(data[start:exc.start].decode("utf-8")) + 1
        return f"{path}:{line}:{col}: not UTF-8 text (byte 0x{data[exc.start]:02x})"
    return f"{path}: not UTF-8 text"
