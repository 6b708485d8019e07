"""SHA-256 for program hashes and store keys, BLAKE2b for the analysis cache's keys,
without loading OpenSSL.

``hashlib`` loads libcrypto when it is imported (as do ``hmac`` and ``secrets``), about
3 ms of every command's start; CPython also builds these in, and a digest is the same
whichever computes it.  CPython's own SHA-256 is five times slower than OpenSSL's, so
what hashes much at each start (the language's source, for the cache's keys) uses
BLAKE2b, nearly as fast.  Random tokens come from ``os.urandom`` (as ``secrets``' do).
"""

from __future__ import annotations

try:
    from _sha256 import sha256  # CPython 3.11
except ImportError:  # pragma: no cover (CPython 3.12 and later; other Pythons)
    try:
        from _sha2 import sha256
    except ImportError:
        from hashlib import sha256
try:
    from _blake2 import blake2b
except ImportError:  # pragma: no cover (other Pythons)
    from hashlib import blake2b

__all__ = ["blake2b", "sha256"]
