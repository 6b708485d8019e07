"""The upgrade planner: can a waiting task's continuation move onto new code, and how.

Pure: it works on the encoded state (codec records, never decoded into a running
machine), finds code through the record lookup it is given, and returns a ``Plan``: ok
or not, the problems (each naming the frame — procedure and ``file:line:col`` — and
why), notes on what the upgrade changes, and, when ok, the rewritten state.

How code maps.  Every top-level form of a program is a *unit*: a definition
(``def``/``defn``; key: its name and which definition of that name it is, counting
from the top) or a top-level expression (key: its structure and which such expression
it is).  The standard library's units are those of all its programs in order.  A unit
is *unchanged* if the new code has a unit with the same key whose node tree is
structurally identical: the same node classes and fields (names, slots, constants,
primitives, procedure names), ignoring node ids and spans — so a definition moved to
another line, or to another file of the standard library, is unchanged.  An old node
maps to the node at the same position (the same path of children) in the unchanged new
unit.  A node that is in no unit (a macro's procedure) never maps.

What must map: every code reference reachable in the state — frames, the control
register, closures anywhere (environments, values, the wind list, continuations,
globals).  References to programs that are not being replaced stay as they are.  A
standard-library value referred to by name (``R_BASE``) maps if the new standard
library defines that name and the (last) definition is unchanged.

Globals.  A global the old program defined with a ``fn`` or a constant, still holding
what that definition made, takes the new program's definition when it changed (and is
removed if the new program does not define it); a fn or constant definition that is
new is added.  A changed definition whose global holds anything else (task state
computed by the old code) is refused, as is a changed definition whose new value is
neither a ``fn`` nor a constant.

The top level.  A task waiting inside the program's top-level sequence has a frame of
the program's implicit ``do``, which resumes with the forms after the one running.  It
maps onto the new program's sequence after the same form (found by key) if every new
form before that one either already ran (its key is among the old forms up to the
task's position) or is a fn or constant definition (made by the upgrade); the new forms
after it run when the task gets there.  A task past the top level (waiting inside a
function called in tail position, as in ``(defn main [] ...) (main)``) has no such
frame; then a new definition that is neither a fn nor a constant is refused, since it
would never run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2

from . import nodes as N
from .analysis import CodeUnavailable, load_program
from .codec import (
    FORMAT,
    R_ATOM,
    R_BASE,
    R_CLOSURE,
    R_CONTINUATION,
    R_DELAY,
    R_EMPTY,
    R_ENV,
    R_IMPROPER,
    R_KEYWORD,
    R_LIST,
    R_MAP,
    R_NODE,
    R_RATIO,
    R_REDUCED,
    R_REGEX,
    R_SET,
    R_SYMBOL,
    R_TUPLE,
    R_VECTOR,
    CodecError,
    Decoder,
    Encoder,
    _immediate_item,
    _is_immediate,
    decode_machine,
    encode_value,
    int_item,
)
from .interpreter import Base, base_for, stdlib_programs
from .procedures import Primitive
from .program import PROGRAMS, Program
from .values import Keyword, Span, Symbol

GetRecord = Callable[[str], "dict | None"]

_REF_KINDS = frozenset({R_LIST, R_IMPROPER, R_VECTOR, R_MAP, R_SET, R_ENV, R_CLOSURE,
                        R_CONTINUATION, R_TUPLE, R_REDUCED, R_ATOM, R_DELAY})
_DATA_KINDS = frozenset({R_SYMBOL, R_KEYWORD, R_RATIO, R_LIST, R_IMPROPER, R_EMPTY,
                         R_VECTOR, R_MAP, R_SET, R_REGEX})
OWN = 6  # the machine register holding its own globals (codec.MACHINE_FIELDS)


@dataclass
class Problem:
    """One reason the upgrade cannot be made: what (``role``: frame, closure, control,
    global, stdlib value, top level, code), in which procedure, where, and why."""

    role: str
    proc: str
    where: str
    reason: str

    def describe(self) -> str:
        return f"{self.role} in {self.proc} ({self.where}): {self.reason}"


@dataclass
class Plan:
    """The planner's answer; ``state`` (the rewritten continuation, over standard
    library ``base``, referring to ``programs``) is set only when ``ok``."""

    ok: bool
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    state: bytes | None = None
    base: str | None = None
    programs: set[str] = field(default_factory=set)
    mapped: int = 0

    def report(self) -> str:
        """The report as text (what ``flowmetal upgrade --dry-run`` shows)."""
        lines = [f"upgrade {'possible' if self.ok else 'refused'}: {self.mapped} code "
                 f"references map onto the new code"]
        if self.problems:
            lines.append("cannot map:")
            lines += [f"  {p.describe()}" for p in self.problems]
        if self.notes:
            lines.append("changes:" if self.ok else "would change:")
            lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)

    def to_json(self) -> dict:
        """The report as JSON-able data."""
        return {"ok": self.ok, "mapped": self.mapped, "base": self.base,
                "programs": sorted(self.programs), "notes": list(self.notes),
                "problems": [vars(p) for p in self.problems]}


# ---------------------------------------------------------------------------------------
# Units and structural identity


_DIGESTS: dict[str, list[bytes]] = {}


def node_digests(program: Program) -> list[bytes]:
    """For each node of ``program``, a digest of its subtree's structure: classes,
    fields and procedure names, not ids or spans."""
    found = _DIGESTS.get(program.hash)
    if found is not None:
        return found
    out: list[bytes] = []
    for node in program.nodes:
        parts = [type(node).__name__, node.proc]
        for name in type(node).FIELDS:
            value = getattr(node, name)
            if type(node) is N.Const and name == "value":
                parts.append(["v", _const_key(value)])
            else:
                parts.append(_canon(value, out))
        out.append(hashlib.sha256(cbor2.dumps(parts)).digest())
    _DIGESTS[program.hash] = out
    return out


def _canon(value: Any, digests: list[bytes]) -> Any:
    t = type(value)
    if value is None or t in (bool, int, str):
        return value
    if isinstance(value, N.Node):
        return ["n", digests[value.id]]
    if t is tuple:
        return ["t", *(_canon(x, digests) for x in value)]
    if t is Symbol:
        return ["s", value.name]
    if t is Keyword:
        return ["k", value.name]
    if t is Primitive:
        return ["p", value.name]
    return ["?", id(value)]  # nothing else is in a field: never equal


def _const_key(value: Any) -> Any:
    if _is_immediate(value):
        return [type(value).__name__, _immediate_item(value)]
    try:
        return encode_value(value)
    except CodecError:
        return ["?", id(value)]


def _descendants(root: N.Node) -> list[N.Node]:
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.children())
    return out


class CodeIndex:
    """The units of some programs (one program, or a standard library's chain)."""

    def __init__(self, programs: list[Program]):
        self.programs = programs
        self.hashes = {p.hash for p in programs}
        self.units: dict[tuple, tuple[Program, N.Node]] = {}
        self.unit_of: dict[tuple[str, int], tuple] = {}
        self.last_def: dict[str, tuple] = {}
        counts: dict[tuple, int] = {}
        for p in programs:
            digests = node_digests(p)
            for root in p.forms:
                if type(root) is N.SetGlobal and root.is_def:
                    kind = ("def", root.name.name)
                    self.last_def[root.name.name] = (*kind, counts.get(kind, 0))
                else:
                    kind = ("expr", digests[root.id])
                key = (*kind, counts.get(kind, 0))
                counts[kind] = key[2] + 1
                self.units[key] = (p, root)
                for node in _descendants(root):
                    self.unit_of.setdefault((p.hash, node.id), key)
        self._pairs: dict[tuple, dict[int, N.Node]] = {}

    def digest(self, key: tuple) -> bytes | None:
        unit = self.units.get(key)
        return None if unit is None else node_digests(unit[0])[unit[1].id]

    def root(self, key: tuple) -> N.Node:
        return self.units[key][1]


def unchanged(old: CodeIndex, new: CodeIndex, key: tuple) -> bool:
    """True if unit ``key`` of the old code is in the new code, structurally identical."""
    d = new.digest(key)
    return d is not None and d == old.digest(key)


def _pairs(old: CodeIndex, new: CodeIndex, key: tuple) -> dict[int, N.Node]:
    """Old node id -> new node, position by position, in an unchanged unit."""
    found = old._pairs.get((id(new), key))
    if found is not None:
        return found
    out: dict[int, N.Node] = {}
    stack = [(old.root(key), new.root(key))]
    while stack:
        a, b = stack.pop()
        out[a.id] = b
        ca, cb = a.children(), b.children()
        if type(a) is not type(b) or len(ca) != len(cb):
            raise AssertionError("structurally identical units differ")
        stack.extend(zip(ca, cb))
    old._pairs[(id(new), key)] = out
    return out


def _fn_or_const(value: N.Node) -> bool:
    return type(value) in (N.Lambda, N.Const)


def _where(node: Any, program: Program | None = None) -> str:
    span = getattr(node, "span", None)
    if isinstance(span, Span):
        return f"{span.file}:{span.line}:{span.col}"
    return program.file if program is not None else "?"


def _awaited(owner: N.Node, frame: list) -> N.Node:
    """The node a frame (record ``frame``, owned by ``owner``) waits for, where its
    layout says (machine.py: a ``do`` frame holds the number of the body form running,
    a ``let`` frame its group's, a ``letrec`` frame its init's, a call its part's);
    else the owner."""
    i = frame[4] if len(frame) > 4 else None
    i = int.from_bytes(i, "big", signed=True) if type(i) is bytes else -1
    child = None
    if type(owner) is N.Do and 0 <= i < len(owner.body):
        child = owner.body[i]
    elif type(owner) is N.Let and 0 <= i < len(owner.groups) and owner.groups[i][1]:
        child = owner.groups[i][1][0][1]
    elif type(owner) is N.Letrec and 0 <= i < len(owner.inits):
        child = owner.inits[i][1]
    elif type(owner) is N.App and 0 <= i <= len(owner.args):
        child = (owner.fn, *owner.args)[i]
    return child if child is not None and child.span is not None else owner


def _unit_name(key: tuple) -> str:
    return f"definition {key[1]}" if key[0] == "def" else "top-level expression"


def _unit_gone(key: tuple) -> str:
    """Why unit ``key`` has no unchanged counterpart in the new code."""
    if key[0] == "def":
        return f"definition {key[1]} changed"
    return "top-level expression changed (or was removed)"


# ---------------------------------------------------------------------------------------
# The planner


def plan_upgrade(state: bytes, get_record: GetRecord, program: Program | None = None,
                 base: Base | None = None, old_program: str | None = None) -> Plan:
    """Plan moving the task whose encoded state is ``state`` onto ``program`` (replacing
    the task's program ``old_program``, by default the one of the state's programs with
    the same file) and onto standard library ``base`` (by default the one ``program``
    was analyzed against; without either, the state's own).  ``get_record(hash)`` finds
    stored program and standard-library records.  See the module docstring."""
    try:
        return _Planner(state, get_record, program, base, old_program).run()
    except CodeUnavailable as exc:
        return Plan(False, [Problem("code", "-", "-", str(exc))])


class _Planner:
    def __init__(self, state: bytes, get_record: GetRecord, program: Program | None,
                 target_base: Base | None, old_program: str | None):
        try:
            top = cbor2.loads(state)
        except Exception as exc:
            raise CodeUnavailable(f"the state is not CBOR: {exc}") from None
        if type(top) is not dict or top.get("format") != FORMAT or \
                type(top.get("records")) is not list or type(top.get("machine")) is not list:
            raise CodeUnavailable(f"the state is not a {FORMAT} machine state")
        self.get = get_record
        self.records: list = list(top["records"])
        self.items: list = list(top["machine"])
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self.program = program
        old_base = top.get("base")
        if target_base is not None and program is not None and program.base != target_base.hash:
            raise CodeUnavailable("the new program was analyzed against another standard "
                                  "library than the one to upgrade to")
        if target_base is None:
            digest = program.base if program is not None else old_base
            target_base = base_for(digest, get_record)
        self.base = target_base
        self.old_base = old_base if old_base is not None else target_base.hash
        for rec in self.records:
            if type(rec) is not list or not rec or type(rec[0]) is not int:
                raise CodeUnavailable("the state has a malformed record")
        # Every program the state's code comes from must be loadable here.
        self.node_hashes = {rec[1] for rec in self.records if rec[0] == R_NODE}
        for h in sorted(self.node_hashes):
            load_program(h, get_record)
        self.switch = self.old_base != self.base.hash
        self.std_old = self.std_new = None
        if self.switch:
            self.std_old = CodeIndex(stdlib_programs(self.old_base, get_record))
            self.std_new = CodeIndex(self.base.programs)
        self.user_old = self.user_new = None
        self.old_user: Program | None = None
        if program is not None:
            self.old_user = self._replaced(old_program)
            if self.old_user is not None and self.old_user.hash != program.hash:
                self.user_old = CodeIndex([self.old_user])
                self.user_new = CodeIndex([program])
        self.first_new = len(self.records)  # records from here on refer to new code

    def _replaced(self, old_program: str | None) -> Program | None:
        if old_program is not None:
            return load_program(old_program, self.get)
        std = self.std_old.hashes if self.std_old is not None else \
            {p.hash for p in self.base.programs}
        mine = [PROGRAMS[h] for h in sorted(self.node_hashes - std)]
        same_file = [p for p in mine if p.file == self.program.file]
        if len(same_file) == 1:
            return same_file[0]
        if len(mine) == 1:
            return mine[0]
        if not mine:
            return None
        raise CodeUnavailable("cannot tell which of the task's programs the new one replaces "
                              "(name it)")

    # -- the steps -----------------------------------------------------------------------

    def run(self) -> Plan:
        if self.user_old is not None:
            self.globals()
        reachable = self.reachable()
        entry_refs = self.map_nodes(reachable)
        if self.switch:
            self.map_base_values(reachable)
        if self.user_old is not None:
            self.top_level(reachable, entry_refs)
        mapped = self.mapped
        if self.problems:
            return Plan(False, self.problems, self.notes, base=self.base.hash, mapped=mapped)
        records, items = self.compact(reachable)
        data = cbor2.dumps({"format": FORMAT, "base": self.base.hash, "records": records,
                            "machine": items})
        try:
            decode_machine(data, self.base.globals)
        except CodecError as exc:
            self.problems.append(Problem("code", "-", "-",
                                         f"the rewritten state does not decode: {exc}"))
            return Plan(False, self.problems, self.notes, base=self.base.hash, mapped=mapped)
        programs = {rec[1] for rec in records if rec[0] == R_NODE}
        return Plan(True, [], self.notes, data, self.base.hash, programs, mapped)

    def globals(self) -> None:
        """Rebind the globals the old program's fn and constant definitions made."""
        old, new, records = self.user_old, self.user_new, self.records
        own = self.items[OWN]
        if type(own) is not int or records[own][0] != R_MAP:
            raise CodeUnavailable("the state's own globals are malformed")
        flat = records[own][1:]
        pairs, names = [], set()
        for k_item, v_item in zip(flat[::2], flat[1::2]):
            name = records[k_item][1] if type(k_item) is int and \
                records[k_item][0] == R_SYMBOL else None
            names.add(name)
            old_key = old.last_def.get(name) if name is not None else None
            if old_key is None or unchanged(old, new, old_key):
                pairs.append((k_item, v_item))
                continue
            old_def = old.root(old_key)
            new_key = new.last_def.get(name)
            if not self._made_by(old_def.value, v_item):
                self.problems.append(Problem(
                    "global", name, _where(old_def),
                    "its definition changed or was removed, and it holds what the old "
                    "definition computed (task state)"))
                continue
            if new_key is None:
                self.notes.append(f"global {name}: removed (the new program does not "
                                  "define it)")
                continue
            new_def = new.root(new_key)
            if not _fn_or_const(new_def.value):
                self.problems.append(Problem(
                    "global", name, _where(new_def),
                    "its definition changed and the new value is neither a fn nor a "
                    "constant, so it cannot be made without running the program"))
                continue
            pairs.append((k_item, self._fresh(new_def.value)))
            self.notes.append(f"global {name}: takes the new definition "
                              f"({_where(new_def)})")
        self.own_names = names
        for name, key in new.last_def.items():
            if name in names:
                continue
            value = new.root(key).value
            if _fn_or_const(value):
                pairs.append((self._symbol(name), self._fresh(value)))
                if name not in old.last_def:
                    self.notes.append(f"global {name}: added ({_where(new.root(key))})")
        self.items[OWN] = self._append([R_MAP, *(x for pair in pairs for x in pair)])

    def _made_by(self, value: N.Node, item: Any) -> bool:
        """True if ``item`` is still what definition value ``value`` made."""
        records = self.records
        if type(value) is N.Lambda:
            if type(item) is not int or records[item][0] != R_CLOSURE:
                return False
            closure = records[item]
            code = records[closure[1]] if type(closure[1]) is int else None
            return closure[2] is None and code == [R_NODE, value.program.hash, value.id]
        if type(value) is N.Const:
            if _is_immediate(value.value):
                want = _immediate_item(value.value)
                return type(item) is type(want) and item == want
            data = self._data(item)
            if data is None:
                return False
            try:
                return encode_value(data) == encode_value(value.value)
            except CodecError:
                return False
        return False

    def _data(self, item: Any) -> Any:
        """The plain data (no code, no environments) at record ``item``, or None."""
        if type(item) is not int:
            return None
        records, seen, stack = self.records, set(), [item]
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            rec = records[i]
            if rec[0] not in _DATA_KINDS:
                return None
            if rec[0] in _REF_KINDS:
                stack.extend(x for x in rec[1:] if type(x) is int)
        dec = Decoder(records)
        try:
            for i in sorted(seen):
                rec = records[i]
                dec.objs[i] = dec._immutable(rec[0], rec[1:], dec.item)
        except Exception:
            return None
        return dec.objs[item]

    def _fresh(self, value: N.Node) -> Any:
        """The item of a new value of definition value ``value`` (a fn or a constant)."""
        if type(value) is N.Lambda:
            code = self._append([R_NODE, value.program.hash, value.id])
            return self._append([R_CLOSURE, code, None])
        return self._splice(value.value)

    def _splice(self, value: Any) -> Any:
        enc = Encoder()
        item = enc.add(value)
        offset = len(self.records)
        for rec in enc.records:
            rec = list(rec)
            if rec[0] in _REF_KINDS:
                rec[1:] = [x + offset if type(x) is int else x for x in rec[1:]]
            self.records.append(rec)
        return item + offset if type(item) is int else item

    def _symbol(self, name: str) -> int:
        return self._append([R_SYMBOL, name])

    def _append(self, rec: list) -> int:
        self.records.append(rec)
        return len(self.records) - 1

    def reachable(self) -> set[int]:
        records, seen = self.records, set()
        stack = [x for x in self.items if type(x) is int]
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            if not 0 <= i < len(records):
                raise CodeUnavailable(f"the state has a bad reference {i}")
            seen.add(i)
            rec = records[i]
            if rec[0] in _REF_KINDS:
                stack.extend(x for x in rec[1:] if type(x) is int)
        return seen

    def map_nodes(self, reachable: set[int]) -> list[int]:
        """Rewrite each old code reference to the new code; the records of the old
        program's top-level ``do`` (mapped by ``top_level``)."""
        self.mapped = 0
        failed: dict[int, tuple[N.Node, str]] = {}
        entry_refs = []
        for i in sorted(reachable):
            rec = self.records[i]
            if rec[0] != R_NODE or i >= self.first_new:
                continue
            h, nid = rec[1], rec[2]
            if self.user_old is not None and h == self.old_user.hash:
                old, new = self.user_old, self.user_new
            elif self.switch and h in self.std_old.hashes:
                old, new = self.std_old, self.std_new
            else:
                continue
            node = PROGRAMS[h].nodes[nid]
            key = old.unit_of.get((h, nid))
            if key is None:
                if old is self.user_old and node is self.old_user.entry:
                    entry_refs.append(i)
                    continue
                failed[i] = (node, "not in a definition (a macro's or the analyzer's code)")
            elif unchanged(old, new, key):
                target = _pairs(old, new, key)[nid]
                self.records[i] = [R_NODE, target.program.hash, target.id]
                self.mapped += 1
            elif key[0] == "def" and new.digest(key) is None:
                failed[i] = (node, f"definition {key[1]} was removed")
            else:
                failed[i] = (node, _unit_gone(key))
        if failed:
            self._report(failed, reachable)
        return entry_refs

    def _report(self, failed: dict[int, tuple[N.Node, str]], reachable: set[int]) -> None:
        """A problem for each use of each code reference that cannot map."""
        uses: dict[int, list[tuple[str, N.Node, N.Node]]] = {i: [] for i in failed}
        if self.items and self.items[0] in failed:
            node = failed[self.items[0]][0]
            uses[self.items[0]].append(("control", node, node))
        for j in sorted(reachable):
            rec = self.records[j]
            if len(rec) > 1 and rec[1] in failed and type(rec[1]) is int:
                node = failed[rec[1]][0]
                if rec[0] == R_TUPLE:
                    uses[rec[1]].append(("frame", node, _awaited(node, rec)))
                elif rec[0] == R_CLOSURE:
                    uses[rec[1]].append(("closure", node, node))
        seen = set()
        for i, (node, reason) in failed.items():
            for role, n, at in uses[i] or [("code", node, node)]:
                proc = (n.name or n.proc) if type(n) is N.Lambda else n.proc
                problem = Problem(role, proc or "<toplevel>", _where(at, n.program), reason)
                if (role, problem.proc, problem.where, reason) not in seen:
                    seen.add((role, problem.proc, problem.where, reason))
                    self.problems.append(problem)

    def map_base_values(self, reachable: set[int]) -> None:
        """Standard-library values referred to by name must be unchanged."""
        old, new = self.std_old, self.std_new
        for i in sorted(reachable):
            rec = self.records[i]
            if rec[0] != R_BASE:
                continue
            name = rec[1]
            key = old.last_def.get(name)
            new_key = new.last_def.get(name)
            where = _where(old.root(key)) if key is not None else "?"
            if key is None:
                reason = "not a top-level definition of the standard library"
            elif new_key is None or Symbol(name) not in self.base.globals:
                reason = "the new standard library does not define it"
            elif old.digest(key) != new.digest(new_key):
                reason = "its definition changed in the standard library"
            else:
                self.mapped += 1
                continue
            self.problems.append(Problem("stdlib value", name, where, reason))

    def top_level(self, reachable: set[int], entry_refs: list[int]) -> None:
        """Map the frames of the old program's top-level ``do`` (see the docstring)."""
        old, new = self.user_old, self.user_new
        old_entry, new_entry = self.old_user.entry, self.program.entry
        frames = [j for j in sorted(reachable) if self.records[j][0] == R_TUPLE
                  and len(self.records[j]) == 5 and self.records[j][1] in entry_refs]
        if not frames:
            if entry_refs:
                self.problems.append(Problem("code", "<toplevel>", self.old_user.file,
                                             "the program's top level is used as a value"))
            for name, key in new.last_def.items():
                if name not in self.own_names and not _fn_or_const(new.root(key).value):
                    self.problems.append(Problem(
                        "top level", name, _where(new.root(key)),
                        "a new definition that is neither a fn nor a constant would never "
                        "run: the task is past the program's top level"))
            return
        if type(new_entry) is not N.Do:
            self.problems.append(Problem("frame", "<toplevel>", self.program.file,
                                         "the new program is a single form"))
            return
        old_keys = [old.unit_of[(self.old_user.hash, n.id)] for n in old_entry.body]
        new_keys = [new.unit_of[(self.program.hash, n.id)] for n in new_entry.body]
        for j in frames:
            rec = self.records[j]
            i = int.from_bytes(rec[4], "big", signed=True) if type(rec[4]) is bytes else -1
            if not 0 <= i < len(old_keys):
                raise CodeUnavailable("a top-level frame of the state is malformed")
            form = old_entry.body[i]
            if old_keys[i] not in new_keys:
                self.problems.append(Problem("frame", "<toplevel>", _where(form),
                                             f"the top-level form the task is in: "
                                             f"{_unit_gone(old_keys[i])}"))
                continue
            at = new_keys.index(old_keys[i])
            if at == len(new_keys) - 1:
                self.problems.append(Problem("frame", "<toplevel>", _where(form),
                                             "the new program has no form after the one "
                                             "the task is in"))
                continue
            ran = set(old_keys[: i + 1])
            for key, node in zip(new_keys[:at], new_entry.body[:at], strict=True):
                if key not in ran and not (type(node) is N.SetGlobal and node.is_def and
                                           _fn_or_const(node.value)):
                    self.problems.append(Problem(
                        "top level", "<toplevel>", _where(node),
                        f"a new {_unit_name(key)} comes before where the task is, so it "
                        "would never run"))
            self.records[j] = [*rec[:4], int_item(at)]
            self.mapped += 1
        for ref in entry_refs:
            self.records[ref] = [R_NODE, self.program.hash, new_entry.id]

    def compact(self, reachable: set[int]) -> tuple[list, list]:
        """Only the reachable records, renumbered in their order (so each still comes
        after the immutable records it refers to)."""
        order = sorted(reachable)
        renum = {old: new for new, old in enumerate(order)}
        out = []
        for i in order:
            rec = self.records[i]
            if rec[0] in _REF_KINDS:
                rec = [rec[0], *(renum[x] if type(x) is int else x for x in rec[1:])]
            out.append(rec)
        items = [renum[x] if type(x) is int else x for x in self.items]
        return out, items


__all__ = ["Plan", "Problem", "plan_upgrade", "CodeIndex", "node_digests", "unchanged"]
