"""Access tokens of the control plane, kept in the store by their SHA-256 only.

A token is ``fm_`` and 32 random bytes in URL-safe base64; it is shown once, when made.
Its scope is ``read`` (GET requests) or ``write`` (every request).  A revoked token stays
listed, so that a request made with it is told it was revoked (403), not unknown (401).
"""

from __future__ import annotations

import hashlib
import secrets

from ..runtime.records import RecordError, TaskError, TokenRecord
from .tables import Tables

SCOPES = ("read", "write")


def token_digest(token: str) -> str:
    """The key a token is kept under."""
    return hashlib.sha256(token.encode()).hexdigest()


def create(t: Tables, name: str, scope: str, now: float) -> tuple[str, TokenRecord]:
    """Make a token: (the token, its record)."""
    if scope not in SCOPES:
        raise TaskError(f"a token's scope is one of {', '.join(SCOPES)}, not {scope!r}")
    token = "fm_" + secrets.token_urlsafe(32)
    digest = token_digest(token)
    rec = TokenRecord(digest[:12], name, scope, now)
    t.token_put(digest, rec.to_bytes())
    return token, rec


def records(t: Tables) -> list[tuple[str, TokenRecord]]:
    """Every readable token record, by digest."""
    out = []
    for digest, data in t.token_items():
        try:
            out.append((digest, TokenRecord.from_bytes(data)))
        except RecordError:
            continue
    return out


def revoke(t: Tables, token_id: str, now: float) -> TokenRecord:
    """Revoke the token whose id (or a unique prefix of it) is ``token_id``."""
    found = [(d, r) for d, r in records(t) if r.id.startswith(token_id)] if token_id else []
    if len(found) != 1:
        raise TaskError(f"no token {token_id}" if not found else
                        f"token id {token_id} is ambiguous: {', '.join(r.id for _, r in found)}")
    digest, rec = found[0]
    if rec.revoked is None:
        rec.revoked = now
        t.token_put(digest, rec.to_bytes())
    return rec


def check(t: Tables, token: str) -> TokenRecord | None:
    """The record of a token, or None if it is not one of this store's."""
    data = t.token_get(token_digest(token))
    if data is None:
        return None
    try:
        return TokenRecord.from_bytes(data)
    except RecordError:
        return None
