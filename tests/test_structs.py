"""``flowmetal.structs`` makes the classes ``dataclasses`` makes, for the features it
covers: each shape below is built by both and used the same way."""

from __future__ import annotations

import copy
import dataclasses
from typing import ClassVar

import pytest

from flowmetal import structs


def shapes(dc):
    """Classes of every shape Flowmetal uses, made by ``dc`` (a ``dataclasses``-like
    module)."""

    class Plain:
        """A doc."""

        a: int
        b: str = "x"
        c: list = dc.field(default_factory=list)
        k: ClassVar[int] = 3

        def method(self) -> int:
            return self.a + 1

    class Frozen:
        a: int
        b: tuple = ()

    class Slotted:
        a: int
        b: dict = dc.field(default_factory=dict)
        c: float | None = None

        @classmethod
        def of(cls, a: int) -> Slotted:
            return cls(a)

    class FrozenSlotted:
        a: int
        b: str = "y"

    class Own:
        a: int

        def __repr__(self) -> str:
            return "own"

        def __eq__(self, other: object) -> bool:
            return True

    class OwnHash:
        a: int

        def __hash__(self) -> int:
            return 7

    class FrozenOwnEq:
        a: int

        def __eq__(self, other: object) -> bool:
            return isinstance(other, type(self))

    class Empty:
        pass

    made = {
        "Plain": dc.dataclass(Plain), "Frozen": dc.dataclass(frozen=True)(Frozen),
        "Slotted": dc.dataclass(slots=True)(Slotted),
        "FrozenSlotted": dc.dataclass(frozen=True, slots=True)(FrozenSlotted),
        "Own": dc.dataclass(Own), "OwnHash": dc.dataclass(OwnHash),
        "FrozenOwnEq": dc.dataclass(frozen=True)(FrozenOwnEq), "Empty": dc.dataclass(Empty),
    }

    class Child(made["Plain"]):
        d: int = 0

    class SlottedChild(made["Slotted"]):
        d: int = 0

    made["Child"] = dc.dataclass(Child)
    made["SlottedChild"] = dc.dataclass(slots=True)(SlottedChild)
    return made


OURS, THEIRS = shapes(structs), shapes(dataclasses)
ARGS = {"Plain": (1,), "Frozen": (1,), "Slotted": (1,), "FrozenSlotted": (1,), "Own": (1,),
        "OwnHash": (1,), "FrozenOwnEq": (1,), "Empty": (), "Child": (1, "z", [2], 4),
        "SlottedChild": (1,)}


def behaviour(name: str, classes: dict, dc) -> list:
    cls = classes[name]
    args = ARGS[name]
    x, y = cls(*args), cls(*args)
    out: list = [repr(x).replace(cls.__qualname__, name), x == y, x != y, x == object(),
                 cls.__match_args__, [f.name for f in dc.fields(cls)],
                 [f.name for f in dc.fields(x)], "__slots__" in cls.__dict__,
                 getattr(cls, "__slots__", None) if "__slots__" in cls.__dict__ else None,
                 hasattr(x, "__dict__"), cls.__doc__ == "A doc."]
    out.append(cls.__hash__ is None or hash(x) == hash(y))
    for attr in ("b", "c", "k"):
        out.append(repr(cls.__dict__.get(attr, "absent")))
    try:
        x.a = 5
        out.append(("set", x.a))
    except AttributeError as exc:
        out.append(("refused", type(exc).__name__, str(exc)))
    try:
        del y.a
        out.append("deleted")
    except AttributeError as exc:
        out.append(("refused", type(exc).__name__))
    z = cls(*args)
    out.append(copy.deepcopy(z) == z and copy.copy(z) == z)  # (pickle's protocol)
    if args:
        changed = dc.replace(z, a=9)
        out += [changed.a, changed == z]
    return out


@pytest.mark.parametrize("name", list(ARGS))
def test_a_class_behaves_as_the_one_dataclasses_makes(name):
    assert behaviour(name, OURS, structs) == behaviour(name, THEIRS, dataclasses)


def test_keywords_defaults_and_factories():
    for classes in (OURS, THEIRS):
        plain = classes["Plain"]
        p, q = plain(a=1), plain(2, c=[1])
        assert (p.a, p.b, p.c, q.c) == (1, "x", [], [1])
        assert plain(1).c is not plain(1).c
        assert plain(1).method() == 2 and plain.k == 3
        assert classes["Slotted"].of(4).b == {}
        with pytest.raises(TypeError):
            plain()
        with pytest.raises(TypeError):
            plain(1, d=2)
        assert classes["Child"](1).d == 0 and classes["SlottedChild"](1, d=2).d == 2


def test_frozen_instances_refuse_assignment_as_an_attribute_error():
    x = OURS["Frozen"](1)
    with pytest.raises(structs.FrozenInstanceError, match="cannot assign to field 'a'"):
        x.a = 2
    assert isinstance(structs.FrozenInstanceError(), AttributeError)
    assert {OURS["Frozen"](1), OURS["Frozen"](1)} == {x}
