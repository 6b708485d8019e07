"""Programs: source text and its analysis, named by content hash.

A program's nodes are numbered in the order the analyzer made them, so a node is named
in stored state by ``(program hash, node id)``.  Analysis is deterministic: the same
source, analyzed against the same standard library, gives the same nodes and ids.
"""

from __future__ import annotations

import hashlib

from . import nodes as N
from .machine import link

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
        return node

    def __repr__(self) -> str:
        return f"<program {self.file} {self.hash[:12]}>"


PROGRAMS: dict[str, Program] = {}


def register(program: Program) -> Program:
    """Make ``program`` findable by hash (for decoding stored state)."""
    return PROGRAMS.setdefault(program.hash, program)
