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

from .. import analysis, codec
from .. import nodes as N
from ..interpreter import Base, Session, base, base_for
from ..machine import Machine
from ..program import PROGRAMS, Program
from ..source import read_script
from ..values import Vector, sym
from .records import TaskError

COMMAND_LINE_ARGS = sym("*command-line-args*")
FILE = sym("*file*")
SPAWN = sym("spawn")


class CodeUnavailable(TaskError):
    """A task's code cannot be loaded by this worker (missing, or made by a newer
    Flowmetal): the task waits for a worker that can."""


def program_record(program: Program) -> dict:
    """What the store keeps of a program: its analysis (the node tree) and its source."""
    return analysis.program_record(program)


def program_records(*programs: Program) -> dict[str, dict | bytes]:
    """The records to store for ``programs``: theirs and the standard library's they were
    analyzed against (each program and standard library is stored once, by hash).  The
    standard library's are its CBOR bytes (``Base.encoded_records``), as a store keeps
    them: loaded from the analysis cache, they are never decoded to be encoded again."""
    records: dict[str, dict | bytes] = dict(base().encoded_records())
    for program in programs:
        records[program.hash] = program_record(program)
    return records


def load_program(view: Any, digest: str) -> Program:
    """The program with this hash: already here, or made from its stored analysis (never
    analyzed again, so a newer analyzer never changes old code).

    CodeUnavailable when the store does not have it or this Flowmetal cannot run it.
    """
    base()  # registers this Flowmetal's standard library
    if digest in PROGRAMS:
        return PROGRAMS[digest]
    try:
        return analysis.load_program(digest, view.program)
    except analysis.CodeUnavailable as exc:
        raise CodeUnavailable(str(exc)) from None


def state_base(view: Any, state: bytes) -> Base:
    """The standard library an encoded state was made with (rebuilt from the program
    store if it is not this Flowmetal's); CodeUnavailable if it cannot be had."""
    try:
        return base_for(codec.state_base(state), view.program)
    except analysis.CodeUnavailable as exc:
        raise CodeUnavailable(str(exc)) from None
    except codec.CodecError:
        raise
    except Exception as exc:  # a stored standard library that fails to load here
        raise CodeUnavailable(f"the standard library of this task cannot be loaded here: "
                              f"{type(exc).__name__}: {exc}") from None


def task_machine(view: Any, rec: Any, state: bytes) -> Machine:
    """The task's machine decoded from ``state``, over the code it was made with; its
    ``image`` is ready to encode the next step over that same standard library.

    The task record lists the standard library its state is over among its programs,
    so a state naming another one is damaged (CodecError), not code to wait for.
    """
    named = codec.state_base(state)
    if named is not None and named not in rec.programs:
        raise codec.CodecError("the state names a standard library its task never had")
    b = state_base(view, state)
    for digest in rec.programs or [rec.program]:
        if digest != b.hash:
            load_program(view, digest)
    m = codec.decode_machine(state, b.globals)
    m.image = codec.Image(b.globals)
    return m


def code_of(m: Machine, programs: set) -> tuple[str, ...]:
    """What a task record lists as its state's code: the programs its nodes come from
    and the standard library it runs over."""
    named = codec.base_hash_of(base_globals(m))
    return tuple(sorted(programs | ({named} if named else set())))


def base_globals(m: Machine) -> dict:
    """The standard library globals a machine runs over."""
    image = getattr(m, "image", None)
    return image.base_globals if image is not None else base().globals


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
                child = Session().load_program(read_script(path), path)
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


def program_machine(view: Any, program: Program, args: tuple, file: Any) -> Machine:
    """A machine ready to run ``program`` (over the standard library it was analyzed
    against) with ``args`` as ``*command-line-args*`` and ``file`` as ``*file*``."""
    from ..printer import display_string

    try:
        b = base_for(program.base or None, view.program)
    except analysis.CodeUnavailable as exc:
        raise CodeUnavailable(str(exc)) from None
    session = Session(b)
    session.globals[COMMAND_LINE_ARGS] = Vector(a if type(a) is str else display_string(a)
                                                for a in args)
    session.globals[FILE] = file
    m = session.machine(program)
    m.image = codec.Image(b.globals)
    return m
