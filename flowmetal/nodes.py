"""Code nodes: the analyzer's output and the machine's Control.

A node is plain data: its kind, its fields (values, child nodes, slot numbers), its
source span and the name of the procedure it belongs to.  Every node of a program has an
``id`` (its index in ``Program.nodes``), so ``(program hash, node id)`` names it in the
store.  The machine attaches derived callables to each node when a program is linked
(``ev``, ``exec``, ``resume``, and ``slow``, the per-node ``ev`` of a simple node) and
``reach`` (how far a step that reaches the node runs on into it, ``machine.reach``); they
are a cache of the node's meaning, rebuilt from the fields, and never part of the stored
state.
``analysis.py`` stores a program's nodes (class name and ``FIELDS``) and builds them again
without the analyzer; changing a class's fields changes that format.
"""

from __future__ import annotations

from typing import Any

from .values import Span


class Node:
    """Base of all code nodes; ``FIELDS`` lists the data fields in order."""

    FIELDS: tuple[str, ...] = ()
    __slots__ = ("id", "span", "proc", "program", "ev", "exec", "resume", "slow", "reach")

    def __init__(self, *args: Any):
        for name, value in zip(self.FIELDS, args, strict=True):
            setattr(self, name, value)
        self.id = -1
        self.span: Span | None = None
        self.proc = "<toplevel>"
        self.program = None
        self.ev = None
        self.exec = None
        self.resume = None
        self.slow = None
        self.reach = None

    def children(self) -> list[Node]:
        """The child nodes, in evaluation order (found in fields and nested tuples)."""
        out: list[Node] = []
        pending = [getattr(self, name) for name in reversed(self.FIELDS)]
        while pending:
            value = pending.pop()
            if isinstance(value, Node):
                out.append(value)
            elif type(value) is tuple:
                pending.extend(reversed(value))
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.id} {self.span!r}>"


class Const(Node):
    """A literal or quoted value."""

    FIELDS = ("value",)
    __slots__ = FIELDS


class LocalRef(Node):
    """A lexical variable at (depth, slot); ``checked`` if it may be read before set."""

    FIELDS = ("name", "depth", "slot", "checked")
    __slots__ = FIELDS


class GlobalRef(Node):
    """A global variable, looked up by symbol at run time."""

    FIELDS = ("name",)
    __slots__ = FIELDS


class SetLocal(Node):
    """``set!`` of, or internal ``def`` of, a lexical variable."""

    FIELDS = ("name", "depth", "slot", "value", "is_def")
    __slots__ = FIELDS


class SetGlobal(Node):
    """``def`` (is_def) or ``set!`` of a global variable."""

    FIELDS = ("name", "value", "is_def")
    __slots__ = FIELDS


class If(Node):
    """``(if test then else)``."""

    FIELDS = ("test", "then", "else_")
    __slots__ = FIELDS


class Do(Node):
    """``(do a b c)``: evaluate in order, the last in tail position."""

    FIELDS = ("body",)
    __slots__ = FIELDS


class Clause(Node):
    """One arity of a procedure: ``nreq`` required params, optional rest, frame size."""

    FIELDS = ("params", "nreq", "rest", "nslots", "body")
    __slots__ = (*FIELDS, "extra", "enter", "fixed", "compiled", "lambda_")


class Lambda(Node):
    """``(fn name? [params] body)`` or multi-arity ``(fn ([a] ..) ([a b] ..))``."""

    FIELDS = ("name", "clauses")
    __slots__ = (*FIELDS, "single", "fast")


class Let(Node):
    """``let``: ``groups`` of (nslots, ((slot, init), ...)); each group is a new frame.

    A group's first init runs in the frame before it (the enclosing one for the first
    group) and the frame is made when its value arrives; the group's other inits are
    simple and run in the new frame.  A non-simple init always starts a group, so
    re-entering it through a continuation gets fresh bindings from there on while the
    earlier ones stay shared, exactly as nested single-binding lets would.
    """

    FIELDS = ("names", "groups", "body")
    __slots__ = FIELDS


class Letrec(Node):
    """``letrec``: one frame of ``nslots`` made first; ``inits`` (slot, node) run in it."""

    FIELDS = ("names", "inits", "nslots", "body")
    __slots__ = FIELDS


class App(Node):
    """A procedure call ``(f a b)``."""

    FIELDS = ("fn", "args")
    __slots__ = (*FIELDS, "direct")


class PrimCall(Node):
    """A call to a pure primitive linked at analysis time (see NOTES.md, direct linking)."""

    FIELDS = ("prim", "args")
    __slots__ = FIELDS


class Try(Node):
    """``(try body (catch :type? e handler)*)``; each handler runs in a 1-slot frame."""

    FIELDS = ("body", "catches")
    __slots__ = FIELDS


class Catch(Node):
    """One catch clause: ``match`` is a keyword (the error's :type) or None for all."""

    FIELDS = ("match", "name", "nslots", "body")
    __slots__ = FIELDS


NODE_TYPES: dict[str, type[Node]] = {
    cls.__name__: cls
    for cls in (Const, LocalRef, GlobalRef, SetLocal, SetGlobal, If, Do, Clause, Lambda,
                Let, Letrec, App, PrimCall, Try, Catch)
}
