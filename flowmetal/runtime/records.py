"""Task and program records: what the store keeps about each, and how to make them.

A task record is a CBOR map (format ``"v": 1``); NOTES.md lists its fields.  Values
inside records (results, errors, messages, answers) are encoded with ``codec``.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

from ..codec import decode_value, encode_value
from ..interpreter import Session, base
from ..program import PROGRAMS, Program, register

TASK_FORMAT = 1
PROGRAM_FORMAT = 1

FINISHED = ("done", "failed", "cancelled", "moved")

DEFAULT_LIMITS = {
    "fuel": None,            # total reductions; None: no limit
    "depth": 1_000_000,      # frames in the continuation
    "state": 64 << 20,       # bytes of the encoded continuation
    "deadline": None,        # seconds from creation; None: no limit
    "wait": 86_400.0,        # timeout of a wait that names none, seconds
}


class TaskError(Exception):
    """A task operation that cannot be done (unknown id, finished task, bad program)."""


def new_task_id() -> str:
    """A fresh task id: milliseconds since the epoch (11 hex digits, so ids sort by
    creation) and 40 random bits (10 hex digits); callers check it is not taken."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(5)}"


def program_record(program: Program) -> dict:
    """What the store keeps of a program: enough to analyze it again identically."""
    return {"v": PROGRAM_FORMAT, "file": program.file, "source": program.source,
            "base": program.base, "nodes": len(program.nodes)}


def load_program(txn: Any, digest: str) -> Program:
    """The program with this hash, analyzed here from its stored source if need be.

    The analysis must give the very same program (hash and node count), or the
    continuation could be resumed against different code.
    """
    base()  # registers the standard library's programs, which the store does not keep
    program = PROGRAMS.get(digest)
    if program is not None:
        return program
    record = txn.get_program(digest)
    if record is None:
        raise TaskError(f"program {digest[:12]} is not in the store")
    if record.get("base") and record["base"] != base().hash:
        raise TaskError(f"program {record['file']} was analyzed against another standard "
                        "library; resuming it here needs an explicit upgrade")
    session = Session()
    program = session.load(record["source"], record["file"])
    if program.hash != digest or len(program.nodes) != record["nodes"]:
        raise TaskError(f"program {record['file']} does not analyze to the stored program")
    return register(program)


def new_task_record(task_id: str, program: Program, limits: dict | None = None,
                    parent: str | None = None, root: str | None = None,
                    trace: bool = False, name: str | None = None) -> dict:
    """The record of a task about to start."""
    now = time.time()
    merged = dict(DEFAULT_LIMITS)
    merged.update({k: v for k, v in (limits or {}).items() if k in DEFAULT_LIMITS})
    return {
        "v": TASK_FORMAT, "id": task_id, "name": name or os.path.basename(program.file),
        "program": program.hash, "status": "runnable", "parent": parent,
        "root": root or task_id, "created": now, "updated": now, "limits": merged,
        "lease": None, "epoch": 0, "waiting": None, "answer": None, "request_seq": 0,
        "steps": 0, "reductions": 0, "result": None, "error": None, "cancel": False,
        "moved_to": None, "trace": trace, "joiners": [], "state_bytes": 0,
    }


def result_value(record: dict) -> Any:
    """A finished task's result (or error value) as a Flowmetal value."""
    data = record["result"] if record["status"] == "done" else record["error"]
    return None if data is None else decode_value(data, base().globals)


def encode_data(value: Any) -> bytes:
    """A value (message, result, answer) as bytes for a record."""
    return encode_value(value)


def decode_data(data: bytes | None) -> Any:
    """The value of ``encode_data`` bytes."""
    return None if data is None else decode_value(data, base().globals)
