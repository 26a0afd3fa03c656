"""One blocking JSON call to a gyroscope HTTP API (the CLI clients of the demo server, the gateway
admin API and the fault proxy's control API all use it; each maps ``JsonCallError`` to its own
error with its own hint).

>>> call_json("ftp://x")
Traceback (most recent call last):
ValueError: expected an http:// or https:// URL, got 'ftp://x'
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["JsonCallError", "call_json"]

# These APIs are local: never send their requests through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class JsonCallError(Exception):
    """A call that did not return a JSON object.

    ``status`` is the HTTP status when the server answered with an error (``message`` is then the
    ``error.message`` of its body, when it has one); it is None when the server could not be reached
    (``not_json`` False) or answered something that is not JSON (``not_json`` True).
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        message: str | None = None,
        not_json: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.message = message
        self.not_json = not_json


def call_json(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    *,
    token: str | None = None,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``method url`` with a JSON body and an optional bearer token; the answer as a dict."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - scheme checked
    request.add_header("content-type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        raise JsonCallError(str(exc.reason), status=exc.code, message=_message(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise JsonCallError(str(getattr(exc, "reason", exc))) from None
    except ValueError as exc:
        raise JsonCallError(str(exc), not_json=True) from None


def _message(exc: urllib.error.HTTPError) -> str | None:
    try:
        return str(json.loads(exc.read())["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return None
