"""The bearer-token check every gyroscope HTTP API shares.

>>> bearer_ok("Bearer s3cret", "s3cret"), bearer_ok("bearer s3cret", b"s3cret")
(True, True)
>>> bearer_ok("s3cret", "s3cret"), bearer_ok("Bearer é", "s3cret")
(False, False)
"""

from __future__ import annotations

import hmac

__all__ = ["bearer_ok"]


def bearer_ok(authorization: str, token: str | bytes) -> bool:
    """Whether an ``Authorization`` header value carries ``Bearer <token>``.

    Compared in constant time and as bytes: the HTTP server decodes header bytes as latin-1, so
    encoding back gives the bytes sent (a UTF-8 token matches, a non-ASCII header is simply a
    mismatch, never an error). The scheme is case-insensitive (RFC 9110).
    """
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    expected = token if isinstance(token, bytes) else token.encode("utf-8", "surrogateescape")
    value = value.strip()
    try:
        sent = value.encode("latin-1")
    except UnicodeEncodeError:
        sent = value.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(sent, expected)
