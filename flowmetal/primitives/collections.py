"""Lists, vectors, maps and sets: construction, access and the seq functions.

Every collection is immutable: ``conj``, ``assoc`` and friends return new values.
A *seqable* is a list, vector, map (a seq of [key value] vectors), set, string (a seq of
one-character strings) or nil.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from .. import limits
from ..printer import shown
from ..procedures import define
from ..values import (
    EMPTY,
    FALSE,
    TRUE,
    Boolean,
    FlowmetalError,
    Keyword,
    Map,
    Pair,
    Set,
    Symbol,
    Vector,
    boolean,
    make_list,
    normalize_ratio,
)


def _type_error(op: str, what: str, x: Any) -> FlowmetalError:
    return FlowmetalError(f"{op}: expected {what}, got {shown(x)}", "type-error")


def items(op: str, coll: Any) -> Iterator[Any]:
    """Iterate the elements of any seqable (a type error otherwise)."""
    t = type(coll)
    if t is Pair or t is Vector or t is Set or coll is EMPTY or t is str:
        return iter(coll)
    if coll is None:
        return iter(())
    if t is Map:
        return (Vector(kv) for kv in coll.items())
    raise _type_error(op, "a collection", coll)


def seq_list(op: str, coll: Any) -> Any:
    """The seqable as a list (Pair chain or EMPTY)."""
    if type(coll) is Pair or coll is EMPTY:
        return coll
    return make_list(list(items(op, coll)))


@define("list", min_args=0, max_args=None)
def list_(*xs: Any) -> Any:
    """A list of the arguments."""
    return make_list(xs)


@define("vector", min_args=0, max_args=None)
def vector(*xs: Any) -> Vector:
    """A vector of the arguments."""
    return Vector(xs)


@define("hash-map", min_args=0, max_args=None)
def hash_map(*kvs: Any) -> Map:
    """A map of alternating keys and values."""
    if len(kvs) % 2:
        raise FlowmetalError("hash-map: needs an even number of arguments", "arity-error")
    return Map(zip(kvs[::2], kvs[1::2]))


@define("hash-set", min_args=0, max_args=None)
def hash_set(*xs: Any) -> Set:
    """A set of the arguments."""
    return Set(xs)


@define("vec", min_args=1)
def vec(coll: Any) -> Vector:
    """A vector of the items of a seqable."""
    return coll if type(coll) is Vector else Vector(items("vec", coll))


@define("set", min_args=1)
def set_(coll: Any) -> Set:
    """A set of the items of a seqable."""
    return coll if type(coll) is Set else Set(items("set", coll))


@define("%map-from-seq", min_args=1)
def map_from_seq(coll: Any) -> Map:
    """A map from a flat seq of alternating keys and values (quasiquoted maps)."""
    return hash_map(*items("map", coll))


@define("%keyword-args", min_args=1)
def keyword_args(value: Any) -> Any:
    """What a map pattern reads a list as, as in Clojure 1.11: alternating keys and values,
    with an optional trailing map merged over them; one item is itself; ``()`` is ``{}``.
    Any other value is itself."""
    if value is EMPTY:
        return Map()
    if type(value) is not Pair:
        return value
    kvs = list(value)
    if len(kvs) == 1:
        return kvs[0]
    trailing = kvs.pop() if len(kvs) % 2 and type(kvs[-1]) is Map else None
    if len(kvs) % 2:
        raise FlowmetalError(f"no value supplied for key {shown(kvs[-1])}", "arity-error")
    pairs = Map(zip(kvs[::2], kvs[1::2]))
    return pairs if trailing is None else Map({**pairs, **trailing})


@define("concat", min_args=0, max_args=None)
def concat(*colls: Any) -> Any:
    """A list of the items of each seqable in turn."""
    out: list[Any] = []
    for c in colls:
        out.extend(items("concat", c))
        limits.check_items("concat", len(out))
    return make_list(out)


@define("cons", min_args=2)
def cons(x: Any, coll: Any) -> Pair:
    """A list with x in front of the items of coll."""
    return Pair(x, seq_list("cons", coll))


@define("first", min_args=1)
def first(coll: Any) -> Any:
    """The first item, or nil when empty."""
    t = type(coll)
    if t is Pair:
        return coll.first
    if t is Vector or t is str:
        return coll[0] if coll else None
    for x in items("first", coll):
        return x
    return None


@define("rest", min_args=1)
def rest(coll: Any) -> Any:
    """A list of all but the first item (() when there are none)."""
    if type(coll) is Pair:
        return coll.rest
    lst = seq_list("rest", coll)
    return lst.rest if type(lst) is Pair else EMPTY


@define("next", min_args=1)
def next_(coll: Any) -> Any:
    """Like rest, but nil instead of ()."""
    r = rest(coll)
    return None if r is EMPTY else r


@define("seq", min_args=1)
def seq(coll: Any) -> Any:
    """The items as a list, or nil when empty."""
    lst = seq_list("seq", coll)
    return None if lst is EMPTY else lst


@define("count", min_args=1)
def count(coll: Any) -> int:
    """The number of items (characters for a string)."""
    if coll is None:
        return 0
    t = type(coll)
    if t in (Pair, Vector, Map, Set, str) or coll is EMPTY:
        return len(coll)
    raise _type_error("count", "a collection", coll)


@define("empty?", min_args=1)
def is_empty(coll: Any) -> Boolean:
    """True when the collection has no items."""
    return boolean(count(coll) == 0)


@define("nth", min_args=2, max_args=3)
def nth(coll: Any, index: Any, *default: Any) -> Any:
    """The item at index (0-based); the default, or an error, when out of range."""
    if type(index) is not int:
        raise _type_error("nth", "an integer index", index)
    t = type(coll)
    if coll is None:  # (Clojure's: nil has nothing at any index)
        return default[0] if default else None
    if t is Vector or t is str:
        if 0 <= index < len(coll):
            return coll[index]
    elif t is Pair or coll is EMPTY:
        node = coll
        i = index
        while type(node) is Pair and i > 0:
            node = node.rest
            i -= 1
        if index >= 0 and type(node) is Pair:
            return node.first
    else:
        raise _type_error("nth", "a list, vector or string", coll)
    if default:
        return default[0]
    raise FlowmetalError(f"nth: index {shown(index)} out of range", "index-error")


@define("get", min_args=2, max_args=3)
def get(coll: Any, key: Any, default: Any = None) -> Any:
    """The value at key in a map (index in a vector, member of a set), or the default."""
    t = type(coll)
    if t is Map:
        return coll.get(key, default)
    if t is Vector or t is str:
        if type(key) is int and 0 <= key < len(coll):
            return coll[key]
        return default
    if t is Set:
        return key if key in coll else default
    return default


@define("contains?", min_args=2)
def contains(coll: Any, key: Any) -> Boolean:
    """True if the map has the key, the set the member, the vector the index."""
    t = type(coll)
    if t is Map or t is Set:
        return boolean(key in coll)
    if t is Vector or t is str:
        return boolean(type(key) is int and 0 <= key < len(coll))
    if coll is None:
        return FALSE
    raise _type_error("contains?", "a map, set, vector or string", coll)


@define("assoc", min_args=3, max_args=None)
def assoc(coll: Any, *kvs: Any) -> Any:
    """A copy with each key bound to its value (a vector takes indexes)."""
    if len(kvs) % 2:
        raise FlowmetalError("assoc: needs keys and values in pairs", "arity-error")
    if coll is None:
        coll = Map()
    t = type(coll)
    if t is Map:
        new = Map(coll)
        for k, v in zip(kvs[::2], kvs[1::2]):
            dict.__setitem__(new, k, v)
        return new
    if t is Vector:
        lst = list(coll)
        for k, v in zip(kvs[::2], kvs[1::2]):
            if type(k) is not int or not 0 <= k <= len(lst):
                raise FlowmetalError(f"assoc: index {shown(k)} out of range", "index-error")
            if k == len(lst):
                lst.append(v)
            else:
                lst[k] = v
        return Vector(lst)
    raise _type_error("assoc", "a map or vector", coll)


@define("dissoc", min_args=1, max_args=None)
def dissoc(m: Any, *keys: Any) -> Any:
    """A copy of the map without the keys."""
    if m is None:
        return None
    if type(m) is not Map:
        raise _type_error("dissoc", "a map", m)
    new = Map(m)
    for k in keys:
        new.pop(k, None)
    return new


@define("disj", min_args=1, max_args=None)
def disj(s: Any, *xs: Any) -> Any:
    """A copy of the set without the members (nil stays nil)."""
    if s is None:
        return None
    if type(s) is not Set:
        raise _type_error("disj", "a set", s)
    return Set(s.difference(xs))


@define("conj", min_args=1, max_args=None)
def conj(coll: Any, *xs: Any) -> Any:
    """Add items where the collection grows: lists in front, vectors at the end; a map
    takes [key value] vectors or maps (nil adds nothing)."""
    t = type(coll)
    if len(xs) > limits.SMALL or (t is Vector and len(coll) > limits.SMALL):
        had = sum(1 for _ in coll) if t is Pair else len(coll) if t in (Vector, Map, Set) \
            else 0
        limits.check_items("conj", had + len(xs))
    if t is Vector:
        return Vector((*coll, *xs))
    if t is Pair or coll is EMPTY or coll is None:
        out = EMPTY if coll is None else coll
        for x in xs:
            out = Pair(x, out)
        return out
    if t is Set:
        return Set(coll.union(xs))
    if t is Map:
        new = Map(coll)
        for entry in xs:
            if entry is None:
                continue
            if type(entry) is Map:
                new.update(entry)
            elif type(entry) is Vector and len(entry) == 2:
                dict.__setitem__(new, entry[0], entry[1])
            else:
                raise _type_error("conj", "a [key value] vector", entry)
        return new
    raise _type_error("conj", "a collection", coll)


@define("keys", min_args=1)
def keys(m: Any) -> Any:
    """A list of the map's keys (nil for an empty map)."""
    if m is None:
        return None
    if type(m) is not Map:
        raise _type_error("keys", "a map", m)
    return make_list(m.keys()) if m else None


@define("vals", min_args=1)
def vals(m: Any) -> Any:
    """A list of the map's values (nil for an empty map)."""
    if m is None:
        return None
    if type(m) is not Map:
        raise _type_error("vals", "a map", m)
    return make_list(m.values()) if m else None


@define("merge", min_args=0, max_args=None)
def merge(*maps: Any) -> Any:
    """One map with the entries of each in turn (later ones win)."""
    out = None
    for m in maps:
        if m is None:
            continue
        if type(m) is not Map:
            raise _type_error("merge", "a map", m)
        out = Map(m) if out is None else Map({**out, **m})
    return out


@define("zipmap", min_args=2)
def zipmap(ks: Any, vs: Any) -> Map:
    """A map from the keys to the values, pairwise."""
    return Map(zip(items("zipmap", ks), items("zipmap", vs)))


@define("reverse", min_args=1)
def reverse(coll: Any) -> Any:
    """A list of the items in reverse order."""
    out: Any = EMPTY
    for x in items("reverse", coll):
        out = Pair(x, out)
    return out


@define("range", min_args=0, max_args=3)
def range_(*args: Any) -> Any:
    """(range end), (range start end), (range start end step): a list of numbers."""
    for a in args:
        if type(a) not in (int, float, Fraction):
            raise _type_error("range", "numbers", a)
    if not args:
        raise FlowmetalError("range: needs an end (sequences are not lazy)", "arity-error")
    if len(args) == 3 and args[2] == 0:
        raise FlowmetalError("range: step must not be zero", "arithmetic-error")
    if all(type(a) is int for a in args):
        numbers = range(*args)
        limits.check_items("range", len(numbers))
        return make_list(numbers)
    start, end, step = (0, args[0], 1) if len(args) == 1 else (
        args[0], args[1], args[2] if len(args) == 3 else 1)
    limits.check_items("range", max(0, math.ceil((end - start) / step)))
    out, x = [], start
    while (x < end) if step > 0 else (x > end):
        out.append(normalize_ratio(x) if type(x) is Fraction else x)
        x += step
    return make_list(out)


@define("take", min_args=2)
def take(n: Any, coll: Any) -> Any:
    """A list of the first n items."""
    if type(n) is not int:
        raise _type_error("take", "an integer", n)
    out = []
    if n > 0:
        for x in items("take", coll):
            out.append(x)
            if len(out) >= n:
                break
    return make_list(out)


@define("drop", min_args=2)
def drop(n: Any, coll: Any) -> Any:
    """A list of all but the first n items."""
    if type(n) is not int:
        raise _type_error("drop", "an integer", n)
    node = seq_list("drop", coll)
    while n > 0 and type(node) is Pair:
        node = node.rest
        n -= 1
    return node


@define("last", min_args=1)
def last(coll: Any) -> Any:
    """The last item, or nil."""
    if type(coll) is Vector:
        return coll[-1] if coll else None
    out = None
    for x in items("last", coll):
        out = x
    return out


@define("subvec", min_args=2, max_args=3)
def subvec(v: Any, start: Any, end: Any = None) -> Vector:
    """The part of a vector from start to end (exclusive)."""
    if type(v) is not Vector:
        raise _type_error("subvec", "a vector", v)
    end = len(v) if end is None else end
    if not (type(start) is int and type(end) is int and 0 <= start <= end <= len(v)):
        raise FlowmetalError("subvec: indexes out of range", "index-error")
    return Vector(v[start:end])


@define("peek", min_args=1)
def peek(coll: Any) -> Any:
    """The item pop would remove: a list's first, a vector's last (nil when empty)."""
    t = type(coll)
    if t is Vector:
        return coll[-1] if coll else None
    if t is Pair:
        return coll.first
    if coll is EMPTY or coll is None:
        return None
    raise _type_error("peek", "a list or vector", coll)


@define("pop", min_args=1)
def pop(coll: Any) -> Any:
    """The collection without its peek item (nil stays nil)."""
    t = type(coll)
    if t is Vector:
        if not coll:
            raise FlowmetalError("pop: cannot pop an empty vector", "index-error")
        return Vector(coll[:-1])
    if t is Pair:
        return coll.rest
    if coll is None:
        return None
    if coll is EMPTY:
        raise FlowmetalError("pop: cannot pop an empty list", "index-error")
    raise _type_error("pop", "a list or vector", coll)


def _sort_key(x: Any) -> tuple:
    """A total order across types: nil < booleans < numbers < strings < keywords <
    symbols < vectors (shorter first, then item by item) < lists (item by item)."""
    t = type(x)
    if x is None:
        return (0, 0)
    if t is Boolean:
        return (1, x.value)
    if t in (int, float) or t.__name__ == "Fraction":
        return (2, x)
    if t is str:
        return (3, x)
    if t is Keyword:
        return (4, x.name)
    if t is Symbol:
        return (5, x.name)
    if t is Vector:
        return (6, len(x), tuple(_sort_key(y) for y in x))
    if t is Pair or x is EMPTY:
        return (7, tuple(_sort_key(y) for y in x))
    raise _type_error("compare", "comparable values", x)


@define("compare", min_args=2)
def compare(a: Any, b: Any) -> int:
    """-1, 0 or 1 as a sorts before, with, or after b."""
    ka, kb = _sort_key(a), _sort_key(b)
    return -1 if ka < kb else (1 if ka > kb else 0)


@define("sort", min_args=1)
def sort(coll: Any) -> Any:
    """A list of the items in ascending order (see compare)."""
    return make_list(sorted(items("sort", coll), key=_sort_key))


define("%sort", min_args=1, doc="A list of the items in ascending order (see compare).")(sort)


@define("%sort-by-key", min_args=1)
def sort_by_key(pairs: Any) -> Any:
    """The items of a seq of [key item] vectors, stably sorted by key (see compare)."""
    return make_list(p[1] for p in sorted(items("sort-by", pairs), key=lambda p: _sort_key(p[0])))


@define("distinct", min_args=1)
def distinct(coll: Any) -> Any:
    """A list of the items without repeats, in first-seen order."""
    seen: dict[Any, None] = {}
    for x in items("distinct", coll):
        seen.setdefault(x, None)
    return make_list(seen)


@define("flatten", min_args=1)
def flatten(coll: Any) -> Any:
    """A list of the non-sequential items nested anywhere in the lists and vectors of coll;
    () for anything not a list or vector."""
    if not (type(coll) in (Pair, Vector) or coll is EMPTY):
        return EMPTY
    out, stack = [], [iter(coll)]
    while stack:
        for x in stack[-1]:
            if type(x) in (Pair, Vector) or x is EMPTY:
                stack.append(iter(x))
                break
            out.append(x)
        else:
            stack.pop()
    return make_list(out)


def _pred(name: str, test) -> None:
    define(name, min_args=1)(lambda x: TRUE if test(x) else FALSE)


_pred("list?", lambda x: type(x) is Pair or x is EMPTY)
_pred("vector?", lambda x: type(x) is Vector)
_pred("map?", lambda x: type(x) is Map)
_pred("set?", lambda x: type(x) is Set)
_pred("seq?", lambda x: type(x) is Pair or x is EMPTY)
_pred("coll?", lambda x: type(x) in (Pair, Vector, Map, Set) or x is EMPTY)
_pred("sequential?", lambda x: type(x) in (Pair, Vector) or x is EMPTY)


@define("distinct?", min_args=1, max_args=None)
def is_distinct(*xs: Any) -> Boolean:
    """True if no two of the arguments are equal."""
    return boolean(len(set(xs)) == len(xs))


@define("dedupe", min_args=1)
def dedupe(coll: Any) -> Any:
    """A list of the items without consecutive repeats."""
    out: list[Any] = []
    for x in items("dedupe", coll):
        if not out or out[-1] != x:
            out.append(x)
    return make_list(out)


@define("take-last", min_args=2)
def take_last(n: Any, coll: Any) -> Any:
    """A list of the last n items (nil when there are none)."""
    if type(n) is not int:
        raise _type_error("take-last", "an integer", n)
    all_items = list(items("take-last", coll))
    return make_list(all_items[-n:]) if n > 0 and all_items else None


@define("drop-last", min_args=1, max_args=2)
def drop_last(*args: Any) -> Any:
    """(drop-last coll) or (drop-last n coll): a list of all but the last n (1) items."""
    n, coll = (1, args[0]) if len(args) == 1 else args
    if type(n) is not int:
        raise _type_error("drop-last", "an integer", n)
    all_items = list(items("drop-last", coll))
    return make_list(all_items[:max(0, len(all_items) - n)] if n > 0 else all_items)


# ---------------------------------------------------------------------------------------
# Sets and maps as relations (clojure.set): sets or nil only


def _set_or_nil(op: str, x: Any) -> Any:
    if x is None or type(x) is Set:
        return x
    raise _type_error(op, "a set", x)


@define("union", min_args=0, max_args=None)
def union(*sets: Any) -> Any:
    """The set of the members of all the sets (nil counts as empty; (union) is #{})."""
    if not sets:
        return Set()
    out = _set_or_nil("union", sets[0])
    for s in sets[1:]:
        if _set_or_nil("union", s):
            out = Set(s if out is None else out.union(s))
    return out


@define("intersection", min_args=1, max_args=None)
def intersection(first_set: Any, *sets: Any) -> Any:
    """The set of the members every set has."""
    out = _set_or_nil("intersection", first_set)
    for s in sets:
        s = _set_or_nil("intersection", s)
        out = None if out is None or s is None else Set(out.intersection(s))
    return out


@define("difference", min_args=1, max_args=None)
def difference(first_set: Any, *sets: Any) -> Any:
    """The set of the members of the first set that no other set has."""
    out = _set_or_nil("difference", first_set)
    for s in sets:
        if _set_or_nil("difference", s) and out is not None:
            out = Set(out.difference(s))
    return out


@define("subset?", min_args=2)
def is_subset(a: Any, b: Any) -> Boolean:
    """True if every member of set a is in set b."""
    a, b = _set_or_nil("subset?", a), _set_or_nil("subset?", b)
    return boolean((a or Set()).issubset(b or Set()))


@define("superset?", min_args=2)
def is_superset(a: Any, b: Any) -> Boolean:
    """True if set a has every member of set b."""
    return is_subset(b, a)


@define("map-invert", min_args=1)
def map_invert(m: Any) -> Map:
    """The map with its keys and values swapped (of equal values, the last key wins)."""
    if m is not None and type(m) is not Map:
        raise _type_error("map-invert", "a map", m)
    return Map((v, k) for k, v in (m or {}).items())


@define("rename-keys", min_args=2)
def rename_keys(m: Any, kmap: Any) -> Any:
    """The map with each key of kmap that it has renamed to kmap's value for it."""
    if m is None:
        return None
    for x in (m, kmap):
        if type(x) is not Map:
            raise _type_error("rename-keys", "a map", x)
    out = Map((k, v) for k, v in m.items() if k not in kmap)
    for old, new in kmap.items():
        if old in m:
            dict.__setitem__(out, new, m[old])
    return out


# ---------------------------------------------------------------------------------------
# reduced: how a reducing function ends a reduce early


class Reduced:
    """A value wrapped by ``reduced``: reduce stops and returns the value."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __fm_repr__(self) -> str:
        return f"#<reduced {shown(self.value)}>"


@define("reduced", min_args=1)
def reduced(x: Any) -> Reduced:
    """x wrapped so that a reduce that receives it stops with x."""
    return Reduced(x)


@define("reduced?", min_args=1)
def is_reduced(x: Any) -> Boolean:
    """True for a value made by reduced."""
    return TRUE if type(x) is Reduced else FALSE


@define("unreduced", min_args=1)
def unreduced(x: Any) -> Any:
    """The value inside a reduced, else x itself."""
    return x.value if type(x) is Reduced else x


@define("ensure-reduced", min_args=1)
def ensure_reduced(x: Any) -> Reduced:
    """x if it is reduced, else x wrapped by reduced."""
    return x if type(x) is Reduced else Reduced(x)


@define("%shuffle", min_args=2)
def shuffle(coll: Any, seed: Any) -> Vector:
    """A vector of the items in the random order that ``seed`` picks (shuffle's recorded
    random number): the same seed always gives the same order."""
    out = list(items("shuffle", coll))
    random.Random(seed).shuffle(out)
    return Vector(out)
