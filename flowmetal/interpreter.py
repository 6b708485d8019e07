"""Loading the standard library and running Flowmetal source.

The *base* is the global environment and macro table after the standard library has
loaded; it is built once per process and shared.  A ``Session`` copies the base globals
(so ``def`` in one session never touches another) and analyzes and runs programs in them.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import nodes as N
from .analyzer import Analyzer, CompileEnv
from .machine import Machine
from .primitives import install
from .program import Program, register
from .reader import read_syntax_all
from .values import FlowmetalError, Keyword, Map


def stdlib_dir() -> Path:
    """Where the standard library's .fm files are: inside the installed package, or
    beside the package in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "stdlib", here.parent / "stdlib"):
        if (candidate / "ORDER").is_file():
            return candidate
    raise RuntimeError(f"the Flowmetal standard library is missing (looked in {here})")


def stdlib_files() -> list[tuple[str, str]]:
    """The standard library as (name, source) pairs, in the order stdlib/ORDER gives."""
    root = stdlib_dir()
    names = (root / "ORDER").read_text(encoding="utf-8").split()
    return [(name, (root / name).read_text(encoding="utf-8")) for name in names]


_NONE = object()


class Base:
    """The globals, macros and programs of the loaded standard library."""

    def __init__(self) -> None:
        self.globals: dict = install({})
        self.cenv = CompileEnv(self.globals)
        self.programs: list[Program] = []
        digest = hashlib.sha256()
        for name, source in stdlib_files():
            program = register(Program(f"stdlib/{name}", source))
            analyzer = Analyzer(self.cenv, program)
            for form in read_syntax_all(source, program.file):
                for node in analyzer.analyze_toplevel([form]):
                    m = Machine(self.globals, node)
                    if m.run_to_end() == "error":
                        raise RuntimeError(f"standard library failed to load: {m.error!r}")
            self.programs.append(program)
            digest.update(program.hash.encode())
        self.hash = digest.hexdigest()
        self.macros = dict(self.cenv.macros)


@lru_cache(maxsize=1)
def base() -> Base:
    """The process-wide standard library (loaded on first use)."""
    return Base()


class Session:
    """A global environment of one's own: analyze and run programs in it."""

    def __init__(self) -> None:
        b = base()
        self.base = b
        self.globals: dict = dict(b.globals)
        self.cenv = CompileEnv(self.globals, b.macros)

    def load(self, source: str, file: str = "<string>") -> Program:
        """Read and analyze a whole program (macros it defines apply to its later forms)."""
        program = Program(file, source, self.base.hash)
        analyzer = Analyzer(self.cenv, program)
        nodes = analyzer.analyze_toplevel(read_syntax_all(source, file))
        program.entry = (nodes[0] if len(nodes) == 1 else
                         program.add(_toplevel_do(nodes)) if nodes else
                         analyzer.const(None, None))
        register(program)
        return program

    def machine(self, program: Program) -> Machine:
        """A machine ready to run ``program`` in this session's globals."""
        base_globals = self.base.globals
        own = {k: v for k, v in self.globals.items() if base_globals.get(k, _NONE) is not v}
        m = Machine(self.globals, program.entry, own=own)
        m.session = self
        return m

    def eval_string(self, source: str, file: str = "<string>") -> Any:
        """Run source to completion and return its value; a Flowmetal error raises."""
        m = self.machine(self.load(source, file))
        if m.run_to_end() == "error":
            raise EvalError(m.error, "".join(m.output))
        return m.val


def _toplevel_do(nodes: list[N.Node]) -> N.Node:
    # No span: the program itself is not a frame worth showing in backtraces.
    return N.Do(tuple(nodes))


class EvalError(Exception):
    """A program ended with an uncaught Flowmetal error (``error`` is its value)."""

    def __init__(self, error: Any, output: str = ""):
        message = error.get(Keyword("message")) if type(error) is Map else None
        super().__init__(message or repr(error))
        self.error = error
        self.output = output


__all__ = ["Session", "base", "EvalError", "FlowmetalError"]
