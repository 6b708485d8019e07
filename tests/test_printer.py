"""Tests for flowmetal.printer, including the print/read round trip."""

import math
import re
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowmetal.printer import display_string, to_string
from flowmetal.reader import ReadError, read_one, read_syntax_all, strip
from flowmetal.regex import RegexError, compile_regex
from flowmetal.values import (
    EMPTY,
    FALSE,
    TRUE,
    Keyword,
    Map,
    Pair,
    Regex,
    Set,
    Symbol,
    Vector,
    make_list,
    normalize_ratio,
)

S = Symbol
K = Keyword


def L(*items):
    return make_list(items)


def V(*items):
    return Vector(items)


# Atoms.


@pytest.mark.parametrize(
    "value, text",
    [
        (0, "0"),
        (42, "42"),
        (-7, "-7"),
        (10**30, "1" + "0" * 30),
        (1.5, "1.5"),
        (-2.0, "-2.0"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1e16, "1e+16"),
        (1.5e-7, "1.5e-07"),
        (math.inf, "##Inf"),
        (-math.inf, "##-Inf"),
        (math.nan, "##NaN"),
        (Fraction(1, 3), "1/3"),
        (Fraction(-2, 3), "-2/3"),
        (S("foo"), "foo"),
        (S("ns/name"), "ns/name"),
        (K("k"), ":k"),
        (K("ns/k"), ":ns/k"),
        (TRUE, "true"),
        (FALSE, "false"),
        (None, "nil"),
        (EMPTY, "()"),
    ],
)
def test_atoms(value, text):
    assert to_string(value) == text


@pytest.mark.parametrize(
    "value, text",
    [
        ("", '""'),
        ("plain", '"plain"'),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("a\nb\tc\rd", r'"a\nb\tc\rd"'),
        ("nul\x00", r'"nul\0"'),
        ("\x01\x1f\x7f\x85", r'"\u0001\u001f\u007f\u0085"'),
        ("λ é 😀 \u2028", '"λ é 😀 \u2028"'),
    ],
)
def test_strings(value, text):
    assert to_string(value) == text
    assert read_one(text) == value


def test_a_lone_surrogate_prints_escaped_and_reads_as_no_character():
    assert to_string("\ud800") == r'"\ud800"'  # (no text can hold it as it is)
    with pytest.raises(ReadError, match="a lone surrogate, not a character"):
        read_one(r'"\ud800"')


def test_huge_integers_beyond_pythons_digit_limit():
    n = 7 * (10**10000 - 1) // 9
    assert to_string(n) == "7" * 10000
    assert to_string(-n) == "-" + "7" * 10000
    assert to_string(10**5000) == "1" + "0" * 5000
    assert to_string(Fraction(1, 10**5000)) == "1/1" + "0" * 5000
    big = 3**40000
    assert read_one(to_string(big)) == big


# Collections.


@pytest.mark.parametrize(
    "value, text",
    [
        (L(1, 2, 3), "(1 2 3)"),
        (L(L(), L(EMPTY)), "(() (()))"),
        (Pair(1, 2), "(1 . 2)"),
        (Pair(1, Pair(2, 3)), "(1 2 . 3)"),
        (Vector(), "[]"),
        (V(1, 2), "[1 2]"),
        (V(V(), L(1)), "[[] (1)]"),
        (Map(), "{}"),
        (Map({K("a"): 1, K("b"): 2}), "{:a 1, :b 2}"),
        (Map({V(1): Map({"k": None})}), '{[1] {"k" nil}}'),
        (Set(), "#{}"),
        (Set({1}), "#{1}"),
        (L(S("quote"), S("x")), "(quote x)"),
        (V("a\nb", K("c")), r'["a\nb" :c]'),
    ],
)
def test_collections(value, text):
    assert to_string(value) == text


def test_set_with_several_elements():
    text = to_string(Set({1, 2, 3}))
    assert re.fullmatch(r"#\{\d \d \d\}", text)
    assert read_one(text) == Set({1, 2, 3})


def test_repr_of_collections_uses_the_printer():
    assert repr(L(1, V(2))) == "(1 [2])"
    assert repr(Map({K("a"): Set()})) == "{:a #{}}"


def test_deeply_nested_values_print():
    depth = 100_000
    value = EMPTY
    for _ in range(depth):
        value = Pair(value, EMPTY)
    assert to_string(value) == "(" * depth + "()" + ")" * depth
    vec = V()
    for _ in range(depth):
        vec = V(vec, 1)
    text = to_string(vec)
    assert text.startswith("[" * depth + "[] 1]") and text.endswith(" 1]")
    assert len(text) == len("[]") + depth * len("[ 1]")


# Other objects.


class _Proc:
    def __fm_repr__(self):
        return "#<procedure f>"


class _Plain:
    pass


def test_objects_without_a_notation():
    assert to_string(_Proc()) == "#<procedure f>"
    assert to_string(_Plain()) == "#<python _Plain>"
    assert to_string([1, 2]) == "#<python list>"
    assert to_string(True) == "#<python bool>"
    assert to_string(V(_Proc(), 1)) == "[#<procedure f> 1]"


# display_string.


def test_display_string():
    assert display_string('a "quoted"\nline') == 'a "quoted"\nline'
    assert display_string("") == ""
    assert display_string(None) == "nil"
    assert display_string(K("k")) == ":k"
    assert display_string(12) == "12"
    assert display_string(V("s", 1)) == '["s" 1]'
    assert display_string(L("x")) == '("x")'


# The round trip.

SYMBOL_CHARS = "abcxyzABZ0123456789*+!-_'?<>=/.&%$^|#@\\λ"
SYMBOL_START = "abcxyzABZ*+!-_?<>=/.&%$^|\\λ"  # not @: @x reads as (deref x)


def _symbol_name(name):
    return not re.match(r"[+-]?\.?[0-9]", name) and name not in ("true", "false", "nil")


symbols = (
    st.builds(
        lambda first, rest: first + rest,
        st.sampled_from(SYMBOL_START),
        st.text(st.sampled_from(SYMBOL_CHARS), max_size=6),
    )
    .filter(_symbol_name)
    .map(Symbol)
)

keywords = st.text(st.sampled_from(SYMBOL_CHARS + ":"), min_size=1, max_size=6).map(Keyword)

texts = (
    st.text()
    | st.text(st.sampled_from('\n\t\r"\\\x00\x01\x1f\x7f\x85 a;()'))
    | st.text(st.characters(categories=["Cc", "Zs", "Ll"]))
)


def _huge(parts):
    """An int of up to about 800 decimal digits, beyond the reader's piecewise threshold."""
    small, bits = parts
    return (small << bits) + small


def _regex(pattern):
    try:
        return compile_regex(pattern)
    except RegexError:
        return None


regexes = st.text(st.sampled_from('ab.*+?\\"()[]^$|{}1\n\\d'), max_size=8).map(_regex).filter(
    lambda r: r is not None)

atoms = (
    st.integers()
    | regexes
    | st.tuples(st.integers(), st.integers(min_value=0, max_value=2700)).map(_huge)
    | st.floats(allow_nan=False)
    | st.fractions().map(normalize_ratio)
    | texts
    | symbols
    | keywords
    | st.sampled_from([TRUE, FALSE, None, EMPTY])
)


def _collections(inner):
    return (
        st.lists(inner, max_size=4).map(make_list)
        | st.lists(inner, max_size=4).map(Vector)
        | st.dictionaries(inner, inner, max_size=4).map(Map)
        | st.frozensets(inner, max_size=4).map(Set)
    )


values = st.recursive(atoms, _collections, max_leaves=16)

# Hypothesis renders this strategy's (large) repr when it retries a unique-element draw.
quiet_repr = pytest.mark.filterwarnings("ignore:Generating overly large repr")


def same(a, b):
    """Equal and of the same types all the way down (NaN equals NaN, -0.0 differs from 0.0)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if type(a) in (Pair, Vector):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is Map:
        if a != b:
            return False
        keys_b = {k: k for k in b}
        return all(same(k, keys_b[k]) and same(a[k], b[k]) for k in a)
    if type(a) is Set:
        if a != b:
            return False
        elements_b = {e: e for e in b}
        return all(same(e, elements_b[e]) for e in a)
    return a == b


@quiet_repr
@settings(max_examples=400, deadline=None)
@given(values)
def test_print_then_read_gives_the_same_value(value):
    text = to_string(value)
    back = read_one(text)
    assert back == value
    assert same(back, value)


@quiet_repr
@settings(max_examples=100, deadline=None)
@given(values)
def test_print_then_read_syntax_then_strip(value):
    (node,) = read_syntax_all(to_string(value))
    assert same(strip(node), value)


@quiet_repr
@settings(max_examples=100, deadline=None)
@given(values)
def test_display_string_differs_only_for_strings_and_regexes(value):
    # As Clojure's str: a string is its text, a regex its pattern.
    if type(value) is str:
        assert display_string(value) == value
    elif type(value) is Regex:
        assert display_string(value) == value.pattern
    else:
        assert display_string(value) == to_string(value)


def test_nan_round_trips():
    assert math.isnan(read_one(to_string(math.nan)))
    back = read_one(to_string(V(math.nan, L(-math.nan))))
    assert math.isnan(back[0]) and math.isnan(back[1].first)
    assert same(back, V(math.nan, L(math.nan)))
