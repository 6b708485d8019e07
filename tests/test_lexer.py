"""The pygments lexer for Flowmetal: what it calls each piece of source, that it covers
every character of any text without raising, and its registration with pygments."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
)

from flowmetal.repl.lexer import FlowmetalLexer

ROOT = Path(__file__).resolve().parent.parent


def tokens(text: str) -> list[tuple[object, str]]:
    """The (token type, text) pairs of ``text``, whitespace left out."""
    return [(kind, part) for _, kind, part in FlowmetalLexer().get_tokens_unprocessed(text)
            if not part.isspace() and part != ","]


def kind_of(text: str, piece: str) -> object:
    found = [kind for kind, part in tokens(text) if part == piece]
    assert found, f"{piece!r} is not a token of {text!r}: {tokens(text)}"
    return found[0]


@pytest.mark.parametrize("number, kind", [
    ("42", Number.Integer), ("-7", Number.Integer), ("+3", Number.Integer),
    ("1_000_000", Number.Integer), ("0x1F", Number.Hex), ("-0x1f", Number.Hex),
    ("2r1010", Number.Bin), ("36rZZ", Number.Bin), ("1/3", Number), ("-4/2", Number),
    ("1.5", Number.Float), ("1.", Number.Float), ("-2.0e-3", Number.Float),
    ("1e10", Number.Float), ("##Inf", Number.Float), ("##-Inf", Number.Float),
    ("##NaN", Number.Float),
])
def test_numbers_in_every_reader_form(number, kind):
    assert tokens(f"(f {number})") == [(Punctuation, "("), (Name.Function, "f"),
                                      (kind, number), (Punctuation, ")")]


@pytest.mark.parametrize("bad", [".5", "1x", "37r1", "1/0", "0x", "9z", "##Foo", "#q"])
def test_what_the_reader_refuses_is_an_error_token(bad):
    assert kind_of(f"[{bad}]", bad) is Error


def test_comments_strings_and_escapes():
    text = '; a comment (with a bracket\n#_ (skip) "a\\n\\t\\"b\\u00e9 (" "bad \\q"'
    assert kind_of(text, "; a comment (with a bracket") is Comment.Single
    assert kind_of(text, "#_") is Comment.Special
    parts = tokens(text)
    assert (String.Escape, "\\n") in parts
    assert (String.Escape, '\\"') in parts
    assert (String.Escape, "\\u00e9") in parts
    assert (String, "b") in parts and (String, " (") in parts
    assert (Error, "\\q") in parts
    # The bracket inside the string and the one in the comment are not punctuation.
    assert [part for kind, part in parts if kind is Punctuation] == ["(", ")"]


def test_keywords_constants_special_forms_macros_and_library_names():
    text = "(defn f [x & more] (when (nil? x) (let [y :ns/k] (map inc true false nil))))"
    assert kind_of(text, "defn") is Keyword.Declaration
    assert kind_of(text, "f") is Name.Function
    assert kind_of(text, "&") is Operator
    assert kind_of(text, "when") is Keyword        # a macro of the standard library
    assert kind_of(text, "let") is Keyword         # a special form
    assert kind_of(text, "nil?") is Name.Builtin   # a primitive
    assert kind_of(text, "map") is Name.Builtin    # defined in stdlib/seq.fm
    assert kind_of(text, ":ns/k") is String.Symbol
    for constant in ("true", "false", "nil"):
        assert kind_of(text, constant) is Keyword.Constant
    assert kind_of("(my-proc 1)", "my-proc") is Name.Function
    assert kind_of("(f my-var)", "my-var") is Name.Variable


def test_quotes_sets_and_brackets():
    parts = tokens("'a `(b ~c ~@d) #{1} {:a [2]}")
    assert [p for k, p in parts if k is Operator] == ["'", "`", "~", "~@"]
    assert [p for k, p in parts if k is Punctuation] == ["(", ")", "#{", "}", "{", "[",
                                                         "]", "}"]



def test_regexes_and_deref():
    parts = tokens('(re-find #"a\\d\\"" @x)')
    assert (String.Regex, '#"a\\d\\""') in parts
    assert [p for k, p in parts if k is Operator] == ["@"]
    assert kind_of('(re-find #"a\\d\\"" @x)', "x") is Name.Variable


def _covers(text: str) -> None:
    pieces = list(FlowmetalLexer().get_tokens_unprocessed(text))
    assert "".join(part for _, _, part in pieces) == text
    position = 0
    for start, _, part in pieces:
        assert start == position
        position += len(part)
    # pygmentize's path (which normalizes line ends) must not raise either.
    list(FlowmetalLexer().get_tokens(text))


FLOWMETAL_ALPHABET = st.sampled_from(list("()[]{}#_'`~@;:\"\\,.+-/0123456789aexrZ &\n\t")
                                     + ["\\u00e9", "##Inf", "0x", "1/", "nil", "defn"])


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_is_covered_exactly_and_never_raises(text):
    _covers(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(FLOWMETAL_ALPHABET, max_size=60).map("".join))
def test_text_made_of_flowmetal_pieces_is_covered_exactly(text):
    _covers(text)


def test_every_example_and_library_file_lexes_without_errors():
    files = sorted(ROOT.glob("examples/*.fm")) + sorted(ROOT.glob("stdlib/*.fm"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        _covers(text)
        errors = [part for kind, part in tokens(text) if kind is Error]
        assert not errors, (path, errors)


def test_a_scripts_hash_bang_line_is_a_comment():
    text = "#!/usr/bin/env flowmetal\n(println 1) #!x"
    assert tokens(text)[0] == (Comment.Hashbang, "#!/usr/bin/env flowmetal")
    # Anywhere else #! is what the reader refuses: an unknown dispatch.
    assert kind_of(text, "#!x") is Error


def test_registered_with_pygments():
    assert isinstance(get_lexer_by_name("flowmetal"), FlowmetalLexer)
    assert isinstance(get_lexer_for_filename("countdown.fm"), FlowmetalLexer)


def test_pygmentize_highlights_a_file(tmp_path):
    script = Path(sysconfig.get_path("scripts")) / "pygmentize"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pygments"]
    path = tmp_path / "hello.fm"
    path.write_text('(defn hi [] (println "hi")) ; greet\n', encoding="utf-8")
    r = subprocess.run([*command, "-l", "flowmetal", "-f", "html", str(path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert '<span class="kd">defn</span>' in r.stdout
    assert '<span class="c1">; greet</span>' in r.stdout
