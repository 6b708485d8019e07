"""Code in the program store: what a task runs, found by hash, and what it may spawn.

A task's continuation names its code by program hash; a worker finds that code in the
store, never on its own disk.  ``start`` stores the program and every program it can
spawn by a literal name (``(spawn "child.fm" ...)``, resolved against the starting
program's file), and the task keeps that table, so a spawn runs exactly the code stored
when its root task started; other names resolve through ``flowmetal deploy``.
"""

from __future__ import annotations

import os
from typing import Any

from .. import nodes as N
from ..interpreter import Session, base
from ..program import PROGRAMS, Program, register
from ..source import read_script
from ..values import Vector, sym
from .records import TaskError

PROGRAM_FORMAT = 1
COMMAND_LINE_ARGS = sym("*command-line-args*")
FILE = sym("*file*")
SPAWN = sym("spawn")


class CodeUnavailable(TaskError):
    """A task's code cannot be loaded by this worker (missing, or made by a newer
    Flowmetal): the task waits for a worker that can."""


def program_record(program: Program) -> dict:
    """What the store keeps of a program: enough to have it again identically."""
    return {"v": PROGRAM_FORMAT, "file": program.file, "source": program.source,
            "base": program.base, "nodes": len(program.nodes)}


def load_program(view: Any, digest: str) -> Program:
    """The program with this hash: already here, or made from its stored record.

    CodeUnavailable when the store does not have it or it cannot be made here (a
    continuation is never resumed against other code).
    """
    base()  # registers the standard library's programs
    program = PROGRAMS.get(digest)
    if program is not None:
        return program
    record = view.program(digest)
    if record is None:
        raise CodeUnavailable(f"program {digest[:12]} is not in the store")
    if record.get("base") and record["base"] != base().hash:
        raise CodeUnavailable(f"program {record.get('file')} was analyzed against "
                              "another standard library")
    session = Session()
    program = session.load(record["source"], record["file"])
    if program.hash != digest or len(program.nodes) != record["nodes"]:
        raise CodeUnavailable(f"program {record['file']} does not analyze to the stored "
                              "program")
    return register(program)


def spawn_literals(program: Program) -> list[str]:
    """The program names ``program`` spawns literally: ``(spawn "name" ...)``."""
    out = []
    for node in program.nodes:
        if type(node) is N.App and type(node.fn) is N.GlobalRef and node.fn.name == SPAWN \
                and node.args and type(node.args[0]) is N.Const \
                and type(node.args[0].value) is str:
            out.append(node.args[0].value)
    return out


def spawnable(program: Program) -> tuple[dict[str, str], dict[str, dict]]:
    """The programs ``program`` can spawn by a literal name, transitively: (name ->
    hash, hash -> record).  A name is a path relative to the spawning program's file;
    one that cannot be read is left out (its spawn fails when it runs)."""
    names: dict[str, str] = {}
    records: dict[str, dict] = {}
    pending = [program]
    seen = {program.hash}
    while pending:
        parent = pending.pop()
        for name in spawn_literals(parent):
            path = resolve_path(name, parent.file)
            try:
                child = Session().load(read_script(path), path)
            except Exception:  # not there, or not a program: the spawn will say so
                continue
            names.setdefault(name, child.hash)
            if child.hash not in seen:
                seen.add(child.hash)
                records[child.hash] = program_record(child)
                pending.append(child)
    return names, records


def resolve_path(name: str, parent_file: str) -> str:
    """A spawned program's path: ``name`` relative to the spawning program's file."""
    if os.path.isabs(name):
        return name
    return os.path.join(os.path.dirname(os.path.abspath(parent_file)), name)


def program_machine(program: Program, args: tuple, file: Any) -> Any:
    """A machine ready to run ``program`` with ``args`` as ``*command-line-args*`` and
    ``file`` as ``*file*``."""
    from ..printer import display_string

    session = Session()
    session.globals[COMMAND_LINE_ARGS] = Vector(a if type(a) is str else display_string(a)
                                                for a in args)
    session.globals[FILE] = file
    return session.machine(program)
