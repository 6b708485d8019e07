"""Control and the machine: call/cc, dynamic-wind, apply, errors, output, identity."""

from __future__ import annotations

from typing import Any

from .. import machine as M
from ..printer import display_string, shown, to_string
from ..procedures import CONTROL, MACHINE, Closure, Continuation, Primitive, binary, define
from ..values import (
    FALSE,
    TRUE,
    Boolean,
    FlowmetalError,
    Keyword,
    Map,
    Symbol,
    boolean,
    kw,
)

define("call/cc", CONTROL, 1, doc="Call f with the current continuation.")(M.call_cc)
define("call-with-current-continuation", CONTROL, 1,
       doc="Call f with the current continuation.")(M.call_cc)
define("dynamic-wind", CONTROL, 3,
       doc="(dynamic-wind before thunk after): call thunk; before runs on every entry "
           "and after on every exit, also through continuations and errors.")(M.dynamic_wind)
define("apply", CONTROL, 2, None, doc="(apply f a b coll): call f with a, b and the items "
       "of coll.")(M.apply_)
define("throw", CONTROL, 1, doc="Raise a value; catch receives it.")(M.throw)


@define("error", CONTROL, 1, 3)
def error(m: Any, args: tuple, k: Any) -> tuple:
    """(error msg), (error msg data) or (error :type msg data): raise an error map."""
    if type(args[0]) is Keyword:
        kind, rest = args[0].name, args[1:]
    else:
        kind, rest = "error", args
    if not rest or type(rest[0]) is not str:
        raise FlowmetalError("error: needs a message string", "type-error")
    data = rest[1] if len(rest) > 1 else None
    value = M.error_value(kind, rest[0], data, M.site_backtrace(m, k))
    return m.throw(value, k)


@define("ex-info", min_args=2, max_args=3)
def ex_info(message: Any, data: Any, kind: Any = None) -> Map:
    """An error map (not raised): {:type kind-or-:error :message msg :data data}."""
    if type(message) is not str:
        raise FlowmetalError("ex-info: needs a message string", "type-error")
    return Map({M.K_TYPE: kind if type(kind) is Keyword else kw("error"),
                M.K_MESSAGE: message, M.K_DATA: data})


@define("print", MACHINE, 0, None)
def print_(m: Any, *xs: Any) -> None:
    """Write the display text of the arguments, separated by spaces."""
    m.write(" ".join(display_string(x) for x in xs))


@define("println", MACHINE, 0, None)
def println(m: Any, *xs: Any) -> None:
    """Write the display text of the arguments and a newline."""
    m.write(" ".join(display_string(x) for x in xs) + "\n")


@define("pr", MACHINE, 0, None)
def pr(m: Any, *xs: Any) -> None:
    """Write the readable text of the arguments."""
    m.write(" ".join(to_string(x) for x in xs))


@define("prn", MACHINE, 0, None)
def prn(m: Any, *xs: Any) -> None:
    """Write the readable text of the arguments and a newline."""
    m.write(" ".join(to_string(x) for x in xs) + "\n")


@define("newline", MACHINE, 0)
def newline(m: Any) -> None:
    """Write a newline."""
    m.write("\n")


@define("gensym", MACHINE, 0, 1)
def gensym(m: Any, prefix: Any = "G__") -> Symbol:
    """A fresh symbol, for macros."""
    return m.gensym(prefix if type(prefix) is str else "G__")


@define("=", min_args=1, max_args=None)
def equal(*xs: Any) -> Boolean:
    """True if all the arguments are equal values (numbers by value: (= 1 1.0))."""
    if len(xs) == 2:
        return TRUE if xs[0] == xs[1] else FALSE
    first = xs[0]
    return boolean(all(first == x for x in xs[1:]))


@binary("=")
def equal2(a: Any, b: Any) -> Boolean:
    return TRUE if a == b else FALSE


@define("not=", min_args=1, max_args=None)
def not_equal(*xs: Any) -> Boolean:
    """The negation of =."""
    return FALSE if equal(*xs) is TRUE else TRUE


@define("identical?", min_args=2)
def identical(a: Any, b: Any) -> Boolean:
    """True if a and b are the same object."""
    return boolean(a is b)


@define("hash", min_args=1)
def hash_(x: Any) -> int:
    """A hash that agrees with =."""
    return hash(x)


@define("not", min_args=1)
def not_(x: Any) -> Boolean:
    """True for false and nil."""
    return TRUE if x is FALSE or x is None else FALSE


def _pred(name: str, doc: str, test) -> None:
    define(name, min_args=1, doc=doc)(lambda x: TRUE if test(x) else FALSE)


_pred("nil?", "True for nil.", lambda x: x is None)
_pred("some?", "True for anything but nil.", lambda x: x is not None)
_pred("true?", "True for true.", lambda x: x is TRUE)
_pred("false?", "True for false.", lambda x: x is FALSE)
_pred("boolean?", "True for true and false.", lambda x: type(x) is Boolean)
_pred("fn?", "True for procedures.", lambda x: type(x) in (Closure, Primitive, Continuation))
_pred("continuation?", "True for continuations.", lambda x: type(x) is Continuation)


@define("type", min_args=1)
def type_of(x: Any) -> Keyword:
    """The type of a value as a keyword: :int :float :ratio :string :list :map ..."""
    from fractions import Fraction

    from ..values import EMPTY, Atom, Delay, Pair, Regex, Set, Vector

    table = {int: "int", float: "float", Fraction: "ratio", str: "string", Boolean: "boolean",
             Symbol: "symbol", Keyword: "keyword", Pair: "list", Vector: "vector", Map: "map",
             Set: "set", Closure: "fn", Primitive: "fn", Continuation: "continuation",
             Atom: "atom", Delay: "delay", Regex: "regex"}
    if x is None:
        return kw("nil")
    if x is EMPTY:
        return kw("list")
    return kw(table.get(type(x), "object"))



@define("continuation-depth", CONTROL, 0)
def continuation_depth(m: Any, args: tuple, k: Any) -> tuple:
    """The number of frames waiting in the current continuation: it stays the same
    through a loop of tail calls and grows with non-tail recursion (for tests, debugging)."""
    n, frame = 0, k
    while frame is not None:
        n += 1
        frame = frame[1]
    return None, None, k, n


@define("%shown", min_args=1)
def shown_(x: Any) -> str:
    """The readable text of x for an error message: at most 200 characters."""
    return shown(x)
