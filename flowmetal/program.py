"""Programs: source text and its analysis, named by content hash.

A program's nodes are numbered in the order the analyzer made them, so a node is named
in stored state by ``(program hash, node id)``.  Analysis is deterministic: the same
source, analyzed against the same standard library, gives the same nodes and ids.
"""

from __future__ import annotations

import hashlib

from . import nodes as N
from .fastpath import compile_direct_call, compile_if, compile_simple
from .machine import link, simple_exec

# Nodes whose per-node function is already a single step.
_TRIVIAL = (N.Const, N.LocalRef, N.GlobalRef, N.Lambda)

ANALYZER_VERSION = "1"


class Program:
    """Source plus the nodes analyzed from it; ``forms`` are the top-level nodes."""

    def __init__(self, file: str, source: str, base: str = ""):
        self.file = file
        self.source = source
        self.base = base
        digest = hashlib.sha256()
        for part in (ANALYZER_VERSION, base, file, source):
            digest.update(part.encode("utf-8"))
            digest.update(b"\0")
        self.hash = digest.hexdigest()
        self.nodes: list[N.Node] = []
        self.forms: list[N.Node] = []

    def add(self, node: N.Node) -> N.Node:
        """Number ``node``, link it for the machine and keep it."""
        node.id = len(self.nodes)
        node.program = self
        self.nodes.append(node)
        link(node)
        if node.ev is None:
            compiled = False
            for child in node.children():
                if child.ev is not None and type(child) not in _TRIVIAL:
                    child.ev = compile_simple(child)
                    child.exec = simple_exec(child.ev)
                    compiled = True
            if compiled:
                link(node)
            if type(node) is N.App and node.direct:
                node.exec = compile_direct_call(node)
            elif type(node) is N.If and node.test.ev is not None:
                node.exec = compile_if(node)
        return node

    def __repr__(self) -> str:
        return f"<program {self.file} {self.hash[:12]}>"


PROGRAMS: dict[str, Program] = {}


def register(program: Program) -> Program:
    """Make ``program`` findable by hash (for decoding stored state)."""
    return PROGRAMS.setdefault(program.hash, program)
