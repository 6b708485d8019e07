"""Destructuring: binding patterns in ``let``, ``fn`` parameters (and the macros built on
them, such as ``loop`` and ``doseq``) rewritten into plain bindings.

Patterns, as in Clojure:

- a symbol binds the whole value;
- ``[a b & more :as all]`` binds items by position (``nth`` with a nil default), the rest
  as a list or nil (``more``), and the whole value (``all``);
- ``{a :a, b "b" :keys [c d] :strs [e] :syms [f] :or {c 0} :as m}`` binds values by key,
  with defaults from ``:or`` for missing keys.  ``:keys`` entries may be keywords or
  qualified (``[:c a/d]`` binds ``c`` from ``:c`` and ``d`` from ``:a/d``), and
  ``:ns/keys [d]`` / ``:ns/syms [d]`` look up ``:ns/d`` / ``'ns/d``.  Applied to a list
  it reads the list as Clojure 1.11 does (``%keyword-args``): alternating keys and values
  with an optional trailing map, one item as that item, ``()`` as ``{}``; so ``(fn [&
  {:keys [a]}] ..)`` takes keyword arguments.

Patterns nest.  The generated code calls the primitives directly (``%call-prim``), so
local names such as ``nth`` or ``get`` cannot change its meaning.
"""

from __future__ import annotations

from collections.abc import Callable

from .reader import Syntax
from .values import Keyword, Symbol, SyntaxError_, sym

AMP, AS, OR = sym("&"), Keyword("as"), Keyword("or")
KEY_KINDS = {Keyword("keys"): "keyword", Keyword("strs"): "string", Keyword("syms"): "symbol"}
CALL_PRIM = sym("%call-prim")


def is_symbol(form: Syntax) -> bool:
    """True for a symbol form."""
    return form.kind == "atom" and type(form.value) is Symbol


def destructure(pattern: Syntax, value: Syntax, fresh: Callable[[], Symbol]
                ) -> list[tuple[Syntax, Syntax]]:
    """The (symbol, init) bindings, in order, that bind ``pattern`` to ``value``."""
    out: list[tuple[Syntax, Syntax]] = []
    pending = [(pattern, value)]
    while pending:
        pat, val = pending.pop(0)
        if is_symbol(pat):
            if pat.value is AMP:
                raise SyntaxError_("& must be followed by a pattern", pat.span)
            out.append((pat, val))
        elif pat.kind == "vector":
            whole = Syntax("atom", fresh(), pat.span)
            out.append((whole, val))
            pending[0:0] = _vector_bindings(pat, whole)
        elif pat.kind == "map":
            whole = Syntax("atom", fresh(), pat.span)
            out.append((whole, _call("%keyword-args", pat.span, val)))
            pending[0:0] = _map_bindings(pat, whole)
        else:
            raise SyntaxError_("a binding must be a symbol, a [vector] or a {map} pattern",
                               pat.span)
    return out


def _call(name: str, span, *args: Syntax) -> Syntax:
    return Syntax("list", (Syntax("atom", CALL_PRIM, span), Syntax("atom", name, span), *args),
                  span)


def _atom(value, span) -> Syntax:
    return Syntax("atom", value, span)


def _vector_bindings(pat: Syntax, whole: Syntax) -> list[tuple[Syntax, Syntax]]:
    items, span = pat.value, pat.span
    out, i, index = [], 0, 0
    while i < len(items):
        p = items[i]
        if is_symbol(p) and p.value is AMP:
            if i + 1 >= len(items):
                raise SyntaxError_("& must be followed by a pattern", p.span)
            rest = _call("seq", span, _call("drop", span, _atom(index, span), whole))
            out.append((items[i + 1], rest))
            i += 2
        elif p.kind == "atom" and p.value is AS:
            if i + 1 >= len(items) or not is_symbol(items[i + 1]):
                raise SyntaxError_(":as must be followed by a symbol", p.span)
            out.append((items[i + 1], whole))
            i += 2
        else:
            out.append((p, _call("nth", span, whole, _atom(index, span), _atom(None, span))))
            index += 1
            i += 1
    return out


def _split(text: str) -> tuple[str | None, str]:
    """``ns/name`` → (ns, name); a name without a namespace → (None, name)."""
    ns, slash, name = text.partition("/")
    return (ns, name) if slash and ns and name else (None, text)


def _key_kind(key: Syntax) -> tuple[str, str | None] | None:
    """For ``:keys``, ``:strs``, ``:syms`` and ``:ns/keys``, ``:ns/syms``: (kind, ns)."""
    if key.kind != "atom" or type(key.value) is not Keyword:
        return None
    ns, name = _split(key.value.name)
    kind = KEY_KINDS.get(Keyword(name))
    return None if kind is None else (kind, ns)


def _key_entry(kind: str, ns: str | None, entry: Syntax) -> tuple[Syntax, Syntax]:
    """The local a ``:keys``-style entry binds and the key form it looks up, as Clojure:
    ``a/b`` and ``:a/b`` bind ``b``; the pattern's namespace wins over the entry's."""
    text = entry.value.name
    own_ns, name = _split(text)
    local = Syntax("atom", sym(name), entry.span)
    if kind == "string":  # Clojure's (str entry)
        return local, _atom(text if type(entry.value) is Symbol else f":{text}", entry.span)
    full = f"{ns or own_ns}/{name}" if (ns or own_ns) else name
    if kind == "keyword":
        return local, _atom(Keyword(full), entry.span)
    return local, Syntax("list", (_atom(sym("quote"), entry.span), _atom(sym(full), entry.span)),
                         entry.span)


def _map_bindings(pat: Syntax, whole: Syntax) -> list[tuple[Syntax, Syntax]]:
    items = pat.value
    defaults: dict[Symbol, Syntax] = {}
    for key, val in zip(items[::2], items[1::2]):
        if key.kind == "atom" and key.value is OR:
            if val.kind != "map":
                raise SyntaxError_(":or must be followed by a map of defaults", val.span)
            for name, default in zip(val.value[::2], val.value[1::2]):
                if not is_symbol(name):
                    raise SyntaxError_(":or keys must be symbols", name.span)
                defaults[name.value] = default

    def lookup(name: Syntax, key: Syntax) -> Syntax:
        default = defaults.get(name.value) if is_symbol(name) else None
        return _call("get", key.span, whole, key, default or _atom(None, key.span))

    out = []
    for key, val in zip(items[::2], items[1::2]):
        kind = _key_kind(key)
        if key.kind == "atom" and key.value is OR:
            continue
        if key.kind == "atom" and key.value is AS:
            if not is_symbol(val):
                raise SyntaxError_(":as must be followed by a symbol", val.span)
            out.append((val, whole))
        elif kind is not None:
            if val.kind != "vector" or not all(
                    n.kind == "atom" and type(n.value) in (Symbol, Keyword) for n in val.value):
                raise SyntaxError_(f"{key.value!r} must be followed by a vector of symbols",
                                   val.span)
            for entry in val.value:
                local, key_form = _key_entry(*kind, entry)
                out.append((local, lookup(local, key_form)))
        else:
            out.append((key, lookup(key, val)))
    return out
