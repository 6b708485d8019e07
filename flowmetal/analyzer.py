"""Forms → code nodes: special forms, macro expansion, lexical addressing.

The analyzer walks the reader's Syntax objects (so every node gets a source span),
expands macros, resolves each variable to a lexical address ``(depth, slot)`` or a
global, and builds the nodes of a Program.

Decisions (see NOTES.md):
- ``def`` at the top level defines a global; ``def`` directly in a body (of ``fn``,
  ``let``, ``letrec``, ``catch``) defines a local of that body, as Scheme's internal
  define (letrec* semantics).
- ``defmacro`` is only allowed at the top level and runs at analysis time; a macro's
  body may use the standard library and earlier macros.  One expansion may make at most
  ``MACRO_FUEL`` reductions, so a runaway macro is a syntax error at its call.
- ``recur`` calls the nearest enclosing ``loop*`` or ``fn`` clause again, and only from a
  tail position (checked here, with the arity).  A fn clause whose body recurs is
  analyzed as a loop over its parameters.  A recur inside a ``try`` (its body, a catch,
  not a finally) leaves the try first: it makes a request value that the try hands to a
  real recur in the try's own position (``Escape``).
- A call to a pure primitive is linked at analysis time when the name is bound to it
  then and the program does not define that name at its top level (direct linking).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import nodes as N
from .destructure import destructure
from .machine import MAX_SIMPLE_DEPTH, Machine, apply_procedure
from .procedures import PRIMITIVES, PURE, Closure, Primitive
from .program import Program
from .reader import Syntax, strip, to_syntax
from .structs import dataclass, replace
from .values import (
    EMPTY,
    FALSE,
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
RECUR, LOOP, RECUR_LOOP = S("recur"), S("loop*"), S("%loop")
ANALYSIS_RECURSION_LIMIT = 20_000
MACRO_FUEL = 1_000_000  # reductions one macro expansion may make
MACRO_SLICE = 100_000


class CompileEnv:
    """What analysis depends on: the macros, and the globals macros run against."""

    def __init__(self, globals_: dict, macros: dict | None = None):
        self.globals = globals_
        self.macros: dict[Symbol, Any] = dict(macros or {})
        self.gensym_counter = 0
        self.fuel = MACRO_FUEL

    def call(self, f: Any, args: tuple, span: Span | None, what: str) -> Any:
        """Run procedure ``f`` to completion at analysis time (macro transformers), within
        ``self.fuel`` reductions."""
        m = Machine(self.globals)
        m.gensym_counter = self.gensym_counter
        try:
            m.node, m.env, m.k, m.val = apply_procedure(f, args, None, m)
            left = self.fuel
            while m.status == "running" and left > 0:
                m.run(min(left, MACRO_SLICE))
                left = self.fuel - m.reductions
        except FlowmetalError as exc:
            raise SyntaxError_(f"{what}: {exc.message}", span) from None
        finally:
            self.gensym_counter = m.gensym_counter
        if m.status == "running":
            raise SyntaxError_(f"{what}: the expansion did not finish within {self.fuel:,} "
                               "reductions", span)
        if m.status == "waiting":
            raise SyntaxError_(f"{what}: a macro cannot wait for the outside world "
                               "(sleep, receive, http ...) while the program is analyzed",
                               span)
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


@dataclass
class RecurTarget:
    """What ``recur`` calls: the local procedure ``name`` (a loop, or a fn clause analyzed
    as one), with ``arity`` arguments; ``name`` is None while the clause is analyzed as a
    plain body, and a recur there asks for it to be analyzed again (``_Unprepared``)."""

    arity: int
    name: Symbol | None


@dataclass
class Escape:
    """A ``try`` between a recur and its target: there recur makes the request value
    ``[mark args..]``, which the try's wrapper turns into the recur itself."""

    mark: Symbol | None  # made when a recur first needs it
    used: bool = False


@dataclass(frozen=True)
class Tail:
    """What ``recur`` may do at the form being analyzed: call ``target`` if ``tail``."""

    target: RecurTarget | None
    tail: bool
    escape: Escape | None = None
    why: str = "recur needs an enclosing loop or fn"


TOP = Tail(None, False)
NO_RECUR_HEADS = frozenset(S(n) for n in (
    "fn", "loop", "loop*", "quote", "doseq", "dotimes", "for", "while"))


class _Unprepared(Exception):
    """A recur reached a fn clause that was analyzed without a recur target."""

    def __init__(self, target: RecurTarget):
        super().__init__("recur target not prepared")
        self.target = target


def _mentions_recur(forms: tuple | list) -> bool:
    """Whether ``recur`` appears in ``forms`` outside nested fns, loops and quotes (a cheap
    guess; a recur a macro makes is found during analysis)."""
    pending = list(forms)
    while pending:
        form = pending.pop()
        if form.kind == "atom":
            if form.value is RECUR:
                return True
        elif form.kind != "list" or _head(form) not in NO_RECUR_HEADS:
            pending.extend(form.value)
    return False


def _atom(value: Any, span: Span | None) -> Syntax:
    return Syntax("atom", value, span)


def _list(span: Span | None, *items: Syntax) -> Syntax:
    return Syntax("list", items, span)


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
        self.here = TOP  # what recur may do at the form being analyzed

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
        """The node for one form in ``scope`` (None: the top level), whose value is not
        the value of the enclosing body (not a tail position)."""
        here = self.here
        if not here.tail:
            return self.analyze_tail(form, scope)
        self.here = replace(here, tail=False)
        try:
            return self.analyze_tail(form, scope)
        finally:
            self.here = here

    def analyze_tail(self, form: Syntax, scope: Scope | None) -> N.Node:
        """The node for a form in the same tail position as the form being analyzed."""
        try:
            return self._analyze(form, scope)
        except RecursionError:
            raise _err("form nested too deeply to analyze", form) from None

    @contextmanager
    def recur_as(self, here: Tail) -> Iterator[None]:
        """Analyze with ``here`` as what recur may do."""
        saved, self.here = self.here, here
        try:
            yield
        finally:
            self.here = saved

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
        return self.sequence(expanded, scope, form)

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
        then = self.analyze_tail(form.value[2], scope)
        else_ = self.analyze_tail(form.value[3], scope) if n == 4 else self.const(form, None)
        return self.make(N.If, form, test, then, else_)

    def sf_do(self, form: Syntax, scope: Scope | None) -> N.Node:
        return self.sequence(form.value[1:], scope, form)

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
            return self.sf_fn(form, scope, name.name)
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

    def sf_fn(self, form: Syntax, scope: Scope | None, default_name: str | None = None,
              here: Tail | None = None) -> N.Node:
        """A procedure; its clauses are recur targets unless ``here`` says what recur in
        them means (the thunks of try/finally, a loop's procedure)."""
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
            clauses = tuple(self.clause(params, body, scope, form, here)
                            for params, body in clause_forms)
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

    def clause(self, params: Syntax, body: tuple, scope: Scope | None, form: Syntax,
               here: Tail | None = None) -> N.Node:
        """One arity of a procedure; ``here`` as in ``sf_fn``."""
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
                break
            if p.value in names:
                raise _err(f"duplicate parameter {p.value.name}", p)
            names.append(p.value)
            i += 1
        nreq = len(names) - (1 if rest else 0)
        prepared = here is None and _mentions_recur(body)
        mark = len(self.program.nodes)
        while True:
            inner = Scope(scope)
            for name in names:
                inner.add(name)
            target = RecurTarget(len(names), None)
            try:
                if prepared:
                    # The body recurs: it is a loop over the parameters.
                    loop = _list(params.span, _atom(RECUR_LOOP, params.span),
                                 _atom(self.proc, params.span),
                                 Syntax("vector", tuple(_atom(n, params.span) for n in names),
                                        params.span), *body)
                    with self.recur_as(Tail(None, True)):
                        body_node = self.analyze_tail(loop, inner)
                else:
                    with self.recur_as(here or Tail(target, True)):
                        body_node = self.body(body, inner, form)
                break
            except _Unprepared as exc:
                if exc.target is not target:
                    raise
                self.rollback(mark)
                prepared = True
        return self.make(N.Clause, params, tuple(names), nreq, rest, inner.nslots, body_node)

    def rollback(self, mark: int) -> None:
        """Forget the nodes made since there were ``mark`` (to analyze their forms again)."""
        for node in self.program.nodes[mark:]:
            self.depths.pop(id(node), None)
        del self.program.nodes[mark:]

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
        if not catches:
            return self.sequence(body_forms, scope, form)
        here = self.here
        escape = self.escape_for(here)
        with self.recur_as(replace(here, escape=escape) if escape else here):
            body = self.sequence(body_forms, scope, form)
        used = escape is not None and escape.used
        # A catch runs after its try frame is gone: it recurs directly unless the body
        # already needs the wrapper.
        with self.recur_as(replace(here, escape=escape) if used else here):
            nodes = tuple(self.catch_clause(c, scope) for c in catches)
        node = self.make(N.Try, form, body, nodes)
        return self.recur_request(node, escape, scope, form) if used else node

    @staticmethod
    def escape_for(here: Tail) -> Escape | None:
        """A new Escape for a try at ``here``, if a recur may cross it and no enclosing
        try's request already carries it out."""
        if here.tail and here.target is not None and here.escape is None:
            return Escape(None)
        return None

    def recur_request(self, node: N.Node, escape: Escape, scope: Scope | None,
                      form: Syntax) -> N.Node:
        """``(let [r node] (if (request? r) (recur (nth r 1) ..) r))``: the recur a try's
        body asked for, made once the try is left."""
        span = form.span
        name = self.fresh()
        inner = Scope(scope)
        slot = inner.add(name)

        def ref() -> N.Node:
            return self.make(N.LocalRef, form, name, 0, slot, False)

        is_vector = self.prim_call(form, PRIMITIVES["vector?"], [ref()])
        head = self.prim_call(form, PRIMITIVES["nth"], [ref(), self.const(form, 0)])
        same = self.prim_call(form, PRIMITIVES["="], [head, self.const(form, escape.mark)])
        test = self.make(N.If, form, is_vector, same, self.const(form, FALSE))
        args = [_list(span, _atom(CALL_PRIM, span), _atom("nth", span), _atom(name, span),
                      _atom(i, span)) for i in range(1, self.here.target.arity + 1)]
        again = self.sf_recur(_list(span, _atom(RECUR, span), *args), inner)
        body = self.make(N.If, form, test, again, ref())
        return self.make(N.Let, form, (name,), ((inner.nslots, ((slot, node),)),), body)

    def sequence(self, forms: list[Syntax] | tuple, scope: Scope | None,
                 form: Syntax) -> N.Node:
        """Forms evaluated in order; the last one is in the tail position of ``form``."""
        if not forms:
            return self.const(form, None)
        nodes = [self.analyze(f, scope) for f in forms[:-1]]
        nodes.append(self.analyze_tail(forms[-1], scope))
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
        here = self.here
        escape = self.escape_for(here)
        # The thunk's body is where the try is, as far as recur goes; finally is not.
        body_here = replace(here, escape=escape) if escape else here
        no_recur = Tail(None, False, why="cannot recur from finally")
        nodes = [self.sf_fn(f, scope, self.proc, h)
                 for f, h in ((before, no_recur), (thunk, body_here), (after, no_recur))]
        node = self.make(N.App, form, self.const(form, PRIMITIVES["dynamic-wind"]),
                         tuple(nodes))
        if escape is not None and escape.used:
            return self.recur_request(node, escape, scope, form)
        return node

    def sf_quasiquote(self, form: Syntax, scope: Scope | None) -> N.Node:
        if len(form.value) != 2:
            raise _err("quasiquote takes exactly one form", form)
        return self.analyze_tail(quasi(form.value[1], 1), scope)

    def sf_unquote(self, form: Syntax, scope: Scope | None) -> N.Node:
        raise _err(f"{form.value[0].value.name} outside of a quasiquote", form)

    def sf_call_prim(self, form: Syntax, scope: Scope | None) -> N.Node:
        items = form.value
        if len(items) < 2 or items[1].kind != "atom" or items[1].value not in PRIMITIVES:
            raise _err("%call-prim needs the name of a primitive", form)
        args = [self.analyze(a, scope) for a in items[2:]]
        return self.prim_call(form, PRIMITIVES[items[1].value], args)

    def sf_defmacro(self, form: Syntax, scope: Scope | None) -> N.Node:
        # A top-level defmacro never gets here (_expand_toplevel takes it).
        raise _err("defmacro is allowed only at the top level", form)

    def sf_recur(self, form: Syntax, scope: Scope | None) -> N.Node:
        """``(recur args..)``: call the nearest loop or fn clause again, from a tail
        position, with as many arguments as it has bindings."""
        here = self.here
        target = here.target
        if target is None:
            raise _err(here.why, form)
        if not here.tail:
            raise _err("recur can only be in tail position (the last thing its loop or fn "
                       "evaluates)", form)
        args = form.value[1:]
        if len(args) != target.arity:
            n = target.arity
            raise _err(f"recur needs {n} argument{'' if n == 1 else 's'} here (its loop or "
                       f"fn binds {n}), got {len(args)}", form)
        if target.name is None:
            raise _Unprepared(target)
        span = form.span
        escape = here.escape
        if escape is not None:
            if escape.mark is None:
                escape.mark = self.fresh()
            escape.used = True
            quoted = _list(span, _atom(QUOTE, span), _atom(escape.mark, span))
            return self.analyze(_list(span, _atom(CALL_PRIM, span), _atom("vector", span),
                                      quoted, *args), scope)
        return self.call(_list(span, _atom(target.name, span), *args), scope)

    def sf_loop(self, form: Syntax, scope: Scope | None) -> N.Node:
        """``(loop* [pattern init ..] body..)``: bind as ``let`` does, then run body, which
        may ``recur`` with a new value for each pattern."""
        if len(form.value) < 2 or form.value[1].kind != "vector":
            raise _err("loop needs a binding vector", form)
        vec = form.value[1].value
        if len(vec) % 2:
            raise _err("binding vector needs an even number of forms", form.value[1])
        span = form.span
        bindings: list[Syntax] = []
        params: list[Syntax] = []
        unpack: list[Syntax] = []
        for pattern, init in zip(vec[::2], vec[1::2]):
            if _is_sym(pattern) and pattern.value is not AMP and not any(
                    p.value is pattern.value for p in params):
                bindings += [pattern, init]
                params.append(pattern)
                continue
            # A pattern (or a name bound twice) loops over the whole value, as Clojure's.
            whole = _atom(self.fresh(), pattern.span)
            bindings += [whole, init, pattern, whole]
            params.append(whole)
            unpack += [pattern, whole]
        body = form.value[2:]
        if unpack:
            body = (_list(span, _atom(S("let"), span), Syntax("vector", tuple(unpack), span),
                          *body),)
        loop = _list(span, _atom(RECUR_LOOP, span), _atom(f"{self.proc} (loop)", span),
                     Syntax("vector", tuple(params), span), *body)
        return self.sf_let(_list(span, _atom(S("let"), span),
                                 Syntax("vector", tuple(bindings), span), loop), scope)

    def sf_recur_loop(self, form: Syntax, scope: Scope | None) -> N.Node:
        """``(%loop "label" [names] body..)``: ``(letrec [L (fn [names] body..)] (L
        names..))``, where recur in body calls L."""
        items = form.value
        if (len(items) < 3 or items[1].kind != "atom" or type(items[1].value) is not str
                or items[2].kind != "vector" or not all(_is_sym(p) for p in items[2].value)):
            raise _err("%loop needs a label and a vector of names", form)
        span = form.span
        name = self.fresh()
        inner = Scope(scope)
        slot = inner.add(name, checked=True)
        target = RecurTarget(len(items[2].value), name)
        fn_form = _list(span, _atom(FN, span), items[2], *items[3:])
        lam = self.sf_fn(fn_form, inner, items[1].value, Tail(target, True))
        call = self.call(_list(span, _atom(name, span), *items[2].value), inner)
        return self.make(N.Letrec, form, (name,), ((slot, lam),), inner.nslots, call)

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
    RECUR: Analyzer.sf_recur,
    LOOP: Analyzer.sf_loop,
    RECUR_LOOP: Analyzer.sf_recur_loop,
}

