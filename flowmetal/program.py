"""Programs: source text and its analysis, named by content hash.

A program's nodes are numbered in the order the analyzer made them, so a node is named
in stored state by ``(program hash, node id)``.  Analysis is deterministic: the same
source, analyzed against the same standard library, gives the same nodes and ids.  The
hash covers the analyzer version, the standard library's hash (``base``), the file name
and the source; a stored program keeps its node tree too (``analysis.py``), so it is
never analyzed again.
"""

from __future__ import annotations

from collections.abc import Callable

from . import nodes as N
from .fastpath import Batch, enabled
from .hashing import sha256
from .machine import link, simple_exec

# Nodes whose per-node function is already a single step.
_TRIVIAL = (N.Const, N.LocalRef, N.GlobalRef, N.Lambda)

ANALYZER_VERSION = "1"


def program_hash(file: str, source: str, base: str = "",
                 analyzer: str = ANALYZER_VERSION) -> str:
    """The hash naming the analysis of ``source`` (as ``file``) against standard library
    ``base`` by analyzer version ``analyzer``."""
    digest = sha256()
    for part in (analyzer, base, file, source):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


class Program:
    """Source plus the nodes analyzed from it; ``forms`` are the top-level nodes and
    ``entry`` the node a machine starts at (None for the standard library's programs,
    whose forms run one by one)."""

    def __init__(self, file: str, source: str, base: str = "",
                 analyzer: str = ANALYZER_VERSION):
        self.file = file
        self.source = source
        self.base = base
        self.analyzer = analyzer
        self.hash = program_hash(file, source, base, analyzer)
        self.nodes: list[N.Node] = []
        self.forms: list[N.Node] = []
        self.entry: N.Node | None = None
        self.finished = 0
        self.batches: list[int] = []  # where each call of finish ended (see analysis.py)
        self.lazy = None  # the batches not linked yet (analysis.link_lazily), if any

    def add(self, node: N.Node) -> N.Node:
        """Number ``node``, link it for the machine and keep it."""
        node.id = len(self.nodes)
        node.program = self
        self.nodes.append(node)
        link(node)
        return node

    def finish(self, upto: int | None = None) -> None:
        """Arrange for the fast paths of the nodes added since the last call (up to node
        ``upto``, default all) to be compiled (see fastpath) the first time any of them
        runs.

        Compiling is the larger part of analysis, and most code loaded (most of the
        standard library, say) never runs, so each batch waits behind stubs.
        """
        end = len(self.nodes) if upto is None else upto
        start, self.finished = self.finished, end
        if end > start:
            self.batches.append(end)
        self.prepare(start, end)

    def prepare(self, start: int, end: int) -> None:
        """Install the fast paths' stubs of the linked nodes ``start`` to ``end`` (a
        batch: what one call of ``finish`` covers)."""
        pending = self.nodes[start:end]
        parents: dict[int, N.Node] = {}
        for node in pending:
            for child in node.children():
                parents[id(child)] = node
        targets: list[tuple[N.Node, str]] = []
        for node in pending:
            if node.slow is not None and type(node) not in _TRIVIAL:
                parent = parents.get(id(node))
                if node.ev is None or parent is None or parent.ev is None:
                    targets.append((node, "simple"))
            elif type(node) is N.App:
                targets.append((node, "direct_call" if node.direct else "staged_call"))
            elif type(node) is N.If and node.test.ev is not None:
                targets.append((node, "if_exec"))
            elif type(node) is N.Do and node.slow is None:
                targets.append((node, "do_exec"))
            elif type(node) is N.Let and node.slow is None:
                targets.append((node, "let_exec"))
        if not targets or not enabled():
            return
        done: list[bool] = []

        def compile_now() -> None:
            if done:
                return
            batch = Batch(self.file)
            for node, kind in targets:
                getattr(batch, kind)(node)
            functions: dict[int, dict[str, Callable]] = {}
            for node, role, fn in batch.compile():
                functions.setdefault(id(node), {})[role] = fn
            _install(pending, functions)
            done.append(True)

        _install(pending, {id(node): dict([_stub(node, kind, compile_now)])
                           for node, kind in targets})

    def __repr__(self) -> str:
        return f"<program {self.file} {self.hash[:12]}>"


def _stub(node: N.Node, kind: str, compile_now: Callable[[], None]) -> tuple[str, Callable]:
    """A stand-in that compiles its batch, then does what the compiled function does."""
    if kind == "simple" and node.ev is not None:
        def ev_stub(e, g):
            compile_now()
            return node.ev(e, g)
        return "ev", ev_stub

    def exec_stub(env, k, m):
        compile_now()
        return node.exec(env, k, m)
    return "exec", exec_stub


def _install(pending: list[N.Node], functions: dict[int, dict[str, Callable]]) -> None:
    """Give nodes their new functions (by role: "ev", "exec", "resume") and link the
    others again, children first, so every parent calls its children's new code."""
    for node in pending:
        roles = functions.get(id(node), {})
        if node.slow is None:
            link(node)
        if "ev" in roles:
            if node.ev is not None:
                node.ev = roles["ev"]
            node.exec = simple_exec(roles["ev"])
        if "exec" in roles:
            node.exec = roles["exec"]
        if "resume" in roles:
            node.resume = roles["resume"]


PROGRAMS: dict[str, Program] = {}


def register(program: Program) -> Program:
    """Make ``program`` findable by hash (for decoding stored state)."""
    return PROGRAMS.setdefault(program.hash, program)
