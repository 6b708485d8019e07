"""Loading the standard library and running Flowmetal source.

The *base* is the global environment and macro table after the standard library has
loaded; it is built once per process and shared.  A ``Session`` copies the base globals
(so ``def`` in one session never touches another) and analyzes and runs programs in them.

The standard library is a chain of programs (stdlib/ORDER), each analyzed against the
ones before it: program *i*'s ``base`` is the hash of that prefix, so its hash names its
analysis, and the hash of the whole chain names the standard library (``Base.hash``; it
starts from the analyzer version and the table of primitives, which analysis depends on
through direct linking).  ``Base.records()`` gives its programs' stored analyses and a
manifest; ``base_for`` rebuilds any standard library from those records alone, so a task
resumes on the standard library it was made with whatever this Flowmetal ships.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import cbor2

from . import analysis_cache
from . import nodes as N
from .analysis import CodeUnavailable, link_all, load_program, program_record
from .analysis_cache import StdlibImage
from .codec import register_base
from .hashing import sha256
from .machine import Machine
from .primitives import install
from .procedures import PRIMITIVES, Closure
from .program import ANALYZER_VERSION, PROGRAMS, Program, program_hash, register
from .values import FlowmetalError, Keyword, Map, Symbol

STDLIB_FORMAT = "flowmetal-stdlib/1"


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


def stdlib_root() -> str:
    """Where the standard library's hash chain starts: the analyzer version and the
    primitives (name, kind, arity) that analysis can link to."""
    digest = sha256(f"flowmetal-stdlib\0{ANALYZER_VERSION}\0".encode())
    for name in sorted(PRIMITIVES):
        p = PRIMITIVES[name]
        digest.update(f"{name}\0{p.kind}\0{p.min_args}\0{p.max_args}\n".encode())
    return digest.hexdigest()


def chain_hash(prefix: str, program_hash: str) -> str:
    """The hash of a standard library prefix ``prefix`` followed by one more program."""
    return sha256(f"{prefix}\0{program_hash}".encode()).hexdigest()


class Base:
    """The globals, macros and programs of a standard library: by default the one this
    Flowmetal ships, analyzed from ``files`` ((name, source) pairs, default
    stdlib/ORDER's); ``Base.from_records`` builds a stored one."""

    def __init__(self, files: list[tuple[str, str]] | None = None) -> None:
        from .analyzer import Analyzer, CompileEnv
        from .reader import read_syntax_all

        self.globals: dict = install({})
        self._cenv = CompileEnv(self.globals)
        self.programs: list[Program] = []
        self.root = prefix = stdlib_root()
        for name, source in stdlib_files() if files is None else files:
            program = Program(f"stdlib/{name}", source, prefix)
            analyzer = Analyzer(self._cenv, program)
            for form in read_syntax_all(source, program.file):
                for node in analyzer.analyze_toplevel([form]):
                    m = Machine(self.globals, node)
                    if m.run_to_end() == "error":
                        raise RuntimeError(f"standard library failed to load: {m.error!r}")
            # (Another base may have registered the same program: the same nodes.)
            self.programs.append(register(program))
            prefix = chain_hash(prefix, program.hash)
        self.hash = prefix
        self.macros = dict(self._cenv.macros)
        self._records: dict[str, dict] | None = None
        self._encoded: dict[str, bytes] | None = None
        register_base(self.globals, self.hash)

    @classmethod
    def from_image(cls, image: StdlibImage) -> Base:
        """The standard library as the analysis cache kept it (its programs linked)."""
        b = cls.__new__(cls)
        b.globals, b.root, b.hash, b.macros = image.globals, image.root, image.hash, image.macros
        b.programs = [register(p) for p in image.programs]
        b._cenv = None
        b._records, b._encoded = None, image.records
        register_base(b.globals, b.hash)
        return b

    @property
    def cenv(self) -> Any:
        """The compile environment of these globals and macros (``analyzer.CompileEnv``),
        made on first use: a command that analyzes nothing never imports the analyzer."""
        if self._cenv is None:
            self._cenv = _compile_env(self.globals, self.macros)
        return self._cenv

    def image(self) -> StdlibImage:
        """What the analysis cache keeps of this standard library."""
        return StdlibImage(self.hash, self.root, self.programs, self.globals, self.macros,
                           self.encoded_records())

    def manifest(self) -> dict:
        """The record naming this standard library: its programs in load order and its
        macros (each a top-level ``fn`` node of one of them)."""
        macros = []
        for name, f in self.macros.items():
            if type(f) is not Closure or f.env is not None or f.code.program is None:
                raise ValueError(f"macro {name.name} is not a top-level fn")
            macros.append([name.name, f.code.program.hash, f.code.id])
        return {"v": 1, "format": STDLIB_FORMAT, "hash": self.hash, "root": self.root,
                "analyzer": ANALYZER_VERSION, "programs": [p.hash for p in self.programs],
                "files": [p.file for p in self.programs], "macros": macros}

    def records(self) -> dict[str, dict]:
        """Every record of this standard library by hash: each program's analysis
        (``analysis.program_record``) and the manifest (under ``self.hash``).  The
        runtime keeps them in the program store, so ``base_for`` can rebuild it."""
        if self._records is None:
            if self._encoded is not None:
                self._records = {h: cbor2.loads(data) for h, data in self._encoded.items()}
            else:
                out = {p.hash: program_record(p) for p in self.programs}
                out[self.hash] = self.manifest()
                self._records = out
        return self._records

    def encoded_records(self) -> dict[str, bytes]:
        """``records()`` as the CBOR bytes a program store keeps."""
        if self._encoded is None:
            self._encoded = {h: cbor2.dumps(r) for h, r in self.records().items()}
        return self._encoded

    @classmethod
    def from_records(cls, digest: str, get_record: Callable[[str], dict | None]) -> Base:
        """The standard library ``digest`` built from stored records alone: its programs'
        node trees are loaded (never analyzed) and their top-level forms run in order to
        make its globals, as the original load did.  Raises ``CodeUnavailable``."""
        manifest = get_record(digest)
        short = digest[:12]
        if manifest is None:
            raise CodeUnavailable(f"standard library {short} is not in the program store")
        if type(manifest) is not dict or manifest.get("format") != STDLIB_FORMAT:
            fmt = manifest.get("format") if type(manifest) is dict else None
            raise CodeUnavailable(f"standard library {short} is stored in format {fmt!r}; "
                                  f"this Flowmetal reads {STDLIB_FORMAT}")
        hashes, root = manifest.get("programs"), manifest.get("root")
        if type(hashes) is not list or type(root) is not str or \
                not all(type(h) is str for h in hashes):
            raise CodeUnavailable(f"standard library {short}: malformed manifest")
        prefix = root
        programs = []
        for h in hashes:
            program = load_program(h, get_record)
            if program.base != prefix:
                raise CodeUnavailable(f"standard library {short}: {program.file} was not "
                                      "analyzed against the programs before it")
            programs.append(program)
            prefix = chain_hash(prefix, h)
        if prefix != digest:
            raise CodeUnavailable(f"standard library {short}: its programs do not make "
                                  "its hash")
        b = cls.__new__(cls)
        b.globals, b.programs, b.root, b.hash = install({}), programs, root, digest
        for program in programs:
            link_all(program)  # its forms run here (one this process loaded may be lazy)
            for node in program.forms:
                m = Machine(b.globals, node)
                if m.run_to_end() == "error":
                    raise CodeUnavailable(f"standard library {short}: {program.file} fails "
                                          f"to load here: {_message(m.error)}")
        macros = {}
        try:
            for name, h, node_id in manifest.get("macros") or ():
                macros[Symbol(name)] = Closure(PROGRAMS[h].nodes[node_id], None)
        except (KeyError, IndexError, TypeError, ValueError):
            raise CodeUnavailable(f"standard library {short}: malformed macros") from None
        b._cenv = None
        b.macros = macros
        b._records, b._encoded = None, None
        register_base(b.globals, b.hash)
        return b


def _message(error: Any) -> str:
    message = error.get(Keyword("message")) if type(error) is Map else None
    return message if isinstance(message, str) else repr(error)


def _compile_env(globals_: dict, macros: dict) -> Any:
    from .analyzer import CompileEnv  # (here: loading from the cache analyzes nothing)

    return CompileEnv(globals_, macros)


@lru_cache(maxsize=1)
def base() -> Base:
    """The process-wide standard library, loaded on first use: from the analysis cache
    when it keeps this one (``analysis_cache``), otherwise analyzed and kept there."""
    files = stdlib_files()
    with _collector_paused():  # what loading makes lives as long as the process
        key = analysis_cache.stdlib_key(files)
        image = analysis_cache.load_stdlib(key)
        if image is not None and _chain_of(image) == (stdlib_root(), image.hash, files):
            return Base.from_image(image)
        b = Base(files)
        analysis_cache.store_stdlib(key, b.image())
        return b


def _chain_of(image: StdlibImage) -> tuple[str, str, list[tuple[str, str]]]:
    """(root, hash, files) that an image's programs make: how an image is checked to be
    the standard library it is kept for."""
    prefix = image.root
    for program in image.programs:
        if program.base != prefix:
            return ("", "", [])
        prefix = chain_hash(prefix, program.hash)
    return (image.root, prefix,
            [(p.file.removeprefix("stdlib/"), p.source) for p in image.programs])


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while the standard library loads, and what exists
    then moved out of its sight (``gc.freeze``): loading makes many objects that live as
    long as the process and no garbage worth looking for; collecting while it runs cost
    half its time, and collecting its objects afterwards as much again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


_BASES: dict[str, Base] = {}


def base_for(digest: str | None, get_record: Callable[[str], dict | None]) -> Base:
    """The standard library with hash ``digest``: this Flowmetal's own if it matches (or
    if ``digest`` is None: a state made before states named their base), otherwise the
    stored one, rebuilt from ``get_record(hash)`` records (once per process).  Raises
    ``CodeUnavailable`` if it cannot be built here."""
    current = base()
    if digest is None or digest == current.hash:
        return current
    found = _BASES.get(digest)
    if found is None:
        found = _BASES[digest] = Base.from_records(digest, get_record)
    return found


def stdlib_programs(digest: str, get_record: Callable[[str], dict | None]) -> list[Program]:
    """The programs of standard library ``digest`` in load order, loaded (not run: for
    reading its code, as the upgrade planner does).  Raises ``CodeUnavailable``."""
    current = base()
    if digest == current.hash:
        return current.programs
    if digest in _BASES:
        return _BASES[digest].programs
    manifest = get_record(digest)
    if type(manifest) is not dict or manifest.get("format") != STDLIB_FORMAT or \
            type(manifest.get("programs")) is not list:
        raise CodeUnavailable(f"standard library {digest[:12]} is not in the program store")
    return [load_program(h, get_record) for h in manifest["programs"]]


class Session:
    """A global environment of one's own: analyze and run programs in it (over the
    standard library ``base_``, by default this Flowmetal's)."""

    def __init__(self, base_: Base | None = None) -> None:
        b = base() if base_ is None else base_
        self.base = b
        self.globals: dict = dict(b.globals)
        self._cenv: Any = None

    @property
    def cenv(self) -> Any:
        """The session's compile environment (``analyzer.CompileEnv``: its globals and
        macros), made when it first analyzes."""
        if self._cenv is None:
            self._cenv = _compile_env(self.globals, self.base.macros)
        return self._cenv

    def load(self, source: str, file: str = "<string>") -> Program:
        """Read and analyze a whole program (macros it defines apply to its later forms)."""
        from .analyzer import Analyzer
        from .reader import read_syntax_all

        forms = read_syntax_all(source, file)  # first: text that is not Unicode has no hash
        program = Program(file, source, self.base.hash)
        analyzer = Analyzer(self.cenv, program)
        nodes = analyzer.analyze_toplevel(forms)
        program.entry = (nodes[0] if len(nodes) == 1 else
                         program.add(_toplevel_do(nodes)) if nodes else
                         analyzer.const(None, None))
        register(program)
        return program

    def load_program(self, source: str, file: str = "<string>") -> Program:
        """``load`` for a program that runs on its own (a task's), in a session nothing
        was defined in yet: its analysis is taken from the analysis cache when the cache
        keeps it, and kept there when not.  (So the macros it defines may not be added
        to this session: analysis in a session with definitions of its own depends on
        them, and is always done afresh.)"""
        fresh = (self._cenv is None or self._cenv.macros == self.base.macros) and \
            len(self.globals) == len(self.base.globals) and \
            all(self.globals.get(k, _NONE) is v for k, v in self.base.globals.items())
        if not fresh or not analysis_cache.enabled():
            return self.load(source, file)
        try:
            digest = program_hash(file, source, self.base.hash)
        except UnicodeError:  # text that is not Unicode: ``load`` says where
            return self.load(source, file)
        program = PROGRAMS.get(digest) or analysis_cache.load_program(digest)
        if program is None:
            program = self.load(source, file)
            analysis_cache.store_program(program)
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


__all__ = ["Session", "base", "base_for", "Base", "EvalError", "FlowmetalError",
           "CodeUnavailable"]
