"""Builtin procedures, registered by name in ``procedures.PRIMITIVES``.

Importing this package registers every primitive; ``install(globals)`` binds each one to
the global symbol of its name.
"""

from ..procedures import PRIMITIVES
from ..values import Symbol
from . import (  # noqa: F401  (they register)
    collections,
    control,
    effects,
    evaluation,
    format,
    numbers,
    refs,
    regex,
    sequences,
    strings,
    world,
)


def install(globals_: dict) -> dict:
    """Bind every primitive to the global of its name (names starting with % are the
    standard library's building blocks, not meant for programs)."""
    for name, prim in PRIMITIVES.items():
        globals_[Symbol(name)] = prim
    return globals_
