"""Shipyards kept in a store, one per project, every version of it readable for good (a
run keeps the version it started with).

Two kinds of settings hold them: ``shipyard:<digest>``, a shipyard's JSON under the
SHA-256 of that text (written once; content never changes under a name), and the index
``shipyards``: ``{project: [digest of version 1, digest of version 2, ...]}``.  Applying
stores the text first, then appends its digest to the project's list in one
read-modify-write of the index (``store.update_setting``), so concurrent applies each get
a version of their own and a version is never seen before its text is stored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..store.base import StoreError
from .shipyard import NAME, NAME_MAX, NAME_RULE, Shipyard, shipyard_from_json, shipyard_to_json

INDEX = "shipyards"
BODY = "shipyard:"
CACHE_MAX = 256  # parsed shipyards kept in memory (by digest, so never stale)

_parsed: dict[str, Shipyard] = {}


class StoredShipyardError(StoreError):
    """The store's shipyard settings cannot be read (written by something else)."""


def check_project(project: str) -> str:
    """``project`` if it is a valid project name (ValueError saying the rule if not)."""
    if not isinstance(project, str) or len(project) > NAME_MAX or \
            not NAME.fullmatch(project):
        raise ValueError(f"{project!r:.80} is not a valid project name: {NAME_RULE}")
    return project


def canonical_text(shipyard: Shipyard) -> str:
    """The shipyard's JSON text as stored (keys sorted, so equal shipyards have one)."""
    return json.dumps(shipyard_to_json(shipyard), sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))


def _index(text: str | None) -> dict[str, list[str]]:
    if text is None:
        return {}
    try:
        index = json.loads(text)
    except ValueError:
        index = None
    if not isinstance(index, dict) or not all(
            isinstance(v, list) and all(isinstance(d, str) for d in v)
            for v in index.values()):
        raise StoredShipyardError(f"the store's {INDEX!r} setting is not an index of "
                                  "shipyards")
    return index


def apply_shipyard(store: Any, shipyard: Shipyard, project: str | None = None) -> int:
    """Store ``shipyard`` as the project's new version (project: its metadata.name by
    default); the version number, 1, 2, ...  A shipyard equal to the project's current
    version is not stored again: its version is the answer."""
    project = check_project(project or shipyard.name)
    text = canonical_text(shipyard)
    digest = hashlib.sha256(text.encode()).hexdigest()
    if store.setting(BODY + digest) is None:
        store.set_setting(BODY + digest, text)

    def append(old: str | None) -> str:
        index = _index(old)
        versions = index.setdefault(project, [])
        if not versions or versions[-1] != digest:
            versions.append(digest)
        return json.dumps(index, sort_keys=True, separators=(",", ":"))
    return len(_index(store.update_setting(INDEX, append))[project])


def _load(store: Any, digest: str) -> Shipyard:
    found = _parsed.get(digest)
    if found is not None:
        return found
    text = store.setting(BODY + digest)
    if text is None:
        raise StoredShipyardError(f"the shipyard {digest[:12]} is missing from the store")
    try:
        shipyard = shipyard_from_json(json.loads(text))
    except ValueError as exc:  # ShipyardError, JSONDecodeError
        raise StoredShipyardError(f"the stored shipyard {digest[:12]} cannot be read: "
                                  f"{exc}") from None
    if len(_parsed) >= CACHE_MAX:
        _parsed.pop(next(iter(_parsed)))
    _parsed[digest] = shipyard
    return shipyard


def versions(store: Any, project: str) -> int:
    """How many versions the project's shipyard has (0: none)."""
    return len(_index(store.setting(INDEX)).get(project, ()))


def current_shipyard(store: Any, project: str) -> tuple[int, Shipyard] | None:
    """The project's latest version and its shipyard, or None if it has none."""
    digests = _index(store.setting(INDEX)).get(project)
    if not digests:
        return None
    return len(digests), _load(store, digests[-1])


def shipyard_version(store: Any, project: str, version: int) -> Shipyard | None:
    """Version ``version`` (from 1) of the project's shipyard, or None if there is none."""
    digests = _index(store.setting(INDEX)).get(project, [])
    if type(version) is not int or not 1 <= version <= len(digests):
        return None
    return _load(store, digests[version - 1])


def projects(store: Any) -> list[str]:
    """The projects that have a shipyard, sorted."""
    return sorted(_index(store.setting(INDEX)))
