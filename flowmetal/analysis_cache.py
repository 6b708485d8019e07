"""The analysis cache: the loaded standard library and analyzed programs kept in files,
so a command starts without analyzing them again.

Derived data only.  An entry is named by a key that hashes (BLAKE2b) everything it was
made from: the cache format, the Python implementation, the source of every module of
the language (``code_digest``: the analyzer, the machine, the primitives, ...) and the
input itself (the standard library's files; a program's hash, which covers its file
name, source and standard library).  So a change to any of them makes another key and an
old entry is never used; deleting the cache changes nothing but speed.

Where: ``$FLOWMETAL_CACHE``, else ``$XDG_CACHE_HOME/flowmetal``, else
``~/.cache/flowmetal``; ``FLOWMETAL_NO_CACHE=1`` turns the cache off.  A file is
``MAGIC``, its key, the CRC-32 of its payload, then the payload; it is written to a
temporary file and renamed, so a reader sees a whole file or none.  A file that is
truncated, corrupt, of another key or that fails to load is ignored (and replaced by the
next write); a directory that cannot be written only means nothing is kept.

Two kinds of entry:

- ``stdlib``: the standard library as loaded (``StdlibImage``): its programs' nodes, its
  globals and macros, as a pickle read back by ``_Unpickler``, which builds only the
  classes of the language's data (never calls a function it does not list), plus each
  program's stored record as CBOR bytes, ready for a program store.  Nodes are kept
  without what the machine attaches to them (``ev``, ``exec``...): each batch (a
  top-level form) is linked again the first time it runs, in the order analysis linked
  it (``analysis.link_lazily``), so a command links only the code it runs.
- ``program``: a program's stored analysis (``analysis.program_record``) as CBOR, read
  back with ``analysis.program_from_record`` as a program from a store is.
"""

from __future__ import annotations

import copyreg
import io
import os
import sys
import tempfile
import zlib
from contextlib import suppress
from functools import lru_cache
from pathlib import Path
from typing import Any

import cbor2

try:  # the C pickler alone: pickle.py's own is most of its import, at every start
    import _pickle as pickle
except ImportError:  # pragma: no cover (another Python)
    import pickle

from . import nodes as N
from .analysis import link_all, link_lazily, node_flags, program_from_record, program_record
from .hashing import blake2b
from .machine import UNSET, FrameKind
from .procedures import PRIMITIVES, Primitive
from .program import Program
from .structs import dataclass
from .values import EMPTY, FALSE, TRUE, Regex, Span

MAGIC = b"flowmetal-cache/2\n"
_DIGEST = 4  # bytes of the CRC-32 of a payload
_HERE = Path(__file__).resolve().parent
# The language's modules: what analysis, loading and running the standard library read.
_CODE_DIRS = (_HERE, _HERE / "primitives", _HERE / "connectors")


def enabled() -> bool:
    """Whether the cache is used (``FLOWMETAL_NO_CACHE=1`` turns it off)."""
    return os.environ.get("FLOWMETAL_NO_CACHE", "").strip().lower() in ("", "0", "no",
                                                                      "false", "off")


def directory() -> Path:
    """Where the cache's files are (see the module docstring)."""
    given = os.environ.get("FLOWMETAL_CACHE")
    if given:
        return Path(given)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "flowmetal"
    return Path.home() / ".cache" / "flowmetal"


@lru_cache(maxsize=1)
def code_digest() -> str:
    """The hash of this Flowmetal's language: the source of its modules (``_CODE_DIRS``),
    the cache format and the Python implementation."""
    digest = blake2b(MAGIC + sys.implementation.cache_tag.encode() + b"\0", digest_size=32)
    for folder in _CODE_DIRS:
        where = os.fspath(folder)
        for name in sorted(n for n in os.listdir(where) if n.endswith(".py")):
            digest.update(f"{folder.name}/{name}\0".encode())
            with open(os.path.join(where, name), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def entry_key(kind: str, *parts: str) -> str:
    """The key of an entry of ``kind`` made from ``parts`` by this Flowmetal."""
    digest = blake2b(f"{kind}\0{code_digest()}\0".encode(), digest_size=32)
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def _path(kind: str, key: str) -> Path:
    return directory() / f"{kind}-{key}"


def read(kind: str, key: str) -> bytes | None:
    """The payload of the entry ``key``, or None if there is none or it is damaged."""
    try:
        data = _path(kind, key).read_bytes()
    except (OSError, ValueError):
        return None
    head = len(MAGIC) + len(key)
    if data[:len(MAGIC)] != MAGIC or data[len(MAGIC):head] != key.encode():
        return None
    payload = data[head + _DIGEST:]
    if zlib.crc32(payload).to_bytes(_DIGEST, "big") != data[head:head + _DIGEST]:
        return None
    return payload


def write(kind: str, key: str, payload: bytes) -> bool:
    """Keep ``payload`` as the entry ``key`` (atomically); False if it could not be."""
    folder = directory()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{kind}-", dir=folder)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + key.encode() + zlib.crc32(payload).to_bytes(_DIGEST, "big") +
                    payload)
        os.replace(temp, _path(kind, key))
    except OSError:
        with suppress(OSError):
            os.unlink(temp)
        return False
    _prune(folder, kind)
    return True


# Entries of a kind kept at most: the newest (a standard library for each of the last
# versions a machine ran; the programs started last).
KEEP = {"stdlib": 4, "program": 1000}
# A process looks at the entries of a kind at its first write of that kind, then at
# every this many writes (a tenth of what is kept): a look stats every entry, which a
# new program's start cannot pay each time (1,000 entries: a few ms).
_PRUNE_EVERY = {kind: max(1, keep // 10) for kind, keep in KEEP.items()}
_written: dict[str, int] = {}


def _prune(folder: Path, kind: str) -> None:
    """Remove the oldest entries of ``kind`` beyond ``KEEP[kind]``, now and then (see
    ``_PRUNE_EVERY``; another process may remove them at the same time: a file gone is
    fine)."""
    count = _written.get(kind, 0)
    _written[kind] = count + 1
    if count % _PRUNE_EVERY.get(kind, 10):
        return
    try:
        entries = [(e.stat().st_mtime, e.path) for e in os.scandir(folder)
                   if e.name.startswith(f"{kind}-")]
    except OSError:
        return
    entries.sort(reverse=True)
    for _, path in entries[KEEP.get(kind, 100):]:
        with suppress(OSError):
            os.unlink(path)


# ---------------------------------------------------------------------------------------
# The standard library


@dataclass
class StdlibImage:
    """A loaded standard library: what ``interpreter.Base`` is made of, and its records
    (hash -> CBOR bytes of each program's record and of the manifest)."""

    hash: str
    root: str
    programs: list[Program]
    globals: dict
    macros: dict
    records: dict[str, bytes]


def stdlib_key(files: list[tuple[str, str]]) -> str:
    """The key of the standard library made of ``files`` ((name, source) pairs)."""
    return entry_key("stdlib", *(part for pair in files for part in pair))


def load_stdlib(key: str) -> StdlibImage | None:
    """The standard library kept under ``key``, its programs linked lazily (not
    registered); None if the cache is off, has no such entry or the entry cannot be
    loaded."""
    if not enabled():
        return None
    payload = read("stdlib", key)
    if payload is None:
        return None
    try:
        unpickler = _Unpickler(io.BytesIO(payload))
        image, linking = unpickler.load(), unpickler.load()
        if type(image) is not StdlibImage:
            return None
        for program in unpickler.programs:  # every program whose nodes the image holds
            flags, batches = linking[program.hash]
            link_lazily(program, flags, batches)
    except Exception:  # a damaged or foreign entry: analyze again
        return None
    return image


def store_stdlib(key: str, image: StdlibImage) -> bool:
    """Keep ``image`` under ``key``; False if it could not be."""
    if not enabled():
        return False
    out = io.BytesIO()
    pickler = _Pickler(out, protocol=5)
    try:
        pickler.dump(image)
        for program in pickler.programs:  # (its nodes' flags are read from their linking)
            link_all(program)
        # The linking of every program whose nodes the image holds (in a Base, its
        # globals may hold nodes of a program another Base registered first).
        pickler.dump({p.hash: (bytes(node_flags(n) for n in p.nodes), list(p.batches))
                      for p in pickler.programs})
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
        return False  # a value the cache cannot keep: analyze each time
    return write("stdlib", key, out.getvalue())


# Pickling: nodes and programs by their data fields, the language's singletons and
# registered objects (primitives, frame kinds) by name.

def _program(file: str, source: str, base: str, analyzer: str) -> Program:
    return Program(file, source, base, analyzer)


def _regex(pattern: str) -> Regex:
    from .regex import compile_regex

    return compile_regex(pattern)


class _Pickler(pickle.Pickler):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.programs: list[Program] = []

    def reducer_override(self, obj: Any) -> Any:
        t = type(obj)
        if isinstance(obj, N.Node):
            state = {name: getattr(obj, name) for name in t.FIELDS}
            # (Not what linking attaches, ev, exec, resume and slow: link_lazily sets them.)
            state.update(id=obj.id, span=obj.span, proc=obj.proc, program=obj.program)
            # (copyreg.__newobj__: pickle's NEWOBJ, the class made in C, no call back)
            return copyreg.__newobj__, (t,), (None, state)
        if t is Program:
            self.programs.append(obj)
            return (_program, (obj.file, obj.source, obj.base, obj.analyzer),
                    {"nodes": obj.nodes, "forms": obj.forms, "entry": obj.entry})
        if t is Span:
            return copyreg.__newobj__, (Span, *obj)
        if t is Regex:
            return _regex, (obj.pattern,)
        return NotImplemented

    def persistent_id(self, obj: Any) -> Any:
        t = type(obj)
        if t is Primitive:
            return ("primitive", obj.name)
        if t is FrameKind:
            return ("frame", obj.name)
        if obj is UNSET or obj is EMPTY or obj is TRUE or obj is FALSE:
            return (_SINGLETON_NAMES[id(obj)],)
        return None


_SINGLETONS = {"unset": UNSET, "empty": EMPTY, "true": TRUE, "false": FALSE}
_SINGLETON_NAMES = {id(v): k for k, v in _SINGLETONS.items()}
# What an entry may build: the language's data classes and the functions above.
_ALLOWED = {
    ("flowmetal.analysis_cache", name) for name in
    ("StdlibImage", "_program", "_regex")
} | {
    ("flowmetal.values", name) for name in
    ("Symbol", "Keyword", "Pair", "Vector", "Map", "Set", "Atom", "Delay", "Span")
} | {("flowmetal.procedures", "Closure"), ("flowmetal.procedures", "Continuation"),
     ("fractions", "Fraction")} | {
    ("flowmetal.nodes", name) for name, cls in vars(N).items()
    if isinstance(cls, type) and issubclass(cls, N.Node)
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.programs: list[Program] = []

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"the cache may not hold {module}.{name}")
        if name == "_program":
            return self._program
        return super().find_class(module, name)

    def _program(self, *args: str) -> Program:
        program = _program(*args)
        self.programs.append(program)
        return program

    def persistent_load(self, pid: Any) -> Any:
        if pid[0] == "primitive":
            return PRIMITIVES[pid[1]]
        if pid[0] == "frame":
            return FrameKind.KINDS[pid[1]]
        return _SINGLETONS[pid[0]]


# ---------------------------------------------------------------------------------------
# Programs


def load_program(digest: str) -> Program | None:
    """The program with hash ``digest`` from its kept analysis (registered), or None."""
    if not enabled():
        return None
    payload = read("program", entry_key("program", digest))
    if payload is None:
        return None
    try:
        return program_from_record(cbor2.loads(payload), digest)
    except Exception:  # damaged, or code this Flowmetal cannot load: analyze again
        return None


def store_program(program: Program) -> bool:
    """Keep ``program``'s analysis; False if it could not be (or the cache is off)."""
    if not enabled():
        return False
    try:
        payload = cbor2.dumps(program_record(program))
    except (ValueError, TypeError, cbor2.CBOREncodeError):
        return False  # a constant a record cannot hold: analyze each time
    return write("program", entry_key("program", program.hash), payload)
