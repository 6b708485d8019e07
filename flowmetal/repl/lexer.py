"""A pygments lexer for Flowmetal source (``.fm``).

It follows the reader's notation (see ``reader.py``): comments (and a script's ``#!``
first line), ``#_``, strings with their escapes, numbers in every form the reader takes
(checked by the reader itself, so a token the reader refuses shows as an error),
keywords, ``true false nil``, the special forms, the standard library's macros and
procedures, brackets and the quote marks.
It never raises, and its tokens cover every character of the text, whatever the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

from pygments.lexer import RegexLexer
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

__all__ = ["FlowmetalLexer", "stdlib_names"]

# What the reader lets a token contain; a symbol cannot start with ' or #.
_TOKEN_CHARS = r"""[^\s,()\[\]{}";`~]"""
_DELIMITER = r"""(?=[\s,()\[\]{}";`~]|\Z)"""

SPECIAL_FORMS = frozenset(
    ("quote", "if", "do", "def", "fn", "let", "letrec", "set!", "quasiquote", "unquote",
     "unquote-splicing", "defmacro", "try", "catch", "finally"))
CONSTANTS = frozenset(("true", "false", "nil"))
DEFINERS = frozenset(("def", "defn", "defmacro"))
_DEFINED = re.compile(r"\((?:defn|defmacro|def)[\s,]+\Z")


@lru_cache(maxsize=1)
def stdlib_names() -> tuple[frozenset[str], frozenset[str]]:
    """The standard library's macro names and procedure names (primitives and the
    procedures its .fm files define), found without loading it."""
    from .. import primitives  # noqa: F401 (registers the primitives)
    from ..interpreter import stdlib_files
    from ..procedures import PRIMITIVES

    macros: set[str] = set()
    procedures = {name for name in PRIMITIVES if not name.startswith("%")}
    for _, source in stdlib_files():
        macros.update(re.findall(r"^\(defmacro\s+(" + _TOKEN_CHARS + r"+)", source, re.M))
        procedures.update(re.findall(r"^\((?:defn|def)\s+(" + _TOKEN_CHARS + r"+)",
                                     source, re.M))
    procedures -= macros
    return frozenset(macros), frozenset(n for n in procedures if not n.startswith("%"))


def _number(lexer: RegexLexer, match: re.Match) -> Iterator[tuple[int, object, str]]:
    """A token that starts like a number: whatever the reader makes of it."""
    from ..reader import read_one
    from ..values import ReadError

    text = match.group()
    try:
        value = read_one(text)
    except (ReadError, ValueError, RecursionError):
        yield match.start(), Error, text
        return
    if type(value) is float:
        kind = Number.Float
    elif "/" in text:
        kind = Number  # a ratio (which may read as an integer: 4/2)
    elif re.match(r"[+-]?0[xX]", text):
        kind = Number.Hex
    elif re.match(r"[+-]?[0-9]{1,2}[rR]", text):
        kind = Number.Bin
    else:
        kind = Number.Integer
    yield match.start(), kind, text


def _symbol(lexer: RegexLexer, match: re.Match) -> Iterator[tuple[int, object, str]]:
    """A symbol: a constant, special form, macro, library procedure or other name."""
    text = match.group()
    start = match.start()
    macros, procedures = stdlib_names()
    if text in CONSTANTS:
        kind = Keyword.Constant
    elif text in DEFINERS:
        kind = Keyword.Declaration
    elif text in SPECIAL_FORMS or text in macros:
        kind = Keyword
    elif text in procedures:
        kind = Name.Builtin
    elif text == "&":
        kind = Operator
    elif start > 0 and match.string[start - 1] == "(":
        kind = Name.Function
    elif _DEFINED.search(match.string, max(0, start - 40), start):
        kind = Name.Function
    else:
        kind = Name.Variable
    yield start, kind, text


class FlowmetalLexer(RegexLexer):
    """Flowmetal: a durable Lisp in the Clojure family's notation."""

    name = "Flowmetal"
    aliases = ["flowmetal", "fm"]
    filenames = ["*.fm"]
    mimetypes = ["text/x-flowmetal"]
    url = "https://github.com/flowmetal"
    version_added = ""

    tokens = {
        "root": [
            # A script's ``#!`` line (``\A``: only at the very start of the text).
            (r"\A#![^\n]*", Comment.Hashbang),
            (r";[^\n]*", Comment.Single),
            (r"#_", Comment.Special),
            (r"[\s,]+", Whitespace),
            (r'"', String, "string"),
            (r"##(?:Inf|-Inf|NaN)" + _DELIMITER, Number.Float),
            (r"#\{", Punctuation),
            (r'#"(?:[^"\\]|\\[\s\S])*"', String.Regex),
            (r"#" + _TOKEN_CHARS + "*", Error),
            (r"~@|['`~@]", Operator),
            (r"[()\[\]{}]", Punctuation),
            (r":" + _TOKEN_CHARS + "+", String.Symbol),
            (r":", Error),
            (r"[+-]?\.?[0-9]" + _TOKEN_CHARS + "*", _number),
            (r"[^\s,()\[\]{}\";`~'#]" + _TOKEN_CHARS + "*", _symbol),
        ],
        "string": [
            (r'[^"\\]+', String),
            (r'\\(?:[ntr"\\0]|u[0-9a-fA-F]{4})', String.Escape),
            (r"\\[\s\S]?", Error),
            (r'"', String, "#pop"),
        ],
    }

    def __init__(self, **options: object):
        # Keep the text as it is (pygments strips leading and trailing newlines by
        # default), so offsets agree with the source.
        options.setdefault("stripnl", False)
        super().__init__(**options)
