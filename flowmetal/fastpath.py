"""Compiling simple expressions to Python functions.

A *simple* node (a constant, a variable, a ``fn``, or an ``if``/``do``/``let`` or a pure
primitive call made only of simple nodes) has no effects and cannot capture a
continuation, so the machine evaluates it with one Python call instead of transitions.
``Batch`` turns each whole simple subtree into the source of one Python function (and
calls and ``if`` tests into ``exec`` functions that inline their simple parts), so
evaluating ``(< n 2)`` costs one call rather than one per node.

The generated function is only a faster route to the node's own ``ev``: if anything goes
wrong inside it, it evaluates the node again through the per-node closures, which raise
the Flowmetal error with the precise span (re-evaluation is safe: simple code is pure).

``FLOWMETAL_FASTPATH=0`` in the environment turns the fast path off (``enabled``): every
node then runs through its per-node closures alone, which must give the same results,
errors, backtraces and spans.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from . import nodes as N
from .machine import UNSET, _unset_error, probes, runs_on, stepless
from .procedures import Closure, Primitive
from .values import FALSE, TRUE

OFF = ("0", "off", "false", "no")


def enabled() -> bool:
    """True unless ``$FLOWMETAL_FASTPATH`` turns the fast path off (``0``, ``off``,
    ``false`` or ``no``)."""
    return os.environ.get("FLOWMETAL_FASTPATH", "").strip().lower() not in OFF


class Gen:
    """Source generation for one simple subtree."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"FALSE": FALSE, "TRUE": TRUE, "UNSET": UNSET,
                                          "Closure": Closure,
                                          "_chk": _check_set}
        self.count = 0

    def name(self, value: Any, prefix: str = "c") -> str:
        self.count += 1
        key = f"{prefix}{self.count}"
        self.namespace[key] = value
        return key

    def inline_binary(self, node: N.PrimCall, op: str, env: str) -> str:
        """``(+ a b)`` and friends as Python operators, guarded to int operands."""
        a, b = (self.expr(x, env) for x in node.args)
        return self.binary(node.prim, op, a, b)

    def binary(self, prim: Primitive, op: str, a: str, b: str) -> str:
        """Primitive ``prim`` (Python operator ``op``) of the expressions ``a`` and ``b``.
        A plain name or an int literal is read as it is; anything else once, through
        an assignment expression."""
        if op == "==":  # Python equality is Flowmetal equality for every value
            return f"(TRUE if {a} == {b} else FALSE)"
        self.count += 1
        x, y = (e if _plain(e) else f"{v}{self.count}" for e, v in ((a, "x"), (b, "y")))
        checks = " & ".join(f"(type({v}{'' if v == e else ' := ' + e}) is int)"
                            for v, e in ((x, a), (y, b)) if not _int_literal(e)) or "True"
        fast = f"(TRUE if {x} {op} {y} else FALSE)" if op in COMPARISONS else f"{x} {op} {y}"
        slow = self.name(prim.fn, "p")
        return f"({fast} if {checks} else {slow}({x}, {y}))"

    def truth(self, node: N.Node, env: str) -> str | None:
        """A Python expression true when simple ``node`` is (neither false nor nil), for
        the tests it knows (``nil?``, ``some?``, ``not``, comparisons), else None."""
        if type(node) is not N.PrimCall:
            return None
        name, args = node.prim.name, node.args
        if len(args) == 1 and name in ("nil?", "some?", "not"):
            a = self.expr(args[0], env)
            if name == "not":
                self.count += 1
                x = f"x{self.count}"
                return f"(({x} := {a}) is FALSE or {x} is None)"
            return f"({a} is {'' if name == 'nil?' else 'not '}None)"
        op = INLINE_BINARY.get(name)
        if len(args) != 2 or op not in COMPARISONS:
            return None
        a, b = (self.expr(x, env) for x in args)
        if op == "==":
            return f"({a} == {b})"
        self.count += 1
        x, y = (e if _plain(e) else f"{v}{self.count}" for e, v in ((a, "x"), (b, "y")))
        checks = " & ".join(f"(type({v}{'' if v == e else ' := ' + e}) is int)"
                            for v, e in ((x, a), (y, b)) if not _int_literal(e)) or "True"
        return f"(({x} {op} {y}) if {checks} else ({self.name(node.prim.fn, 'p')}({x}, {y}) "\
               "is TRUE))"

    def expr(self, node: N.Node, env: str) -> str:
        t = type(node)
        if t is N.Const:
            value = node.value
            if value is None or (type(value) is int and -2**31 < value < 2**31):
                return repr(value)
            return self.name(value)
        if t is N.LocalRef:
            ref = env + "[0]" * node.depth + f"[{node.slot}]"
            if node.checked:
                self.count += 1
                x = f"x{self.count}"
                return f"({x} if ({x} := {ref}) is not UNSET else _chk({x}, {self.name(node)}))"
            return ref
        if t is N.GlobalRef:
            return f"g[{self.name(node.name, 's')}]"
        if t is N.If:
            self.count += 1
            tmp = f"t{self.count}"
            test = self.expr(node.test, env)
            then, else_ = self.expr(node.then, env), self.expr(node.else_, env)
            return (f"({else_} if (({tmp} := {test}) is FALSE or {tmp} is None) "
                    f"else {then})")
        if t is N.Do:
            return "(" + ", ".join(self.expr(b, env) for b in node.body) + ")[-1]"
        if t is N.PrimCall:
            test = INLINE_TESTS.get(node.prim.name)
            if test is not None and len(node.args) == 1:
                self.count += 1
                return test.format(a=self.expr(node.args[0], env), x=f"x{self.count}")
            op = INLINE_BINARY.get(node.prim.name)
            if op is not None and len(node.args) == 2:
                return self.inline_binary(node, op, env)
            fn = node.prim.fn
            if len(node.args) == 2 and node.prim.fast2 is not None:
                fn = node.prim.fast2
            args = ", ".join(self.expr(a, env) for a in node.args)
            return f"{self.name(fn, 'p')}({args})"
        if t is N.Lambda:
            return f"Closure({self.name(node, 'n')}, {env})"
        # Anything else (let) runs through its own per-node function.
        return f"{self.name(node.slow, 'f')}({env}, g)"


# Not "*": a product's size is checked first (limits.check_product), so it is a call.
INLINE_BINARY = {"+": "+", "-": "-", "<": "<", ">": ">", "<=": "<=", ">=": ">=",
                 "=": "=="}
COMPARISONS = ("<", ">", "<=", ">=", "==")
# One-argument tests as Python expressions of the argument ``a`` (``x`` a fresh name).
INLINE_TESTS = {"nil?": "(TRUE if {a} is None else FALSE)",
                "some?": "(FALSE if {a} is None else TRUE)",
                "not": "(TRUE if ({x} := {a}) is FALSE or {x} is None else FALSE)"}


def _int_literal(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _plain(text: str) -> bool:
    """True for an expression that costs nothing to read twice: a name or an int."""
    return text.isidentifier() or _int_literal(text)


def _check_set(value: Any, node: N.LocalRef) -> Any:
    if value is UNSET:
        raise _unset_error(node.name, node.span)
    return value


class Batch:
    """Functions for many nodes, generated together and compiled with one ``compile``."""

    def __init__(self, where: str) -> None:
        from .machine import (
            RESUMED_IN_STEP,
            FlowmetalError,
            _deeper,
            _located_step,
            _run_on,
            apply_procedure,
            call_cc,
            continue_with,
            python_error,
        )
        from .procedures import CONTROL, Continuation

        self.gen = Gen()
        self.gen.namespace.update(_apply=apply_procedure, FlowmetalError=FlowmetalError,
                                  _continue=continue_with, Continuation=Continuation,
                                  RESUMED_IN_STEP=RESUMED_IN_STEP, _call_cc=call_cc,
                                  _python_error=python_error, _new=object.__new__,
                                  Primitive=Primitive, CONTROL=CONTROL,
                                  _deeper=_deeper, _located_step=_located_step, _run_on=_run_on)
        self.where = where
        self.lines: list[str] = []
        self.targets: list[tuple[N.Node, str, str]] = []

    def _def(self, node: N.Node, role: str, params: str) -> str:
        name = f"{role}_{len(self.targets)}"
        self.targets.append((node, role, name))
        self.lines.append(f"def {name}({params}):")
        return name

    def simple(self, node: N.Node) -> None:
        """``node.ev`` for a simple subtree."""
        body = self.gen.expr(node, "e")
        slow = self.gen.name(node.slow, "slow")
        self._def(node, "ev", "e, g")
        self.lines += ["    try:", f"        return {body}", "    except Exception:",
                       f"        return {slow}(e, g)"]

    def _apply_lines(self, node: N.App, args: list[str], indent: str) -> None:
        """Lines that call ``f`` with ``args``: a fixed-arity closure is entered in this
        step (``Clause.enter``), a continuation or control primitive called directly,
        anything else goes through ``apply_procedure``."""
        n = len(args)
        listed = ", ".join(args)
        site = self.gen.name(node, "site")
        self.lines += [indent + line for line in (
            "if type(f) is Closure:",
            "    cl = f.code.single",
            f"    if cl is not None and cl.fixed == {n}:",
            *_entering(f"f.env{', ' if n else ''}{listed}", "        "),
            "else:",
            f"    m.site = {site}",
            "try:",
            *(self._one_argument_lines(args[0]) if n == 1 else ()),
            "    if type(f) is Continuation:",
            f"        return _continue(f, ({listed}{',' if n == 1 else ''}), m)",
            f"    if type(f) is Primitive and f.kind is CONTROL and f.min_args <= {n} and "
            f"(f.max_args is None or f.max_args >= {n}):",
            "        fn = f.fn",
            f"        return fn(m, ({listed}{',' if n == 1 else ''}), k)",
            f"    return _apply(f, ({listed}{',' if n == 1 else ''}), k, m)",
            "except FlowmetalError as exc:",
            "    if exc.span is None:",
            f"        exc.span, exc.proc = {site}.span, {site}.proc",
            "    raise",
        )]

    @staticmethod
    def _one_argument_lines(a: str) -> tuple[str, ...]:
        """``machine.continue_with`` for a continuation returning to a frame resumed in
        this step, and ``machine.call_cc`` of a one-parameter fn, inline."""
        return (
            "    if type(f) is Continuation:",
            "        c = f.k",
            "        if f.winders is m.winders and c is not None and "
            "type(c[0]) in RESUMED_IN_STEP:",
            "            m.resuming = True",
            "            try:",
            "                resume = c[0].resume",
            f"                return resume(c, {a}, m)",
            "            except Exception as exc:",
            "                return m._raise_error(_python_error(exc), None, c)",
            "            finally:",
            "                m.resuming = False",
            f"    elif type(f) is Primitive and f.fn is _call_cc and type({a}) is Closure:",
            f"        cl = {a}.code.single",
            "        if cl is not None and cl.fixed == 1:",
            "            c = _new(Continuation)",
            "            c.k, c.winders = k, m.winders",
            *_entering(f"{a}.env, c", "            "),
        )

    def direct_call(self, node: N.App) -> None:
        """The exec of a call whose operator and arguments are all simple: they are
        evaluated inline, then the procedure is applied (see ``_apply_lines``)."""
        gen = self.gen
        parts = (node.fn, *node.args)
        names = ["f"] + [f"a{i}" for i in range(len(node.args))]
        args = names[1:]
        self._def(node, "exec", "env, k, m")
        lines = self.lines
        lines.append("    g = m.globals")
        fn_lambda = _called_fn(node)
        if fn_lambda is not None:
            # (call/cc (fn [k] ...)): the fn's clause is entered without making the
            # closure, which nothing else could see.
            cl = fn_lambda.single
            _with_fallback(lines, "f", gen.expr(node.fn, "env"), gen.name(node.fn.slow, "slow"),
                           "    ")
            parts, names = parts[1:], names[1:]
            extra = ", UNSET" * (cl.nslots - len(cl.params))
            lines += ["    if type(f) is Primitive and f.fn is _call_cc:",
                      f"        m.site = {gen.name(node, 'site')}",
                      "        c = _new(Continuation)",
                      "        c.k, c.winders = k, m.winders"]
            body = self._inline_body(cl.body, True) if cl.body.ev is None else None
            if body is not None:
                # The clause's body, written here (what its enter would run, and as it
                # would raise: a clause's entry adds nothing to its errors).
                lines.append(f"        env = [env, c{extra}]")
                body("        ")
            else:
                lines += [f"        e2 = [env, c{extra}]",
                          f"        cl = {gen.name(cl, 'cl')}",
                          "        enter = cl.enter",
                          "        if enter is not None:",
                          "            return enter(e2, k, m)",
                          "        return cl.body, e2, k, None"]
        lines.append("    try:")
        lines += [f"        {name} = {gen.expr(p, 'env')}" for name, p in zip(names, parts)]
        lines += ["    except Exception:"]
        lines += [f"        {name} = {gen.name(p.slow, 'slow')}(env, g)"
                  for name, p in zip(names, parts)]
        self._apply_lines(node, args, "    ")

    def staged_call(self, node: N.App) -> None:
        """The exec and resume of a call with parts that take steps of their own.

        Parts are evaluated in order; each non-simple one pushes the frame
        ``(node, k, env, i, values-so-far)`` (the same frames the per-node functions
        make) and runs in its own step, or in this one if it is a direct call.  ``resume``
        picks up after part ``i``.  A constant pure primitive is called directly.
        """
        gen = self.gen
        op = node.fn
        prim = op.value if type(op) is N.Const and type(op.value) is Primitive else None
        if prim is not None and (prim.kind in ("control", "machine")
                                 or not prim.accepts(len(node.args))):
            prim = None
        parts = node.args if prim is not None else (node.fn, *node.args)
        names = [f"v{i}" for i in range(len(parts))]
        stops = [i for i, p in enumerate(parts) if p.ev is None]
        node_name = gen.name(node, "node")

        def segment(start: int, indent: str) -> None:
            for i in range(start, len(parts)):
                part = parts[i]
                if part.ev is not None:
                    _with_fallback(self.lines, names[i], gen.expr(part, "env"),
                                   gen.name(part.slow, "slow"), indent)
                    continue
                done = "".join(f"{v}, " for v in names[:i])
                self.lines.append(f"{indent}frame = ({node_name}, k, env, {i}, ({done}))")
                part_name = gen.name(part, "part")
                if type(part) is N.App and part.direct:
                    self.lines += [f"{indent}try:",
                                   f"{indent}    step = {part_name}.exec",
                                   f"{indent}    return step(env, frame, m)",
                                   f"{indent}except Exception as exc:",
                                   f"{indent}    raise _deeper(exc, frame) from None"]
                elif runs_on(part, False):
                    self.lines.append(f"{indent}return _run_on({part_name}, env, frame, m)")
                else:
                    self.lines.append(f"{indent}return {part_name}, env, frame, None")
                return
            if prim is None:
                self.lines.append(f"{indent}f = v0")
                self._apply_lines(node, names[1:], indent)
            elif prim.name in INLINE_BINARY and len(parts) == 2:
                fast = INLINE_BINARY[prim.name]
                slow = gen.name(prim.fn, "p")
                if fast == "==":
                    value = "(TRUE if v0 == v1 else FALSE)"
                elif fast in COMPARISONS:
                    value = (f"((TRUE if v0 {fast} v1 else FALSE) if (type(v0) is int) & "
                             f"(type(v1) is int) else {slow}(v0, v1))")
                else:
                    value = (f"(v0 {fast} v1 if (type(v0) is int) & (type(v1) is int) "
                             f"else {slow}(v0, v1))")
                self.lines.append(f"{indent}return None, env, k, {value}")
            else:
                fn = gen.name(prim.fn, "p")
                self.lines.append(f"{indent}return None, env, k, {fn}({', '.join(names)})")

        self._def(node, "exec", "env, k, m")
        self.lines.append("    g = m.globals")
        segment(0, "    ")
        self._def(node, "resume", "frame, value, m")
        self.lines += ["    k, env, i, vals = frame[1], frame[2], frame[3], frame[4]",
                       "    g = m.globals"]
        for stop in stops:
            self.lines.append(f"    if i == {stop}:")
            if stop:
                self.lines.append(f"        ({''.join(v + ', ' for v in names[:stop])}) = vals")
            self.lines.append(f"        {names[stop]} = value")
            segment(stop + 1, "        ")
        self.lines.append("    raise ValueError(f'bad frame index {i}')")

    def if_exec(self, node: N.If) -> None:
        """The exec of an ``if`` with a simple test: test and simple branches run inline,
        a branch the step runs on into (``machine.runs_on``) is run at once."""
        self._def(node, "exec", "env, k, m")
        self.lines.append("    g = m.globals")
        self._if_body(node, "    ", True)

    def _if_body(self, node: N.If, indent: str, inline: bool) -> None:
        gen, lines = self.gen, self.lines
        slow = gen.name(node.test.slow, "slow")
        truth = gen.truth(node.test, "env")
        if truth is None:
            _with_fallback(lines, "t", gen.expr(node.test, "env"), slow, indent)
            lines.append(f"{indent}if t is FALSE or t is None:")
        else:
            lines += [f"{indent}try:", f"{indent}    t = {truth}", f"{indent}except Exception:",
                      f"{indent}    t = {slow}(env, g)",
                      f"{indent}    t = t is not FALSE and t is not None",
                      f"{indent}if not t:"]
        for branch, inner in ((node.else_, indent + "    "), (node.then, indent)):
            if branch.ev is not None:
                _with_fallback(lines, "v", gen.expr(branch, "env"),
                               gen.name(branch.slow, "slow"), inner)
                lines.append(f"{inner}return None, env, k, v")
            else:
                self._run_child(branch, "k", True, inner, inline)

    def _run_child(self, child: N.Node, k: str, tail: bool, indent: str,
                   inline: bool) -> None:
        """Lines that end the step at non-simple ``child`` (continuation ``k``): run at
        once if the step runs on into it (``machine.runs_on``), its code written here
        when ``inline`` and it has code of its own here, else the next state."""
        name = self.gen.name(child, "n")
        if not runs_on(child, tail):
            if probes(child):
                self._probe_lines(child, name, k, indent)
            self.lines.append(f"{indent}return {name}, env, {k}, None")
            return
        body = self._inline_body(child)
        if not inline or body is None:
            self.lines += [f"{indent}try:", f"{indent}    step = {name}.exec",
                           f"{indent}    return step(env, {k}, m)",
                           f"{indent}except Exception as exc:",
                           f"{indent}    raise _deeper(_located_step(exc, {name}), {k}) "
                           "from None"]
            return
        # The child's exec, written here, with its continuation as ``k`` (which its
        # code, written with its children's called, never changes); its errors are
        # raised as if it had run in a function of its own.
        if k != "k":
            self.lines.append(f"{indent}k = {k}")
        self.lines.append(f"{indent}try:")
        body(indent + "    ")
        self.lines += [f"{indent}except Exception as exc:",
                       f"{indent}    raise _deeper(_located_step(exc, {name}), k) from None"]

    def _probe_lines(self, call: N.App, name: str, k: str, indent: str) -> None:
        """``machine.stop_at`` inline: a call ``(k v)`` the step stops at is made now
        if ``k`` is a continuation that resumes its frame in this step."""
        gen = self.gen
        arg = call.args[0]
        i = indent
        self.lines += [
            f"{i}f2 = {gen.expr(call.fn, 'env')}",
            f"{i}if type(f2) is Continuation and f2.winders is m.winders and "
            "not m.resuming:",
            f"{i}    c = f2.k",
            f"{i}    if c is not None and type(c[0]) in RESUMED_IN_STEP:",
            f"{i}        try:",
            f"{i}            v = {gen.expr(arg, 'env')}",
            f"{i}        except Exception:",
            f"{i}            try:",
            f"{i}                v = {gen.name(arg.slow, 'slow')}(env, g)",
            f"{i}            except Exception as exc:",
            f"{i}                raise _deeper(_located_step(exc, {name}), {k}) from None",
            f"{i}        m.site = {name}",
            f"{i}        m.resuming = True",
            f"{i}        try:",
            f"{i}            resume = c[0].resume",
            f"{i}            return resume(c, v, m)",
            f"{i}        except Exception as exc:",
            f"{i}            return m._raise_error(_python_error(exc), None, c)",
            f"{i}        finally:",
            f"{i}            m.resuming = False"]

    def _inline_body(self, child: N.Node, inline: bool = False) -> Callable[[str], None] | None:
        """What writes ``child``'s exec in place (its children's run at once called, or
        also written in place if ``inline``), if this batch writes such code for it."""
        t = type(child)
        if t is N.If and child.test.ev is not None:
            return lambda indent: self._if_body(child, indent, inline)
        if t is N.Do and child.slow is None:
            return lambda indent: self._do_segment(child, 0, indent, inline)
        if t is N.Let and child.slow is None:
            return lambda indent: self._let_segment(child, 0, indent, inline)
        return None

    def do_exec(self, node: N.Do) -> None:
        """The exec and resume of a ``do`` that is not simple: the steps of
        ``machine._link_do``, its simple items and ``set!`` of simple values inline."""
        body = node.body
        stops = [i for i, b in enumerate(body[:-1]) if b.ev is None and not stepless(b)]
        self._def(node, "exec", "env, k, m")
        self.lines.append("    g = m.globals")
        self._do_segment(node, 0, "    ", True)
        self._def(node, "resume", "frame, value, m")
        self.lines += ["    k, env, i = frame[1], frame[2], frame[3]", "    g = m.globals"]
        for stop in stops:
            self.lines.append(f"    if i == {stop}:")
            self._do_segment(node, stop + 1, "        ", True)
        self.lines.append("    raise ValueError(f'bad frame index {i}')")

    def _do_segment(self, node: N.Do, start: int, indent: str, inline: bool) -> None:
        gen, lines, body = self.gen, self.lines, node.body
        last = len(body) - 1
        me = gen.name(node, "node")
        for i in range(start, last):
            b = body[i]
            if b.ev is not None:
                _with_fallback(lines, "_", gen.expr(b, "env"), gen.name(b.slow, "slow"),
                               indent)
            elif stepless(b) and type(b) is N.SetLocal and b.value.ev is not None:
                bn = gen.name(b, "n")
                lines += [f"{indent}try:", f"{indent}    v = {gen.expr(b.value, 'env')}",
                          f"{indent}except Exception:", f"{indent}    try:",
                          f"{indent}        v = {gen.name(b.value.slow, 'slow')}(env, g)",
                          f"{indent}    except Exception as exc:",
                          f"{indent}        raise _deeper(_located_step(exc, {bn}), "
                          f"({me}, k, env, {i})) from None",
                          f"{indent}target = env{'[0]' * b.depth}",
                          f"{indent}target[{b.slot}] = v",
                          f"{indent}m.dirty.append(target)"]
            elif stepless(b):
                bn = gen.name(b, "n")
                lines += [f"{indent}frame = ({me}, k, env, {i})", f"{indent}try:",
                          f"{indent}    step = {bn}.exec",
                          f"{indent}    step(env, frame, m)",
                          f"{indent}except Exception as exc:",
                          f"{indent}    raise _deeper(_located_step(exc, {bn}), frame) "
                          "from None"]
            else:
                lines.append(f"{indent}frame = ({me}, k, env, {i})")
                self._run_child(b, "frame", False, indent, inline)
                return
        b = body[last]
        if b.ev is not None:
            _with_fallback(lines, "v", gen.expr(b, "env"), gen.name(b.slow, "slow"), indent)
            lines.append(f"{indent}return None, env, k, v")
        else:
            self._run_child(b, "k", True, indent, inline)

    def let_exec(self, node: N.Let) -> None:
        """The exec and resume of a ``let`` that is not simple: the steps of
        ``machine._link_let``, its simple inits inline."""
        groups = node.groups
        stops = [i for i, (_, inits) in enumerate(groups) if inits and inits[0][1].ev is None]
        self._def(node, "exec", "env, k, m")
        self.lines.append("    g = m.globals")
        self._let_segment(node, 0, "    ", True)
        self._def(node, "resume", "frame, value, m")
        self.lines += ["    k, env, i = frame[1], frame[2], frame[3]", "    g = m.globals"]
        for stop in stops:
            nslots, inits = groups[stop]
            # A fresh frame on every return, so a re-entered init binds anew.
            slots = ["UNSET"] * nslots
            slots[inits[0][0] - 1] = "value"
            self.lines += [f"    if i == {stop}:", f"        e = [env, {', '.join(slots)}]"]
            self._let_fill(inits[1:], "        ")
            self.lines.append("        env = e")
            self._let_segment(node, stop + 1, "        ", True)
        self.lines.append("    raise ValueError(f'bad frame index {i}')")

    def _let_fill(self, inits: tuple, indent: str) -> None:
        for slot, init in inits:
            _with_fallback(self.lines, f"e[{slot}]", self.gen.expr(init, "e"),
                           self.gen.name(init.slow, "slow"), indent, "e")

    def _let_segment(self, node: N.Let, start: int, indent: str, inline: bool) -> None:
        gen, lines, groups, body = self.gen, self.lines, node.groups, node.body
        me = gen.name(node, "node")
        for i in range(start, len(groups)):
            nslots, inits = groups[i]
            if inits and inits[0][1].ev is None:
                lines.append(f"{indent}frame = ({me}, k, env, {i})")
                self._run_child(inits[0][1], "frame", False, indent, inline)
                return
            if inits:
                _with_fallback(lines, "v", gen.expr(inits[0][1], "env"),
                               gen.name(inits[0][1].slow, "slow"), indent)
            lines.append(f"{indent}e = [env{', UNSET' * nslots}]")
            if inits:
                lines.append(f"{indent}e[{inits[0][0]}] = v")
                self._let_fill(inits[1:], indent)
            lines.append(f"{indent}env = e")
        if body.ev is not None:
            _with_fallback(lines, "v", gen.expr(body, "env"), gen.name(body.slow, "slow"),
                           indent)
            lines.append(f"{indent}return None, env, k, v")
        else:
            self._run_child(body, "k", True, indent, inline)

    def compile(self) -> list[tuple[N.Node, str, Callable]]:
        """Compile everything added: (node, "ev" or "exec", function) for each."""
        if not self.targets:
            return []
        source = "\n".join(self.lines) + "\n"
        code = _CODE.get(source)
        if code is None:  # (a program of the same shape compiled it already: its name shows)
            code = compile(source, f"<flowmetal {self.where}>", "exec")
            if len(_CODE) >= CODE_KEPT:
                _CODE.clear()
            _CODE[source] = code
        exec(code, self.gen.namespace)
        return [(node, role, self.gen.namespace[name]) for node, role, name in self.targets]


CODE_KEPT = 256
_CODE: dict[str, Any] = {}  # generated Python source -> its code object



def _entering(frame: str, indent: str) -> list[str]:
    """Generated lines that enter the fixed-arity clause ``cl`` in this step, over a new
    frame of ``frame`` (its parent environment and arguments) and the clause's
    unset slots (``Clause.enter``, else its body)."""
    return [indent + line for line in (
        f"e2 = [{frame}]",
        "if cl.extra:",
        "    e2.extend([UNSET] * cl.extra)",
        "enter = cl.enter",
        "if enter is not None:",
        "    return enter(e2, k, m)",
        "return cl.body, e2, k, None")]

def _called_fn(node: N.App) -> N.Lambda | None:
    """The ``fn`` of one required parameter that call ``node`` passes as its only
    argument, written in place (as in ``(call/cc (fn [k] ...))``), if it is one."""
    if len(node.args) != 1 or type(node.args[0]) is not N.Lambda:
        return None
    lam = node.args[0]
    cl = lam.single
    if cl is None or cl.rest or cl.nreq != 1:
        return None
    return lam


def _with_fallback(lines: list[str], target: str, expr: str, slow: str, indent: str,
                   env: str = "env") -> None:
    if expr == "None" or _int_literal(expr):
        lines.append(f"{indent}{target} = {expr}")
        return
    lines += [f"{indent}try:", f"{indent}    {target} = {expr}",
              f"{indent}except Exception:", f"{indent}    {target} = {slow}({env}, g)"]
