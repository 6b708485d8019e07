"""CBOR encoding of machine state: values, environments, closures, continuations.

The encoding is a graph, not a tree, so sharing and cycles survive a round trip (two
closures over one environment still share it) and nothing recurses in proportion to the
depth of the state.  An encoded graph is a CBOR map::

    {"format": FORMAT, "records": [record, ...], "root": item}

Every compound object becomes one *record*, a CBOR array whose first element is its kind
(the ``R_*`` numbers below); an *item* is either an immediate value (nil, true, false,
an integer, a float, a string) or ``tag(REF_TAG, i)``, a reference to record ``i``.
Records of immutable objects come after the records they refer to (post-order), so the
decoder builds them in order; environments, closures and continuations, which may be
part of cycles, are created empty first and filled in at the end.

Code is referred to by ``(program hash, node id)``; the program must be loaded in the
decoding process (it is found in ``program.PROGRAMS``).  Values of the standard library's
globals are referred to by name, so they decode to the same objects in any process.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import cbor2

from . import nodes as N
from .machine import UNSET, FrameKind, Machine, Unset
from .primitives.effects import TaskId
from .procedures import PRIMITIVES, Closure, Continuation, Primitive
from .program import PROGRAMS
from .values import (
    EMPTY,
    FALSE,
    TRUE,
    Keyword,
    Map,
    Pair,
    Set,
    Symbol,
    Vector,
)

FORMAT = "flowmetal-state/1"
REF_TAG = 39_999

(R_SYMBOL, R_KEYWORD, R_RATIO, R_LIST, R_IMPROPER, R_EMPTY, R_VECTOR, R_MAP, R_SET, R_ENV,
 R_CLOSURE, R_CONTINUATION, R_TUPLE, R_NODE, R_FRAMEKIND, R_PRIMITIVE, R_UNSET,
 R_BASE, R_TASK) = range(19)

_MUTABLE = (list, Closure, Continuation)


class CodecError(Exception):
    """Bytes that are not a well-formed encoded state (corrupt, truncated, or from code
    that is not loaded here)."""


def _children(obj: Any) -> Any:
    t = type(obj)
    if t is Pair:
        node = obj
        while type(node) is Pair:
            yield node.first
            node = node.rest
        yield node
    elif t is Map:
        for key, value in obj.items():
            yield key
            yield value
    elif t in (Vector, Set, tuple, list):
        yield from obj
    elif t is Closure:
        yield obj.code
        yield obj.env
    elif t is Continuation:
        yield obj.k
        yield obj.winders


def _is_immediate(value: Any) -> bool:
    t = type(value)
    return value is None or value is TRUE or value is FALSE or t is int or t is float or t is str


class Encoder:
    """Turns a graph of Flowmetal state into records (see the module docstring)."""

    def __init__(self, base_names: dict[int, tuple[Any, str]] | None = None):
        self.records: list[Any] = []
        self.index: dict[int, int] = {}
        self.keep: list[Any] = []
        self.base_names = base_names or {}
        self.programs: set[str] = set()  # hashes of the programs the code refers to

    def item(self, value: Any) -> Any:
        """The CBOR item for ``value`` (which must already have been added if compound)."""
        if value is TRUE:
            return True
        if value is FALSE:
            return False
        if _is_immediate(value):
            return value
        return cbor2.CBORTag(REF_TAG, self.index[id(value)])

    def add(self, root: Any) -> Any:
        """Add everything reachable from ``root``; return root's item."""
        stack: list[tuple[Any, bool]] = [(root, False)]
        index = self.index
        while stack:
            obj, expanded = stack.pop()
            if _is_immediate(obj):
                continue
            key = id(obj)
            if not expanded:
                if key in index:
                    continue
                atom = self._atom_record(obj)
                if atom is not None:
                    index[key] = len(self.records)
                    self.records.append(atom)
                    self.keep.append(obj)
                    continue
                if type(obj) in _MUTABLE:
                    index[key] = len(self.records)
                    self.records.append(None)
                stack.append((obj, True))
                stack.extend((c, False) for c in reversed(list(_children(obj)))
                             if not _is_immediate(c) and id(c) not in index)
                self.keep.append(obj)
                continue
            if type(obj) in _MUTABLE:
                self.records[index[key]] = self._record(obj)
            elif key not in index:
                index[key] = len(self.records)
                self.records.append(self._record(obj))
        return self.item(root)

    def _atom_record(self, obj: Any) -> list | None:
        t = type(obj)
        base = self.base_names.get(id(obj))
        if base is not None and base[0] is obj:
            return [R_BASE, base[1]]
        if t is Symbol:
            return [R_SYMBOL, obj.name]
        if t is Keyword:
            return [R_KEYWORD, obj.name]
        if t is Fraction:
            return [R_RATIO, obj.numerator, obj.denominator]
        if obj is EMPTY:
            return [R_EMPTY]
        if t is Primitive:
            return [R_PRIMITIVE, obj.name]
        if t is FrameKind:
            return [R_FRAMEKIND, obj.name]
        if t is Unset:
            return [R_UNSET]
        if t is TaskId:
            return [R_TASK, obj.id]
        if isinstance(obj, N.Node):
            if obj.program is None:
                raise CodecError(f"node {obj!r} belongs to no program")
            self.programs.add(obj.program.hash)
            return [R_NODE, obj.program.hash, obj.id]
        if t in (Pair, Map, Vector, Set, tuple, list, Closure, Continuation):
            return None
        raise CodecError(f"cannot encode a {t.__name__}: it is not Flowmetal state")

    def _record(self, obj: Any) -> list:
        item = self.item
        t = type(obj)
        if t is Pair:
            items, node = [], obj
            while type(node) is Pair:
                items.append(item(node.first))
                node = node.rest
            if node is EMPTY:
                return [R_LIST, *items]
            return [R_IMPROPER, *items, item(node)]
        kind = {Vector: R_VECTOR, Map: R_MAP, Set: R_SET, tuple: R_TUPLE, list: R_ENV,
                Closure: R_CLOSURE, Continuation: R_CONTINUATION}[t]
        return [kind, *(item(x) for x in _children(obj))]

    def finish(self, root_item: Any) -> bytes:
        """The encoded bytes, with ``root_item`` as the root."""
        return cbor2.dumps({"format": FORMAT, "records": self.records, "root": root_item})


class Decoder:
    """Rebuilds objects from records."""

    def __init__(self, records: list, base_globals: dict | None = None):
        self.records = records
        self.objs: list[Any] = [None] * len(records)
        self.base_globals = base_globals or {}

    def item(self, x: Any) -> Any:
        if x is True:
            return TRUE
        if x is False:
            return FALSE
        if type(x) is cbor2.CBORTag:
            if x.tag != REF_TAG or type(x.value) is not int or not 0 <= x.value < len(self.objs):
                raise CodecError(f"bad reference {x!r}")
            return self.objs[x.value]
        if x is None or type(x) in (int, float, str):
            return x
        raise CodecError(f"unexpected item {type(x).__name__}")

    def build(self) -> None:
        objs, item = self.objs, self.item
        for i, rec in enumerate(self.records):
            if not isinstance(rec, list) or not rec or type(rec[0]) is not int:
                raise CodecError(f"record {i} is malformed")
            kind = rec[0]
            if kind == R_ENV:
                objs[i] = []
            elif kind == R_CLOSURE:
                objs[i] = Closure(None, None)
            elif kind == R_CONTINUATION:
                objs[i] = Continuation(None, None)
        for i, rec in enumerate(self.records):
            kind, args = rec[0], rec[1:]
            if kind in (R_ENV, R_CLOSURE, R_CONTINUATION):
                continue
            objs[i] = self._immutable(kind, args, item)
        for i, rec in enumerate(self.records):
            kind, args = rec[0], rec[1:]
            obj = objs[i]
            if kind == R_ENV:
                obj.extend(item(x) for x in args)
            elif kind == R_CLOSURE:
                obj.code, obj.env = item(args[0]), item(args[1])
                if type(obj.code) is not N.Lambda:
                    raise CodecError(f"record {i}: a closure's code is not a fn")
            elif kind == R_CONTINUATION:
                obj.k, obj.winders = item(args[0]), item(args[1])

    def _immutable(self, kind: int, args: list, item: Any) -> Any:
        if kind == R_SYMBOL:
            return Symbol(_text(args[0]))
        if kind == R_KEYWORD:
            return Keyword(_text(args[0]))
        if kind == R_RATIO:
            return Fraction(args[0], args[1])
        if kind == R_EMPTY:
            return EMPTY
        if kind in (R_LIST, R_IMPROPER):
            values = [item(x) for x in args]
            tail = EMPTY if kind == R_LIST else values.pop()
            for v in reversed(values):
                tail = Pair(v, tail)
            return tail
        if kind == R_VECTOR:
            return Vector(item(x) for x in args)
        if kind == R_MAP:
            values = [item(x) for x in args]
            return Map(zip(values[::2], values[1::2]))
        if kind == R_SET:
            return Set(item(x) for x in args)
        if kind == R_TUPLE:
            return tuple(item(x) for x in args)
        if kind == R_NODE:
            program = PROGRAMS.get(args[0])
            if program is None:
                raise CodecError(f"program {args[0]} is not loaded")
            return program.nodes[args[1]]
        if kind == R_FRAMEKIND:
            return FrameKind.KINDS[args[0]]
        if kind == R_PRIMITIVE:
            return PRIMITIVES[args[0]]
        if kind == R_UNSET:
            return UNSET
        if kind == R_BASE:
            return self.base_globals[Symbol(args[0])]
        if kind == R_TASK:
            return TaskId(_text(args[0]))
        raise CodecError(f"unknown record kind {kind}")


def _text(x: Any) -> str:
    if type(x) is not str:
        raise CodecError("expected a string")
    return x


def _load(data: bytes) -> dict:
    try:
        top = cbor2.loads(data)
    except Exception as exc:
        raise CodecError(f"not CBOR: {exc}") from None
    if type(top) is not dict or top.get("format") != FORMAT or \
            type(top.get("records")) is not list:
        raise CodecError(f"not a {FORMAT} document")
    return top


def encode_value(value: Any) -> bytes:
    """Encode a Flowmetal value (any state reachable from it) as bytes."""
    enc = Encoder()
    return enc.finish(enc.add(value))


def decode_value(data: bytes, base_globals: dict | None = None) -> Any:
    """The value encoded by ``encode_value``."""
    top = _load(data)
    dec = Decoder(top["records"], base_globals)
    try:
        dec.build()
        return dec.item(top["root"])
    except CodecError:
        raise
    except Exception as exc:
        raise CodecError(f"corrupt state: {type(exc).__name__}: {exc}") from None


def _base_names(base_globals: dict) -> dict[int, tuple[Any, str]]:
    names: dict[int, tuple[Any, str]] = {}
    for sym, value in base_globals.items():
        if not _is_immediate(value) and type(value) is not Primitive:
            names.setdefault(id(value), (value, sym.name))
    return names


def encode_machine(m: Machine, base_globals: dict, programs: set | None = None) -> bytes:
    """Encode a machine's whole state; globals are stored as their changes to the base.

    The hashes of the programs the state's code comes from are added to ``programs``.
    """
    own = {sym: v for sym, v in m.globals.items() if base_globals.get(sym, UNSET) is not v}
    enc = Encoder(_base_names(base_globals))
    state = (m.node, m.env, m.k, m.val, m.winders, m.error,
             Map(own), m.status, m.reductions, m.gensym_counter, m.request)
    data = enc.finish(enc.add(state))
    if programs is not None:
        programs.update(enc.programs)
    return data


def decode_machine(data: bytes, base_globals: dict) -> Machine:
    """A machine in the state ``encode_machine`` saved, with globals over ``base_globals``."""
    state = decode_value(data, base_globals)
    if type(state) is not tuple or len(state) != 11:
        raise CodecError("not a machine state")
    node, env, k, val, winders, error, own, status, reductions, gensyms, request = state
    if status not in ("running", "waiting", "done", "error"):
        raise CodecError(f"bad machine status {status!r}")
    globals_ = dict(base_globals)
    globals_.update(own)
    m = Machine(globals_, node, env, k)
    m.val, m.winders, m.error, m.status = val, winders, error, status
    m.reductions, m.gensym_counter, m.request = reductions, gensyms, request
    return m
