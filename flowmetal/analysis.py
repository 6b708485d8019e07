"""The stored analysis of a program: its node tree as a CBOR-able record, and back.

A program is stored with its nodes, not only its source, so loading it never runs the
analyzer: code a task started on stays exactly that code whatever analyzer or standard
library the loading Flowmetal has.  The record (``FORMAT``)::

    {"v": 1, "format": "flowmetal-analysis/1", "hash": h, "analyzer": version,
     "file": f, "source": s, "base": stdlib hash, "nodes": node count,
     "tree": [node, ...], "procs": [name, ...], "values": [codec record, ...],
     "forms": [node id, ...], "entry": node id or nil, "batches": [end, ...],
     "requires": [program hash, ...]}

A node is ``[class, [field, ...], span, proc, flags]``, in id order (children come
before their parents).  A field is nil, a boolean, an integer or a string as itself,
or a list whose first item says what it is: ``["n", id]`` a child node, ``["t", ...]``
a tuple, ``["s", name]`` a symbol, ``["k", name]`` a keyword, ``["p", name]`` a
primitive, ``["v", item]`` a constant (an item of the codec over the ``values``
records, which hold every constant of the program in one graph).  A span is
``[line, col, end_line, end_col]`` in the program's file, or ``[file, line, ...]``;
``proc`` indexes ``procs``.  ``flags``: 1 if the node is evaluated by direct Python
calls (``ev``), 2 if it is simple at all (``slow``: the analyzer makes a simple node
deeper than ``MAX_SIMPLE_DEPTH`` a step of its own, so 2 without 1).  Everything else
the machine attaches (``Lambda.single``, ``Clause.extra``/``fixed``/``enter``,
``App.direct``, the fast paths) is derived again by ``link`` and ``finish`` from these;
``batches`` are where the analyzer called ``finish``, so the fast paths are compiled in
the same groups.  ``requires`` are the programs the constants' code comes from (a macro
may put a procedure in code), loaded first.

Loading checks what this machine can run: a record of another format, a node class or
field list it lacks, a primitive it does not have (or that is no longer pure, for a call
linked at analysis time), or a node it would link differently, raises
``CodeUnavailable`` naming what is missing.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from . import nodes as N
from .codec import R_FRAMEKIND, R_PRIMITIVE, CodecError, Decoder, Encoder
from .machine import FrameKind, link
from .procedures import PRIMITIVES, PURE, Primitive
from .program import PROGRAMS, Program, register
from .values import Keyword, Span, Symbol

FORMAT = "flowmetal-analysis/1"
READABLE = (FORMAT,)

F_EV, F_SIMPLE = 1, 2


class CodeUnavailable(Exception):
    """The code a state needs cannot be loaded here: its record is missing, of a format
    this Flowmetal does not read, or names something this machine lacks.  A task whose
    code is unavailable waits (with this message as the reason); it is not failed."""


# ---------------------------------------------------------------------------------------
# Program -> record


def program_record(program: Program) -> dict:
    """The record of ``program``'s analysis (see the module docstring)."""
    link_all(program)  # (a node's flags are read from its linking)
    values = Encoder()
    procs: dict[str, int] = {}
    tree = []
    for node in program.nodes:
        fields = [_field(program, node, name, getattr(node, name), values)
                  for name in type(node).FIELDS]
        proc = procs.setdefault(node.proc, len(procs))
        tree.append([type(node).__name__, fields, _span(program, node.span), proc,
                     node_flags(node)])
    requires = sorted(values.programs - {program.hash})
    return {
        "v": 1, "format": FORMAT, "hash": program.hash, "analyzer": program.analyzer,
        "file": program.file, "source": program.source, "base": program.base,
        "nodes": len(program.nodes), "tree": tree, "procs": list(procs),
        "values": values.records, "forms": [_own(program, n) for n in program.forms],
        "entry": None if program.entry is None else _own(program, program.entry),
        "batches": list(program.batches), "requires": requires,
    }


def _own(program: Program, node: Any) -> int:
    if not isinstance(node, N.Node) or node.program is not program:
        raise ValueError(f"{program.file}: node {node!r} is not one of the program's")
    return node.id


def _field(program: Program, node: N.Node, name: str, value: Any, values: Encoder) -> Any:
    if type(node) is N.Const and name == "value":
        try:
            return ["v", values.add(value)]
        except CodecError as exc:
            raise ValueError(f"{program.file}: a constant cannot be stored: {exc}") from None
    t = type(value)
    if value is None or t is bool or t is int or t is str:
        return value
    if isinstance(value, N.Node):
        if value.id >= node.id:
            raise ValueError(f"{program.file}: node {node.id} refers to a later node")
        return ["n", _own(program, value)]
    if t is tuple:
        return ["t", *(_field(program, node, name, x, values) for x in value)]
    if t is Symbol:
        return ["s", value.name]
    if t is Keyword:
        return ["k", value.name]
    if t is Primitive:
        return ["p", value.name]
    raise ValueError(f"{program.file}: cannot store a {t.__name__} in a node field")


def _span(program: Program, span: Span | None) -> Any:
    if span is None:
        return None
    if span[0] == program.file:
        return list(span[1:])
    return list(span)


# ---------------------------------------------------------------------------------------
# record -> Program


def program_from_record(record: Any, digest: str | None = None) -> Program:
    """The program a record holds, built without the analyzer and registered (the one
    already registered under its hash, if any).  Raises ``CodeUnavailable``."""
    name = digest[:12] if isinstance(digest, str) else "?"
    if type(record) is not dict:
        raise CodeUnavailable(f"program {name}: the stored record is not a program record")
    fmt = record.get("format")
    if fmt not in READABLE:
        if fmt is None and "source" in record:
            raise CodeUnavailable(
                f"program {record.get('file', name)} was stored without its analysis (by an "
                "older Flowmetal), and is not analyzed again: it needs an explicit upgrade")
        raise CodeUnavailable(f"program {name} is stored in format {fmt!r}; this Flowmetal "
                              f"reads {', '.join(READABLE)}")
    try:
        return _build(record, digest)
    except CodeUnavailable:
        raise
    except Exception as exc:  # a malformed record
        raise CodeUnavailable(f"program {record.get('file', name)}: the stored analysis is "
                              f"malformed ({type(exc).__name__}: {exc})") from None


def _build(record: dict, digest: str | None) -> Program:
    file, source, base, analyzer = (record["file"], record["source"], record["base"],
                                    record["analyzer"])
    for value in (file, source, base, analyzer):
        if type(value) is not str:
            raise ValueError("file, source, base and analyzer must be strings")
    program = Program(file, source, base, analyzer)
    if program.hash != record["hash"] or (digest is not None and digest != program.hash):
        raise ValueError("the record does not match its hash")
    known = PROGRAMS.get(program.hash)
    if known is not None:
        return known
    tree, procs = record["tree"], record["procs"]
    if len(tree) != record["nodes"]:
        raise ValueError("node count differs from the tree")
    for kind, names in _names(record["values"]):
        if kind == R_PRIMITIVE and names not in PRIMITIVES:
            raise CodeUnavailable(f"program {file} needs primitive {names}, "
                                  "which this Flowmetal does not have")
        if kind == R_FRAMEKIND and names not in FrameKind.KINDS:
            raise CodeUnavailable(f"program {file} needs frame kind {names}, "
                                  "which this Flowmetal does not have")
    # 1. every node, empty; 2. the constants (which may refer to the program's own
    # nodes: a macro's procedure); 3. the fields; 4. link in id order, as analysis did.
    for i, item in enumerate(tree):
        cls_name, fields = item[0], item[1]
        cls = N.NODE_TYPES.get(cls_name)
        if cls is None:
            raise CodeUnavailable(f"program {file} uses node class {cls_name!r}, "
                                  "which this Flowmetal's machine does not have")
        if type(fields) is not list or len(fields) != len(cls.FIELDS):
            raise CodeUnavailable(f"program {file}: node class {cls_name} has "
                                  f"{len(cls.FIELDS)} fields here, the record has "
                                  f"{len(fields) if type(fields) is list else '?'}")
        node = cls(*([None] * len(cls.FIELDS)))
        node.id, node.program = i, program
        node.span = _read_span(file, item[2])
        node.proc = procs[item[3]]
        program.nodes.append(node)
    dec = Decoder(record["values"], {}, _Programs(program))
    dec.build()
    for node, item in zip(program.nodes, tree, strict=True):
        for name, field in zip(type(node).FIELDS, item[1], strict=True):
            setattr(node, name, _read_field(program, node, field, dec))
        if type(node) is N.PrimCall and (node.prim.kind is not PURE or
                                         not node.prim.accepts(len(node.args))):
            raise CodeUnavailable(f"program {file} calls primitive {node.prim.name} with "
                                  f"{len(node.args)} arguments as a pure one, which it is "
                                  "not in this Flowmetal")
    batches = list(record["batches"])
    if not all(type(end) is int for end in batches) or batches != sorted(set(batches)) or \
            (batches and not (0 < batches[0] and batches[-1] <= len(tree))):
        raise ValueError("bad batch bounds")
    link_program(program, [item[4] for item in tree], batches)
    program.forms = [program.nodes[i] for i in record["forms"]]
    entry = record["entry"]
    program.entry = None if entry is None else program.nodes[entry]
    return register(program)


def node_flags(node: N.Node) -> int:
    """What linking cannot derive from a node's fields (``F_EV``, ``F_SIMPLE``: see the
    module docstring)."""
    return (F_EV if node.ev is not None else 0) | (F_SIMPLE if node.slow is not None else 0)


def link_program(program: Program, flags: Any, batches: list[int]) -> None:
    """Link a program's new nodes for the machine as analysis did: each after its
    children, a simple node the analyzer made a step of its own kept so (``flags``, one
    per node), each batch (``batches``: where ``Program.finish`` was called) finished
    before the nodes after it.  ``CodeUnavailable`` if this machine links a node
    differently."""
    pending = list(reversed(batches))
    for node, flag in zip(program.nodes, flags, strict=True):
        _link_as_analyzed(program, node, flag)
        if pending and pending[-1] == node.id + 1:
            program.finish(pending.pop())


def _link_as_analyzed(program: Program, node: N.Node, flag: int) -> None:
    """Link one node as analysis did (``flag``: its ``node_flags``); ``CodeUnavailable``
    if this machine links it differently."""
    link(node)
    if flag & F_SIMPLE and not flag & F_EV:
        node.ev = None
    if (node.slow is not None) != bool(flag & F_SIMPLE):
        raise CodeUnavailable(f"program {program.file}: this machine links node "
                              f"{node.id} ({type(node).__name__} at {node.span!r}) "
                              "differently")


def link_lazily(program: Program, flags: Any, batches: list[int]) -> None:
    """``link_program``, each batch only when it is first needed: the standard library's
    way (most of its code never runs in a process).  A batch is one top-level form's
    nodes (none refers to another batch's), so it is entered only through a procedure it
    holds, a frame a decoded state holds, or compiled code: each clause is given what
    callers read of it (``Lambda.single``, ``Clause.extra``/``fixed``...) and an ``enter``
    that links the batch first; ``codec`` and ``compiled`` call ``need``.  Once linked,
    a batch is what ``link_program`` makes of it.  The nodes come without what linking
    attaches (the analysis cache keeps none of it): a node not linked yet has no ``ev``,
    ``exec``, ``resume`` or ``slow`` at all."""
    nodes = program.nodes
    bounds = list(batches)
    if len(flags) != len(nodes) or bounds != sorted(set(bounds)) or \
            (nodes and (not bounds or bounds[0] <= 0 or bounds[-1] != len(nodes))):
        raise ValueError("flags or batches do not match the nodes")
    program.batches, program.finished = list(bounds), len(nodes)
    if not nodes:
        return
    lazy = program.lazy = _Lazy(program, flags, bounds)
    for node in nodes:
        t = type(node)
        if t is N.Clause:
            node.extra = node.nslots - len(node.params)
            node.fixed = -1 if node.rest else node.nreq
            node.compiled = None
            node.lambda_ = None
            node.enter = lazy.stub(node)
        elif t is N.Lambda:
            node.single = node.clauses[0] if len(node.clauses) == 1 else None
            node.fast = None
            for cl in node.clauses:
                cl.lambda_ = node


def need(node: N.Node) -> None:
    """Link the batch of a lazily linked program that holds ``node`` (``link_lazily``)."""
    program = node.program
    lazy = program.lazy if program is not None else None
    if lazy is not None:
        lazy.need(node.id)


def link_all(program: Program) -> None:
    """Link every batch of ``program`` not linked yet (``link_lazily``)."""
    lazy = program.lazy
    if lazy is not None:
        for i in range(len(lazy.ends)):
            lazy.link(i)


class _Lazy:
    """The batches of a program not linked yet (``link_lazily``)."""

    def __init__(self, program: Program, flags: Any, ends: list[int]):
        self.program, self.flags, self.ends = program, flags, ends
        self.left = len(ends)
        self.linked = bytearray(len(ends))

    def need(self, node_id: int) -> None:
        i = bisect_right(self.ends, node_id)
        if not self.linked[i]:
            self.link(i)

    def stub(self, cl: N.Clause) -> Callable:
        """A clause's ``enter`` until its batch is linked."""
        def enter(env, k, m):
            self.need(cl.id)  # gives the clause its own enter
            real = cl.enter
            if real is not None:
                return real(env, k, m)
            return cl.body, env, k, None
        return enter

    def link(self, i: int) -> None:
        with _LINKING:
            if self.linked[i]:
                return
            program, flags = self.program, self.flags
            start, end = (self.ends[i - 1] if i else 0), self.ends[i]
            for node in program.nodes[start:end]:
                node.ev = node.exec = node.resume = node.slow = None  # (not kept)
                _link_as_analyzed(program, node, flags[node.id])
            program.prepare(start, end)
            self.linked[i] = 1
            self.left -= 1
            if not self.left:
                program.lazy = None


_LINKING = threading.RLock()


class _Programs:
    """The programs a constant may refer to: the one being built, and the loaded ones."""

    def __init__(self, program: Program):
        self.program = program

    def get(self, digest: str) -> Program | None:
        return self.program if digest == self.program.hash else PROGRAMS.get(digest)


def _names(records: list) -> list[tuple[int, str]]:
    """(kind, name) of the primitive and frame-kind records among ``records``."""
    return [(r[0], r[1]) for r in records
            if type(r) is list and len(r) == 2 and r[0] in (R_PRIMITIVE, R_FRAMEKIND)]


def _read_span(file: str, item: Any) -> Span | None:
    if item is None:
        return None
    if len(item) == 4:
        return Span(file, *item)
    return Span(*item)


def _read_field(program: Program, node: N.Node, item: Any, dec: Decoder) -> Any:
    if type(item) is not list:
        if item is None or type(item) in (bool, int, str):
            return item
        raise ValueError(f"node {node.id}: unexpected field {item!r}")
    tag = item[0]
    if tag == "n":
        child = item[1]
        if type(child) is not int or not 0 <= child < node.id:
            raise ValueError(f"node {node.id}: bad child reference {child!r}")
        return program.nodes[child]
    if tag == "t":
        return tuple(_read_field(program, node, x, dec) for x in item[1:])
    if tag == "s":
        return Symbol(item[1])
    if tag == "k":
        return Keyword(item[1])
    if tag == "v":
        return dec.item(item[1])
    if tag == "p":
        prim = PRIMITIVES.get(item[1])
        if prim is None:
            raise CodeUnavailable(f"program {program.file} needs primitive {item[1]}, "
                                  "which this Flowmetal does not have")
        return prim
    raise ValueError(f"node {node.id}: unknown field tag {tag!r}")


# ---------------------------------------------------------------------------------------
# Finding programs by hash


GetRecord = Callable[[str], "dict | None"]


def load_program(digest: str, get_record: GetRecord) -> Program:
    """The program with hash ``digest``: the one loaded in this process, or the one its
    stored record holds (``get_record(hash)`` gives a record or None), with the programs
    it requires.  Never analyzes; raises ``CodeUnavailable`` with the reason."""
    pending = [digest]
    seen: set[str] = set()
    order: list[tuple[str, dict]] = []
    while pending:
        h = pending.pop()
        if h in seen or h in PROGRAMS:
            continue
        seen.add(h)
        record = get_record(h)
        if record is None:
            raise CodeUnavailable(f"program {h[:12]} is not in the program store")
        if type(record) is dict and record.get("format") != FORMAT and "programs" in record \
                and "tree" not in record:
            raise CodeUnavailable(f"{h[:12]} is a standard library, not a program")
        order.append((h, record))
        requires = record.get("requires") if type(record) is dict else None
        if type(requires) is list:
            pending.extend(r for r in requires if type(r) is str)
    for h, record in reversed(order):
        if h not in PROGRAMS:
            program_from_record(record, h)
    return PROGRAMS[digest]


def programs_loaded(digests: Any, get_record: GetRecord) -> list[Program]:
    """``load_program`` for each of ``digests`` (e.g. a task record's ``programs``)."""
    return [load_program(d, get_record) for d in digests]
