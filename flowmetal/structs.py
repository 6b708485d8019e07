"""Data classes for the modules every command imports, without ``dataclasses``.

``dataclasses`` imports ``inspect`` (with ``ast``, ``dis`` and ``tokenize``) and makes each
class with several ``exec`` calls: for the thirty classes a command's start imports, that
was about a fifth of its start-up (compiling is most of it).  ``dataclass`` here makes the
same classes for the part of ``dataclasses`` Flowmetal uses: ``@dataclass``, with
``frozen=True`` and ``slots=True``; fields from annotations, with defaults and
``field(default_factory=...)``; ``fields``, ``replace``.  Only ``__init__`` is compiled
(as ``dataclasses`` writes it: a record is made at every step), when the class is first
instantiated; ``__repr__``, ``__eq__``, ``__hash__`` (as ``dataclasses`` decides it) and
a frozen class's ``__setattr__`` and ``__delattr__`` are closures doing what its do.  A
method the class defines itself is kept.  ``tests/test_structs.py`` checks the classes
against those of ``dataclasses``.  Other modules (the UI, the REPL, the sequences) use
``dataclasses`` itself.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Field:
    """A field: its name, and its default or its default's factory."""

    __slots__ = ("name", "default", "default_factory")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING):
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory

    def __repr__(self) -> str:
        return (f"Field(name={self.name!r}, default={self.default!r}, "
                f"default_factory={self.default_factory!r})")


def field(*, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    """A field's default given by ``default`` or made by ``default_factory()``."""
    return Field(default, default_factory)


class FrozenInstanceError(AttributeError):
    """An assignment to a field of a frozen instance."""


FIELDS = "__dataclass_fields__"


def fields(class_or_instance: Any) -> tuple[Field, ...]:
    """The fields of a data class (or of an instance of one), in order."""
    try:
        found = getattr(class_or_instance, FIELDS)
    except AttributeError:
        raise TypeError("must be called with a dataclass type or instance") from None
    return tuple(found.values())


def replace(obj: Any, /, **changes: Any) -> Any:
    """A copy of ``obj`` with ``changes`` to its fields."""
    for f in getattr(obj, FIELDS).values():
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)


def dataclass(cls: type | None = None, /, *, frozen: bool = False,
              slots: bool = False) -> Any:
    """``dataclasses.dataclass`` for what Flowmetal uses of it (see the module
    docstring)."""
    def wrap(c: type) -> type:
        return _process(c, frozen, slots)

    return wrap if cls is None else wrap(cls)


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _process(cls: type, frozen: bool, slots: bool) -> type:
    all_fields: dict[str, Field] = {}
    for b in cls.__mro__[-1:0:-1]:
        inherited = getattr(b, FIELDS, None)
        if inherited is not None:
            all_fields.update(inherited)
    own = cls.__dict__.get("__annotations__", {})
    for name, annotation in own.items():
        if _is_classvar(annotation):
            continue
        default = cls.__dict__.get(name, MISSING)
        f = default if isinstance(default, Field) else Field(default)
        f.name = name
        all_fields[name] = f
        if isinstance(default, Field):
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
    setattr(cls, FIELDS, all_fields)
    names = list(all_fields)

    owner = [cls]  # (the class made again with slots, if it is)
    space: dict[str, Any] = {"MISSING": MISSING, "setter": object.__setattr__}
    params, body = ["self"], []
    for name, f in all_fields.items():
        if f.default_factory is not MISSING:
            space[f"f_{name}"] = f.default_factory
            params.append(f"{name}=MISSING")
            value = f"f_{name}() if {name} is MISSING else {name}"
        elif f.default is not MISSING:
            space[f"d_{name}"] = f.default
            params.append(f"{name}=d_{name}")
            value = name
        else:
            params.append(name)
            value = name
        body.append(f" setter(self, {name!r}, {value})" if frozen else f" self.{name} = {value}")
    source = "\n".join([f"def __init__({', '.join(params)}):", *(body or [" pass"])])

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # Compiled when the class is first instantiated (most classes a command imports
        # it never makes), then the class's own.
        exec(source, space)  # noqa: S102 (made here of the field names)
        made = space["__init__"]
        made.__qualname__ = f"{owner[0].__qualname__}.__init__"
        owner[0].__init__ = made
        made(self, *args, **kwargs)

    methods: dict[str, Any] = {"__init__": __init__}
    get = _getter(names)

    def __repr__(self: Any) -> str:
        shown = ", ".join([f"{n}={v!r}" for n, v in zip(names, get(self))])
        return f"{self.__class__.__qualname__}({shown})"

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return get(self) == get(other)
        return NotImplemented

    methods.update(__repr__=__repr__, __eq__=__eq__)
    class_hash = cls.__dict__.get("__hash__", MISSING)  # (None: Python's, for an __eq__)
    explicit_hash = not (class_hash is MISSING or
                         (class_hash is None and "__eq__" in cls.__dict__))
    if frozen:
        frozen_names = frozenset(names)

        def __setattr__(self: Any, name: str, value: Any) -> None:
            if type(self) is owner[0] or name in frozen_names:
                raise FrozenInstanceError(f"cannot assign to field {name!r}")
            super(owner[0], self).__setattr__(name, value)

        def __delattr__(self: Any, name: str) -> None:
            if type(self) is owner[0] or name in frozen_names:
                raise FrozenInstanceError(f"cannot delete field {name!r}")
            super(owner[0], self).__delattr__(name)

        methods.update(__setattr__=__setattr__, __delattr__=__delattr__)
        if not explicit_hash:
            def __hash__(self: Any) -> int:
                return hash(get(self))

            methods["__hash__"] = __hash__
    for name, fn in methods.items():
        if name in ("__setattr__", "__delattr__") and name in cls.__dict__:
            raise TypeError(f"cannot overwrite attribute {name} in class {cls.__name__}")
        if name not in cls.__dict__ or name == "__hash__":
            fn.__qualname__ = f"{cls.__qualname__}.{name}"
            setattr(cls, name, fn)
    if not frozen and not explicit_hash:
        cls.__hash__ = None  # type: ignore[assignment]  (eq without frozen: unhashable)
    if "__match_args__" not in cls.__dict__:
        cls.__match_args__ = tuple(names)  # type: ignore[attr-defined]
    if slots:
        cls = owner[0] = _with_slots(cls, names, frozen)
    return cls


def _getter(names: list[str]) -> Any:
    """A function giving the tuple of an object's values of ``names``."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()


def _with_slots(cls: type, names: list[str], frozen: bool) -> type:
    """The class again, with a slot for each field (as ``dataclasses`` makes it)."""
    if "__slots__" in cls.__dict__:
        raise TypeError(f"{cls.__name__} already specifies __slots__")
    inherited = set()
    for b in cls.__mro__[1:-1]:
        found = b.__dict__.get("__slots__", ())
        inherited.update((found,) if isinstance(found, str) else found)
    body = dict(cls.__dict__)
    body["__slots__"] = tuple(n for n in names if n not in inherited)
    for name in names:
        body.pop(name, None)
    body.pop("__dict__", None)
    body.pop("__weakref__", None)
    qualname = getattr(cls, "__qualname__", None)
    cls = type(cls)(cls.__name__, cls.__bases__, body)
    if qualname is not None:
        cls.__qualname__ = qualname
    if frozen:
        def __getstate__(self: Any) -> list:
            return [getattr(self, n) for n in names]

        def __setstate__(self: Any, state: list) -> None:
            for n, value in zip(names, state):
                object.__setattr__(self, n, value)

        cls.__getstate__ = __getstate__  # type: ignore[attr-defined]
        cls.__setstate__ = __setstate__  # type: ignore[attr-defined]
    return cls
