"""What a name is, for ``,doc``, ``,apropos`` and the REPL's bottom line: a special
form, a macro or procedure (its argument lists and docstring, read from the source of the
form that defined it), a primitive (its arity and doc) or another value."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from ..printer import to_string
from ..procedures import Closure, Continuation, Primitive
from ..reader import read_syntax_all, strip
from ..values import FlowmetalError, Symbol, Vector
from .spans import span_text

if TYPE_CHECKING:
    from .repl import Repl

SPECIAL_DOCS = {
    "quote": "(quote form) or 'form: the form itself, unevaluated.",
    "if": "(if test then else?): then when test is neither false nor nil, else else.",
    "do": "(do form...): evaluate the forms in order; the value of the last.",
    "def": "(def name value) or (def name \"doc\" value): define a global (a local "
           "directly in a body).",
    "fn": "(fn name? [params] body...) or (fn name? ([params] body...)...): a procedure.",
    "let": "(let [name value ...] body...): sequential local bindings (destructuring too).",
    "letrec": "(letrec [name value ...] body...): bindings that may refer to each other.",
    "set!": "(set! name value): change a variable.",
    "quasiquote": "`form: a template; ~x puts in a value, ~@xs splices a sequence.",
    "unquote": "~x inside a quasiquote template: the value of x.",
    "unquote-splicing": "~@xs inside a quasiquote template: the items of xs.",
    "defmacro": "(defmacro name [params] body...): a macro, run when code is analyzed.",
    "try": "(try body... (catch :type? e handler...)... (finally cleanup...)?): handle errors.",
    "catch": "(catch e body...) or (catch :type e body...): a clause of try.",
    "finally": "(finally body...): a clause of try, run however the try is left.",
}


def describe(repl: Repl, name: str) -> list[tuple[str, str]]:
    """What ``,doc`` says about ``name``, as (line, style) pairs: a first line saying
    what it is, its argument lists (style "signature"), its documentation lines (style
    ""), then where it is defined."""
    session = repl.evaluator.session
    sym = Symbol(name)
    if name in SPECIAL_DOCS:
        return [(f"{name}: special form", "heading"), ("  " + SPECIAL_DOCS[name], "")]
    if sym in session.cenv.macros:
        return _describe_closure(name, "macro", session.cenv.macros[sym])
    if sym not in session.globals:
        close = difflib.get_close_matches(name, list(repl.evaluator.names()), 4)
        hint = f"; perhaps {', '.join(close)}" if close else ""
        return [(f"nothing is named {name}{hint}", "error")]
    value = session.globals[sym]
    t = type(value)
    if t is Primitive:
        arity = _arity(value.min_args, value.max_args)
        lines = [(f"{name}: primitive, {arity}", "heading")]
        return lines + [("  " + line.strip(), "") for line in (value.doc or "").splitlines()
                        if line.strip()]
    if t is Closure:
        return _describe_closure(name, "procedure", value)
    if t is Continuation:
        return [(f"{name}: a continuation", "heading")]
    return [(f"{name}: a value of type :{_type_name(value)}", "heading"),
            ("  " + _short(to_string(value)), "")]


def _type_name(value: Any) -> str:
    from ..procedures import PRIMITIVES

    return PRIMITIVES["type"].fn(value).name


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _arity(lo: int, hi: int | None) -> str:
    if hi is None:
        return f"{lo} or more arguments"
    if lo == hi:
        return f"{lo} argument{'' if lo == 1 else 's'}"
    return f"{lo} to {hi} arguments"


def _describe_closure(name: str, what: str, closure: Closure) -> list[tuple[str, str]]:
    """A procedure's or macro's argument lists, docstring and definition, read from the
    source of the form that made it."""
    code = closure.code
    span = code.span
    program = getattr(code, "program", None)
    arglists, doc = [], None
    if span is not None and program is not None and span[0] == program.file:
        arglists, doc = _from_source(span_text(program.source, span))
    if not arglists:
        arglists = [_clause_params(cl) for cl in code.clauses]
    lines = [(f"{name}: {what}", "heading")]
    lines += [(f"  ({name}{' ' if a else ''}{a})", "signature") for a in arglists]
    if doc:
        lines += [("  " + line.strip(), "") for line in doc.splitlines() if line.strip()]
    if span is not None:
        lines.append((f"  defined at {span[0]}:{span[1]}:{span[2]}", "note"))
    return lines


def _from_source(text: str) -> tuple[list[str], str | None]:
    """The argument lists and docstring of a ``defn``/``defmacro``/``fn`` form's text."""
    try:
        forms = read_syntax_all(text)
    except FlowmetalError:
        return [], None
    if not forms or forms[0].kind != "list":
        return [], None
    items = list(forms[0].value)
    head = strip(items[0]) if items else None
    if head in (Symbol("defn"), Symbol("defmacro")):
        items = items[2:]
    elif head is Symbol("fn"):
        items = items[1:]
        if items and items[0].kind == "atom" and type(items[0].value) is Symbol:
            items = items[1:]
    else:
        return [], None
    doc = None
    if len(items) > 1 and items[0].kind == "atom" and type(items[0].value) is str:
        doc, items = items[0].value, items[1:]
    if items and items[0].kind == "vector":
        return [_params_text(strip(items[0]))], doc
    lists = [strip(x.value[0]) for x in items if x.kind == "list" and x.value
             and x.value[0].kind == "vector"]
    return [_params_text(v) for v in lists], doc


def _params_text(params: Any) -> str:
    text = to_string(params)
    return text[1:-1] if type(params) is Vector else text


def _clause_params(clause: Any) -> str:
    names = [p.name if not p.name.startswith("%") else "_" for p in clause.params]
    if clause.rest:
        names.insert(len(names) - 1, "&")
    return " ".join(names)

