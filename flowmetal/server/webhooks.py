"""Standard Webhooks signatures (https://www.standardwebhooks.com): how a callback made
with ``:secret`` tells a genuine request from a forged or replayed one.

A request carries ``webhook-id``, ``webhook-timestamp`` (seconds since the epoch) and
``webhook-signature``: space-separated ``v1,<base64>`` entries, each an HMAC-SHA256 with
the secret's key of ``"{id}.{timestamp}.{body}"``.  The secret is ``whsec_`` and the key
in base64.  A timestamp more than ``TOLERANCE`` seconds from now is refused, and so is
one that is not 1 to 12 ASCII digits.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time

from ..values import FlowmetalError

TOLERANCE = 5 * 60  # seconds
TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureError(Exception):
    """A request whose signature does not verify; the message says why."""


def secret_key(secret: str) -> bytes:
    """The key of a ``whsec_...`` secret (FlowmetalError if it is not one)."""
    text = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 16:
        raise FlowmetalError("callback: :secret must be at least 16 bytes in base64, "
                             "as Standard Webhooks secrets are (whsec_ before it, or not)",
                             "type-error")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header of a request (for senders and tests)."""
    return "v1," + _digest(secret_key(secret), msg_id.encode(), timestamp, body)


def _digest(key: bytes, msg_id: bytes, timestamp: int, body: bytes) -> str:
    content = msg_id + f".{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, now: float | None = None
           ) -> None:
    """Check a request's signature headers (names in lower case, values its bytes
    decoded as latin-1); SignatureError if they are missing, stale or wrong."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise SignatureError("webhook-id, webhook-timestamp and webhook-signature are "
                             "required")
    if not TIMESTAMP.fullmatch(stamp):
        raise SignatureError("webhook-timestamp is not a number of seconds")
    timestamp = int(stamp)
    now = time.time() if now is None else now
    if abs(now - timestamp) > TOLERANCE:
        raise SignatureError("webhook-timestamp is more than 5 minutes away")
    try:
        raw_id = msg_id.encode("latin-1")
    except UnicodeEncodeError:
        raise SignatureError("webhook-id is not the bytes of a header") from None
    expected = _digest(secret_key(secret), raw_id, timestamp, body)
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        # (compare_digest takes only ASCII text; base64 is ASCII)
        if version == "v1" and value.isascii() and hmac.compare_digest(value, expected):
            return
    raise SignatureError("no signature matches")
