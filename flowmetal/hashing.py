"""SHA-256 for program hashes, cache keys and store keys, without loading OpenSSL.

``hashlib`` loads libcrypto when it is imported (as do ``hmac`` and ``secrets``), about
3 ms of every command's start; CPython also builds SHA-256 in, and a digest is the same
whichever computes it.  Random tokens come from ``os.urandom`` (as ``secrets``' do).
"""

from __future__ import annotations

try:
    from _sha256 import sha256  # CPython 3.11
except ImportError:  # pragma: no cover (CPython 3.12 and later; other Pythons)
    try:
        from _sha2 import sha256
    except ImportError:
        from hashlib import sha256

__all__ = ["sha256"]
