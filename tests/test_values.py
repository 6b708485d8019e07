"""Equality and hashing agree, for Flowmetal's = and hash, across every kind of value."""

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from flowmetal.interpreter import Session
from flowmetal.procedures import PRIMITIVES
from flowmetal.values import EMPTY, FALSE, TRUE, Keyword, Map, Set, Symbol, Vector, make_list

EQUAL = PRIMITIVES["="].fn
HASH = PRIMITIVES["hash"].fn

numbers = st.one_of(
    st.integers(-10, 10),
    st.integers(-10, 10).map(float),
    st.fractions(max_denominator=4).map(lambda f: f.numerator if f.denominator == 1 else f),
    st.integers(-10**30, 10**30),
)
atoms = st.one_of(
    numbers, st.sampled_from([None, TRUE, FALSE, EMPTY]), st.text(max_size=3),
    st.sampled_from("abc").map(Keyword), st.sampled_from("abc").map(Symbol),
)


def collections(children):
    return st.one_of(
        st.lists(children, max_size=3).map(Vector),
        st.lists(children, max_size=3).map(make_list),
        st.dictionaries(atoms, children, max_size=3).map(Map),
        st.frozensets(atoms, max_size=3).map(Set),
    )


values = st.recursive(atoms, collections, max_leaves=8)


@given(values, values)
def test_equal_values_have_equal_hashes(a, b):
    if EQUAL(a, b) is TRUE:
        assert HASH(a) == HASH(b)


@given(values)
def test_equality_is_reflexive_except_nan(a):
    assert EQUAL(a, a) is TRUE


@given(st.integers(-1000, 1000))
def test_numbers_equal_across_kinds_hash_alike(n):
    for other in (float(n), Fraction(n, 1)):
        assert EQUAL(n, other) is TRUE
        assert HASH(n) == HASH(other)


def test_booleans_are_not_numbers():
    assert EQUAL(1, TRUE) is FALSE
    assert EQUAL(0, FALSE) is FALSE
    assert len(Map({1: "a", TRUE: "b"})) == 2


def test_lists_and_vectors_differ_but_each_hashes_consistently():
    s = Session()
    assert s.eval_string("(= [1 2] '(1 2))") is FALSE
    assert s.eval_string("(= (hash [1 [2]]) (hash (vector 1 (vector 2))))") is TRUE
    assert s.eval_string("(get {[1 2] :v '(1 2) :l} (vec '(1 2)))") == Keyword("v")
    assert s.eval_string("(count (hash-set 1 1.0 (/ 3 3)))") == 1
