"""A fuzzer of the reader and the analyzer: random text — nestings, every number form,
dispatches, strings and regexes with good and bad escapes, unicode, and the special
forms in random shapes — is read, printed and analyzed, and nothing raises but the
project's read and syntax errors.

The budget is fixed (``FUZZ_EXAMPLES`` examples for each test, derandomized, so a run of
the suite is reproducible and takes a few seconds); ``FLOWMETAL_FUZZ_EXAMPLES=20000``
explores further.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowmetal.interpreter import Session
from flowmetal.printer import bounded_string, to_string
from flowmetal.reader import is_complete, read_all, read_syntax_all, strip
from flowmetal.values import FlowmetalError, ReadError

FUZZ_EXAMPLES = int(os.environ.get("FLOWMETAL_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

ALLOWED = ("read-error", "syntax-error")

NUMBERS = st.sampled_from([
    "0", "-0", "+1", "1_000", "1__0", "1_", "_1", "0x1F", "-0X1f", "0x", "0xG", "2r1010",
    "36rZZ", "37r1", "1r0", "0r0", "2r2", "1/3", "-4/2", "1/0", "1/", "/2", "1/2/3", "1.5",
    "1.", "-2.0e-3", "1e10", "1e400", "1e-400", "1e", "1e+", ".5", "-.5", "+.", "1.2.3",
    "1_000.5", "1.5_0", "##Inf", "##-Inf", "##NaN", "##", "##Foo", "##inf", "9" * 700,
    "1" + "0" * 1300 + "/3", "16r" + "F" * 900, "0.000001", "1.7976931348623157e308",
    "08", "-", "+", "1N", "1M", "0b101", "1e1_0", "٣", "１",
])
STRINGS = st.sampled_from([
    '""', '"a"', '"\\n\\t\\r\\"\\\\\\0"', '"\\u0041"', '"\\uD800"', '"\\u12"', '"\\u"',
    '"\\q"', '"\\', '"unterminated', '"multi\nline"', '"é😀"', '"\ufeff"',
])
REGEXES = st.sampled_from([
    '#""', '#"a\\d+"', '#"("', '#"[a-"', '#"\\"', '#"a\\"b"', '#"(?<n>x)\\k<n>"',
    '#"(?<n>x)\\k<m>"', '#"\\p{L}"', '#"a{1,2}{3}"', '#"(?i)x"', '#"x(?i)"', '#"\\z"',
    '#"[[a]]"', '#"*"', '#"(?P<1>x)"', '#"' + "(" * 200 + ")" * 200 + '"',
])
WORDS = st.sampled_from([
    "quote", "if", "do", "def", "fn", "let", "letrec", "set!", "quasiquote", "unquote",
    "unquote-splicing", "defmacro", "try", "catch", "finally", "loop", "loop*", "recur",
    "case", "cond", "and", "or", "when", "defn", "doseq", "for", "deref", "delay", "&",
    ":as", ":keys", ":or", ":strs", ":syms", ":a/keys", "x", "y", "m", "f", "a/b", "/", ".",
    "nil", "true", "false", ":k", ":", "::k", ":a/b", "λ", "a'b", "a#", "x@y", "%", "->",
    "call/cc", "dynamic-wind", "throw", "error", "atom", "swap!", "format", "re-find",
])
DISPATCHES = st.sampled_from(["#{", "#_", "#(", "#?", "#'", "#!", "#:", "#", "#\ufeff", "#^"])
PREFIXES = st.sampled_from(["'", "`", "~", "~@", "@", "^"])
NOISE = st.sampled_from([" ", "  ", ",", "\n", "; comment\n", ";", "\t", "\ufeff", "\u200b",
                         "\x00", "\u00a0", "\u2028", "\r\n", "\\", "\udc80"])

atoms = st.one_of(NUMBERS, STRINGS, REGEXES, WORDS, WORDS, WORDS,
                  st.text(st.characters(), min_size=1, max_size=3))

BRACKETS = [("(", ")"), ("[", "]"), ("{", "}"), ("#{", "}")]


def _collection(children: list[str], brackets: tuple[str, str], head: str | None) -> str:
    items = ([head] if head else []) + children
    return brackets[0] + " ".join(items) + brackets[1]


forms = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.builds(_collection, st.lists(inner, max_size=5), st.sampled_from(BRACKETS),
                  st.none() | WORDS),
        # a special form with a binding vector or parameter list in any shape
        st.builds(lambda word, binds, body: f"({word} [{' '.join(binds)}] {' '.join(body)})",
                  WORDS, st.lists(inner, max_size=4), st.lists(inner, max_size=3)),
        # a macro whose body runs at analysis time, and a call of it
        st.builds(lambda body, arg: f"(defmacro m [& xs] {body}) (m {arg})", inner, inner),
        st.builds(lambda p, x: p + x, PREFIXES, inner),
        st.builds(lambda d, x: d + x, DISPATCHES, inner),
    ),
    max_leaves=25,
)


@st.composite
def programs(draw) -> str:
    """Forms joined by noise, with now and then a character cut out or put in."""
    parts = draw(st.lists(st.tuples(forms, NOISE), min_size=1, max_size=4))
    text = "".join(form + noise for form, noise in parts)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()) and at < len(text):
            text = text[:at] + text[at + 1:]
        else:
            text = text[:at] + draw(st.sampled_from(list("()[]{}\"#'`~@;\\ :/."))) + text[at:]
    return text


def read_and_analyze(text: str) -> None:
    """Read, print and analyze ``text``; the project's read and syntax errors are fine."""
    try:
        is_complete(text)
        nodes = read_syntax_all(text, "fuzz.fm")
        for value in read_all(text, "fuzz.fm"):
            to_string(value)
            bounded_string(value, 100)
        for node in nodes:
            strip(node)
        Session().load(text, "fuzz.fm")
    except FlowmetalError as exc:
        assert exc.kind in ALLOWED, f"{exc.kind}: {exc}"
        str(exc)


@FUZZ
@given(programs())
def test_random_programs_raise_only_read_and_syntax_errors(text):
    read_and_analyze(text)


@FUZZ
@given(st.text(st.sampled_from(list("()[]{}#_'`~@^\":;\\/.,&%!?-+0123456789eExXrR_ \n"
                                    "abcfnlt\ufeff\u00e9λ")), max_size=40))
def test_random_characters_raise_only_read_and_syntax_errors(text):
    read_and_analyze(text)


@FUZZ
@given(st.text(max_size=30))
def test_random_unicode_raises_only_read_and_syntax_errors(text):
    read_and_analyze(text)


def test_deep_nesting_is_a_read_or_syntax_error_at_worst():
    for opener, closer in [("(", ")"), ("[", "]"), ("{:a ", "}"), ("#{", "}"), ("'", ""),
                           ("@", ""), ("#_", ""), ("(fn [] ", ")"), ("(let [x ", "] x)")]:
        read_and_analyze(opener * 2000 + "1" + closer * 2000)


def test_what_the_fuzzer_found():
    # A lone surrogate in the source reached the program hash (UnicodeEncodeError).
    for text in ('"a\udc80"', "; \udc80\n1", "x\udc80"):
        read_and_analyze(text)
        with pytest.raises(ReadError, match="1:[0-9]: invalid character U\\+DC80: the text "
                           "is not valid Unicode"):
            read_all(text)
