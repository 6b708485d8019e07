"""Forms → code nodes: special forms, macro expansion, lexical addressing.

The analyzer walks the reader's Syntax objects (so every node gets a source span),
expands macros, resolves each variable to a lexical address ``(depth, slot)`` or a
global, and builds the nodes of a Program.

Decisions (see NOTES.md):
- ``def`` at the top level defines a global; ``def`` directly in a body (of ``fn``,
  ``let``, ``letrec``, ``catch``) defines a local of that body, as Scheme's internal
  define (letrec* semantics).
- ``defmacro`` is only allowed at the top level and runs at analysis time; a macro's
  body may use the standard library and earlier macros.
- A call to a pure primitive is linked at analysis time when the name is bound to it
  then and the program does not define that name at its top level (direct linking).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from . import nodes as N
from .destructure import destructure
from .machine import MAX_SIMPLE_DEPTH, Machine, apply_procedure
from .procedures import PRIMITIVES, PURE, Closure, Primitive
from .program import Program
from .reader import Syntax, strip, to_syntax
from .values import (
    EMPTY,
    FlowmetalError,
    Keyword,
    Map,
    Span,
    Symbol,
    SyntaxError_,
    sym,
)

S = sym
QUOTE, QUASIQUOTE, UNQUOTE, SPLICE = S("quote"), S("quasiquote"), S("unquote"), \
    S("unquote-splicing")
AMP, DEF, DO, FN, CATCH, FINALLY = S("&"), S("def"), S("do"), S("fn"), S("catch"), S("finally")
CALL_PRIM = S("%call-prim")
RECUR = S("recur")
ANALYSIS_RECURSION_LIMIT = 20_000


class CompileEnv:
    """What analysis depends on: the macros, and the globals macros run against."""

    def __init__(self, globals_: dict, macros: dict | None = None):
        self.globals = globals_
        self.macros: dict[Symbol, Any] = dict(macros or {})
        self.gensym_counter = 0

    def call(self, f: Any, args: tuple, span: Span | None, what: str) -> Any:
        """Run procedure ``f`` to completion at analysis time (macro transformers)."""
        m = Machine(self.globals)
        m.gensym_counter = self.gensym_counter
        try:
            m.node, m.env, m.k, m.val = apply_procedure(f, args, None, m)
            m.run_to_end()
        except FlowmetalError as exc:
            raise SyntaxError_(f"{what}: {exc.message}", span) from None
        finally:
            self.gensym_counter = m.gensym_counter
        if m.status == "error":
            err = m.error
            message = err.get(Keyword("message")) if type(err) is Map else None
            if not isinstance(message, str):
                from .printer import to_string

                message = to_string(err)
            raise SyntaxError_(f"{what}: {message}", span)
        return m.val

    def fork(self) -> CompileEnv:
        """A copy whose macro table can grow without touching this one."""
        child = CompileEnv(self.globals, self.macros)
        child.gensym_counter = self.gensym_counter
        return child


class Scope:
    """One environment frame at analysis time: names → slots (slot 0 is the parent)."""

    def __init__(self, parent: Scope | None):
        self.parent = parent
        self.slots: dict[Symbol, int] = {}
        self.nslots = 0
        self.checked: set[int] = set()

    def add(self, name: Symbol, checked: bool = False) -> int:
        self.nslots += 1
        self.slots[name] = self.nslots
        if checked:
            self.checked.add(self.nslots)
        return self.nslots

    def resolve(self, name: Symbol) -> tuple[int, int, bool] | None:
        depth, scope = 0, self
        while scope is not None:
            slot = scope.slots.get(name)
            if slot is not None:
                return depth, slot, slot in scope.checked
            depth += 1
            scope = scope.parent
        return None


def _err(message: str, form: Syntax) -> SyntaxError_:
    return SyntaxError_(message, form.span)


def _is_sym(form: Syntax, name: Symbol | None = None) -> bool:
    return form.kind == "atom" and type(form.value) is Symbol and (
        name is None or form.value is name)


def _head(form: Syntax) -> Symbol | None:
    if form.kind == "list" and form.value and _is_sym(form.value[0]):
        return form.value[0].value
    return None


class Analyzer:
    """Analyzes the forms of one program against a compile environment."""

    def __init__(self, cenv: CompileEnv, program: Program):
        self.cenv = cenv
        self.program = program
        self.proc = "<toplevel>"
        self.depths: dict[int, int] = {}
        self.program_defs: set[Symbol] = set()
        self.fresh_count = 0

    # -- entry points ---------------------------------------------------------------

    def analyze_toplevel(self, forms: list[Syntax]) -> list[N.Node]:
        """Analyze a whole program: expand top-level forms first, then analyze them."""
        limit = sys.getrecursionlimit()
        # Analysis recurses over the nesting of forms; allow deep (generated) code.
        sys.setrecursionlimit(max(limit, ANALYSIS_RECURSION_LIMIT))
        try:
            expanded: list[Syntax] = []
            for form in forms:
                self._expand_toplevel(form, expanded)
            nodes = [self.analyze(form, None) for form in expanded]
        finally:
            sys.setrecursionlimit(limit)
        self.program.finish()
        self.program.forms.extend(nodes)
        return nodes

    def _expand_toplevel(self, form: Syntax, out: list[Syntax]) -> None:
        form = self.expand_head(form, None)
        head = _head(form)
        if head is DO and self._special(DO, None):
            for child in form.value[1:]:
                self._expand_toplevel(child, out)
            return
        if head is S("defmacro") and self._special(head, None):
            out.append(self.define_macro(form))
            return
        if head is DEF and len(form.value) >= 2 and _is_sym(form.value[1]):
            self.program_defs.add(form.value[1].value)
            # A global definition replaces a macro of the same name from here on.
            self.cenv.macros.pop(form.value[1].value, None)
        out.append(form)

    # -- helpers --------------------------------------------------------------------

    def make(self, cls: type[N.Node], form: Syntax | Span | None, *fields: Any) -> N.Node:
        node = cls(*fields)
        node.span = form.span if isinstance(form, Syntax) else form
        node.proc = self.proc
        self.program.add(node)
        if node.ev is not None:
            depth = 1 + max((self.depths.get(id(c), 0) for c in node.children()), default=0)
            if depth >= MAX_SIMPLE_DEPTH:
                # Keep Python recursion bounded: parents treat this node as a step.
                node.ev = None
                depth = 0
            self.depths[id(node)] = depth
        return node

    def const(self, form: Syntax | Span | None, value: Any) -> N.Node:
        return self.make(N.Const, form, value)

    def _special(self, name: Symbol, scope: Scope | None) -> bool:
        return name in SPECIAL_FORMS and (scope is None or scope.resolve(name) is None)

    def macro_for(self, name: Symbol, scope: Scope | None) -> Any:
        if scope is not None and scope.resolve(name) is not None:
            return None
        return self.cenv.macros.get(name)

    def expand_head(self, form: Syntax, scope: Scope | None) -> Syntax:
        """Expand ``form`` while its head names a macro."""
        for _ in range(10_000):
            head = _head(form)
            if head is None or self._special(head, scope):
                return form
            macro = self.macro_for(head, scope)
            if macro is None:
                return form
            spans: dict = {}
            args = tuple(strip(x, spans) for x in form.value[1:])
            result = self.cenv.call(macro, args, form.span, f"in macro {head.name}")
            form = to_syntax(result, form.span, spans)
        raise _err("macro expansion does not terminate", form)

    # -- the analysis proper --------------------------------------------------------

    def analyze(self, form: Syntax, scope: Scope | None) -> N.Node:
        """The node for one form in ``scope`` (None: the top level)."""
        try:
            return self._analyze(form, scope)
        except RecursionError:
            raise _err("form nested too deeply to analyze", form) from None

    def _analyze(self, form: Syntax, scope: Scope | None) -> N.Node:
        kind = form.kind
        if kind == "atom":
            value = form.value
            if type(value) is Symbol:
                return self.variable(form, scope)
            return self.const(form, value)
        if kind == "vector":
            return self.collection(form, scope, "vector")
        if kind == "map":
            return self.collection(form, scope, "hash-map")
        if kind == "set":
            return self.collection(form, scope, "hash-set")
        items = form.value
        if not items:
            return self.const(form, EMPTY)
        head = _head(form)
        if head is not None:
            if self._special(head, scope):
                return SPECIAL_FORMS[head](self, form, scope)
            if self.macro_for(head, scope) is not None:
                return self._analyze(self.expand_head(form, scope), scope)
        return self.call(form, scope)

    def variable(self, form: Syntax, scope: Scope | None) -> N.Node:
        name = form.value
        if name in SPECIAL_FORMS and (scope is None or scope.resolve(name) is None):
            raise _err(f"{name.name} is a special form, not a value", form)
        where = scope.resolve(name) if scope is not None else None
        if where is None:
            return self.make(N.GlobalRef, form, name)
        depth, slot, checked = where
        return self.make(N.LocalRef, form, name, depth, slot, checked)

    def collection(self, form: Syntax, scope: Scope | None, prim: str) -> N.Node:
        items = [self.analyze(x, scope) for x in form.value]
        if all(type(n) is N.Const for n in items):
            return self.const(form, PRIMITIVES[prim].fn(*(n.value for n in items)))
        return self.prim_call(form, PRIMITIVES[prim], items)

    def prim_call(self, form: Syntax | Span, prim: Primitive, args: list[N.Node]) -> N.Node:
        if prim.kind is PURE and prim.accepts(len(args)) and all(a.ev is not None for a in args):
            return self.make(N.PrimCall, form, prim, tuple(args))
        return self.make(N.App, form, self.const(form, prim), tuple(args))

    def call(self, form: Syntax, scope: Scope | None) -> N.Node:
        fn_form, *arg_forms = form.value
        args = [self.analyze(a, scope) for a in arg_forms]
        if _is_sym(fn_form):
            name = fn_form.value
            local = scope.resolve(name) if scope is not None else None
            bound = self.cenv.globals.get(name)
            if (local is None and type(bound) is Primitive and bound.kind is PURE
                    and name not in self.program_defs):
                return self.prim_call(form, bound, args)
        fn = self.analyze(fn_form, scope)
        return self.make(N.App, form, fn, tuple(args))

    def body(self, forms: list[Syntax] | tuple, scope: Scope | None, form: Syntax) -> N.Node:
        """A body: internal defs become locals of ``scope``; returns one node."""
        expanded: list[Syntax] = []
        pending = list(reversed(forms))
        while pending:
            f = self.expand_head(pending.pop(), scope)
            head = _head(f)
            if head is DO and self._special(DO, scope):
                pending.extend(reversed(f.value[1:]))
                continue
            if scope is not None and head is DEF and self._special(DEF, scope):
                if len(f.value) < 2 or not _is_sym(f.value[1]):
                    raise _err("def needs a symbol to define", f)
                name = f.value[1].value
                if name not in scope.slots:
                    scope.add(name, checked=True)
            expanded.append(f)
        if not expanded:
            return self.const(form, None)
        nodes = [self.analyze(f, scope) for f in expanded]
        if len(nodes) == 1:
            return nodes[0]
        return self.make(N.Do, form, tuple(nodes))

    # -- special forms --------------------------------------------------------------

    def sf_quote(self, form: Syntax, scope: Scope | None) -> N.Node:
        if len(form.value) != 2:
            raise _err("quote takes exactly one form", form)
        return self.const(form, strip(form.value[1]))

    def sf_if(self, form: Syntax, scope: Scope | None) -> N.Node:
        n = len(form.value)
        if n not in (3, 4):
            raise _err("if needs a test, a then-branch and an optional else-branch", form)
        test = self.analyze(form.value[1], scope)
        then = self.analyze(form.value[2], scope)
        else_ = self.analyze(form.value[3], scope) if n == 4 else self.const(form, None)
        return self.make(N.If, form, test, then, else_)

    def sf_do(self, form: Syntax, scope: Scope | None) -> N.Node:
        items = form.value[1:]
        if not items:
            return self.const(form, None)
        nodes = [self.analyze(x, scope) for x in items]
        return nodes[0] if len(nodes) == 1 else self.make(N.Do, form, tuple(nodes))

    def sf_def(self, form: Syntax, scope: Scope | None) -> N.Node:
        items = form.value
        if len(items) not in (2, 3, 4) or not _is_sym(items[1]):
            raise _err("def needs a symbol and a value: (def name value)", form)
        if len(items) == 4 and not (items[2].kind == "atom" and type(items[2].value) is str):
            raise _err("def takes (def name value) or (def name \"doc\" value)", form)
        name = items[1].value
        value_form = items[-1] if len(items) > 2 else None
        value = (self.named_value(value_form, scope, name) if value_form is not None
                 else self.const(form, None))
        if scope is None:
            return self.make(N.SetGlobal, form, name, value, True)
        where = scope.resolve(name)
        if where is None or where[0] != 0 or name not in scope.slots:
            raise _err("def is allowed at the top level or directly in a body", form)
        return self.make(N.SetLocal, form, name, 0, where[1], value, True)

    def named_value(self, form: Syntax, scope: Scope | None, name: Symbol) -> N.Node:
        """Analyze a def's value; a literal ``fn`` takes the defined name."""
        form = self.expand_head(form, scope)
        if _head(form) is FN and self._special(FN, scope):
            # loop's body is a procedure named recur: name it after where the loop is.
            label = f"{self.proc} (loop)" if name is RECUR else name.name
            return self.sf_fn(form, scope, label)
        return self.analyze(form, scope)

    def sf_set(self, form: Syntax, scope: Scope | None) -> N.Node:
        items = form.value
        if len(items) != 3 or not _is_sym(items[1]):
            raise _err("set! needs a symbol and a value: (set! name value)", form)
        name = items[1].value
        value = self.analyze(items[2], scope)
        where = scope.resolve(name) if scope is not None else None
        if where is None:
            return self.make(N.SetGlobal, form, name, value, False)
        return self.make(N.SetLocal, form, name, where[0], where[1], value, False)

    def sf_fn(self, form: Syntax, scope: Scope | None, default_name: str | None = None) -> N.Node:
        items = list(form.value[1:])
        self_name = None
        if items and _is_sym(items[0]):
            self_name = items.pop(0)
        if not items:
            raise _err("fn needs a parameter vector: (fn [params] body...)", form)
        if items[0].kind == "vector":
            clause_forms = [(items[0], items[1:])]
        else:
            clause_forms = []
            for c in items:
                if c.kind != "list" or not c.value or c.value[0].kind != "vector":
                    raise _err("fn needs a parameter vector or clauses ([params] body...)", c)
                clause_forms.append((c.value[0], c.value[1:]))
        name = self_name.value.name if self_name is not None else default_name
        if self_name is not None:
            # (fn name [..] ..) binds name to the procedure itself inside its body.
            scope = Scope(scope)
            scope.add(self_name.value, checked=False)
        saved_proc = self.proc
        self.proc = name or "fn"
        try:
            clauses = tuple(self.clause(params, body, scope, form) for params, body in clause_forms)
        finally:
            self.proc = saved_proc
        arities = [(c.nreq, c.rest) for c in clauses]
        if len(set(arities)) != len(arities):
            raise _err("fn has two clauses with the same arity", form)
        lam = self.make(N.Lambda, form, name, clauses)
        if self_name is None:
            return lam
        ref = self.make(N.LocalRef, form, self_name.value, 0, 1, False)
        return self.make(N.Letrec, form, (self_name.value,), ((1, lam),), 1, ref)

    def clause(self, params: Syntax, body: tuple, scope: Scope | None, form: Syntax) -> N.Node:
        inner = Scope(scope)
        names: list[Symbol] = []
        rest = False
        items = list(params.value)
        patterns: list[Syntax] = []
        for i, p in enumerate(items):
            if p.kind in ("vector", "map"):
                # A pattern parameter: take the argument in a fresh name, bind it in a let.
                name = Syntax("atom", self.fresh(), p.span)
                patterns += [p, name]
                items[i] = name
        if patterns:
            body = (Syntax("list", (Syntax("atom", S("let"), params.span),
                                    Syntax("vector", tuple(patterns), params.span), *body),
                           params.span),)
        i = 0
        while i < len(items):
            p = items[i]
            if not _is_sym(p):
                raise _err("parameters must be symbols or destructuring patterns", p)
            if p.value is AMP:
                if i + 2 != len(items) or not _is_sym(items[i + 1]):
                    raise _err("& must be followed by exactly one rest parameter", p)
                rest = True
                names.append(items[i + 1].value)
                inner.add(items[i + 1].value)
                break
            if p.value in names:
                raise _err(f"duplicate parameter {p.value.name}", p)
            names.append(p.value)
            inner.add(p.value)
            i += 1
        nreq = len(names) - (1 if rest else 0)
        body_node = self.body(body, inner, form)
        return self.make(N.Clause, params, tuple(names), nreq, rest, inner.nslots, body_node)

    def fresh(self) -> Symbol:
        """A name no program writes, for bindings the analyzer introduces."""
        self.fresh_count += 1
        return Symbol(f"%p{self.fresh_count}")

    def bindings(self, form: Syntax, patterns: bool = False) -> list[tuple[Syntax, Syntax]]:
        if len(form.value) < 2 or form.value[1].kind != "vector":
            raise _err(f"{form.value[0].value.name} needs a binding vector", form)
        vec = form.value[1].value
        if len(vec) % 2:
            raise _err("binding vector needs an even number of forms", form.value[1])
        pairs: list[tuple[Syntax, Syntax]] = []
        for i in range(0, len(vec), 2):
            if patterns:
                pairs.extend(destructure(vec[i], vec[i + 1], self.fresh))
            elif not _is_sym(vec[i]):
                raise _err("binding name must be a symbol", vec[i])
            else:
                pairs.append((vec[i], vec[i + 1]))
        return pairs

    def sf_let(self, form: Syntax, scope: Scope | None) -> N.Node:
        pairs = self.bindings(form, patterns=True)
        groups: list[tuple[Scope, list]] = []
        current: Scope | None = None
        for name_form, init_form in pairs:
            where = current if current is not None else scope
            init = self.named_value(init_form, where, name_form.value)
            if current is None or init.ev is None:
                current = Scope(where)
                groups.append((current, []))
            groups[-1][1].append((current.add(name_form.value), init))
        if current is None:
            current = Scope(scope)
            groups.append((current, []))
        body = self.body(form.value[2:], current, form)
        names = tuple(n.value for n, _ in pairs)
        frames = tuple((s.nslots, tuple(inits)) for s, inits in groups)
        return self.make(N.Let, form, names, frames, body)

    def sf_letrec(self, form: Syntax, scope: Scope | None) -> N.Node:
        pairs = self.bindings(form)
        inner = Scope(scope)
        slots = [inner.add(n.value, checked=True) for n, _ in pairs]
        inits = tuple((slot, self.named_value(init, inner, n.value))
                      for slot, (n, init) in zip(slots, pairs))
        body = self.body(form.value[2:], inner, form)
        names = tuple(n.value for n, _ in pairs)
        return self.make(N.Letrec, form, names, inits, inner.nslots, body)

    def sf_try(self, form: Syntax, scope: Scope | None) -> N.Node:
        body_forms, catches, finally_forms = [], [], None
        for item in form.value[1:]:
            head = _head(item)
            if head is CATCH:
                if finally_forms is not None:
                    raise _err("catch must come before finally", item)
                catches.append(item)
            elif head is FINALLY:
                if finally_forms is not None:
                    raise _err("try has more than one finally", item)
                finally_forms = item.value[1:]
            elif catches or finally_forms is not None:
                raise _err("try body forms must come before catch and finally", item)
            else:
                body_forms.append(item)
        if finally_forms is not None:
            return self.try_finally(form, scope, body_forms, catches, finally_forms)
        body = self.sequence(body_forms, scope, form)
        if not catches:
            return body
        nodes = tuple(self.catch_clause(c, scope) for c in catches)
        return self.make(N.Try, form, body, nodes)

    def sequence(self, forms: list[Syntax], scope: Scope | None, form: Syntax) -> N.Node:
        if not forms:
            return self.const(form, None)
        nodes = [self.analyze(f, scope) for f in forms]
        return nodes[0] if len(nodes) == 1 else self.make(N.Do, form, tuple(nodes))

    def catch_clause(self, c: Syntax, scope: Scope | None) -> N.Node:
        items = c.value[1:]
        match = None
        if items and items[0].kind == "atom" and type(items[0].value) is Keyword:
            match = items[0].value
            items = items[1:]
        if not items or not _is_sym(items[0]):
            raise _err("catch needs a name for the error: (catch e body...) "
                       "or (catch :type e body...)", c)
        inner = Scope(scope)
        inner.add(items[0].value)
        body = self.body(items[1:], inner, c)
        return self.make(N.Catch, c, match, items[0].value, inner.nslots, body)

    def try_finally(self, form: Syntax, scope: Scope | None, body_forms: list,
                    catches: list, finally_forms: tuple) -> N.Node:
        """``(try b (catch ..) (finally f))`` is
        ``(dynamic-wind (fn []) (fn [] (try b (catch ..))) (fn [] f))``."""
        span = form.span
        inner = Syntax("list", (Syntax("atom", S("try"), span), *body_forms, *catches), span)
        thunk = Syntax("list", (Syntax("atom", FN, span), Syntax("vector", (), span), inner), span)
        after = Syntax("list", (Syntax("atom", FN, span), Syntax("vector", (), span),
                                *finally_forms), span)
        before = Syntax("list", (Syntax("atom", FN, span), Syntax("vector", (), span)), span)
        nodes = [self.sf_fn(f, scope, self.proc) for f in (before, thunk, after)]
        return self.make(N.App, form, self.const(form, PRIMITIVES["dynamic-wind"]), tuple(nodes))

    def sf_quasiquote(self, form: Syntax, scope: Scope | None) -> N.Node:
        if len(form.value) != 2:
            raise _err("quasiquote takes exactly one form", form)
        return self.analyze(quasi(form.value[1], 1), scope)

    def sf_unquote(self, form: Syntax, scope: Scope | None) -> N.Node:
        raise _err(f"{form.value[0].value.name} outside of a quasiquote", form)

    def sf_call_prim(self, form: Syntax, scope: Scope | None) -> N.Node:
        name = form.value[1].value
        args = [self.analyze(a, scope) for a in form.value[2:]]
        return self.prim_call(form, PRIMITIVES[name], args)

    def sf_defmacro(self, form: Syntax, scope: Scope | None) -> N.Node:
        if scope is not None:
            raise _err("defmacro is allowed only at the top level", form)
        return self.define_macro(form)

    def define_macro(self, form: Syntax) -> Syntax:
        """Evaluate ``(defmacro name [params] body...)`` now; later forms may use it."""
        items = form.value
        if len(items) < 3 or not _is_sym(items[1]):
            raise _err("defmacro needs a name and a parameter vector", form)
        name = items[1].value
        rest = items[2:]
        if rest and rest[0].kind == "atom" and type(rest[0].value) is str and len(rest) > 1:
            rest = rest[1:]
        fn_form = Syntax("list", (Syntax("atom", FN, form.span), *rest), form.span)
        self.cenv.macros[name] = Closure(self.sf_fn(fn_form, None, name.name), None)
        return Syntax("list", (Syntax("atom", QUOTE, form.span), items[1]), form.span)


def quasi(form: Syntax, depth: int) -> Syntax:
    """Rewrite a quasiquoted form into list-building calls (nesting counts depth)."""
    span = form.span

    def atom(v: Any) -> Syntax:
        return Syntax("atom", v, span)

    def prim(name: str, *args: Syntax) -> Syntax:
        return Syntax("list", (atom(CALL_PRIM), atom(name), *args), span)

    def quoted(x: Syntax) -> Syntax:
        return Syntax("list", (atom(QUOTE), x), span)

    head = _head(form)
    if form.kind == "list" and head in (UNQUOTE, SPLICE) and len(form.value) == 2:
        if head is SPLICE and depth == 1:
            raise _err("unquote-splicing (~@) must be inside a list", form)
        if depth == 1:
            return form.value[1]
        return prim("list", quoted(form.value[0]), quasi(form.value[1], depth - 1))
    if form.kind == "list" and head is QUASIQUOTE and len(form.value) == 2:
        return prim("list", quoted(form.value[0]), quasi(form.value[1], depth + 1))
    if form.kind in ("list", "vector", "map", "set"):
        parts = []
        for item in form.value:
            if (_head(item) is SPLICE and len(item.value) == 2 and depth == 1):
                parts.append(item.value[1])
            else:
                parts.append(prim("list", quasi(item, depth)))
        seq = prim("concat", *parts)
        builder = {"list": None, "vector": "vec", "map": "%map-from-seq", "set": "set"}[form.kind]
        return seq if builder is None else prim(builder, seq)
    if form.kind == "atom" and type(form.value) is Symbol:
        return quoted(form)
    return form


SPECIAL_FORMS: dict[Symbol, Callable] = {
    QUOTE: Analyzer.sf_quote,
    S("if"): Analyzer.sf_if,
    DO: Analyzer.sf_do,
    DEF: Analyzer.sf_def,
    FN: Analyzer.sf_fn,
    S("let"): Analyzer.sf_let,
    S("letrec"): Analyzer.sf_letrec,
    S("set!"): Analyzer.sf_set,
    S("try"): Analyzer.sf_try,
    QUASIQUOTE: Analyzer.sf_quasiquote,
    UNQUOTE: Analyzer.sf_unquote,
    SPLICE: Analyzer.sf_unquote,
    S("defmacro"): Analyzer.sf_defmacro,
    CALL_PRIM: Analyzer.sf_call_prim,
}

