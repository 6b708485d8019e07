"""Destructuring in let, fn parameters and the macros built on them."""

import pytest

from flowmetal.interpreter import Session
from flowmetal.reader import read_one
from flowmetal.values import SyntaxError_


@pytest.mark.parametrize("source, expected", [
    ("(let [[a b] [1 2]] [a b])", "[1 2]"),
    ("(let [[a b c] '(1 2)] [a b c])", "[1 2 nil]"),
    ("(let [[a & more] [1 2 3]] [a more])", "[1 (2 3)]"),
    ("(let [[a & more] [1]] [a more])", "[1 nil]"),
    ("(let [[a :as all] [1 2]] [a all])", "[1 [1 2]]"),
    ("(let [[[a b] c] [[1 2] 3]] [a b c])", "[1 2 3]"),
    ("(let [{:keys [a b]} {:a 1 :b 2}] [a b])", "[1 2]"),
    ("(let [{:keys [a b] :or {b 5}} {:a 1}] [a b])", "[1 5]"),
    ("(let [{:strs [a]} {\"a\" 1}] a)", "1"),
    ("(let [{:syms [a]} {'a 1}] a)", "1"),
    ("(let [{x :x [y] :y :as m} {:x 1 :y [2]}] [x y m])", "[1 2 {:x 1, :y [2]}]"),
    ("(let [[a b] nil] [a b])", "[nil nil]"),
    ("((fn [[a b] {:keys [c]}] (+ a b c)) [1 2] {:c 3})", "6"),
    ("((fn [a & [b c]] [a b c]) 1 2 3)", "[1 2 3]"),
    ("(defn f [{:keys [x] :or {x 10}}] x) [(f {}) (f {:x 1})]", "[10 1]"),
    ("(loop [[x & xs] [1 2 3] acc 0] (if x (recur xs (+ acc x)) acc))", "6"),
    ("(let [out []] (doseq [[k v] {:a 1}] (set! out (conj out k v))) out)", "[:a 1]"),
    ("(let [nth 5 [a] [1]] [nth a])", "[5 1]"),
])
def test_patterns(source, expected):
    assert Session().eval_string(source) == read_one(expected)


@pytest.mark.parametrize("source", [
    "(let [1 2] 3)",
    "(let [[a &] [1]] a)",
    "(let [{:keys a} {}] a)",
    "(let [[a :as] [1]] a)",
    "(fn [1] 1)",
])
def test_bad_patterns_are_syntax_errors(source):
    with pytest.raises(SyntaxError_):
        Session().load(source)
