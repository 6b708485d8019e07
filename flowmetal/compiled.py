"""Pure procedures compiled to Python functions.

A clause whose body can neither suspend nor change anything outside itself (no effect,
no ``call/cc``, no ``dynamic-wind``, no ``try``, no ``set!`` of a variable it did not
bind, calling only pure primitives and procedures that are themselves pure) runs as one
generated Python function: its parameters and ``let`` bindings are Python locals (or
fresh slot lists when it makes closures), its calls of other compiled clauses are Python
calls, and a tail call of itself is a loop.

It is only a faster route to what the machine does, and it gives up whenever it cannot
be exactly that.  Anything unusual inside it (an error, a callee that is not pure, a
call nested deeper than ``DEPTH``, a budget spent) raises out of the whole compiled
call, which is then made again by the machine from the transition that entered it: pure
code can be run again, nothing outside it has changed, and the machine raises the error
with its span and backtrace.  Ctrl-C and a stop request (BaseExceptions) leave the same
way and find the machine at that transition.

Reductions: the generated code counts the transitions the machine would make for the
same code (each node adds, where the machine would step, what its ``exec`` and its frames'
``resume`` cost, see ``_Gen.cost``), and a compiled call may spend at most the budget the
machine gives it (``Machine.budget``, a share of the fuel of its ``run``); when it would
spend more it is abandoned and the machine makes the call itself.  So a machine stops
after exactly as many reductions, at exactly the same state, with compiled code or
without.

Globals are looked up at each call, as the machine does, so a redefinition is honoured;
a call the analyzer linked to a primitive stays linked (direct linking).  Compiled
functions are a cache derived from the nodes (``Clause.compiled``, ``Lambda.fast``),
never part of a machine's state.  ``FLOWMETAL_COMPILE=0`` (or ``FLOWMETAL_FASTPATH=0``)
turns compiling off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from . import fastpath
from . import machine as M
from . import nodes as N
from .procedures import CONTROL, PURE, Closure, Continuation, Primitive
from .values import Keyword, Map, Set, Vector, make_list

# Compiled calls nested deeper than this give up (the machine has no depth limit).
DEPTH = 150
# A clause is compiled the second time the machine enters it.
HOT = 2
# A clause's compiled entry that gave up this many times in a row (its skips doubling
# each time) steps aside: its callers enter the machine's way directly, with no count of
# skipped entries on each call, for ``backoff // PAUSE_AFTER`` runs of a machine
# (``machine.PAUSED``).
PAUSE_AFTER = 64
# Operators a pure clause may call that are no pure primitives: raising ends compiled
# code (the machine raises), and apply calls its procedure.
ALLOWED_CONTROL = ("throw", "error", "apply")


def enabled() -> bool:
    """True unless ``$FLOWMETAL_COMPILE`` (or the fast path's switch) turns compiling off."""
    value = os.environ.get("FLOWMETAL_COMPILE", "").strip().lower()
    return value not in fastpath.OFF and fastpath.enabled()


class GiveUp(Exception):
    """Compiled code cannot go on as the machine would: the machine makes the call."""


class Budget:
    """What compiled code reads while it runs: reductions it may still make, globals."""

    __slots__ = ("left", "g")

    def __init__(self) -> None:
        self.left = 0
        self.g: dict = {}


class TailCall:
    """What a compiled function called by the machine (depth 0) returns for a tail call
    of another procedure: the entry makes it, so tail calls there take no Python stack
    and a long loop stays resumable."""

    __slots__ = ("f", "args", "site")

    def __init__(self, f: Any, args: tuple, site: N.App):
        self.f, self.args, self.site = f, args, site


class Partial(Exception):
    """Raised out of a self-loop at depth 0 that cannot finish a round (fuel, error,
    a callee not pure): the rounds before it are done; the machine makes this one, from
    the call that began it (``left`` was the budget then)."""

    def __init__(self, left: int, lam: N.Lambda, env: Any, args: tuple, site: N.App):
        super().__init__()
        self.left, self.lam, self.env, self.args, self.site = left, lam, env, args, site


# ---------------------------------------------------------------------------------------
# Entering compiled code from the machine


def _target(f: Any, args: tuple, g: dict) -> tuple[Callable, tuple] | None:
    """The compiled function and arguments for calling ``f`` at depth 0, if any."""
    if type(f) is not Closure:
        return None
    n = len(args)
    for cl in f.code.clauses:
        if n == cl.nreq or (cl.rest and n >= cl.nreq):
            break
    else:
        return None
    fn = cl.compiled
    if fn is None:
        fn = compile_clause(cl, g)
    if fn is False:
        return None
    if cl.rest:
        args = (*args[:cl.nreq], make_list(args[cl.nreq:]) if n > cl.nreq else None)
    return fn, args


def clause_entry(cl: N.Clause, base: Callable | None) -> Callable:
    """The ``enter`` of clause ``cl``: its compiled function once it is hot and pure,
    else ``base`` (the machine's way in; None: the body is the next state)."""
    nparams = len(cl.params) + 1
    calls = 0
    skip = 0      # entries to leave to the machine after giving up (doubles each time)
    backoff = 1

    def by_machine(env, k, m):
        if base is not None:
            return base(env, k, m)
        return cl.body, env, k, None

    def gave_up():
        nonlocal skip, backoff
        skip, backoff = backoff, min(backoff * 2, 1 << 16)
        if backoff >= PAUSE_AFTER and cl.enter is enter:
            # Callers take the machine's way in directly for a while (M.PAUSED).
            skip = 0
            cl.enter = base
            M.PAUSED.append([cl, enter, base, backoff // PAUSE_AFTER])

    def enter(env, k, m):
        nonlocal calls, skip, backoff
        if skip:  # (first: the machine's entries after giving up cost little more)
            skip -= 1
            if base is not None:
                return base(env, k, m)
            return cl.body, env, k, None
        budget = m.budget
        if budget <= 0:
            return by_machine(env, k, m)
        fn = cl.compiled
        if fn is None:
            calls += 1
            if calls < HOT:
                return by_machine(env, k, m)
            fn = compile_clause(cl, m.globals)
        if fn is False:
            cl.enter = base
            return by_machine(env, k, m)
        c = m.compiled_budget
        if c is None:
            c = m.compiled_budget = Budget()
        c.left, c.g = budget, m.globals
        call = None  # the tail call being made (None: this clause's own call)
        at = budget
        try:
            value = fn(c, 0, env[0], *env[1:nparams])
            while type(value) is TailCall:
                call, at = value, c.left
                target = _target(value.f, value.args, c.g)
                if target is None:
                    return _by_machine_at(m, budget, at, call, k)
                value = target[0](c, 0, value.f.env, *target[1])
        except Partial as p:
            if c.left >= 0:
                gave_up()
            call = TailCall(Closure(p.lam, p.env), p.args, p.site)
            return _by_machine_at(m, budget, p.left, call, k, c.left < 0)
        except Exception:
            if c.left >= 0:
                gave_up()
            if call is not None:
                return _by_machine_at(m, budget, at, call, k, c.left < 0)
            if c.left < 0:
                m.budget = 0  # this run's fuel cannot hold the call: the machine goes on
            return by_machine(env, k, m)
        left = c.left
        if left < 0:
            if call is not None:
                return _by_machine_at(m, budget, at, call, k, True)
            m.budget = 0
            return by_machine(env, k, m)
        backoff = 1
        m.budget = left
        m.charged += budget - left
        return None, None, k, value

    return enter


def _by_machine_at(m: Any, budget: int, left: int, call: TailCall, k: Any,
                   out_of_fuel: bool = False) -> tuple:
    """Charge what compiled code did until it made tail ``call`` (when ``left`` of
    ``budget`` remained), and let the machine make that call, as the rest of the same
    transition (``machine.call_at``)."""
    m.charged += budget - left
    m.budget = 0
    try:
        return M.call_at(call.site, call.f, call.args, k, m)
    finally:
        m.budget = 0 if out_of_fuel else left


# ---------------------------------------------------------------------------------------
# Calls from compiled code that are not to a compiled single-clause procedure


def call(c: Budget, d: int, f: Any, args: tuple) -> Any:
    """Call ``f`` with ``args`` from compiled code, or give up."""
    t = type(f)
    if t is Closure:
        code = f.code
        n = len(args)
        for cl in code.clauses:
            if n == cl.nreq or (cl.rest and n >= cl.nreq):
                break
        else:
            raise GiveUp  # the machine raises the arity error
        fn = cl.compiled
        if fn is None:
            fn = compile_clause(cl, c.g)
        if fn is False:
            raise GiveUp
        if cl.rest:
            args = (*args[:cl.nreq], make_list(args[cl.nreq:]) if n > cl.nreq else None)
        return fn(c, d, f.env, *args)
    if t is Primitive:
        if f.kind is PURE and f.accepts(len(args)):
            return f.fn(*args)
        if f.name == "apply" and len(args) >= 2:
            return call(c, d, args[0], M.spread_args(args))
        raise GiveUp
    if t is Keyword or t is Map or t is Set or t is Vector:
        return M.lookup_call(f, args)
    raise GiveUp


# ---------------------------------------------------------------------------------------
# Which clauses are pure


_IMPURE_NODES = (N.SetGlobal, N.Try, N.Catch)


def _operator_pure(op: N.Node, g: dict, seen: set) -> bool:
    value = op.value if type(op) is N.Const else (g.get(op.name) if type(op) is N.GlobalRef
                                                 else None)
    t = type(value)
    if t is Primitive:
        return value.kind is PURE or value.name in ALLOWED_CONTROL
    if t is Continuation:
        return False
    if t is Closure and type(op) is N.GlobalRef:
        return all(_pure(cl, g, seen) for cl in value.code.clauses)
    return True  # known only when called: checked then


def _pure(cl: N.Clause, g: dict, seen: set) -> bool:
    """True if clause ``cl`` is pure as far as its code and the globals ``g`` it calls
    now tell (a callee is checked again when it is called)."""
    if cl.compiled is False:
        return False
    if cl.compiled is not None or id(cl) in seen:
        return True
    seen.add(id(cl))
    # (node, frames of this clause around it): set! may only touch its own frames.
    pending: list[tuple[N.Node, int]] = [(cl.body, 1)]
    while pending:
        node, frames = pending.pop()
        t = type(node)
        if t in _IMPURE_NODES:
            return False
        if t is N.Lambda:
            continue  # making a closure is pure; its body is judged when it is called
        if t is N.SetLocal and node.depth >= frames:
            return False
        if t is N.App and not _operator_pure(node.fn, g, seen):
            return False
        inner = frames + 1 if t in (N.Let, N.Letrec) else frames
        if t is N.Let:
            for i, (_, inits) in enumerate(node.groups):
                pending.extend((init, frames + i + (j > 0)) for j, (_, init) in
                               enumerate(inits))
            pending.append((node.body, frames + len(node.groups)))
            continue
        pending.extend((child, inner) for child in node.children())
    return True


def compile_clause(cl: N.Clause, g: dict) -> Callable | bool:
    """The compiled function of ``cl`` (also kept in ``cl.compiled`` and, for a single
    fixed-arity clause, its lambda's ``fast``), or False if ``cl`` is not pure."""
    if cl.compiled is None:
        program = cl.program
        if program is not None and program.lazy is not None:  # (analysis.link_lazily)
            program.lazy.need(cl.id)
        if not _pure(cl, g, set()):
            cl.compiled = False
        else:
            fn = _Gen(cl).function()
            cl.compiled = fn
            owner = cl.lambda_
            if owner is not None and owner.single is cl and not cl.rest:
                owner.fast = fn
    return cl.compiled


# ---------------------------------------------------------------------------------------
# Code generation


class _Gen(fastpath.Gen):
    """The source of one clause's function ``(c, d, env, *params)``.

    ``frames`` models the slot frames the clause makes: each is ("v", id) when its slots
    are Python locals ``v<id>_<slot>``, or ("r", id) when it is a real slot list
    ``e<id>`` (every frame is real in a clause that makes closures, which keep them).
    """

    def __init__(self, cl: N.Clause) -> None:
        super().__init__()
        self.namespace.update(Closure=Closure, _call=call, GiveUp=GiveUp,
                              TailCall=TailCall, Partial=Partial)
        self.resumable = not _sets_locals(cl.body)
        self.cl = cl
        self.ran_on = _ran_on(cl.body)
        self.real = _makes_closures(cl.body)
        self.lines: list[str] = []
        self.indent = "    "
        self.pending = 0
        self.frames: list[tuple[str, int]] = []
        self.nframes = 0
        self.loops = False
        self.read: dict = {}  # global name -> the local holding it in this stretch

    # -- the function

    def function(self) -> Callable:
        cl = self.cl
        params = [f"v0_{i}" for i in range(1, len(cl.params) + 1)]
        self.frames.append(("r" if self.real else "v", 0))
        self.nframes = 1
        self.emit("g = c.g")
        head = len(self.lines)
        self.tail(cl.body, type(cl.body) is not N.App)
        body = self.lines[head:]
        start = [f"    if c.left < 0 or d > {DEPTH}:", "        raise GiveUp"]
        if self.real:
            slots = ", ".join(["env", *params] + ["UNSET"] * cl.extra)
            start.append(f"    e0 = [{slots}]")
        else:
            start += [f"    v0_{i} = UNSET" for i in range(len(params) + 1, cl.nslots + 1)]
        if self.loops:
            # A tail call of itself starts the next round.  At depth 0 a round that
            # cannot finish is left to the machine from its start (``Partial``), unless
            # the clause sets its own variables (the round's arguments would be lost).
            if self.resumable:
                me = self.name(cl.lambda_, "n")
                args = "".join(p + ", " for p in params)
                body = ["    sl = c.left", "    try:"] + ["    " + ln for ln in body] + [
                    "    except Partial:", "        raise", "    except Exception:",
                    "        if d or site is None:", "            raise",
                    f"        raise Partial(sl, {me}, env, ({args}), site) from None"]
            body = ["    site = None", "    while True:"] + \
                ["    " + line for line in start + body]
        else:
            body = start + body
        lines = self.lines[:head] + body
        name = f"fn_{cl.id}"
        src = f"def {name}(c, d, env{''.join(', ' + p for p in params)}):\n" + \
            "\n".join(lines) + "\n"
        where = cl.program.file if cl.program is not None else "?"
        exec(compile(src, f"<flowmetal compiled {where}:{cl.proc}>", "exec"), self.namespace)
        return self.namespace[name]

    # -- lines and costs

    def emit(self, line: str) -> None:
        self.lines.append(self.indent + line)

    def flush(self) -> None:
        """Charge the reductions counted so far on this path."""
        if self.pending:
            self.emit(f"c.left -= {self.pending}")
            self.pending = 0

    def cost(self, node: N.Node, chained: bool) -> None:
        """Count what the machine's own step and frames for ``node`` cost (its children's
        are counted where they run): a step unless the parent runs it in its own step,
        and one resume per part that waits for a value (``machine.runs_on``: a node its
        parent runs on into takes no step of its own, a ``do``'s stepless item no resume)."""
        if node.ev is not None:
            return
        n = 0 if chained or id(node) in self.ran_on else 1
        t = type(node)
        if t is N.App:
            n += sum(1 for p in (node.fn, *node.args) if p.ev is None)
        elif t is N.If:
            n += node.test.ev is None
        elif t is N.Do:
            n += sum(1 for b in node.body[:-1] if b.ev is None and not M.stepless(b))
        elif t is N.Let:
            n += sum(1 for _, inits in node.groups if inits and inits[0][1].ev is None)
        elif t is N.Letrec:
            n += sum(1 for _, init in node.inits if init.ev is None)
        elif t is N.SetLocal:
            n += node.value.ev is None
        self.pending += n

    def temp(self, prefix: str = "t") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def block(self, header: str, fill: Callable[[], None]) -> None:
        self.flush()
        self.emit(header)
        saved, pending, read = self.indent, self.pending, self.read
        self.indent += "    "
        self.read = dict(read)
        fill()
        self.flush()
        self.indent, self.pending, self.read = saved, pending, read

    # -- variables and frames

    def local(self, depth: int, slot: int) -> str:
        if depth < len(self.frames):
            kind, fid = self.frames[-1 - depth]
            return f"v{fid}_{slot}" if kind == "v" else f"e{fid}[{slot}]"
        return "env" + "[0]" * (depth - len(self.frames)) + f"[{slot}]"

    def innermost(self) -> str:
        kind, fid = self.frames[-1]
        return f"e{fid}"

    def push_frame(self, nslots: int, assigned: tuple = ()) -> int:
        """A new innermost frame of ``nslots`` slots, unset but for ``assigned`` (which
        the caller sets at once)."""
        fid = self.nframes
        self.nframes += 1
        if self.real:
            parent = self.innermost()
            self.emit(f"e{fid} = [{parent}{', UNSET' * nslots}]")
            self.frames.append(("r", fid))
        else:
            self.frames.append(("v", fid))
            for slot in range(1, nslots + 1):
                if slot not in assigned:
                    self.emit(f"v{fid}_{slot} = UNSET")
        return fid

    # -- expressions

    def expr(self, node: N.Node, env: str) -> str:
        """Simple nodes (the fast path's expressions, with this clause's locals)."""
        t = type(node)
        if t is N.LocalRef:
            ref = self.local(node.depth, node.slot)
            return f"_chk({ref}, {self.name(node)})" if node.checked else ref
        if t is N.GlobalRef:
            # Read once per stretch of code: nothing in a pure body can change a global.
            name = self.read.get(node.name)
            if name is None:
                name = self.read[node.name] = self.temp("gv")
                self.emit(f"{name} = g[{self.name(node.name, 's')}]")
            return name
        if t is N.Lambda:
            return f"Closure({self.name(node, 'n')}, {self.innermost()})"
        if t is N.Let or t is N.Letrec:
            return self.value(node)
        return super().expr(node, env)

    def atom(self, text: str) -> str:
        """``text`` as something cheap to read twice."""
        if fastpath._plain(text):
            return text
        tmp = self.temp()
        self.emit(f"{tmp} = {text}")
        return tmp

    def value(self, node: N.Node, chained: bool = False) -> str:
        """An expression for ``node``'s value (statements it needs come first)."""
        t = type(node)
        if node.ev is not None:
            if t is N.If or t is N.Do:
                # One expression if no part needs statements (which would run whatever
                # the test says), else the statement form below.
                mark, read = len(self.lines), dict(self.read)
                text = fastpath.Gen.expr(self, node, "")
                if len(self.lines) == mark:
                    return text
                del self.lines[mark:]
                self.read = read
            elif t is not N.Let and t is not N.Letrec:
                return self.expr(node, "")
        self.cost(node, chained)
        if t is N.If:
            return self.value_if(node)
        if t is N.Do:
            for b in node.body[:-1]:
                self.value(b)
            return self.value(node.body[-1])
        if t is N.Let or t is N.Letrec:
            return self.bindings(node, lambda: self.atom(self.value(node.body)))
        if t is N.SetLocal:
            target = self.local(node.depth, node.slot)
            self.emit(f"{target} = {self.value(node.value)}")
            return self.name(node.name, "s") if node.is_def else target
        if t is N.App:
            return self.value_call(node)
        return self.expr(node, "")

    def value_if(self, node: N.If) -> str:
        test = self.test(node.test)
        tmp = self.temp()

        def branch(b: N.Node) -> Callable[[], None]:
            return lambda: self.emit(f"{tmp} = {self.value(b)}")

        self.block(f"if {test}:", branch(node.then))
        self.block("else:", branch(node.else_))
        return tmp

    def test(self, node: N.Node) -> str:
        """A Python truth value for ``node`` (true unless false or nil)."""
        if type(node) is N.PrimCall:
            name = node.prim.name
            if name == "not" and len(node.args) == 1:
                return f"not ({self.test(node.args[0])})"
            op = fastpath.INLINE_BINARY.get(name)
            if len(node.args) == 2 and (op == "==" or op in fastpath.COMPARISONS):
                a, b = (self.atom(self.value(x)) for x in node.args)
                if op == "==":
                    return f"({a} == {b})"
                slow = self.name(node.prim.fn, "p")
                return (f"(({a} {op} {b}) if {self.ints(a, b)} "
                        f"else ({slow}({a}, {b}) is TRUE))")
        value = self.value(node)
        tmp = self.temp()
        return f"(({tmp} := {value}) is not FALSE and {tmp} is not None)"

    @staticmethod
    def ints(a: str, b: str) -> str:
        checks = [f"(type({x}) is int)" for x in (a, b) if not fastpath._int_literal(x)]
        return " & ".join(checks) or "True"

    def bindings(self, node: N.Let | N.Letrec, body: Callable[[], Any]) -> Any:
        """Bind a let's or letrec's frames, run ``body`` inside them, drop them."""
        depth = len(self.frames)
        if type(node) is N.Letrec:
            fid = self.push_frame(node.nslots)
            for slot, init in node.inits:
                self.emit(f"{self.slot(fid, slot)} = {self.value(init)}")
        else:
            for nslots, inits in node.groups:
                first = None
                if inits:
                    first = self.atom(self.value(inits[0][1]))
                fid = self.push_frame(nslots, tuple(slot for slot, _ in inits))
                for j, (slot, init) in enumerate(inits):
                    value = first if j == 0 else self.value(init)
                    self.emit(f"{self.slot(fid, slot)} = {value}")
        result = body()
        del self.frames[depth:]
        return result

    def slot(self, fid: int, slot: int) -> str:
        return f"e{fid}[{slot}]" if self.real else f"v{fid}_{slot}"

    def parts(self, node: N.App, parts: tuple) -> list[str]:
        """The values of a call's parts, in order (each read once)."""
        values: list[str] = []
        for p in parts:
            chained = type(p) is N.App and p.direct
            values.append(self.atom(self.value(p, chained)))
        return values

    def call_parts(self, node: N.App) -> tuple[str, list[str]] | str:
        """The operator and argument values of a call of a procedure, or (for a call of
        a pure primitive, or one that gives up) its value."""
        op = node.fn
        prim = op.value if type(op) is N.Const and type(op.value) is Primitive else None
        if prim is not None and prim.kind is PURE and prim.accepts(len(node.args)):
            args = self.parts(node, node.args)
            op = fastpath.INLINE_BINARY.get(prim.name)
            if op is not None and len(args) == 2:
                return self.binary(prim, op, *args)
            fn = prim.fast2 if len(args) == 2 and prim.fast2 is not None else prim.fn
            return f"{self.name(fn, 'p')}({', '.join(args)})"
        if prim is not None and prim.kind is CONTROL and prim.name != "apply":
            self.parts(node, node.args)
            self.emit("raise GiveUp")
            return "None"
        f, *args = self.parts(node, (op, *node.args))
        self.flush()
        return f, args

    def value_call(self, node: N.App) -> str:
        parts = self.call_parts(node)
        if type(parts) is str:
            return parts
        f, args = parts
        tmp = self.temp()
        cf = self.fast_function(f)
        self.emit(f"if {cf} is not None:")
        self.emit(f"    {tmp} = {cf}(c, d + 1, {f}.env{''.join(', ' + a for a in args)})")
        self.emit("else:")
        self.emit(f"    {tmp} = _call(c, d + 1, {f}, ({''.join(a + ', ' for a in args)}))")
        return tmp

    def fast_function(self, f: str) -> str:
        """A name for the compiled function of the single-clause closure ``f`` holds (or
        None); for a global, found once per stretch of code, as the global is."""
        key = ("fast", f)
        name = self.read.get(key)
        if name is None:
            name = self.temp("cf")
            self.emit(f"{name} = {f}.code.fast if type({f}) is Closure else None")
            if f.startswith("gv"):
                self.read[key] = name
        return name

    # -- tail position

    def tail(self, node: N.Node, chained: bool = False) -> None:
        """Statements that return ``node``'s value."""
        t = type(node)
        if node.ev is None and t in (N.If, N.Do, N.Let, N.Letrec, N.App):
            self.cost(node, chained)
            if t is N.If:
                test = self.test(node.test)
                self.block(f"if {test}:", lambda: self.tail(node.then))
                self.block("else:", lambda: self.tail(node.else_))
                return
            if t is N.Do:
                for b in node.body[:-1]:
                    self.value(b)
                self.tail(node.body[-1])
                return
            if t is N.Let or t is N.Letrec:
                self.bindings(node, lambda: self.tail(node.body))
                return
            parts = self.call_parts(node)
            if type(parts) is not str:
                self.tail_call(node, *parts)
                return
            value = parts
        else:
            value = self.value(node, chained)
        self.flush()
        self.emit(f"return {value}")

    def tail_call(self, node: N.App, f: str, args: list[str]) -> None:
        """Statements for a tail call: of this very clause, the next round of a loop;
        at depth 0, a ``TailCall`` for the entry to make; else a Python call."""
        cl = self.cl
        lam = cl.lambda_
        site = self.name(node, "site")
        if lam is not None and lam.single is cl and not cl.rest and len(args) == cl.nreq:
            self.loops = True
            me = self.name(lam, "n")
            self.emit(f"if type({f}) is Closure and {f}.code is {me}:")
            self.emit("    if c.left < 0:")
            self.emit("        raise GiveUp")
            if args:
                params = "".join(f"v0_{i}, " for i in range(1, cl.nreq + 1))
                self.emit(f"    {params} = {''.join(a + ', ' for a in args)}")
            self.emit(f"    env, site = {f}.env, {site}")
            self.emit("    continue")
        listed = "".join(", " + a for a in args)
        self.emit("if not d:")
        self.emit(f"    return TailCall({f}, ({''.join(a + ', ' for a in args)}), {site})")
        cf = self.fast_function(f)
        self.emit(f"if {cf} is not None:")
        self.emit(f"    return {cf}(c, d + 1, {f}.env{listed})")
        self.emit(f"return _call(c, d + 1, {f}, ({''.join(a + ', ' for a in args)}))")


def _has(body: N.Node, kind: type) -> bool:
    """True if a node of class ``kind`` is in ``body`` (not inside nested fns)."""
    pending = [body]
    while pending:
        node = pending.pop()
        if type(node) is kind:
            return True
        if type(node) is not N.Lambda:
            pending.extend(node.children())
    return False


def _ran_on(body: N.Node) -> set[int]:
    """The ids of the nodes in ``body`` (not inside nested fns) that the step reaching
    them runs at once (``machine.runs_on``), each judged in its place in its parent."""
    out: set[int] = set()
    pending = [body]
    while pending:
        node = pending.pop()
        t = type(node)
        if t is N.Lambda:
            continue
        if t is N.If:
            places = [(node.test, False), (node.then, True), (node.else_, True)]
        elif t is N.Do:
            last = len(node.body) - 1
            places = [(b, i == last) for i, b in enumerate(node.body)]
        elif t is N.Let:
            places = [(init, False) for _, inits in node.groups
                      for _, init in inits] + [(node.body, True)]
        elif t is N.Letrec:
            places = [(init, False) for _, init in node.inits] + [(node.body, True)]
        else:
            places = [(child, False) for child in node.children()]
        for child, tail in places:
            if child.ev is None and type(child) is not N.App and M.runs_on(child, tail):
                out.add(id(child))
            pending.append(child)
    return out


def _makes_closures(body: N.Node) -> bool:
    return _has(body, N.Lambda)


def _sets_locals(body: N.Node) -> bool:
    return _has(body, N.SetLocal)
