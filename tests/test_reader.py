"""Tests for flowmetal.reader."""

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowmetal.printer import to_string
from flowmetal.reader import (
    IncompleteInput,
    Syntax,
    is_complete,
    read_all,
    read_one,
    read_syntax_all,
    strip,
    to_syntax,
)
from flowmetal.values import (
    EMPTY,
    FALSE,
    TRUE,
    Keyword,
    Map,
    Pair,
    ReadError,
    Set,
    Span,
    Symbol,
    Vector,
    make_list,
)

S = Symbol
K = Keyword


def L(*items):
    return make_list(items)


def V(*items):
    return Vector(items)


def read_error(text, file="f.fm"):
    with pytest.raises(ReadError) as info:
        read_all(text, file)
    return info.value


def syntax_one(text, file="f.fm"):
    (node,) = read_syntax_all(text, file)
    return node


def where(node):
    s = node.span
    return (s.line, s.col, s.end_line, s.end_col)


# Whitespace, comments, discard.


def test_empty_text_reads_nothing():
    assert read_all("") == []
    assert read_all("  \n\t ,, ; only a comment") == []


def test_commas_are_whitespace():
    assert read_one("[1,2,,3 ,]") == V(1, 2, 3)
    assert read_all("a,b") == [S("a"), S("b")]


def test_line_comments():
    assert read_all("1 ; one\n2 ;two;\n;;; three\n3") == [1, 2, 3]
    assert read_one("(a ; (b\n c)") == L(S("a"), S("c"))


def test_discard():
    assert read_all("#_ 1 2") == [2]
    assert read_one("(a #_b c)") == L(S("a"), S("c"))
    assert read_one("(a #_(b (c)) d)") == L(S("a"), S("d"))
    assert read_one("[1 #_2]") == V(1)
    assert read_all("#_#_ 1 2 3") == [3]
    assert read_one("{:a 1 #_:b #_2}") == Map({K("a"): 1})
    assert read_all("#_ x") == []


def test_discard_inside_quote():
    assert read_one("'#_ 1 2") == L(S("quote"), 2)


# Collections.


def test_lists():
    assert read_one("()") is EMPTY
    assert read_one("(1 2 3)") == L(1, 2, 3)
    assert type(read_one("(1)")) is Pair
    assert read_one("(a (b (c)) ())") == L(S("a"), L(S("b"), L(S("c"))), EMPTY)


def test_vectors():
    assert read_one("[]") == Vector()
    assert type(read_one("[1 [2]]")) is Vector
    assert read_one("[1 [2] (3)]") == V(1, V(2), L(3))


def test_maps():
    assert read_one("{}") == Map()
    assert read_one("{:a 1 :b [2]}") == Map({K("a"): 1, K("b"): V(2)})
    assert type(read_one("{1 2}")) is Map
    assert list(read_one("{:z 1 :a 2 :m 3}")) == [K("z"), K("a"), K("m")]
    assert read_one("{[1 2] {3 4}}") == Map({V(1, 2): Map({3: 4})})


def test_sets():
    assert read_one("#{}") == Set()
    assert read_one("#{1 2 :a}") == Set({1, 2, K("a")})
    assert type(read_one("#{#{1}}")) is Set
    assert read_one("#{#{1}}") == Set({Set({1})})


def test_vector_and_list_differ():
    assert read_one("[1 2]") != read_one("(1 2)")


def test_syntax_kinds_and_children():
    node = syntax_one("{:a [1] :b #{2}}")
    assert node.kind == "map"
    assert [child.kind for child in node.value] == ["atom", "vector", "atom", "set"]
    assert node.value[0].value is K("a")
    assert node.value[1].value[0].value == 1
    assert syntax_one("(x)").kind == "list"
    assert syntax_one("x").kind == "atom"
    assert isinstance(node.value, tuple)


# Numbers.


@pytest.mark.parametrize(
    "text, value",
    [
        ("0", 0),
        ("42", 42),
        ("-42", -42),
        ("+42", 42),
        ("-0", 0),
        ("007", 7),
        ("1_000_000", 1000000),
        ("-1_0", -10),
        ("0x1F", 31),
        ("0X1f", 31),
        ("-0x1F", -31),
        ("+0xff", 255),
        ("0xFF_FF", 0xFFFF),
        ("2r1010", 10),
        ("-2r1010", -10),
        ("16rFF", 255),
        ("16Rff", 255),
        ("36rZZ", 1295),
        ("8r1_7", 15),
        ("123456789012345678901234567890", 123456789012345678901234567890),
    ],
)
def test_integers(text, value):
    result = read_one(text)
    assert type(result) is int
    assert result == value


@pytest.mark.parametrize(
    "text, value",
    [
        ("1/3", Fraction(1, 3)),
        ("-4/6", Fraction(-2, 3)),
        ("+2/4", Fraction(1, 2)),
        ("1_0/3", Fraction(10, 3)),
    ],
)
def test_ratios(text, value):
    result = read_one(text)
    assert type(result) is Fraction
    assert result == value


def test_ratio_with_denominator_one_is_an_int():
    assert type(read_one("4/2")) is int
    assert read_one("4/2") == 2
    assert read_one("0/5") == 0
    assert read_one("-9/3") == -3


@pytest.mark.parametrize(
    "text, value",
    [
        ("1.5", 1.5),
        ("-1.5", -1.5),
        ("+1.5", 1.5),
        ("1.", 1.0),
        ("0.0", 0.0),
        ("-2.0e-3", -0.002),
        ("1e10", 1e10),
        ("1E10", 1e10),
        ("1.5e+3", 1500.0),
        ("1_000.5", 1000.5),
        ("1e400", math.inf),
    ],
)
def test_floats(text, value):
    result = read_one(text)
    assert type(result) is float
    assert result == value


def test_negative_zero_float():
    assert math.copysign(1.0, read_one("-0.0")) == -1.0


def test_special_floats():
    assert read_one("##Inf") == math.inf
    assert read_one("##-Inf") == -math.inf
    assert math.isnan(read_one("##NaN"))
    assert read_one("[##Inf ##-Inf]") == V(math.inf, -math.inf)


def test_huge_integers_beyond_pythons_digit_limit():
    sevens = 7 * (10**10000 - 1) // 9
    assert read_one("7" * 10000) == sevens
    assert read_one("-" + "7" * 10000 + "/2") == Fraction(-sevens, 2)
    assert read_one("7" * 10000 + ".5") == math.inf
    assert read_one("3r" + "2" * 3000) == 3**3000 - 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("1abc", "invalid number `1abc`"),
        ("1__0", "invalid number `1__0`"),
        ("1_", "invalid number `1_`"),
        ("1.2.3", "invalid number `1.2.3`"),
        ("1e", "invalid number `1e`"),
        ("0x", "invalid number `0x`"),
        ("0xG", "invalid number `0xG`"),
        ("1/-2", "invalid number `1/-2`"),
        ("1/2/3", "invalid number `1/2/3`"),
        ("1/2.0", "invalid number `1/2.0`"),
        ("-5x", "invalid number `-5x`"),
        ("37r1", "invalid number `37r1`: a radix must be from 2 to 36"),
        ("1r0", "invalid number `1r0`: a radix must be from 2 to 36"),
        ("2r102", "invalid number `2r102`: a digit is too large for radix 2"),
        ("1/0", "invalid number `1/0`: a ratio's denominator cannot be zero"),
        ("-3/0_0", "invalid number `-3/0_0`: a ratio's denominator cannot be zero"),
        (".5", "invalid number `.5`: write a digit before the point"),
        ("-.5", "invalid number `-.5`: write a digit before the point"),
        ("##Foo", "unknown special value `##Foo`: expected ##Inf, ##-Inf or ##NaN"),
        ("##", "unknown special value `##`: expected ##Inf, ##-Inf or ##NaN"),
    ],
)
def test_bad_numbers(text, message):
    err = read_error("  " + text + " x")
    assert err.message == message
    assert str(err) == f"f.fm:1:3: {message}"
    assert err.span == Span("f.fm", 1, 3, 1, 3 + len(text))
    assert err.incomplete is False


# Strings.


def test_strings():
    assert read_one('""') == ""
    assert read_one('"hello world"') == "hello world"
    assert read_one('"λ → 😀"') == "λ → 😀"
    assert read_one('"a ; not a comment"') == "a ; not a comment"


def test_string_escapes():
    text = r'"\n\t\r\"\\\0\u0041\u00e9\u00E9\u0000\uffff"'
    assert read_one(text) == '\n\t\r"\\\x00Aéé\x00\uffff'


def test_unicode_escape_is_one_character_and_a_lone_surrogate_is_none():
    assert read_one(r'"\u00411"') == "A1"
    assert read_one(r'"\ud83d\ude00!"') == "\U0001F600!"  # a pair, as Java and JSON write
    for text in (r'"\ud83d"', r'"a\uDFFF"', r'"\ud83d\u0041"', r'"\ude00\ud83d"'):
        with pytest.raises(ReadError, match=r"1:\d+: invalid escape `\\u[dD]...` in "
                                            "string: a lone surrogate, not a character"):
            read_one(text)


def test_strings_span_lines():
    assert read_one('"a\nb\n"') == "a\nb\n"
    node = read_syntax_all('"a\nb" x')[0]
    assert where(node) == (1, 1, 2, 3)


@pytest.mark.parametrize(
    "text, col, message",
    [
        (r'"ab\qc"', 4, "invalid escape `\\q` in string"),
        (r'"\a"', 2, "invalid escape `\\a` in string"),
        (r'"\x41"', 2, "invalid escape `\\x` in string"),
        (r'"\u12"', 2, "invalid escape `\\u` in string: expected exactly 4 hex digits"),
        (r'"\u12G4"', 2, "invalid escape `\\u` in string: expected exactly 4 hex digits"),
        (r'"\u+123"', 2, "invalid escape `\\u` in string: expected exactly 4 hex digits"),
        (r'"\U0041"', 2, "invalid escape `\\U` in string"),
    ],
)
def test_bad_escapes(text, col, message):
    err = read_error(text)
    assert err.message.startswith(message)
    assert (err.span.line, err.span.col) == (1, col)
    assert err.incomplete is False


def test_bad_escape_on_a_later_line():
    err = read_error('(x\n  "ok\nstill \\w")')
    assert str(err).startswith("f.fm:3:7: invalid escape `\\w` in string")


def test_invalid_escape_lists_the_valid_ones():
    err = read_error(r'"\q"')
    assert err.message == (
        'invalid escape `\\q` in string: expected one of \\n \\t \\r \\" \\\\ \\0 \\uXXXX'
    )


# Keywords, symbols, constants.


def test_keywords():
    assert read_one(":k") is K("k")
    assert read_one(":ns/k") is K("ns/k")
    assert read_one(":true") is K("true")
    assert read_one(":1") is K("1")
    assert read_one(":a.b-c?") is K("a.b-c?")
    assert K("k").name == "k"


def test_bare_colon_is_an_error():
    err = read_error("(a : b)")
    assert str(err) == "f.fm:1:4: a keyword needs a name after `:`"


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "foo-bar",
        "*earmuffs*",
        "+",
        "-",
        "->",
        "->>",
        "-a",
        "+b",
        "a+",
        "!",
        "set!",
        "ok?",
        "<=",
        ">",
        "=",
        "ns/name",
        "/",
        "a.b",
        "...",
        ".method",
        "&",
        "%",
        "$",
        "^",
        "|",
        "a_b",
        "_",
        "a'",
        "a'b",
        "a#",
        "x1",
        "λ",
        "call/cc",
        "x@y",
        "a:b",
        "a\\b",
        "nil?",
        "truex",
    ],
)
def test_symbols(name):
    assert read_one(name) is S(name)
    assert read_one(f"({name})") == L(S(name))


def test_constants():
    assert read_one("true") is TRUE
    assert read_one("false") is FALSE
    assert read_one("nil") is None
    assert read_all("nil true false") == [None, TRUE, FALSE]


def test_delimiters_end_tokens():
    assert read_one("(a(b)c)") == L(S("a"), L(S("b")), S("c"))
    assert read_one('[a"s"b]') == V(S("a"), "s", S("b"))
    assert read_one("[a;c\nb]") == V(S("a"), S("b"))
    assert read_one("[1`a]") == V(1, L(S("quasiquote"), S("a")))
    assert read_one("[a~b]") == V(S("a"), L(S("unquote"), S("b")))
    assert read_one("[1{2 3}]") == V(1, Map({2: 3}))


# Reader macros.


def test_quote_family():
    assert read_one("'x") == L(S("quote"), S("x"))
    assert read_one("`x") == L(S("quasiquote"), S("x"))
    assert read_one("~x") == L(S("unquote"), S("x"))
    assert read_one("~@x") == L(S("unquote-splicing"), S("x"))
    assert read_one("'(1 2)") == L(S("quote"), L(1, 2))
    assert read_one("''x") == L(S("quote"), L(S("quote"), S("x")))
    assert read_one("`(a ~b ~@c)") == L(
        S("quasiquote"),
        L(S("a"), L(S("unquote"), S("b")), L(S("unquote-splicing"), S("c"))),
    )
    assert read_one("' x") == L(S("quote"), S("x"))
    assert read_one("~ @x") == L(S("unquote"), L(S("deref"), S("x")))
    assert read_one("@@x") == L(S("deref"), L(S("deref"), S("x")))


def test_quote_syntax_and_spans():
    node = syntax_one("  '(a)")
    assert node.kind == "list"
    head, body = node.value
    assert head.kind == "atom" and head.value is S("quote")
    assert where(head) == (1, 3, 1, 4)
    assert where(body) == (1, 4, 1, 7)
    assert where(node) == (1, 3, 1, 7)
    splice = syntax_one("~@x")
    assert where(splice.value[0]) == (1, 1, 1, 3)
    assert where(splice) == (1, 1, 1, 4)


# Spans.


def test_atom_spans():
    nodes = read_syntax_all('foo 12 "s" :k\n  ##Inf', "f.fm")
    assert [where(n) for n in nodes] == [
        (1, 1, 1, 4),
        (1, 5, 1, 7),
        (1, 8, 1, 11),
        (1, 12, 1, 14),
        (2, 3, 2, 8),
    ]
    assert nodes[0].span.file == "f.fm"
    assert nodes[0].span == Span("f.fm", 1, 1, 1, 4)


def test_nested_multiline_spans():
    outer = syntax_one("(a\n  (b c))")
    assert where(outer) == (1, 1, 2, 9)
    a, inner = outer.value
    assert where(a) == (1, 2, 1, 3)
    assert where(inner) == (2, 3, 2, 8)
    b, c = inner.value
    assert where(b) == (2, 4, 2, 5)
    assert where(c) == (2, 6, 2, 7)


def test_collection_spans():
    nodes = read_syntax_all("[1]\n{:a 1}\n#{2}\n  ()")
    assert [where(n) for n in nodes] == [(1, 1, 1, 4), (2, 1, 2, 7), (3, 1, 3, 5), (4, 3, 4, 5)]


def test_default_file_name():
    assert syntax_one("x", "<string>").span.file == "<string>"
    assert read_syntax_all("x")[0].span.file == "<string>"


def test_crlf_line_endings():
    nodes = read_syntax_all("a\r\nb")
    assert [where(n) for n in nodes] == [(1, 1, 1, 2), (2, 1, 2, 2)]


def test_syntax_repr():
    assert repr(syntax_one("x")) == "Syntax(atom x @ f.fm:1:1)"
    assert repr(syntax_one("(x y)")) == "Syntax(list of 2 @ f.fm:1:1)"


# Errors.


@pytest.mark.parametrize(
    "text, location, message",
    [
        (")", "1:1", "unexpected `)`: nothing is open"),
        ("a\n  ]", "2:3", "unexpected `]`: nothing is open"),
        ("(1 2]", "1:5", "unexpected `]`: expected `)` to close the list opened at f.fm:1:1"),
        ("[(])", "1:3", "unexpected `]`: expected `)` to close the list opened at f.fm:1:2"),
        ("{1 2)", "1:5", "unexpected `)`: expected `}` to close the map opened at f.fm:1:1"),
        ("#{1]", "1:4", "unexpected `]`: expected `}` to close the set opened at f.fm:1:1"),
        ("[\n (\n ]", "3:2", "unexpected `]`: expected `)` to close the list opened at f.fm:2:2"),
        ("(a ')", "1:5", "unexpected `)`: expected a form after `'` at f.fm:1:4"),
        ("(a ~@)", "1:6", "unexpected `)`: expected a form after `~@` at f.fm:1:4"),
        ("(a #_)", "1:6", "unexpected `)`: expected a form after `#_` at f.fm:1:4"),
        ("{:a}", "1:1", "map literal needs an even number of forms, found 1"),
        ("\n {1 2 3}", "2:2", "map literal needs an even number of forms, found 3"),
        ("{:a 1 :a 2}", "1:7", "duplicate key `:a`"),
        ("{[1 2] 1\n [1 2] 2}", "2:2", "duplicate key `[1 2]`"),
        ("#{1 2 1}", "1:7", "duplicate element `1`"),
        ('#{"x" "x"}', "1:7", 'duplicate element `"x"`'),
        ("#x", "1:1", "unknown dispatch `#x`"),
        ("# {}", "1:1", "unknown dispatch `# `"),
    ],
)
def test_errors(text, location, message):
    err = read_error(text)
    assert str(err) == f"f.fm:{location}: {message}"
    assert err.message == message
    assert err.incomplete is False
    assert not isinstance(err, IncompleteInput)
    assert err.kind == "read-error"


def test_map_error_span_covers_the_map():
    err = read_error("x {1 2 3}")
    assert err.span == Span("f.fm", 1, 3, 1, 10)


@pytest.mark.parametrize(
    "text, location, message",
    [
        (
            "(1 2",
            "1:1",
            "unterminated list opened at f.fm:1:1: expected `)` before the end of input",
        ),
        (
            "x\n\n  [1",
            "3:3",
            "unterminated vector opened at f.fm:3:3: expected `]` before the end of input",
        ),
        (
            "{:a (1)",
            "1:1",
            "unterminated map opened at f.fm:1:1: expected `}` before the end of input",
        ),
        ("#{", "1:1", "unterminated set opened at f.fm:1:1: expected `}` before the end of input"),
        (
            "(a\n  (b ",
            "2:3",
            "unterminated list opened at f.fm:2:3: expected `)` before the end of input",
        ),
        ('x "abc', "1:3", "unterminated string opened at f.fm:1:3"),
        ('"abc\\', "1:1", "unterminated string opened at f.fm:1:1"),
        ('"abc\\"', "1:1", "unterminated string opened at f.fm:1:1"),
        ('"\\u00', "1:1", "unterminated string opened at f.fm:1:1"),
        ("'", "1:1", "expected a form after `'` at f.fm:1:1, found the end of input"),
        ("(a `", "1:4", "expected a form after ``` at f.fm:1:4, found the end of input"),
        ("~@", "1:1", "expected a form after `~@` at f.fm:1:1, found the end of input"),
        ("1 #_", "1:3", "expected a form after `#_` at f.fm:1:3, found the end of input"),
        ("#", "1:1", "expected a dispatch character after `#`"),
    ],
)
def test_incomplete_errors(text, location, message):
    err = read_error(text)
    assert str(err) == f"f.fm:{location}: {message}"
    assert err.incomplete is True
    assert isinstance(err, IncompleteInput)


def test_unterminated_error_span_is_the_opener():
    assert read_error("  #{1").span == Span("f.fm", 1, 3, 1, 5)
    assert read_error("  (1").span == Span("f.fm", 1, 3, 1, 4)


def test_read_one_needs_exactly_one_form():
    with pytest.raises(ReadError) as info:
        read_one("  ; nothing\n", "f.fm")
    assert str(info.value) == "f.fm:2:1: expected a form, found none"
    with pytest.raises(ReadError) as info:
        read_one("1 (2)\n3", "f.fm")
    assert str(info.value) == "f.fm:1:3: expected one form, found 3"
    assert info.value.incomplete is False
    assert read_one(" #_0 (1) ; trailing") == L(1)


def test_is_complete():
    assert is_complete("")
    assert is_complete("(+ 1 2)")
    assert is_complete("(+ 1 2) ; comment (")
    assert is_complete('"a (" x')
    assert not is_complete("(+ 1")
    assert not is_complete("(let [x 1]\n")
    assert not is_complete('(print "hello')
    assert not is_complete("'")
    assert not is_complete("#_")
    assert not is_complete("{:a #{")
    assert is_complete(")")
    assert is_complete("(]")
    assert is_complete("{1}")
    assert is_complete('"\\q')


# Deep nesting.

DEPTH = 100_000


def test_read_deeply_nested_lists():
    value = read_one("(" * DEPTH + ")" * DEPTH)
    depth = 0
    while value is not EMPTY:
        assert type(value) is Pair and value.rest is EMPTY
        value = value.first
        depth += 1
    assert depth == DEPTH - 1


def test_read_deeply_nested_syntax_and_strip():
    (node,) = read_syntax_all("[" * DEPTH + "x" + "]" * DEPTH)
    assert where(node) == (1, 1, 1, 2 * DEPTH + 2)
    value = strip(node)
    for _ in range(DEPTH):
        assert type(value) is Vector and len(value) == 1
        value = value[0]
    assert value is S("x")


def test_deeply_nested_quotes():
    value = read_one("'" * DEPTH + "x")
    for _ in range(DEPTH):
        assert value.first is S("quote")
        value = value.rest.first
    assert value is S("x")


def test_to_syntax_deeply_nested():
    value = EMPTY
    for _ in range(DEPTH):
        value = Pair(value, EMPTY)
    span = Span("m", 1, 1, 1, 2)
    node = to_syntax(value, span)
    depth = 0
    while node.value:
        assert node.kind == "list" and node.span is span
        (node,) = node.value
        depth += 1
    assert depth == DEPTH
    assert strip(to_syntax(V(V(1)), span)) == V(V(1))


def test_deep_set_elements_compare_without_crashing():
    # Hashing a deep vector recurses in Python; the reader reports that as a ReadError.
    text = "#{" + "[" * 50_000 + "]" * 50_000 + "}"
    try:
        value = read_one(text)
    except ReadError as err:
        assert "nested too deeply" in err.message
    else:
        assert type(value) is Set


# strip and to_syntax.


def test_strip_builds_plain_values():
    node = syntax_one("(a [1 {:k #{2}}] ())")
    assert strip(node) == L(S("a"), V(1, Map({K("k"): Set({2})})), EMPTY)
    assert strip(syntax_one("x")) is S("x")
    assert strip(syntax_one("()")) is EMPTY


def test_strip_matches_read_all():
    text = '(a \'b [1 2/3 "s"] {:k #{nil true}}) ##-Inf :kw'
    assert [strip(n) for n in read_syntax_all(text)] == read_all(text)


def test_to_syntax_gives_every_node_the_span():
    span = Span("macro.fm", 4, 2, 4, 9)
    value = L(S("if"), V(1, EMPTY), Map({K("a"): Set({2})}), "s", None)
    node = to_syntax(value, span)
    kinds = []
    todo = [node]
    while todo:
        n = todo.pop()
        assert n.span is span
        kinds.append(n.kind)
        if n.kind != "atom":
            todo.extend(n.value)
    assert sorted(set(kinds)) == ["atom", "list", "map", "set", "vector"]
    assert strip(node) == value
    assert node.value[2].kind == "map"
    assert node.value[2].value[0].value is K("a")


def test_to_syntax_keeps_non_data_as_atoms():
    span = Span("m", 1, 1, 1, 1)
    proc = object()
    node = to_syntax(L(proc, 1), span)
    assert node.value[0].kind == "atom" and node.value[0].value is proc
    improper = Pair(1, 2)
    atom = to_syntax(improper, span)
    assert atom.kind == "atom" and atom.value is improper
    assert to_syntax((1, 2), span).kind == "atom"
    assert to_syntax({1: 2}, span).kind == "atom"
    assert to_syntax(EMPTY, span).kind == "list"


def test_syntax_slots():
    node = Syntax("atom", 1, Span("f", 1, 1, 1, 2))
    with pytest.raises(AttributeError):
        node.other = 1


# Arbitrary text.

SYNTAX_CHARS = "()[]{}#_\"\\;:'`~@^,. \n\t+-/0123456789abcefrxXuU=NIna&!?|%$<>λ"


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet=st.sampled_from(SYNTAX_CHARS), max_size=40) | st.text(max_size=40))
def test_reader_raises_only_read_errors(text):
    try:
        read_all(text, "t")
    except ReadError as err:
        assert isinstance(err.span, Span)
        assert err.span.file == "t"
        assert isinstance(err.incomplete, bool)
    complete = is_complete(text)
    try:
        read_syntax_all(text)
    except IncompleteInput:
        assert not complete
    except ReadError:
        assert complete
    else:
        assert complete


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(SYNTAX_CHARS), max_size=40))
def test_read_all_and_strip_agree(text):
    try:
        nodes = read_syntax_all(text)
    except ReadError:
        return
    values = read_all(text)
    assert [to_string(strip(n)) for n in nodes] == [to_string(v) for v in values]
