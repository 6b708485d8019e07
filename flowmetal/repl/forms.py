"""Code for people to read: macro expansion of a form, and laying out code over lines."""

from __future__ import annotations

from typing import Any

from ..analyzer import Analyzer
from ..interpreter import Session
from ..printer import to_string
from ..program import Program
from ..reader import Syntax, read_syntax_all, strip
from ..values import EMPTY, Map, Pair, Set, Symbol, Vector

# Forms whose first N arguments stay on the head's line; the body goes below, indented 2.
HEADER_ARGS = {
    "def": 1, "defn": 2, "defmacro": 2, "fn": 1, "let": 1, "letrec": 1, "loop": 1,
    "if": 1, "when": 1, "when-not": 1, "unless": 1, "if-let": 1, "when-let": 1,
    "doseq": 1, "dotimes": 1, "catch": 2, "try": 0, "do": 0, "cond": 0, "case": 1,
    "dynamic-wind": 0, "letfn": 1, "with-finally": 0, "finally": 0,
}
MAX_LAYOUT_DEPTH = 200


def _unexpanded(form: Syntax) -> bool:
    """Forms left as they are: quoted data, and quasiquote templates."""
    if form.kind != "list" or not form.value:
        return form.kind == "atom"
    head = form.value[0]
    return head.kind == "atom" and head.value in (Symbol("quote"), Symbol("quasiquote"))


def expand_form(analyzer: Analyzer, form: Syntax) -> Syntax:
    """``form`` with every macro call in it expanded (outside quoted data), as far as
    the macros of the analyzer's environment go.  A local that shadows a macro's name
    is not noticed."""
    form = form if _unexpanded(form) else analyzer.expand_head(form, None)
    if _unexpanded(form):
        return form
    stack: list[tuple[Syntax, Any, list[Syntax]]] = [(form, iter(form.value), [])]
    while True:
        node, children, done = stack[-1]
        for child in children:
            if not _unexpanded(child):
                child = analyzer.expand_head(child, None)
            if _unexpanded(child):
                done.append(child)
            else:
                stack.append((child, iter(child.value), []))
                break
        else:
            stack.pop()
            built = Syntax(node.kind, tuple(done), node.span)
            if not stack:
                return built
            stack[-1][2].append(built)


def expand(session: Session, text: str) -> list[Any]:
    """The forms of ``text`` with their macros expanded, as values (the session's macro
    table is not changed)."""
    analyzer = Analyzer(session.cenv.fork(), Program("<expand>", text))
    return [strip(expand_form(analyzer, form)) for form in read_syntax_all(text, "<expand>")]


def layout(value: Any, width: int = 80) -> str:
    """The printed form of ``value`` over several lines when it does not fit ``width``
    columns, indented as Lisp code is."""
    return _layout(value, 0, width, 0)


def _items(value: Any) -> list[Any] | None:
    if type(value) is Pair:
        out = []
        node = value
        while type(node) is Pair:
            out.append(node.first)
            node = node.rest
        return out if node is EMPTY else None
    if type(value) in (Vector, Set):
        return list(value)
    if type(value) is Map:
        return [x for pair in value.items() for x in pair]
    return None


def _layout(value: Any, column: int, width: int, depth: int) -> str:
    text = to_string(value)
    items = _items(value)
    if column + len(text) <= width or not items or depth > MAX_LAYOUT_DEPTH:
        return text
    t = type(value)
    if t is Map:
        opener, closer = "{", "}"
        inner = column + 1
        pairs = []
        for i in range(0, len(items), 2):
            key = _layout(items[i], inner, width, depth + 1)
            val = _layout(items[i + 1], inner + len(key) + 1, width, depth + 1)
            pairs.append(f"{key} {val}")
        return opener + ("\n" + " " * inner).join(pairs) + closer
    if t is not Pair:
        opener = "[" if t is Vector else "#{"
        closer = "]" if t is Vector else "}"
        inner = column + len(opener)
        parts = [_layout(x, inner, width, depth + 1) for x in items]
        return opener + ("\n" + " " * inner).join(parts) + closer
    head = items[0]
    if type(head) is not Symbol:
        inner = column + 1
        parts = [_layout(x, inner, width, depth + 1) for x in items]
        return "(" + ("\n" + " " * inner).join(parts) + ")"
    name = head.name
    header = HEADER_ARGS.get(name)
    if header is None:
        # A call: the arguments aligned under the first one.
        inner = column + 2 + len(name)
        if len(items) == 1:
            return text
        parts = [_layout(x, inner, width, depth + 1) for x in items[1:]]
        return f"({name} " + ("\n" + " " * inner).join(parts) + ")"
    line = f"({name}"
    for x in items[1:1 + header]:
        line += " " + _layout(x, column + len(line) + 1, width, depth + 1)
    body = [_layout(x, column + 2, width, depth + 1) for x in items[1 + header:]]
    if not body:
        return line + ")"
    return line + "".join("\n" + " " * (column + 2) + b for b in body) + ")"
