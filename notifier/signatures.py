"""Pure: Meta's ``X-Hub-Signature-256`` check over the raw request bytes.

The HMAC covers the bytes exactly as received: Meta escapes ``/`` and non-ASCII characters, so
parsing and re-serialising the JSON gives a different hash. Anything missing or malformed fails
closed.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PREFIX = "sha256="
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def sign(app_secret: str, raw_body: bytes) -> str:
    """The header value Meta would send for ``raw_body``: "sha256=<hex>"."""
    digest = hmac.new(
        app_secret.encode("utf-8", "surrogatepass"), raw_body, hashlib.sha256
    ).hexdigest()
    return PREFIX + digest


def is_valid(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    """Whether ``header`` signs ``raw_body`` with ``app_secret``; constant time, never raises."""
    if not app_secret or not header:
        return False
    scheme, _, received = header.strip().partition("=")
    received = received.lower()
    # compare_digest raises on non-ASCII text, so only well-formed hex reaches it.
    if scheme.lower() + "=" != PREFIX or not _HEX_DIGEST.fullmatch(received):
        return False
    expected = sign(app_secret, raw_body).removeprefix(PREFIX)
    return hmac.compare_digest(expected, received)
