"""Describing tasks as plain data (dicts and lists, ready for JSON) for the command
line and the REPL's inspector: a task's summary and detail, its log's events, and above
all its stored continuation: the frames, where they are in the source, and the local
variables each one can see.

Environments carry no names: an environment is ``[parent, slot1, ...]``.  The names come
from the analysis.  Walking a program's nodes from the top, each node gets its *scope
chain*, the analysis-time frames around it innermost first (a ``fn`` clause, each frame
of a ``let``, a ``letrec``, a ``catch``), and each scope gets its slot names from the
parameters and bindings that make it and from the variables that refer into it
(internal ``def``s).  A continuation frame ``(owner, next, env, ...)`` is then read by
pairing the levels of ``env`` with the scope chain of its owner node.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .. import nodes as N
from ..machine import FrameKind
from ..printer import bounded_string
from ..report import format_error
from .records import Event, TaskError, TaskRecord, decode_data, result_value

if TYPE_CHECKING:  # (the codec and the code are imported where a state is read)
    from ..machine import Machine
    from ..program import Program

MAX_FRAMES = 100
RUNTIME_FRAMES = {
    "winder": "dynamic-wind (moving between extents)",
    "dw-before": "dynamic-wind (before thunk)",
    "dw-body": "dynamic-wind (body: a try with finally)",
    "dw-after": "dynamic-wind (after thunk: a finally)",
    "call": "spawned call (not started)",
}
value_text = bounded_string  # the printed text of a value, cut at a limit


class Scope:
    """One analysis-time frame: its kind and the names of its slots."""

    __slots__ = ("kind", "names")

    def __init__(self, kind: str, names: dict[int, str] | None = None):
        self.kind = kind
        self.names: dict[int, str] = names or {}


class ProgramScopes:
    """The scope chain of every node of one program (see the module docstring)."""

    def __init__(self, program: Program):
        self.chains: dict[int, tuple[Scope, ...]] = {}
        # The scopes a let (its groups) or letrec makes, outermost first: a frame of
        # the let or letrec itself may hold an environment that includes some of them.
        self.made: dict[int, list[Scope]] = {}
        children: set[int] = set()
        for node in program.nodes:
            for child in node.children():
                children.add(id(child))
        pending = [(node, ()) for node in program.nodes if id(node) not in children]
        while pending:
            node, chain = pending.pop()
            if id(node) in self.chains:
                continue
            self.chains[id(node)] = chain
            pending.extend(self._inner(node, chain))

    def _inner(self, node: N.Node, chain: tuple) -> list[tuple[N.Node, tuple]]:
        """The children of ``node`` with their scope chains; names slots on the way."""
        t = type(node)
        if t is N.Clause:
            scope = Scope("fn", {i + 1: name.name for i, name in enumerate(node.params)})
            return [(node.body, (scope, *chain))]
        if t is N.Let:
            return self._let(node, chain)
        if t is N.Letrec:
            scope = Scope("letrec", {slot: name.name
                                     for (slot, _), name in zip(node.inits, node.names)})
            inner = (scope, *chain)
            self.made[id(node)] = [scope]
            return [(init, inner) for _, init in node.inits] + [(node.body, inner)]
        if t is N.Catch:
            inner = (Scope("catch", {1: node.name.name}), *chain)
            return [(node.body, inner)]
        if t is N.LocalRef or t is N.SetLocal:
            if node.depth < len(chain):
                chain[node.depth].names.setdefault(node.slot, node.name.name)
        return [(child, chain) for child in node.children()]

    def _let(self, node: N.Let, chain: tuple) -> list[tuple[N.Node, tuple]]:
        out = []
        groups: list[Scope] = []
        names = iter(node.names)
        inner = chain
        for _, inits in node.groups:
            scope = Scope("let")
            groups.append(scope)
            outer, inner = inner, (scope, *inner)
            for i, (slot, init) in enumerate(inits):
                scope.names[slot] = next(names).name
                # A group's first init runs in the frame before the group.
                out.append((init, outer if i == 0 else inner))
        self.made[id(node)] = groups
        out.append((node.body, inner))
        return out

    def scopes_for(self, owner: N.Node, levels: int) -> list[Scope | None]:
        """The scopes of an environment ``levels`` deep seen by a frame of ``owner``,
        innermost first (None where the analysis does not say)."""
        chain = list(self.chains.get(id(owner), ()))
        extra = levels - len(chain)
        if extra > 0 and id(owner) in self.made:
            # A let waiting for a group's first init (its earlier groups' frames are
            # made), or a letrec waiting for an init (its frame is made).
            chain = list(reversed(self.made[id(owner)][:extra])) + chain
        return (chain + [None] * levels)[:levels]


_SCOPES: dict[str, ProgramScopes] = {}


def program_scopes(program: Program) -> ProgramScopes:
    """The (cached) scopes of ``program``."""
    found = _SCOPES.get(program.hash)
    if found is None:
        found = _SCOPES[program.hash] = ProgramScopes(program)
    return found


def load_machine(view: Any, rec: TaskRecord, data: bytes | None = None) -> Machine | None:
    """The task's machine decoded from its stored continuation (None if it has none).

    Raises ``records.TaskError`` or ``codec.CodecError`` if it cannot be decoded.
    """
    from .code import task_machine

    data = view.continuation(rec.id) if data is None else data
    if data is None:
        return None
    return task_machine(view, rec, bytes(data))




def source_line(node: Any) -> str | None:
    """The line of source text where ``node`` starts, if its program is known."""
    program, span = getattr(node, "program", None), getattr(node, "span", None)
    if program is None or span is None or span[0] != program.file:
        return None
    lines = program.source.splitlines()
    return lines[span[1] - 1].rstrip() if 0 < span[1] <= len(lines) else None


def bindings(owner: Any, env: Any) -> list[dict]:
    """The local variables visible in ``env`` from a frame of ``owner``, innermost first:
    ``{"name", "value", "depth"}`` (a name hidden by an inner one is left out)."""
    return [{"name": name, "value": value_text(value), "depth": depth}
            for name, value, depth in local_values(owner, env)]


def local_values(owner: Any, env: Any) -> list[tuple[str, Any, int]]:
    """``bindings`` with the values themselves: (name, value, depth) tuples; a slot the
    analysis does not name is ``#DEPTH.SLOT``."""
    levels = []
    e = env
    while type(e) is list:
        levels.append(e)
        e = e[0]
    if not levels:
        return []
    program = getattr(owner, "program", None)
    scopes = (program_scopes(program).scopes_for(owner, len(levels))
              if program is not None else [None] * len(levels))
    out: list[tuple[str, Any, int]] = []
    seen: set[str] = set()
    for depth, (level, scope) in enumerate(zip(levels, scopes)):
        for slot in range(1, len(level)):
            name = scope.names.get(slot) if scope is not None else None
            if name is None:
                name = f"#{depth}.{slot}"
            elif name in seen or name.startswith("%"):
                continue  # shadowed, or a name the analyzer made up
            seen.add(name)
            out.append((name, level[slot], depth))
    return out


def _location(owner: Any) -> dict:
    span = getattr(owner, "span", None)
    if span is None:
        return {"file": None, "line": None, "col": None, "end_line": None, "end_col": None,
                "source": None}
    return {"file": span[0], "line": span[1], "col": span[2], "end_line": span[3],
            "end_col": span[4], "source": source_line(owner)}


def _awaited(frame: tuple) -> Any:
    """The node whose value a frame waits for, when its layout (machine.py) says and the
    node has a position; else the frame's owner.  A ``do`` frame holds the number of the
    body form running, a ``let`` frame the number of the group whose first init runs, a
    ``letrec`` frame the number of the init running."""
    owner = frame[0]
    i = frame[3] if len(frame) > 3 and type(frame[3]) is int else -1
    child = None
    if type(owner) is N.Do and 0 <= i < len(owner.body):
        child = owner.body[i]
    elif type(owner) is N.Let and 0 <= i < len(owner.groups) and owner.groups[i][1]:
        child = owner.groups[i][1][0][1]
    elif type(owner) is N.Letrec and 0 <= i < len(owner.inits):
        child = owner.inits[i][1]
    return child if child is not None and child.span is not None else owner


def frames(m: Machine, limit: int = MAX_FRAMES) -> list[dict]:
    """The machine's continuation as a list of frames, innermost first.

    Each frame is ``{"proc", "kind", "file", "line", "col", "end_line", "end_col",
    "source", "bindings"}`` (the span's end: where the source line's span stops):
    ``kind`` is "control" for the expression about to run (a task between slices),
    "frame" for a frame waiting for a value, or the name of a runtime frame
    (``dynamic-wind``'s, a spawned call's).  Frames of no source position (the program's
    top-level sequence) are left out, as backtraces leave them out.  After ``limit``
    frames a last ``{"kind": "more", "count": n}`` says how many were left out.
    """
    shown, skipped = _frame_points(m, limit)
    out: list[dict] = []
    for kind, owner, env, frame in shown:
        if kind == "control":
            out.append({"proc": owner.proc, "kind": kind, **_location(owner),
                        "bindings": bindings(owner, env)})
        elif kind == "frame":
            out.append({"proc": owner.proc, "kind": kind, **_location(_awaited(frame)),
                        "bindings": bindings(owner, env)})
        else:
            out.append({"proc": RUNTIME_FRAMES.get(kind, kind), "kind": kind,
                        **_location(owner), "bindings": []})
    if skipped:
        out.append({"kind": "more", "count": skipped})
    return out


def frame_locals(m: Machine, index: int) -> dict[str, Any]:
    """The local variables frame ``index`` of ``frames(m)`` sees, name to value (names
    the analysis does not give are left out)."""
    shown, _ = _frame_points(m, index + 1)
    if not 0 <= index < len(shown):
        return {}
    kind, owner, env, _ = shown[index]
    if kind not in ("control", "frame"):
        return {}
    return {name: value for name, value, _ in reversed(local_values(owner, env))
            if not name.startswith("#")}


def _frame_points(m: Machine, limit: int) -> tuple[list[tuple[str, Any, Any, Any]], int]:
    """The frames ``frames`` shows, as (kind, owner, environment, frame) — kind is
    "control", "frame" or a runtime frame's name —, and how many past ``limit``."""
    out: list[tuple[str, Any, Any, Any]] = []
    if m.status == "running" and m.node is not None and m.node.span is not None:
        out.append(("control", m.node, m.env, None))
    k = m.k
    skipped = 0
    while k is not None:
        owner = k[0]
        if len(out) >= limit:
            skipped += 1
        elif type(owner) is FrameKind:
            out.append((owner.name, owner, None, k))
        elif owner.span is not None:
            out.append(("frame", owner, k[2], k))
        k = k[1]
    return out, skipped


# ---------------------------------------------------------------------------------------
# Tasks


def task_summary(rec: TaskRecord, now: float) -> dict:
    """A task in a listing, as JSON data: id, name, program hash, status (as stored),
    whether a worker's lease on it stands (``running``), why no worker could load its
    code (``blocked``), times, ``age_seconds``, what it waits on (``waiting``, see
    ``waiting_data``), parent and counts."""
    return {
        "id": rec.id, "name": rec.name, "program": rec.program,
        "status": str(rec.status), "running": is_running(rec, now), "blocked": rec.blocked,
        "created": rec.created, "updated": rec.updated,
        "age_seconds": max(0.0, now - rec.created),
        "waiting": waiting_data(rec), "parent": rec.parent, "steps": rec.steps,
        "reductions": rec.reductions,
    }


def is_running(rec: TaskRecord, now: float) -> bool:
    """Whether a worker's lease on the runnable task stands."""
    return rec.status == "runnable" and rec.lease is not None and rec.lease.until > now


WAIT_WORDS = {"next-message": "receive"}


def waiting_data(rec: TaskRecord) -> dict | None:
    """What a waiting task waits for: ``{"op", "until", "task", "default_wait"}`` — the
    operation (sleep, receive, join, ...), when the wait times out (None: never), the
    task a join waits for, and whether the timeout is the task's default wait (the wait
    named no ``:timeout``); None unless the task waits."""
    waiting = rec.waiting
    if rec.status != "waiting" or waiting is None:
        return None
    return {"op": WAIT_WORDS.get(waiting.op, waiting.op), "until": waiting.until,
            "task": waiting.task, "default_wait": waiting.by_default}


def state_word(summary: dict) -> str:
    """A task's state in a word, from its ``task_summary``: its status, "running" while
    a worker's lease on it stands, or "blocked" when no worker could load its code."""
    if summary["running"]:
        return "running"
    return "blocked" if summary["blocked"] else summary["status"]


def state_text(summary: dict, now: float | None = None) -> str:
    """A task's state in words, from its ``task_summary``: "running", "waiting: receive
    until 12:00:03 (the default wait)", "blocked: code: ...", ..."""
    text = state_word(summary)
    more = f"code: {summary['blocked']}" if text == "blocked" else waiting_on(summary, now)
    return f"{text}: {more}" if more else text


def waiting_on(summary: dict, now: float | None = None) -> str:
    """What a waiting task waits for, in words, from its ``task_summary``: "sleep until
    12:00:03", "receive until 2024-05-02 12:00:03 (the default wait)" (the date when it
    is not today), "join ID until ...", "receive, forever"; else ""."""
    data = summary["waiting"]
    if data is None:
        return ""
    text = data["op"]
    if data["task"]:
        text += f" {data['task']}"
    until = data["until"]
    if until is None:
        return text + ", forever"
    today = time.localtime(time.time() if now is None else now)[:3]
    when = time.localtime(until)
    text += " until " + time.strftime("%H:%M:%S" if when[:3] == today else
                                      "%Y-%m-%d %H:%M:%S", when)
    if data["default_wait"]:
        text += " (the default wait)"
    return text


def limits_data(limits: Any) -> dict:
    """A task's limits as JSON data, each key naming its unit; None is no limit (a
    ``wait_seconds`` of None: a wait without ``:timeout`` waits forever)."""
    wait = limits.wait
    return {"fuel_reductions": limits.fuel, "depth_frames": limits.depth,
            "state_bytes": limits.state, "deadline_seconds": limits.deadline,
            "wait_seconds": None if wait == float("inf") else wait,
            "response_body_bytes": limits.response_body}


def task_detail(store: Any, task_id: str) -> dict:
    """Everything known about a task: its summary, and its program file, children,
    state size, limits, inbox size, cancel request, lease, the request it waits on, its
    result or error (printed, and the error formatted as for a person), and the frames
    of its continuation (``frames_error`` says why they could not be read)."""
    from ..codec import CodecError

    with store.view() as view:
        rec = view.task(task_id)
        if rec is None:
            problem = view.unreadable.get(task_id)
            raise TaskError(f"task {task_id}: {problem}" if problem else f"no task {task_id}")
        program = view.program(rec.program) or {}
        inbox = len(view.inbox(task_id))
        stack, problem, request = [], None, None
        now = view.clock()
        if not rec.finished:
            try:
                m = load_machine(view, rec)
            except (TaskError, CodecError, KeyError) as exc:
                m, problem = None, str(exc)
            if m is not None:
                stack = frames(m)
                if m.status == "waiting" and m.request is not None:
                    request = value_text(m.request)
    detail = task_summary(rec, now)
    lease = rec.lease
    detail.update({
        "file": program.get("file"), "children": rec.children,
        "state_bytes": rec.state_bytes, "limits": limits_data(rec.limits),
        "inbox": inbox, "cancel": rec.cancel,
        "lease": None if lease is None else
        {"worker": lease.worker, "epoch": lease.epoch, "until": lease.until},
        "moved_to": rec.moved_to, "request": request,
        "result": None, "error": None, "error_text": None,
        "frames": stack, "frames_error": problem,
    })
    try:
        if rec.status == "done":
            detail["result"] = value_text(result_value(rec))
        elif rec.finished and rec.error is not None:
            error = result_value(rec)
            detail["error"] = value_text(error)
            detail["error_text"] = format_error(error)
    except CodecError as exc:
        detail["frames_error"] = f"its result cannot be read: {exc}"
    return detail


PRINTED = ("value", "error")  # event details holding encoded values, printed on reading
LOG_VALUE_CHARS = 200


def log_entry(seq: int, event: Event) -> dict:
    """One event of a task's log: ``{"seq", "at", "kind", "details"}``.  Encoded values
    (an answer, a message, a result, an error) are printed here, on reading, cut short;
    other bytes (a trace step's state) become their length, as ``KEY_bytes``."""
    from ..codec import CodecError

    details: dict[str, Any] = {}
    for key, value in event.details.items():
        if key in PRINTED and isinstance(value, bytes | bytearray):
            try:
                details[key] = value_text(decode_data(bytes(value)), LOG_VALUE_CHARS)
            except CodecError:
                details[key] = f"#<unreadable {len(value)} bytes>"
        elif isinstance(value, bytes | bytearray):
            details[f"{key}_bytes"] = len(value)
        else:
            details[key] = value
    return {"seq": seq, "at": event.at, "kind": event.kind, "details": details}
