"""Compiling simple expressions to Python functions.

A *simple* node (a constant, a variable, a ``fn``, or an ``if``/``do``/``let`` or a pure
primitive call made only of simple nodes) has no effects and cannot capture a
continuation, so the machine evaluates it with one Python call instead of transitions.
``compile_simple`` turns a whole simple subtree into the source of one Python function,
so evaluating ``(< n 2)`` costs one call rather than one per node.

The generated function is only a faster route to the node's own ``ev``: if anything goes
wrong inside it, it evaluates the node again through the per-node closures, which raise
the Flowmetal error with the precise span (re-evaluation is safe: simple code is pure).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import nodes as N
from .machine import UNSET, _unset_error
from .procedures import Closure
from .values import FALSE


class _Gen:
    """Source generation for one simple subtree."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"FALSE": FALSE, "UNSET": UNSET, "Closure": Closure,
                                          "_chk": _check_set}
        self.count = 0

    def name(self, value: Any, prefix: str = "c") -> str:
        self.count += 1
        key = f"{prefix}{self.count}"
        self.namespace[key] = value
        return key

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
                return f"_chk({ref}, {self.name(node)})"
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
            fn = node.prim.fn
            if len(node.args) == 2 and node.prim.fast2 is not None:
                fn = node.prim.fast2
            args = ", ".join(self.expr(a, env) for a in node.args)
            return f"{self.name(fn, 'p')}({args})"
        if t is N.Lambda:
            return f"Closure({self.name(node, 'n')}, {env})"
        # Anything else (let) runs through its own per-node function.
        return f"{self.name(node.slow, 'f')}({env}, g)"


def _check_set(value: Any, node: N.LocalRef) -> Any:
    if value is UNSET:
        raise _unset_error(node.name, node.span)
    return value


class Batch:
    """Functions for many nodes, generated together and compiled with one ``compile``."""

    def __init__(self, where: str) -> None:
        from .machine import FlowmetalError, apply_procedure

        self.gen = _Gen()
        self.gen.namespace.update(_apply=apply_procedure, FlowmetalError=FlowmetalError)
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

    def direct_call(self, node: N.App) -> None:
        """The exec of a call whose operator and arguments are all simple.

        It evaluates them inline and, for a closure with a fixed arity, builds the frame
        and enters the body in the same step (``Clause.enter``); anything else goes
        through ``apply_procedure``.
        """
        gen = self.gen
        parts = (node.fn, *node.args)
        names = ["f"] + [f"a{i}" for i in range(len(node.args))]
        self._def(node, "exec", "env, k, m")
        lines = self.lines
        lines += ["    g = m.globals", "    try:"]
        lines += [f"        {name} = {gen.expr(p, 'env')}" for name, p in zip(names, parts)]
        lines += ["    except Exception:"]
        lines += [f"        {name} = {gen.name(p.slow, 'slow')}(env, g)"
                  for name, p in zip(names, parts)]
        args = ", ".join(names[1:])
        n = len(node.args)
        site = gen.name(node, "site")
        lines += [
            "    if type(f) is Closure:",
            "        cl = f.code.single",
            f"        if cl is not None and cl.fixed == {n}:",
            f"            e2 = [f.env{', ' if n else ''}{args}]",
            "            if cl.extra:",
            "                e2.extend([UNSET] * cl.extra)",
            "            enter = cl.enter",
            "            if enter is not None:",
            "                return enter(e2, k, m)",
            "            return cl.body, e2, k, None",
            f"    m.site = {site}",
            "    try:",
            f"        return _apply(f, ({args}{',' if n == 1 else ''}), k, m)",
            "    except FlowmetalError as exc:",
            "        if exc.span is None:",
            f"            exc.span, exc.proc = {site}.span, {site}.proc",
            "        raise",
        ]

    def if_exec(self, node: N.If) -> None:
        """The exec of an ``if`` with a simple test: test and simple branches run inline."""
        gen = self.gen
        self._def(node, "exec", "env, k, m")
        lines = self.lines
        lines.append("    g = m.globals")
        _with_fallback(lines, "t", gen.expr(node.test, "env"), gen.name(node.test.slow, "slow"),
                       "    ")
        lines.append("    if t is FALSE or t is None:")
        for branch, indent in ((node.else_, "        "), (node.then, "    ")):
            if branch.ev is not None:
                _with_fallback(lines, "v", gen.expr(branch, "env"),
                               gen.name(branch.slow, "slow"), indent)
                lines.append(f"{indent}return None, env, k, v")
            else:
                lines.append(f"{indent}return {gen.name(branch, 'n')}, env, k, None")

    def compile(self) -> list[tuple[N.Node, str, Callable]]:
        """Compile everything added: (node, "ev" or "exec", function) for each."""
        if not self.targets:
            return []
        code = compile("\n".join(self.lines) + "\n", f"<flowmetal {self.where}>", "exec")
        exec(code, self.gen.namespace)
        return [(node, role, self.gen.namespace[name]) for node, role, name in self.targets]


def _with_fallback(lines: list[str], target: str, expr: str, slow: str, indent: str) -> None:
    lines += [f"{indent}try:", f"{indent}    {target} = {expr}",
              f"{indent}except Exception:", f"{indent}    {target} = {slow}(env, g)"]
