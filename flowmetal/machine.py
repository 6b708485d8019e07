"""The CEK machine: Control (a node), Environment (slot vectors), Kontinuation (frames).

Machine state is plain data:

- an environment is a Python list ``[parent, slot1, slot2, ...]``;
- a frame is a tuple ``(owner, next, env, *data)`` whose owner is a node (or one of the
  named FrameKinds below) that knows how to resume it; the continuation is the chain of
  frames through ``next``, ending in ``None``;
- the dynamic-wind list is a chain of tuples ``(before, after, parent, depth, k)``, k being
  the continuation of the ``dynamic-wind`` call (where its thunks' errors are handled).

``run(fuel)`` loops over transitions.  A transition is ``node.exec(env, k, m)`` (evaluate a
node) or ``frame[0].resume(frame, value, m)`` (return a value to a frame); both give the
next ``(node, env, k, value)``, with ``node`` None meaning "return ``value`` to ``k``".
Nothing here recurses in Python in proportion to the running program: simple expressions
(see ``link``) are evaluated by direct Python calls, but their depth is bounded by the
analyzer (``MAX_SIMPLE_DEPTH``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from . import nodes as N
from .procedures import CONTROL, MACHINE, Closure, Continuation, Primitive
from .values import (
    EMPTY,
    FALSE,
    TRUE,
    FlowmetalError,
    Keyword,
    Map,
    Pair,
    Set,
    Span,
    Symbol,
    Vector,
    kw,
    make_list,
)

MAX_SIMPLE_DEPTH = 48
# Compiled clause entries paused after giving up again and again (compiled.py), as
# ``[clause, its compiled entry, the machine's way in, runs left]``: each ``Machine.run``
# counts them down and gives the entry back when its wait is over.  (Shared by the
# machines of a process, like the code; a race between threads loses only speed.)
PAUSED: list = []


def resume_paused() -> None:
    """Count down the paused compiled entries; give back the ones whose wait is over."""
    waiting = []
    for item in PAUSED:
        item[3] -= 1
        if item[3] > 0:
            waiting.append(item)
        elif item[0].enter is item[2]:
            item[0].enter = item[1]
    PAUSED[:] = waiting


# ``Machine.dirty`` of a machine no image has encoded yet: it keeps nothing.
NOT_TRACKED: deque = deque(maxlen=0)
BACKTRACE_LIMIT = 64


class Unset:
    """The value of a slot whose ``def``/``letrec`` binding has not run yet."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "#<unset>"

    __fm_repr__ = __repr__


UNSET = Unset()


class FrameKind:
    """A frame owner that is not a node (dynamic-wind, winding steps); known by name."""

    __slots__ = ("name", "resume", "exec", "span", "proc")
    KINDS: dict[str, FrameKind] = {}

    def __init__(self, name: str):
        self.name = name
        self.resume = None
        self.exec = None
        self.span = None
        self.proc = None
        FrameKind.KINDS[name] = self

    def __repr__(self) -> str:
        return f"<frame {self.name}>"


K_TYPE = kw("type")
K_MESSAGE = kw("message")
K_DATA = kw("data")
K_BACKTRACE = kw("backtrace")
K_PROC = kw("proc")
K_FILE = kw("file")
K_LINE = kw("line")
K_COL = kw("col")
K_MORE = kw("more")
K_REPEATED = kw("repeated")


# ---------------------------------------------------------------------------------------
# Errors and backtraces


def backtrace(span: Span | None, proc: str | None, k: Any) -> Vector:
    """The Flowmetal backtrace at a point: innermost first, then each waiting frame.

    Entries are ``{:proc :file :line :col}``, with ``:repeated n`` when the same entry
    stood n more times in a row (deep recursion); past ``BACKTRACE_LIMIT`` entries a last
    ``{:more true}`` says that outer frames were left out.
    """
    entries: list[Map] = []
    repeats: list[int] = []

    def add(span: Span | None, proc: str | None) -> None:
        if span is None:
            return
        entry = Map({K_PROC: proc or "<toplevel>", K_FILE: span[0], K_LINE: span[1],
                     K_COL: span[2]})
        if entries and entries[-1] == entry:
            repeats[-1] += 1
            return
        entries.append(entry)
        repeats.append(0)

    add(span, proc)
    frame = k
    while frame is not None and len(entries) < BACKTRACE_LIMIT:
        owner = frame[0]
        add(owner.span, owner.proc)
        frame = frame[1]
    while frame is not None and frame[0].span is None:
        frame = frame[1]
    entries = [e.assoc(K_REPEATED, n) if n else e for e, n in zip(entries, repeats)]
    if frame is not None:
        entries.append(Map({K_MORE: TRUE}))
    return Vector(entries)


def error_value(kind: str, message: str, data: Any, bt: Vector) -> Map:
    """A Flowmetal error: a map with :type :message :data :backtrace."""
    return Map({K_TYPE: kw(kind), K_MESSAGE: message, K_DATA: data, K_BACKTRACE: bt})


def python_error(exc: BaseException) -> FlowmetalError:
    """A FlowmetalError describing a Python exception raised inside a primitive."""
    if isinstance(exc, FlowmetalError):
        return exc
    if isinstance(exc, ZeroDivisionError):
        return FlowmetalError("division by zero", "arithmetic-error")
    if isinstance(exc, OverflowError):
        return FlowmetalError(f"numeric overflow: {exc}", "arithmetic-error")
    if isinstance(exc, RecursionError):
        return FlowmetalError("value nested too deeply", "limit-error")
    if isinstance(exc, MemoryError):
        return FlowmetalError("out of memory", "limit-error")
    if isinstance(exc, (TypeError, ValueError, IndexError, KeyError)):
        return FlowmetalError(str(exc), "type-error")
    return FlowmetalError(f"internal error: {type(exc).__name__}: {exc}", "internal-error")


def _located(exc: BaseException, node: N.Node) -> FlowmetalError:
    err = python_error(exc)
    if err.span is None:
        err.span, err.proc = node.span, node.proc
    return err


def _located_step(exc: BaseException, node: N.Node) -> FlowmetalError:
    """An error from ``node`` run inside a step that reached it, given the span and
    procedure that a step of ``node`` itself would give it (``Machine._raise_error``)."""
    err = python_error(exc)
    if err.span is None:
        err.span = node.span
    if err.proc is None:
        err.proc = node.proc
    return err


def _deeper(exc: BaseException, k: Any) -> FlowmetalError:
    """An error from a call made inside a step, with the continuation it was made in."""
    err = python_error(exc)
    if err.k is None:
        err.k = k
    return err


# ---------------------------------------------------------------------------------------
# Applying procedures


def arity_error(name: str, expected: str, got: int) -> FlowmetalError:
    """The error for a call with the wrong number of arguments."""
    plural = "" if expected == "1" else "s"
    return FlowmetalError(f"{name}: expected {expected} argument{plural}, got {got}",
                          "arity-error")


def _clause_arity(code: N.Lambda) -> str:
    parts = []
    for cl in code.clauses:
        parts.append(f"{cl.nreq}+" if cl.rest else str(cl.nreq))
    return " or ".join(parts)


def closure_env(f: Closure, args: tuple | list) -> tuple[N.Clause, list]:
    """Pick the clause of ``f`` for ``args`` and build its fresh environment."""
    code = f.code
    n = len(args)
    cl = code.single
    if cl is None:
        for c in code.clauses:
            if n == c.nreq or (c.rest and n >= c.nreq):
                cl = c
                break
        else:
            raise arity_error(code.name or "fn", _clause_arity(code), n)
    nreq = cl.nreq
    if cl.rest:
        if n < nreq:
            raise arity_error(code.name or "fn", f"at least {nreq}", n)
        env = [f.env, *args[:nreq], make_list(args[nreq:]) if n > nreq else None]
    else:
        if n != nreq:
            raise arity_error(code.name or "fn", str(nreq), n)
        env = [f.env, *args]
    if cl.extra:
        env.extend([UNSET] * cl.extra)
    return cl, env


def apply_procedure(f: Any, args: tuple | list, k: Any, m: Machine) -> tuple:
    """The state that calls ``f`` with ``args`` and returns to ``k``."""
    t = type(f)
    if t is Closure:
        cl = f.code.single
        if cl is not None and not cl.rest and len(args) == cl.nreq:
            env = [f.env, *args]
            if cl.extra:
                env.extend([UNSET] * cl.extra)
        else:
            cl, env = closure_env(f, args)
        enter = cl.enter
        if enter is not None:
            return enter(env, k, m)
        return cl.body, env, k, None
    if t is Primitive:
        if not f.accepts(len(args)):
            hi = f.max_args
            expected = (str(f.min_args) if hi == f.min_args else
                        f"at least {f.min_args}" if hi is None else f"{f.min_args} to {hi}")
            raise arity_error(f.name, expected, len(args))
        kind = f.kind
        if kind is CONTROL:
            return f.fn(m, args, k)
        if kind is MACHINE:
            return None, None, k, f.fn(m, *args)
        return None, None, k, f.fn(*args)
    if t is Continuation:
        return continue_with(f, args, m)
    if t is Keyword or t is Map or t is Set or t is Vector:
        return None, None, k, lookup_call(f, args)
    from .printer import shown

    raise FlowmetalError(f"not a procedure: {shown(f)}", "not-a-procedure")


def continue_with(f: Continuation, args: tuple | list, m: Machine) -> tuple:
    """The state that calls continuation ``f`` with ``args``."""
    value = args[0] if len(args) == 1 else (None if not args else make_list(args))
    k = f.k
    if f.winders is m.winders and k is not None and type(k[0]) in RESUMED_IN_STEP:
        return resume_in_step(k, value, m)
    return transition(m, f.winders, (None, None, k, value))


def lookup_call(f: Any, args: tuple | list) -> Any:
    """Maps, vectors, sets and keywords used as procedures, as in Clojure."""
    n = len(args)
    if n not in (1, 2):
        raise arity_error("collection lookup", "1 or 2", n)
    default = args[1] if n == 2 else None
    t = type(f)
    if t is Keyword:
        target = args[0]
        if type(target) is Map:
            return target.get(f, default)
        if type(target) is Set:
            return f if f in target else default
        return default
    key = args[0]
    if t is Map:
        return f.get(key, default)
    if t is Set:
        return key if key in f else default
    if type(key) is int and 0 <= key < len(f):
        return f[key]
    if n == 2:
        return default
    from .printer import shown

    raise FlowmetalError(f"index {shown(key)} out of range for a vector of {len(f)}",
                         "index-error")


# ---------------------------------------------------------------------------------------
# dynamic-wind: moving between wind lists runs after-thunks out and before-thunks in


WINDER = FrameKind("winder")
DW_BEFORE = FrameKind("dw-before")
DW_BODY = FrameKind("dw-body")
DW_AFTER = FrameKind("dw-after")
HALT = FrameKind("halt")
CALL = FrameKind("call")


def _depth(w: Any) -> int:
    return 0 if w is None else w[3]


def transition(m: Machine, target: Any, state: tuple) -> tuple:
    """Run the wind thunks between ``m.winders`` and ``target``, then go to ``state``."""
    cur = m.winders
    if cur is target:
        return state
    outs, ins = [], []
    a, b = cur, target
    while _depth(a) > _depth(b):
        outs.append(a)
        a = a[2]
    while _depth(b) > _depth(a):
        ins.append(b)
        b = b[2]
    while a is not b:
        outs.append(a)
        a = a[2]
        ins.append(b)
        b = b[2]
    steps = (tuple((w[1], w[2], w[4]) for w in outs) +
             tuple((w[0], w[2], w[4]) for w in reversed(ins)))
    return _wind_steps(m, steps, 0, target, state)


def _wind_steps(m: Machine, steps: tuple, i: int, target: Any, state: tuple) -> tuple:
    if i >= len(steps):
        m.winders = target
        return state
    thunk, during, where = steps[i]
    m.winders = during
    # The thunk runs in the dynamic context of its dynamic-wind call: an error it raises
    # is handled by the handlers around that call (frame[1]); its value continues the
    # winding (the frame's data).
    frame = (WINDER, where, None, steps, i + 1, target, state)
    return apply_procedure(thunk, (), frame, m)


def _winder_resume(frame: tuple, value: Any, m: Machine) -> tuple:
    return _wind_steps(m, frame[3], frame[4], frame[5], frame[6])


def dynamic_wind(m: Machine, args: tuple, k: Any) -> tuple:
    """``(dynamic-wind before thunk after)``."""
    before, thunk, after = args
    return apply_procedure(before, (), (DW_BEFORE, k, None, before, thunk, after), m)


def _dw_before_resume(frame: tuple, value: Any, m: Machine) -> tuple:
    entry = (frame[3], frame[5], m.winders, _depth(m.winders) + 1, frame[1])
    m.winders = entry
    return apply_procedure(frame[4], (), (DW_BODY, frame[1], None, entry), m)


def _dw_body_resume(frame: tuple, value: Any, m: Machine) -> tuple:
    entry = frame[3]
    m.winders = entry[2]
    return apply_procedure(entry[1], (), (DW_AFTER, frame[1], None, value), m)


def _dw_after_resume(frame: tuple, value: Any, m: Machine) -> tuple:
    return None, None, frame[1], frame[3]


def _halt_exec(env: Any, k: Any, m: Machine) -> tuple:
    m.status = "error"
    return None, None, None, m.error


WINDER.resume = _winder_resume
DW_BEFORE.resume = _dw_before_resume
DW_BODY.resume = _dw_body_resume
DW_AFTER.resume = _dw_after_resume
HALT.exec = _halt_exec
CALL.resume = lambda frame, value, m: apply_procedure(frame[3], frame[4], frame[1], m)


def call_state(f: Any, args: tuple) -> tuple:
    """A state that will call ``f`` with ``args`` (how a spawned task starts)."""
    return None, None, (CALL, None, None, f, tuple(args)), None


def call_cc(m: Machine, args: tuple, k: Any) -> tuple:
    """``(call/cc f)``: call f with the current continuation (an O(1) capture)."""
    f = args[0]
    if type(f) is Closure:  # (apply_procedure's way, for the usual one-argument fn)
        cl = f.code.single
        if cl is not None and cl.fixed == 1:
            env = [f.env, Continuation(k, m.winders)]
            if cl.extra:
                env.extend([UNSET] * cl.extra)
            enter = cl.enter
            if enter is not None:
                return enter(env, k, m)
            return cl.body, env, k, None
    return apply_procedure(f, (Continuation(k, m.winders),), k, m)


def apply_(m: Machine, args: tuple, k: Any) -> tuple:
    """``(apply f a b ... coll)``: call f with a, b, ... and the items of coll."""
    if len(args) < 2:
        raise arity_error("apply", "at least 2", len(args))
    return apply_procedure(args[0], spread_args(args), k, m)


def spread_args(args: tuple) -> tuple:
    """The arguments ``(apply f a b ... coll)`` passes to f: a, b, ... and coll's items."""
    spread = args[-1]
    if spread is None:
        spread = ()
    elif type(spread) is Map:
        spread = [Vector(item) for item in spread.items()]
    elif not isinstance(spread, (Pair, Vector, Set, tuple, list, str)) and spread is not EMPTY:
        raise FlowmetalError("apply: the last argument must be a collection", "type-error")
    return (*args[1:-1], *spread)


def throw(m: Machine, args: tuple, k: Any) -> tuple:
    """``(throw value)``: raise any value; an error map gets a backtrace if it has none."""
    value = args[0]
    if type(value) is Map and K_TYPE in value and value.get(K_BACKTRACE) is None:
        value = value.assoc(K_BACKTRACE, site_backtrace(m, k))
    return m.throw(value, k)


def site_backtrace(m: Machine, k: Any) -> Vector:
    """The backtrace at the call being made now (see ``Machine.site``)."""
    site = m.site
    return backtrace(site.span if site else None, site.proc if site else None, k)


# ---------------------------------------------------------------------------------------
# Linking: give each node its evaluation functions


def link(node: N.Node) -> None:
    """Attach ``ev`` and ``slow`` (for simple nodes), ``exec``, ``resume`` and ``reach``
    to ``node``."""
    node.reach = None
    LINKERS[type(node)](node)
    node.slow = node.ev


# A step runs on into the code below the node it starts at.  Reaching a node that is
# neither simple nor a call (an ``if``, ``do``, ``let``, ``set!``, ``try``...), it runs
# that node's ``exec`` at once instead of making it the next state, so it goes on down to
# the calls: a step makes at most one call of a procedure (an ``App``), whose callee's
# body runs up to its own first call, which is the next state (nothing but a call makes a
# call, and a clause's body that is a call is not entered in the calling step), and at
# most one call of a continuation (``resume_in_step``, ``stop_at``).  A node's ``reach``
# (None for a simple node or a call) is ``(depth, frames, stepless)``: how deep the execs
# its ``exec`` runs on into nest, the frames it leaves pushed, and whether it always gives
# its value in the step it is run (a ``set!`` of a simple value, an ``if`` of those...).
# A node runs on into a child only while both stay within bounds, so a step's Python
# stack and the frames it adds stay bounded whatever the code (``runtime.slices`` counts
# on at most a few frames per reduction).
CHAIN_DEPTH = 12
CHAIN_FRAMES = 2


def runs_on(child: N.Node, tail: bool) -> bool:
    """True if a step that reaches ``child`` (not simple) runs it at once: in tail
    position (its value is the parent's), or else above a frame the parent pushes."""
    r = getattr(child, "reach", None)
    return r is not None and r[0] < CHAIN_DEPTH and r[1] + (not tail) <= CHAIN_FRAMES


def stepless(child: N.Node) -> bool:
    """True if ``child`` is run at once and always gives its value in that step."""
    r = getattr(child, "reach", None)
    return r is not None and r[2] and r[0] < CHAIN_DEPTH


def _reach(parts: Any, stepless_: bool = False) -> tuple:
    """The ``reach`` of a node whose non-simple children are ``parts``, pairs
    ``(child, tail)``; a non-tail child that is ``stepless`` leaves no frame."""
    depth = frames = 0
    for child, tail in parts:
        if child.ev is not None:
            continue
        if runs_on(child, tail):
            depth = max(depth, child.reach[0])
            if not child.reach[2] or tail:
                frames = max(frames, child.reach[1] + (not tail))
        elif not tail:
            frames = max(frames, 1)
    return depth + 1, frames, stepless_


def probes(node: N.Node) -> bool:
    """True for a direct call of one argument by a local variable that needs no check
    (``(k v)``): a step that stops at it looks whether it calls a continuation
    (``stop_at``)."""
    return type(node) is N.App and node.direct and type(node.fn) is N.LocalRef and \
        not node.fn.checked and len(node.args) == 1


def stop_at(call: N.App, env: Any, k: Any, m: Machine) -> tuple:
    """The state that ends a step at ``call`` (``probes``), unless it calls a
    continuation that resumes its frame in the step (``RESUMED_IN_STEP``) and no
    continuation was called in this step yet: then the call is made now, as its own
    step would make it."""
    g = m.globals
    f = call.fn.ev(env, g)
    if type(f) is Continuation and f.winders is m.winders and not m.resuming:
        target = f.k
        if target is not None and type(target[0]) in RESUMED_IN_STEP:
            try:
                value = call.args[0].ev(env, g)
            except Exception as exc:
                raise _deeper(_located_step(exc, call), k) from None
            m.site = call
            return resume_in_step(target, value, m)
    return call, env, k, None


def resume_in_step(k: tuple, value: Any, m: Machine) -> tuple:
    """Return ``value`` to frame ``k`` (``RESUMED_IN_STEP``) in this step, as the next
    step would, its errors raised as that step would raise them; meanwhile
    ``m.resuming`` says that a continuation was called in this step."""
    m.resuming = True
    try:
        resume = k[0].resume
        return resume(k, value, m)
    except FlowmetalError as exc:
        return m._raise_error(exc, None, k)
    except Exception as exc:
        return m._raise_error(python_error(exc), None, k)
    finally:
        m.resuming = False


def _run_on(child: N.Node, env: Any, k: Any, m: Machine) -> tuple:
    """``child.exec`` run inside the step that reached it: an error is raised as the
    step of ``child`` itself would (its span, continuation ``k``)."""
    try:
        step = child.exec
        return step(env, k, m)
    except Exception as exc:
        raise _deeper(_located_step(exc, child), k) from None


def simple_exec(ev):
    """The exec of a simple node: one step that returns its value."""
    def exec_(env, k, m):
        return None, env, k, ev(env, m.globals)

    return exec_


def _link_const(node: N.Const) -> None:
    value = node.value

    def ev(e, g):
        return value

    def exec_(env, k, m):
        return None, env, k, value

    node.ev, node.exec = ev, exec_


def _unset_error(name: Symbol, span: Span | None) -> FlowmetalError:
    return FlowmetalError(f"{name.name} is used before its definition ran", "unbound", span=span)


def _link_local(node: N.LocalRef) -> None:
    depth, slot, span, name = node.depth, node.slot, node.span, node.name
    if node.checked:
        def ev(e, g):
            for _ in range(depth):
                e = e[0]
            value = e[slot]
            if value is UNSET:
                raise _unset_error(name, span)
            return value
    elif depth == 0:
        def ev(e, g):
            return e[slot]
    elif depth == 1:
        def ev(e, g):
            return e[0][slot]
    elif depth == 2:
        def ev(e, g):
            return e[0][0][slot]
    else:
        def ev(e, g):
            for _ in range(depth):
                e = e[0]
            return e[slot]
    node.ev, node.exec = ev, simple_exec(ev)


def _link_global(node: N.GlobalRef) -> None:
    name, span = node.name, node.span

    def ev(e, g):
        try:
            return g[name]
        except KeyError:
            raise FlowmetalError(f"unbound symbol: {name.name}", "unbound", span=span) from None

    node.ev, node.exec = ev, simple_exec(ev)


def _link_set_local(node: N.SetLocal) -> None:
    depth, slot, value_node = node.depth, node.slot, node.value
    result_is_name = node.is_def

    def store(env, value, m):
        target = env
        for _ in range(depth):
            target = target[0]
        target[slot] = value
        m.dirty.append(target)
        return node.name if result_is_name else value

    runs = value_node.ev is None and runs_on(value_node, False)
    probe = probes(value_node)

    def exec_(env, k, m):
        ev = value_node.ev
        if ev is not None:
            return None, env, k, store(env, ev(env, m.globals), m)
        if runs:
            return _run_on(value_node, env, (node, k, env), m)
        if probe:
            return stop_at(value_node, env, (node, k, env), m)
        return value_node, env, (node, k, env), None

    def resume(frame, value, m):
        return None, frame[2], frame[1], store(frame[2], value, m)

    node.exec, node.resume = exec_, resume
    node.reach = _reach(((value_node, False),), value_node.ev is not None)


def _link_set_global(node: N.SetGlobal) -> None:
    name, value_node, is_def, span = node.name, node.value, node.is_def, node.span

    def store(m, value):
        g = m.globals
        if not is_def and name not in g:
            raise FlowmetalError(f"set!: {name.name} is not defined", "unbound", span=span)
        g[name] = value
        m.own[name] = value
        m.own_map = None
        return name if is_def else value

    runs = value_node.ev is None and runs_on(value_node, False)
    probe = probes(value_node)

    def exec_(env, k, m):
        ev = value_node.ev
        if ev is not None:
            return None, env, k, store(m, ev(env, m.globals))
        if runs:
            return _run_on(value_node, env, (node, k, env), m)
        if probe:
            return stop_at(value_node, env, (node, k, env), m)
        return value_node, env, (node, k, env), None

    def resume(frame, value, m):
        return None, frame[2], frame[1], store(m, value)

    node.exec, node.resume = exec_, resume
    node.reach = _reach(((value_node, False),), value_node.ev is not None)


def _link_if(node: N.If) -> None:
    test, then, else_ = node.test, node.then, node.else_
    then_runs = then.ev is None and runs_on(then, True)
    else_runs = else_.ev is None and runs_on(else_, True)
    then_probe, else_probe = probes(then), probes(else_)

    def choose(env, k, m, flag):
        if flag is FALSE or flag is None:
            branch, run_on, probe = else_, else_runs, else_probe
        else:
            branch, run_on, probe = then, then_runs, then_probe
        ev = branch.ev
        if ev is not None:
            return None, env, k, ev(env, m.globals)
        if run_on:
            try:
                return branch.exec(env, k, m)
            except Exception as exc:
                raise _deeper(_located_step(exc, branch), k) from None
        if probe:
            return stop_at(branch, env, k, m)
        return branch, env, k, None

    if test.ev is not None and then.ev is not None and else_.ev is not None:
        t_ev, a_ev, b_ev = test.ev, then.ev, else_.ev

        def ev(e, g):
            flag = t_ev(e, g)
            return b_ev(e, g) if flag is FALSE or flag is None else a_ev(e, g)

        node.ev, node.exec = ev, simple_exec(ev)
        return

    if test.ev is not None:
        t_ev = test.ev

        def exec_(env, k, m):
            return choose(env, k, m, t_ev(env, m.globals))
    elif runs_on(test, False):
        def exec_(env, k, m):
            return _run_on(test, env, (node, k, env), m)
    elif probes(test):
        def exec_(env, k, m):
            return stop_at(test, env, (node, k, env), m)
    else:
        def exec_(env, k, m):
            return test, env, (node, k, env), None

    def resume(frame, value, m):
        return choose(frame[2], frame[1], m, value)

    node.exec, node.resume = exec_, resume
    node.reach = _reach(((test, False), (then, True), (else_, True)),
                        test.ev is not None and all(b.ev is not None or stepless(b)
                                                    for b in (then, else_)))


def _link_do(node: N.Do) -> None:
    body = node.body
    last = len(body) - 1

    if all(b.ev is not None for b in body):
        evs = tuple(b.ev for b in body)

        def ev(e, g):
            for f in evs[:-1]:
                f(e, g)
            return evs[-1](e, g)

        node.ev, node.exec = ev, simple_exec(ev)
        return

    # How each item is run: 0 simple, 1 at once and always to its value (its frame is
    # popped in this step), 2 at once, 3 as the next state, 4 as the next state unless
    # it calls a continuation (``stop_at``).
    ways = tuple(0 if b.ev is not None else 1 if i < last and stepless(b) else
                 2 if runs_on(b, i == last) else 4 if probes(b) else 3
                 for i, b in enumerate(body))

    def run_from(env, k, m, i):
        g = m.globals
        while i < last:
            b = body[i]
            way = ways[i]
            if way == 0:
                b.ev(env, g)
            elif way == 1:
                frame = (node, k, env, i)
                try:
                    b.exec(env, frame, m)
                except Exception as exc:
                    raise _deeper(_located_step(exc, b), frame) from None
            elif way == 2:
                return _run_on(b, env, (node, k, env, i), m)
            elif way == 4:
                return stop_at(b, env, (node, k, env, i), m)
            else:
                return b, env, (node, k, env, i), None
            i += 1
        b = body[last]
        if b.ev is not None:
            return None, env, k, b.ev(env, g)
        if ways[last] == 2:
            try:
                return b.exec(env, k, m)
            except Exception as exc:
                raise _deeper(_located_step(exc, b), k) from None
        if ways[last] == 4:
            return stop_at(b, env, k, m)
        return b, env, k, None

    def exec_(env, k, m):
        return run_from(env, k, m, 0)

    def resume(frame, value, m):
        return run_from(frame[2], frame[1], m, frame[3] + 1)

    node.exec, node.resume = exec_, resume
    node.reach = _reach(((b, i == last) for i, b in enumerate(body)),
                        all(way < 2 for way in ways[:last]) and
                        (body[last].ev is not None or stepless(body[last])))


def _link_lambda(node: N.Lambda) -> None:
    node.single = node.clauses[0] if len(node.clauses) == 1 else None
    # Compiled code (compiled.py) is a cache kept across links of the same node.
    node.fast = getattr(node, "fast", None)
    for cl in node.clauses:
        cl.lambda_ = node

    def ev(e, g):
        return Closure(node, e)

    node.ev, node.exec = ev, simple_exec(ev)


def _link_clause(node: N.Clause) -> None:
    node.extra = node.nslots - len(node.params)
    # Entering a body that is not a call is done in the calling step (it cannot chain).
    base = node.body.exec if type(node.body) is not N.App else None
    node.fixed = -1 if node.rest else node.nreq
    node.compiled = getattr(node, "compiled", None)
    if not hasattr(node, "lambda_"):
        node.lambda_ = None
    from . import compiled  # (it builds on this module)

    node.enter = compiled.clause_entry(node, base) if compiled.enabled() else base


def _new_frame(parent: Any, nslots: int) -> list:
    frame = [parent]
    frame.extend([UNSET] * nslots)
    return frame


def _link_let(node: N.Let) -> None:
    groups, body = node.groups, node.body
    count = len(groups)

    def fill(frame: list, inits: tuple, g: dict) -> list:
        for slot, init in inits:
            frame[slot] = init.ev(frame, g)
        return frame

    if all(init.ev is not None for _, inits in groups for _, init in inits) and \
            body.ev is not None:
        body_ev = body.ev

        def ev(e, g):
            for nslots, inits in groups:
                frame = _new_frame(e, nslots)
                if inits:
                    frame[inits[0][0]] = inits[0][1].ev(e, g)
                e = fill(frame, inits[1:], g)
            return body_ev(e, g)

        node.ev, node.exec = ev, simple_exec(ev)
        return

    firsts = [inits[0][1] for _, inits in groups if inits]
    runs = tuple(bool(inits) and inits[0][1].ev is None and runs_on(inits[0][1], False)
                 for _, inits in groups)
    body_runs = body.ev is None and runs_on(body, True)
    probe = tuple(bool(inits) and probes(inits[0][1]) for _, inits in groups)
    body_probe = probes(body)

    def run_from(env, k, m, i):
        g = m.globals
        while i < count:
            nslots, inits = groups[i]
            frame = _new_frame(env, nslots)
            if inits:
                slot, init = inits[0]
                if init.ev is None:
                    if runs[i]:
                        return _run_on(init, env, (node, k, env, i), m)
                    if probe[i]:
                        return stop_at(init, env, (node, k, env, i), m)
                    return init, env, (node, k, env, i), None
                frame[slot] = init.ev(env, g)
            env = fill(frame, inits[1:], g)
            i += 1
        if body.ev is not None:
            return None, env, k, body.ev(env, g)
        if body_runs:
            try:
                return body.exec(env, k, m)
            except Exception as exc:
                raise _deeper(_located_step(exc, body), k) from None
        if body_probe:
            return stop_at(body, env, k, m)
        return body, env, k, None

    def exec_(env, k, m):
        return run_from(env, k, m, 0)

    def resume(frame, value, m):
        i = frame[3]
        nslots, inits = groups[i]
        # A fresh frame on every return, so a re-entered init binds anew.
        new = _new_frame(frame[2], nslots)
        new[inits[0][0]] = value
        return run_from(fill(new, inits[1:], m.globals), frame[1], m, i + 1)

    node.exec, node.resume = exec_, resume
    node.reach = _reach([*((init, False) for init in firsts), (body, True)],
                        all(init.ev is not None for init in firsts) and stepless(body))


def _link_letrec(node: N.Letrec) -> None:
    inits, nslots, body = node.inits, node.nslots, node.body
    count = len(inits)

    if all(init.ev is not None for _, init in inits) and body.ev is not None:
        evs = tuple((slot, init.ev) for slot, init in inits)
        body_ev = body.ev

        def ev(e, g):
            frame = _new_frame(e, nslots)
            for slot, f in evs:
                frame[slot] = f(frame, g)
            return body_ev(frame, g)

        node.ev, node.exec = ev, simple_exec(ev)
        return

    runs = tuple(init.ev is None and runs_on(init, False) for _, init in inits)
    body_runs = body.ev is None and runs_on(body, True)
    probe = tuple(probes(init) for _, init in inits)
    body_probe = probes(body)

    def run_from(frame_env, k, m, i):
        g = m.globals
        while i < count:
            slot, init = inits[i]
            if init.ev is None:
                if runs[i]:
                    return _run_on(init, frame_env, (node, k, frame_env, i), m)
                if probe[i]:
                    return stop_at(init, frame_env, (node, k, frame_env, i), m)
                return init, frame_env, (node, k, frame_env, i), None
            frame_env[slot] = init.ev(frame_env, g)
            i += 1
        if body.ev is not None:
            return None, frame_env, k, body.ev(frame_env, g)
        if body_runs:
            return _run_on(body, frame_env, k, m)
        if body_probe:
            return stop_at(body, frame_env, k, m)
        return body, frame_env, k, None

    def exec_(env, k, m):
        return run_from(_new_frame(env, nslots), k, m, 0)

    def resume(frame, value, m):
        i = frame[3]
        frame[2][inits[i][0]] = value
        m.dirty.append(frame[2])
        return run_from(frame[2], frame[1], m, i + 1)

    node.exec, node.resume = exec_, resume
    node.reach = _reach([*((init, False) for _, init in inits), (body, True)],
                        all(init.ev is not None for _, init in inits) and stepless(body))


def _link_app(node: N.App) -> None:
    parts = (node.fn, *node.args)
    nparts = len(parts)
    node.direct = all(p.ev is not None for p in parts)
    runs = tuple(p.ev is None and runs_on(p, False) for p in parts)

    def run_from(env, k, m, i, vals):
        g = m.globals
        while i < nparts:
            p = parts[i]
            if p.ev is None:
                frame = (node, k, env, i, vals)
                if type(p) is N.App and p.direct:
                    try:
                        return p.exec(env, frame, m)
                    except Exception as exc:
                        raise _deeper(exc, frame) from None
                if runs[i]:
                    return _run_on(p, env, frame, m)
                return p, env, frame, None
            vals = (*vals, p.ev(env, g))
            i += 1
        return call_at(node, vals[0], vals[1:], k, m)

    def resume(frame, value, m):
        return run_from(frame[2], frame[1], m, frame[3] + 1, (*frame[4], value))

    node.resume = resume
    if _link_prim_app(node):
        return
    if not all(p.ev is not None for p in parts):
        def exec_(env, k, m):
            return run_from(env, k, m, 0, ())
        node.exec = exec_
        return

    f_ev = node.fn.ev
    arg_evs = tuple(a.ev for a in node.args)
    if len(arg_evs) == 0:
        def exec_(env, k, m):
            return call_at(node, f_ev(env, m.globals), (), k, m)
    elif len(arg_evs) == 1:
        a0 = arg_evs[0]

        def exec_(env, k, m):
            g = m.globals
            return call_at(node, f_ev(env, g), (a0(env, g),), k, m)
    elif len(arg_evs) == 2:
        a0, a1 = arg_evs

        def exec_(env, k, m):
            g = m.globals
            return call_at(node, f_ev(env, g), (a0(env, g), a1(env, g)), k, m)
    else:
        def exec_(env, k, m):
            g = m.globals
            return call_at(node, f_ev(env, g), tuple(a(env, g) for a in arg_evs), k, m)
    node.exec = exec_


def call_at(site: N.App, f: Any, args: tuple, k: Any, m: Machine) -> tuple:
    """``apply_procedure`` for the call node ``site``.  A call of anything but a closure
    becomes ``m.site``, where a primitive that raises (``throw``, ``error``) or an effect
    places its backtrace; an error of the call itself (arity, not a procedure) points at
    the site.  The fast path's calls do the same (``fastpath.Batch._apply_lines``)."""
    if type(f) is not Closure:
        m.site = site
    try:
        return apply_procedure(f, args, k, m)
    except FlowmetalError as exc:
        if exc.span is None:
            exc.span, exc.proc = site.span, site.proc
        raise


def _link_prim_app(node: N.App) -> bool:
    """A call whose operator is a constant primitive: no operator step, no dispatch."""
    op = node.fn
    if type(op) is not N.Const or type(op.value) is not Primitive:
        return False
    prim = op.value
    args = node.args
    if prim.kind is CONTROL or prim.kind is MACHINE or not prim.accepts(len(args)):
        return False
    fn = prim.fast2 if len(args) == 2 and prim.fast2 is not None else prim.fn
    nargs = len(args)
    evs = tuple(a.ev for a in args)
    runs = tuple(a.ev is None and runs_on(a, False) for a in args)

    def run_from(env, k, m, i, vals):
        g = m.globals
        while i < nargs:
            ev = evs[i]
            if ev is None:
                a = args[i]
                frame = (node, k, env, i, vals)
                if type(a) is N.App and a.direct:
                    try:
                        return a.exec(env, frame, m)
                    except Exception as exc:
                        raise _deeper(exc, frame) from None
                if runs[i]:
                    return _run_on(a, env, frame, m)
                return a, env, frame, None
            vals = (*vals, ev(env, g))
            i += 1
        return None, env, k, fn(*vals)

    def exec_(env, k, m):
        return run_from(env, k, m, 0, ())

    def resume(frame, value, m):
        return run_from(frame[2], frame[1], m, frame[3] + 1, (*frame[4], value))

    node.exec, node.resume = exec_, resume
    return True


def _link_primcall(node: N.PrimCall) -> None:
    fn = node.prim.fn
    evs = tuple(a.ev for a in node.args)
    if len(evs) == 1:
        a0 = evs[0]

        def ev(e, g):
            try:
                return fn(a0(e, g))
            except Exception as exc:
                raise _located(exc, node) from None
    elif len(evs) == 2:
        a0, a1 = evs

        def ev(e, g):
            try:
                return fn(a0(e, g), a1(e, g))
            except Exception as exc:
                raise _located(exc, node) from None
    else:
        def ev(e, g):
            try:
                return fn(*[a(e, g) for a in evs])
            except Exception as exc:
                raise _located(exc, node) from None
    node.ev, node.exec = ev, simple_exec(ev)


def _link_try(node: N.Try) -> None:
    body = node.body
    runs = body.ev is None and runs_on(body, False)

    probe = probes(body)

    def exec_(env, k, m):
        if runs:
            return _run_on(body, env, (node, k, env, m.winders), m)
        if probe:
            return stop_at(body, env, (node, k, env, m.winders), m)
        return body, env, (node, k, env, m.winders), None

    def resume(frame, value, m):
        return None, frame[2], frame[1], value

    node.exec, node.resume = exec_, resume
    node.reach = _reach(((body, False),))


def _link_catch(node: N.Node) -> None:
    """Catch clauses are entered by ``Machine.throw``, never stepped: nothing to attach."""


# The frames whose resume makes no call (see ``runs_on``): a continuation returning to
# one of them resumes it in the step of its call, which stays a single call.
RESUMED_IN_STEP = frozenset((N.If, N.Do, N.Let, N.Letrec, N.SetLocal, N.SetGlobal, N.Try))

LINKERS = {
    N.Const: _link_const,
    N.LocalRef: _link_local,
    N.GlobalRef: _link_global,
    N.SetLocal: _link_set_local,
    N.SetGlobal: _link_set_global,
    N.If: _link_if,
    N.Do: _link_do,
    N.Lambda: _link_lambda,
    N.Clause: _link_clause,
    N.Let: _link_let,
    N.Letrec: _link_letrec,
    N.App: _link_app,
    N.PrimCall: _link_primcall,
    N.Try: _link_try,
    N.Catch: _link_catch,
}


def catch_matches(catch: N.Catch, value: Any) -> bool:
    """True if ``catch`` handles the raised ``value``."""
    if catch.match is None:
        return True
    return type(value) is Map and value.get(K_TYPE) is catch.match


# ---------------------------------------------------------------------------------------
# The machine


class Machine:
    """One running program: registers, globals, dynamic-wind list, status."""

    def __init__(self, globals_: dict, node: Any = None, env: Any = None, k: Any = None,
                 own: dict | None = None):
        self.globals = globals_
        # The globals this machine's program set (or started with) beyond the standard
        # library's: what a stored state must carry.
        self.own: dict = {} if own is None else own
        self.own_map: Any = None  # ``own`` as a Map, made when the state is encoded
        # Environments changed in place since the state was last encoded (see codec.Image);
        # until an image first encodes the machine there is nothing to note.
        self.dirty: Any = NOT_TRACKED
        self.node = node
        self.env = env
        self.k = k
        self.val = None
        self.winders = None
        self.status = "running"
        self.error: Any = None
        self.reductions = 0
        self.gensym_counter = 0
        self.site: Any = None  # the call node of the latest non-closure call, for backtraces
        self.resuming = False  # a continuation's frame is being resumed in this step
        # Reductions compiled code may still make in this chunk of ``run``, and has made.
        self.budget = 0
        self.charged = 0
        self.compiled_budget: Any = None  # compiled.Budget, made at the first entry
        self.compiling: bool | None = None  # compiled.enabled(), read at the first run
        self.request: Any = None  # what a waiting machine waits for
        self.waiting_k: Any = None
        self.consumed: list[int] = []  # inbox messages taken in this step
        self.task_id: str | None = None
        self.output: list[str] = []
        self.write = self.output.append

    @property
    def value(self) -> Any:
        """The result once ``status == "done"``."""
        return self.val

    def run(self, fuel: int) -> str:
        """Make at most ``fuel`` reductions; return the status afterwards.

        A reduction is a transition, or one that compiled code counted for the machine
        (``compiled.py``).  The transitions run in chunks: each chunk's compiled calls may
        spend what the chunk leaves of the fuel (``budget``), so one loop needs no count
        of its own beyond the transitions."""
        if PAUSED:
            resume_paused()
        node, env, k, val = self.node, self.env, self.k, self.val
        spent = done = 0
        self.charged = charged = 0
        compiling = self.compiling
        if compiling is None:  # read once per machine: the environment costs a step's µs
            from .compiled import enabled

            compiling = self.compiling = enabled()
        try:
            while spent < fuel:
                left = fuel - spent
                budget = left * 7 // 8 if compiling else 0
                self.budget = budget
                done = 0
                for done in range(1, left - budget + 1):  # noqa: B007 (read after)
                    try:
                        # (A function kept in a slot is called through a name: a
                        # method call of it would take CPython's slow path.)
                        if node is not None:
                            step = node.exec
                            node, env, k, val = step(env, k, self)
                        elif k is not None:
                            step = k[0].resume
                            node, env, k, val = step(k, val, self)
                        else:
                            done -= 1
                            break
                    except FlowmetalError as exc:
                        node, env, k, val = self._raise_error(exc, node, k)
                    except Exception as exc:
                        node, env, k, val = self._raise_error(python_error(exc), node, k)
                else:
                    spent += done + self.charged - charged
                    charged = self.charged
                    done = 0
                    if self.budget <= 0:
                        compiling = False  # a call did not fit in the fuel left
                    continue
                break
        except BaseException:
            if done:
                done -= 1  # the transition it stopped was not made (and will be again)
            raise
        finally:
            self.node, self.env, self.k, self.val = node, env, k, val
            self.reductions += spent + done + self.charged - charged
            self.budget = 0
        if self.status == "waiting":
            self.k = self.waiting_k
            self.waiting_k = None
        elif node is None and k is None and self.status == "running":
            self.status = "done"
        return self.status

    def suspend(self, request: Any, k: Any) -> tuple:
        """The state that stops the machine until ``request`` is answered (an effect)."""
        self.status = "waiting"
        self.request = request
        self.waiting_k = k
        return None, None, None, None

    def answer(self, value: Any) -> None:
        """Resume a waiting machine: its request returns ``value``."""
        if self.status != "waiting":
            raise RuntimeError(f"answer to a machine that is {self.status}")
        self.status, self.request = "running", None
        self.node, self.env, self.val = None, None, value

    def interrupt(self, error: Any) -> None:
        """Raise ``error`` into a running machine where it stands (cancellation)."""
        try:
            self.node, self.env, self.k, self.val = self.throw(error, self.k)
        except FlowmetalError as exc:
            self.node, self.env, self.k, self.val = self._raise_error(exc, None, self.k)

    def answer_error(self, error: Any) -> None:
        """Resume a waiting machine: its request raises ``error`` (e.g. a timeout)."""
        if self.status != "waiting":
            raise RuntimeError(f"answer to a machine that is {self.status}")
        self.status, self.request = "running", None
        try:
            self.node, self.env, self.k, self.val = self.throw(error, self.k)
        except FlowmetalError as exc:
            self.node, self.env, self.k, self.val = self._raise_error(exc, None, self.k)

    def run_to_end(self, slice_size: int = 1_000_000) -> str:
        """Run until done or failed."""
        while self.status == "running":
            self.run(slice_size)
        return self.status

    def _raise_error(self, exc: FlowmetalError, node: Any, k: Any) -> tuple:
        waiting = k
        if exc.k is not None:
            k = waiting = exc.k
        elif node is None and k is not None:
            # Raised while resuming frame k: the error is k's own work, so its frame
            # is the first entry of the backtrace, not also a frame waiting behind it.
            waiting = k[1]
        where = node if node is not None else (k[0] if k is not None else None)
        span = exc.span or (where.span if where is not None else None)
        proc = exc.proc or (where.proc if where is not None else None)
        value = error_value(exc.kind, exc.message, exc.data, backtrace(span, proc, waiting))
        return self.throw(value, k)

    def throw(self, value: Any, k: Any) -> tuple:
        """The state that delivers raised ``value`` to the nearest matching catch."""
        frame = k
        while frame is not None:
            owner = frame[0]
            if type(owner) is N.Try:
                for catch in owner.catches:
                    if catch_matches(catch, value):
                        env = [frame[2], value]
                        if catch.nslots > 1:
                            env.extend([UNSET] * (catch.nslots - 1))
                        return transition(self, frame[3], (catch.body, env, frame[1], None))
            frame = frame[1]
        self.error = value
        return transition(self, None, (HALT, None, None, None))

    def gensym(self, prefix: str = "G__") -> Symbol:
        """A fresh symbol (the counter is machine state, so it survives resumption)."""
        self.gensym_counter += 1
        return Symbol(f"{prefix}{self.gensym_counter}")


__all__ = ["Machine", "apply_procedure", "link", "UNSET", "FrameKind", "transition"]
