"""CBOR encoding of machine state: values, environments, closures, continuations.

The encoding is a graph, not a tree, so sharing and cycles survive a round trip (two
closures over one environment still share it) and nothing recurses in proportion to the
depth of the state.  An encoded graph is a CBOR map::

    {"format": FORMAT, "records": [record, ...], "root": item}

and a machine's state has ``"machine": [item, ...]``, the items of its registers in the
order of ``MACHINE_FIELDS``, in place of ``"root"``, and ``"base": hash`` (between
"format" and "records") naming the standard library whose globals its ``R_BASE`` records
and its own globals are over (``state_base`` reads it without decoding the records).
A value that needs no records (nil, a boolean, a number but a ratio, a string: the most
common answers and results) is encoded as its item alone, which is never a CBOR map;
the map form of such a value, which earlier versions wrote, is read too.

Every compound object becomes one *record*, a CBOR array whose first element is its kind
(the ``R_*`` numbers below); an *item* is either an immediate value (nil, true, false, a
float, a string, or an integer as a byte string: its two's complement, big-endian) or a
plain integer ``i``, a reference to record ``i``.  (Integers are byte strings because
cbor2 encodes a tag or a nested array several times slower than a byte string.)
Records of immutable objects come after the records they refer to (post-order), so the
decoder builds them in order; environments, closures and continuations, which may be
part of cycles, are created empty first and filled in at the end.  Format 1 documents,
which wrote an integer as ``tag(INT_TAG, n)`` and a machine's state as a tuple record
at the root, are read too.

Atoms and delays are mutable records too (their identity is kept, like an environment's):
``[R_ATOM, value]`` and ``[R_DELAY, thunk, value, failed]``; a regex is ``[R_REGEX,
pattern]``.

Code is referred to by ``(program hash, node id)``; the program must be loaded in the
decoding process (it is found in ``program.PROGRAMS``).  Values of the standard library's
globals are referred to by name, so they decode to the same objects in any process that
has that standard library (``interpreter.base_for`` builds an older one from its
stored programs).
"""

from __future__ import annotations

from fractions import Fraction
from itertools import chain, compress, islice
from operator import is_not
from typing import Any

import cbor2

from . import nodes as N
from .machine import UNSET, FrameKind, Machine, Unset
from .primitives.collections import Reduced
from .primitives.effects import TaskId
from .procedures import PRIMITIVES, Closure, Continuation, Primitive
from .program import PROGRAMS
from .regex import RegexError, compile_regex
from .values import (
    EMPTY,
    FALSE,
    TRUE,
    Atom,
    Boolean,
    Delay,
    Keyword,
    Map,
    Pair,
    Regex,
    Set,
    Symbol,
    Vector,
)

FORMAT = "flowmetal-state/2"
READABLE_FORMATS = ("flowmetal-state/1", FORMAT)
INT_TAG = 39_999  # format 1 integers

(R_SYMBOL, R_KEYWORD, R_RATIO, R_LIST, R_IMPROPER, R_EMPTY, R_VECTOR, R_MAP, R_SET, R_ENV,
 R_CLOSURE, R_CONTINUATION, R_TUPLE, R_NODE, R_FRAMEKIND, R_PRIMITIVE, R_UNSET,
 R_BASE, R_TASK, R_REDUCED, R_REGEX, R_ATOM, R_DELAY) = range(23)

_MUTABLE = (list, Closure, Continuation, Atom, Delay)
_FILLED_LAST = frozenset({R_ENV, R_CLOSURE, R_CONTINUATION, R_ATOM, R_DELAY})
_CHANGING = frozenset({list, Atom, Delay})  # changed in place: noted in Machine.dirty
_EXPANDED = object()  # on the encoder's stack: the object below it has its children done


def _int_bytes(n: int) -> bytes:
    return n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True)


_SMALL_INT_ITEMS = [_int_bytes(n) for n in range(-256, 1024)]


def int_item(n: int) -> bytes:
    """The item of integer ``n``: a byte string, its two's complement, big-endian."""
    if -256 <= n < 1024:
        return _SMALL_INT_ITEMS[n + 256]
    return _int_bytes(n)


class CodecError(Exception):
    """Bytes that are not a well-formed encoded state (corrupt, truncated, or from code
    that is not loaded here)."""


class BaseMismatch(CodecError):
    """A state decoded against the globals of another standard library than the one it
    names (pick the base with ``state_base`` and ``interpreter.base_for``)."""


# id(globals dict) -> (the dict, its standard library's hash), for the bases loaded here.
_BASE_HASHES: dict[int, tuple[dict, str]] = {}


def register_base(base_globals: dict, digest: str) -> None:
    """Note that ``base_globals`` are the globals of the standard library ``digest``, so
    states encoded over them name it."""
    _BASE_HASHES[id(base_globals)] = (base_globals, digest)


def base_hash_of(base_globals: dict | None) -> str | None:
    """The hash of the standard library whose globals ``base_globals`` are, if known."""
    if base_globals is None:
        return None
    known = _BASE_HASHES.get(id(base_globals))
    return known[1] if known is not None and known[0] is base_globals else None


def _pair_items(obj: Pair) -> list:
    items, node = [], obj
    while type(node) is Pair:
        items.append(node.first)
        node = node.rest
    items.append(node)
    return items


def _map_items(obj: Map) -> list:
    return [x for item in obj.items() for x in item]


def _children(obj: Any) -> Any:
    """The values ``obj`` refers to, in record order."""
    t = type(obj)
    if t is tuple or t is list or t is Vector:
        return obj
    if t is Set:
        return tuple(obj)
    if t is Pair:
        return _pair_items(obj)
    if t is Map:
        return _map_items(obj)
    if t is Closure:
        return (obj.code, obj.env)
    if t is Continuation:
        return (obj.k, obj.winders)
    if t is Reduced:
        return (obj.value,)
    if t is Atom:
        return (obj.value,)
    if t is Delay:
        return (obj.thunk, obj.value, TRUE if obj.failed else FALSE)
    return ()


_IMMEDIATE = frozenset({int, float, str, type(None), Boolean})

# Records of values that never change and live as long as the process (symbols, keywords,
# code nodes, primitives), made once.
_ATOM_RECORDS: dict[int, tuple[Any, list, str | None]] = {}
_INTERNED = frozenset({Symbol, Keyword, Primitive, FrameKind, *N.NODE_TYPES.values()})


def _immediate_item(value: Any) -> Any:
    t = type(value)
    if t is int:
        return int_item(value)
    if t is Boolean:
        return value.value
    return value  # a float, a string or nil


def _is_immediate(value: Any) -> bool:
    return type(value) in _IMMEDIATE


_IMMEDIATE_ITEM = frozenset({float, str, type(None)})  # items that are the value itself
_KINDS = {Vector: R_VECTOR, Map: R_MAP, Set: R_SET, tuple: R_TUPLE, list: R_ENV,
          Closure: R_CLOSURE, Continuation: R_CONTINUATION, Reduced: R_REDUCED,
          Atom: R_ATOM, Delay: R_DELAY}
_COMPOUND = frozenset({Pair, *_KINDS})


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
        if type(value) in _IMMEDIATE:
            return _immediate_item(value)
        return self.index[id(value)]

    def add(self, root: Any) -> Any:
        """Add everything reachable from ``root``; return root's item."""
        self.add_all((root,))
        return self.item(root)

    def add_all(self, roots: Any) -> None:
        """Add everything reachable from each of ``roots``.

        Depth-first without recursion: a compound object whose children are all added
        gets its record at once; otherwise it waits on the stack below them.
        """
        stack: list[Any] = list(roots)
        stack.reverse()
        index, records, keep, immediate = self.index, self.records, self.keep, _IMMEDIATE
        atoms, base_names, compound = _ATOM_RECORDS, self.base_names, _COMPOUND
        kinds, expanded = _KINDS, _EXPANDED
        while stack:
            obj = stack.pop()
            if obj is expanded:
                # Its record, begun before, goes on after the items it had.
                obj, record, children = stack.pop()
                if not self._append_items(record, islice(children, len(record) - 1, None)):
                    raise CodecError("a value was not added before the record that "
                                     "refers to it")
                if type(obj) in _MUTABLE:
                    records[index[id(obj)]] = record
                elif id(obj) not in index:
                    index[id(obj)] = len(records)
                    records.append(record)
                continue
            t = type(obj)
            if t in immediate:
                continue
            key = id(obj)
            if key in index:
                continue
            if t in compound and key not in base_names:
                keep.append(obj)
                children = obj if t is tuple or t is list else _children(obj)
                if t is Pair:
                    if children[-1] is EMPTY:
                        children = children[:-1]
                        record = [R_LIST]
                    else:
                        record = [R_IMPROPER]
                else:
                    record = [kinds[t]]
                if self._append_items(record, children):
                    index[key] = len(records)
                    records.append(record)
                    continue
                if t in _MUTABLE:
                    index[key] = len(records)
                    records.append(None)
                stack.append((obj, record, children))
                stack.append(expanded)
                stack.extend([c for c in reversed(children)
                              if type(c) not in immediate and id(c) not in index])
                continue
            cached = atoms.get(key)
            if cached is not None and cached[0] is obj:
                index[key] = len(records)
                records.append(cached[1])
                if cached[2] is not None:
                    self.programs.add(cached[2])
                continue
            atom = self._atom_record(obj)
            keep.append(obj)
            if t in _INTERNED:
                atoms[key] = (obj, atom, obj.program.hash if atom[0] == R_NODE else None)
            index[key] = len(records)
            records.append(atom)

    def _atom_record(self, obj: Any) -> list:
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
        if t is Regex:
            return [R_REGEX, obj.pattern]
        if isinstance(obj, N.Node):
            if obj.program is None:
                raise CodecError(f"node {obj!r} belongs to no program")
            self.programs.add(obj.program.hash)
            return [R_NODE, obj.program.hash, obj.id]
        raise CodecError(f"cannot encode a {t.__name__}: it is not Flowmetal state")

    def _record(self, obj: Any) -> list:
        t = type(obj)
        if t is Pair:
            values = _pair_items(obj)
            if values[-1] is EMPTY:
                record, values = [R_LIST], values[:-1]
            else:
                record = [R_IMPROPER]
        else:
            record, values = [_KINDS[t]], _children(obj)
        return self.items(values, record)

    def items(self, values: Any, out: list | None = None) -> list:
        """The CBOR items of ``values`` (each already added, if compound), appended to
        ``out`` if given."""
        out = [] if out is None else out
        if not self._append_items(out, values):
            raise CodecError("a value was not added before the record that refers to it")
        return out

    def item_adding(self, x: Any) -> Any:
        """The CBOR item of ``x``, adding it first if it is compound and not added yet."""
        tx = type(x)
        if tx in _IMMEDIATE_ITEM:
            return x
        if tx is int:
            return int_item(x)
        if tx is Boolean:
            return x.value
        at = self.index.get(id(x))
        if at is None:
            self.add_all((x,))
            at = self.index[id(x)]
        return at

    def _append_items(self, out: list, values: Any) -> bool:
        """Append the items of ``values`` to ``out``; False (leaving ``out`` partly
        filled) at the first compound value not added yet.  (``_immediate_item`` written
        out in the loop: this is the encoder's innermost loop.)"""
        index, plain = self.index, _IMMEDIATE_ITEM
        append = out.append
        for x in values:
            tx = type(x)
            if tx is int:
                append(int_item(x))
            elif tx in plain:
                append(x)
            elif tx is Boolean:
                append(x.value)
            else:
                at = index.get(id(x))
                if at is None:
                    return False
                append(at)
        return True

    def finish(self, root_item: Any, key: str = "root", base: str | None = None) -> bytes:
        """The encoded bytes, with ``root_item`` under ``key`` (and the standard
        library's hash under "base", if given)."""
        top: dict = {"format": FORMAT}
        if base is not None:
            top["base"] = base
        top["records"] = self.records
        top[key] = root_item
        return cbor2.dumps(top)


class Decoder:
    """Rebuilds objects from records."""

    def __init__(self, records: list, base_globals: dict | None = None,
                 programs: Any = None):
        self.records = records
        self.objs: list[Any] = [None] * len(records)
        self.base_globals = base_globals or {}
        self.programs = PROGRAMS if programs is None else programs  # hash -> Program

    def item(self, x: Any) -> Any:
        t = type(x)
        if t is int:
            if not 0 <= x < len(self.objs):
                raise CodecError(f"bad reference {x}")
            return self.objs[x]
        if x is True:
            return TRUE
        if x is False:
            return FALSE
        if t is bytes:
            if not x:
                raise CodecError("an empty integer item")
            return int.from_bytes(x, "big", signed=True)
        if t is cbor2.CBORTag:
            if x.tag != INT_TAG or type(x.value) is not int:
                raise CodecError(f"unexpected tag {x.tag}")
            return x.value
        if x is None or t is float or t is str:
            return x
        raise CodecError(f"unexpected item {t.__name__}")

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
            elif kind == R_ATOM:
                objs[i] = Atom(None)
            elif kind == R_DELAY:
                objs[i] = Delay(None)
        for i, rec in enumerate(self.records):
            kind, args = rec[0], rec[1:]
            if kind in _FILLED_LAST:
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
            elif kind == R_ATOM:
                if len(args) != 1:
                    raise CodecError(f"record {i}: an atom holds one value")
                obj.value = item(args[0])
            elif kind == R_DELAY:
                if len(args) != 3 or type(args[2]) is not bool:
                    raise CodecError(f"record {i}: a malformed delay")
                obj.thunk, obj.value, obj.failed = item(args[0]), item(args[1]), args[2]
                if obj.thunk is not None and type(obj.thunk) is not Closure:
                    raise CodecError(f"record {i}: a delay's body is not a fn")

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
            program = self.programs.get(args[0])
            if program is None:
                raise CodecError(f"program {args[0]} is not loaded")
            if type(args[1]) is not int or not 0 <= args[1] < len(program.nodes):
                raise CodecError(f"program {args[0]} has no node {args[1]!r}")
            node = program.nodes[args[1]]
            if program.lazy is not None:  # a frame may resume it: link its batch
                program.lazy.need(node.id)
            return node
        if kind == R_FRAMEKIND:
            return FrameKind.KINDS[args[0]]
        if kind == R_PRIMITIVE:
            return PRIMITIVES[args[0]]
        if kind == R_UNSET:
            return UNSET
        if kind == R_BASE:
            name = Symbol(_text(args[0]))
            if name not in self.base_globals:
                raise CodecError(f"the standard library has no global {name.name}")
            return self.base_globals[name]
        if kind == R_TASK:
            return TaskId(_text(args[0]))
        if kind == R_REGEX:
            try:
                return compile_regex(_text(args[0]))
            except RegexError as exc:
                raise CodecError(f"a regex that does not compile: {exc}") from None
        if kind == R_REDUCED:
            if len(args) != 1:
                raise CodecError("a reduced record holds one value")
            return Reduced(item(args[0]))
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
    if type(top) is not dict or top.get("format") not in READABLE_FORMATS or \
            type(top.get("records")) is not list:
        raise CodecError(f"not a {FORMAT} document")
    return top


def array_header(n: int) -> bytes:
    """The CBOR header of an array of ``n`` items."""
    if n < 24:
        return bytes((0x80 + n,))
    if n < 0x100:
        return bytes((0x98, n))
    if n < 0x10000:
        return b"\x99" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\x9a" + n.to_bytes(4, "big")
    return b"\x9b" + n.to_bytes(8, "big")


def _items_bytes(items: list) -> bytes:
    """The CBOR items of ``items``, one after another (an array's body, no header)."""
    n = len(items)
    return cbor2.dumps(items)[1 if n < 24 else len(array_header(n)):]


_DOC_HEAD = b"\xa3" + cbor2.dumps("format") + cbor2.dumps(FORMAT) + cbor2.dumps("records")


def _doc_head(base: str | None) -> bytes:
    """The bytes a machine document starts with, up to its records' array header."""
    if base is None:
        return _DOC_HEAD
    return b"".join((b"\xa4", cbor2.dumps("format"), cbor2.dumps(FORMAT),
                     cbor2.dumps("base"), cbor2.dumps(base), cbor2.dumps("records")))


_ROOT_KEY = cbor2.dumps("root")
_IMMEDIATE_HEAD = _DOC_HEAD + b"\x80" + _ROOT_KEY  # encode_value of an immediate value
_MACHINE_KEY = cbor2.dumps("machine")


class Image:
    """A machine's encoded state kept between its steps, so that a step encodes only the
    objects it made or changed: objects already encoded are immutable (frames, closures,
    values) or are environments the machine reports as changed (``Machine.dirty``).

    The bytes are the same document ``encode_machine`` makes, with records that are no
    longer reachable left in until the image is rebuilt (when it has doubled since the
    last rebuild, plus some slack), so decoding is unchanged.  The records each encode
    adds are serialized as one chunk; a chunk holding an environment that changes later
    is serialized again.
    """

    SLACK_RECORDS = 64
    SLACK_BYTES = 1024

    def __init__(self, base_globals: dict, base: str | None = None):
        self.base_globals = base_globals
        self.base = base if base is not None else base_hash_of(base_globals)
        self.head = _doc_head(self.base)
        self.enc: Encoder | None = None
        self.chunks: list[bytes] = []
        self.bounds: list[tuple[int, int]] = []  # the records each chunk holds
        self.env_chunk: dict[int, int] = {}  # record number of an environment -> its chunk
        self.rebuild_at = 0
        self.size = 0  # bytes of the chunks
        self.rebuild_size = 0
        self._code: tuple | None = None  # (encoder, its programs' count, ``code()``)
        self.registers: tuple | None = None  # (the registers encoded last, their items)

    def reset(self) -> None:
        """Forget everything: the next ``encode`` is a full one (no unreachable records)."""
        self.enc = None

    def code(self) -> tuple[str, ...]:
        """The hashes of the programs the encoded state's code comes from and of its
        standard library, sorted (what a task record lists as its code)."""
        enc = self.enc
        known = self._code
        if known is not None and known[0] is enc and known[1] == len(enc.programs):
            return known[2]
        hashes = set(enc.programs) if enc is not None else set()
        if self.base:
            hashes.add(self.base)
        code = tuple(sorted(hashes))
        self._code = (enc, len(hashes if enc is None else enc.programs), code)
        return code

    def encode(self, m: Machine, programs: set | None = None) -> bytes:
        """The machine's state as bytes; adds its code's program hashes to ``programs``."""
        enc = self.enc
        dirty = m.dirty
        m.dirty = []  # (also the first time: from now on the changes are noted)
        rebuild = enc is None or len(enc.records) > self.rebuild_at or \
            self.size > self.rebuild_size
        if rebuild:
            enc = self.enc = Encoder(_base_names(self.base_globals))
            self.chunks, self.bounds, self.env_chunk, self.size = [], [], {}, 0
            dirty = ()
        chunks, records, where = self.chunks, enc.records, self.env_chunk
        stale = set()
        for env in dirty:
            at = enc.index.get(id(env))
            if at is not None and type(env) in _CHANGING:
                enc.add_all(_children(env))
                records[at] = enc._record(env)
                if at in where:
                    stale.add(where[at])
        # A register holding the object it held at the last encode has the same item.
        state = _machine_state(m)
        if rebuild or self.registers is None:
            items = [enc.item_adding(x) for x in state]
        else:
            items = self.registers[1].copy()
            for i in compress(_REGISTER_AT, map(is_not, state, self.registers[0])):
                items[i] = enc.item_adding(state[i])
        self.registers = (state, items)
        for i in stale:
            first, last = self.bounds[i]
            chunk = _items_bytes(records[first:last])
            self.size += len(chunk) - len(chunks[i])
            chunks[i] = chunk
        first = self.bounds[-1][1] if self.bounds else 0
        end = len(records)
        if first < end:
            number = len(chunks)
            new = records[first:]
            for at, record in enumerate(new, first):
                if record[0] in _FILLED_LAST:
                    where[at] = number
            chunk = _items_bytes(new)
            chunks.append(chunk)
            self.bounds.append((first, end))
            self.size += len(chunk)
        if rebuild:
            self.rebuild_at = 2 * len(records) + self.SLACK_RECORDS
            self.rebuild_size = 2 * self.size + self.SLACK_BYTES
        if programs is not None:
            programs.update(enc.programs)
        return b"".join((self.head, array_header(len(records)), *chunks, _MACHINE_KEY,
                         cbor2.dumps(items)))


def encode_value(value: Any) -> bytes:
    """Encode a Flowmetal value (any state reachable from it) as bytes."""
    if type(value) in _IMMEDIATE:  # no records: the most common answers (now, random)
        return cbor2.dumps(_immediate_item(value))
    records: list = []
    try:
        root = _plain_item(value, records, {})
    except (_NotPlain, RecursionError):
        enc = Encoder()
        return enc.finish(enc.add(value))
    return cbor2.dumps({"format": FORMAT, "records": records, "root": root})


class _NotPlain(Exception):
    """A value with more than maps, vectors, keywords and immediate values in it."""


def _plain_item(x: Any, records: list, index: dict[int, int]) -> Any:
    """The item of ``x``, adding the records it needs, for plain data: maps, vectors,
    keywords and immediate values (JSON's values, HTTP answers, most messages).  The
    records are those ``Encoder`` makes, in its order (post-order, shared objects once),
    made without its general walk; anything else raises ``_NotPlain``."""
    t = type(x)
    if t in _IMMEDIATE:
        return _immediate_item(x)
    at = index.get(id(x))
    if at is not None:
        return at
    if t is Map:
        record = [R_MAP]
        children: Any = chain.from_iterable(x.items())
    elif t is Vector:
        record = [R_VECTOR]
        children = x
    elif t is Keyword:
        record = [R_KEYWORD, x.name]
        children = ()
    else:
        raise _NotPlain
    append = record.append
    for v in children:  # the common children (immediate values, keywords) inline
        tv = type(v)
        if tv is str or tv is float or v is None:
            append(v)
        elif tv is int:
            append(int_item(v))
        elif tv is Keyword:
            at = index.get(id(v))
            if at is None:
                at = index[id(v)] = len(records)
                records.append([R_KEYWORD, v.name])
            append(at)
        else:
            append(_plain_item(v, records, index))
    at = index[id(x)] = len(records)
    records.append(record)
    return at


def decode_value(data: bytes, base_globals: dict | None = None) -> Any:
    """The value encoded by ``encode_value``."""
    alone = data[:1] and not 0xa0 <= data[0] <= 0xbf  # an item alone, not a map
    if alone or data.startswith(_IMMEDIATE_HEAD):  # a number, string, boolean or nil
        try:
            item = cbor2.loads(memoryview(data)[0 if alone else len(_IMMEDIATE_HEAD):])
        except Exception as exc:
            raise CodecError(f"not CBOR: {exc}") from None
        if type(item) in (float, str, bytes, bool, type(None)):
            return Decoder([]).item(item)
        if alone:
            raise CodecError("not an encoded value")
    return _decode(data, base_globals, "root")


def _decode(data: bytes, base_globals: dict | None, key: str) -> Any:
    top = _load(data)
    named = top.get("base")
    if named is not None:
        if type(named) is not str:
            raise CodecError("the state's base is not a hash")
        known = base_hash_of(base_globals)
        if known is not None and known != named:
            raise BaseMismatch(f"the state is over standard library {named[:12]}; "
                               f"it was decoded against {known[:12]}")
    dec = Decoder(top["records"], base_globals)
    try:
        dec.build()
        if key == "machine" and "machine" in top:
            items = top["machine"]
            if type(items) is not list or len(items) != len(MACHINE_FIELDS):
                raise CodecError("not a machine state")
            return tuple(dec.item(x) for x in items)
        return dec.item(top.get("root"))
    except CodecError:
        raise
    except Exception as exc:
        raise CodecError(f"corrupt state: {type(exc).__name__}: {exc}") from None


_BASE_NAMES: dict[int, tuple[dict, dict[int, tuple[Any, str]]]] = {}


def _base_names(base_globals: dict) -> dict[int, tuple[Any, str]]:
    """id → (value, name) for the standard library's values (computed once per base)."""
    known = _BASE_NAMES.get(id(base_globals))
    if known is not None and known[0] is base_globals:
        return known[1]
    names: dict[int, tuple[Any, str]] = {}
    for sym, value in base_globals.items():
        # An atom or delay is written out: a reference by name would lose its changes.
        if not _is_immediate(value) and type(value) not in (Primitive, Atom, Delay):
            names.setdefault(id(value), (value, sym.name))
    _BASE_NAMES[id(base_globals)] = (base_globals, names)
    return names


MACHINE_FIELDS = ("node", "env", "k", "val", "winders", "error", "own", "status",
                  "reductions", "gensym_counter", "request")
_REGISTER_AT = range(len(MACHINE_FIELDS))


def _machine_state(m: Machine) -> tuple:
    """The machine's registers in the order of MACHINE_FIELDS (own globals as a Map)."""
    if m.own_map is None:
        m.own_map = Map(m.own)
    return (m.node, m.env, m.k, m.val, m.winders, m.error, m.own_map, m.status,
            m.reductions, m.gensym_counter, m.request)


def encode_machine(m: Machine, base_globals: dict, programs: set | None = None,
                   base: str | None = None) -> bytes:
    """Encode a machine's whole state; globals are stored as their changes to the base.

    The hashes of the programs the state's code comes from are added to ``programs``.
    The document names the standard library (``base``, by default the hash registered
    for ``base_globals``), so a worker can pick it before decoding (``state_base``).
    """
    enc = Encoder(_base_names(base_globals))
    state = _machine_state(m)
    enc.add_all(state)
    if base is None:
        base = base_hash_of(base_globals)
    data = enc.finish(enc.items(state), "machine", base)
    if programs is not None:
        programs.update(enc.programs)
    return data


def state_base(data: bytes) -> str | None:
    """The hash of the standard library an encoded machine state is over (None for a
    document that does not say: one made before states named their base).

    Reads only the head of the document, not its records.
    """
    view = memoryview(data)
    try:
        if not view or view[0] & 0xE0 != 0xA0 or view[0] & 0x1F >= 24:
            raise ValueError("not a small map")
        pos = 1
        for _ in range(view[0] & 0x1F):
            key, pos = _text_at(view, pos)
            if key == "records":
                return None
            value, pos = _text_at(view, pos)
            if key == "base":
                return value
            if key != "format":
                raise ValueError(f"unexpected key {key}")
        return None
    except (ValueError, IndexError, UnicodeDecodeError):
        top = _load(bytes(data))
        named = top.get("base")
        return named if type(named) is str else None


def _text_at(view: memoryview, pos: int) -> tuple[str, int]:
    """The CBOR text string at ``pos`` and the position after it."""
    head = view[pos]
    if head & 0xE0 != 0x60:
        raise ValueError("not a text string")
    n = head & 0x1F
    pos += 1
    if n == 24:
        n, pos = view[pos], pos + 1
    elif n == 25:
        n, pos = int.from_bytes(view[pos:pos + 2], "big"), pos + 2
    elif n > 25:
        raise ValueError("text string too long")
    if pos + n > len(view):
        raise IndexError("truncated")
    return bytes(view[pos:pos + n]).decode("utf-8"), pos + n


def decode_machine(data: bytes, base_globals: dict) -> Machine:
    """A machine in the state ``encode_machine`` saved, with globals over ``base_globals``."""
    state = _decode(data, base_globals, "machine")
    if type(state) is not tuple or len(state) != len(MACHINE_FIELDS):
        raise CodecError("not a machine state")
    node, env, k, val, winders, error, own, status, reductions, gensyms, request = state
    if status not in ("running", "waiting", "done", "error"):
        raise CodecError(f"bad machine status {status!r}")
    if type(own) is not Map or type(reductions) is not int or type(gensyms) is not int:
        raise CodecError("not a machine state")
    globals_ = dict(base_globals)
    globals_.update(own)
    m = Machine(globals_, node, env, k, own=dict(own))
    m.val, m.winders, m.error, m.status = val, winders, error, status
    m.reductions, m.gensym_counter, m.request = reductions, gensyms, request
    return m
