"""Builtin procedures, registered by name in ``procedures.PRIMITIVES``.

Importing this package registers every primitive; ``install(globals)`` binds each one to
the global symbol of its name.
"""

from ..procedures import PRIMITIVES
from ..values import Symbol
from . import collections, control, numbers, strings  # noqa: F401  (they register)


def install(globals_: dict) -> dict:
    """Bind every public primitive (names not starting with %) in ``globals_``."""
    for name, prim in PRIMITIVES.items():
        if not name.startswith("%"):
            globals_[Symbol(name)] = prim
    return globals_
