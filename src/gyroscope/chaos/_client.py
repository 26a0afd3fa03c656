"""A small synchronous client of a fault proxy's control API (what ``gyro chaos set`` uses).

>>> client = ControlClient("127.0.0.1:8474")
>>> client.url
'http://127.0.0.1:8474'
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from gyroscope.errors import ProxyError, TargetError

__all__ = ["ControlClient", "parse_assignments"]

# The control API is local: never send its requests through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def parse_assignments(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["latency_ms=100", "blackhole=true", "direction=upstream"]`` to a dict of JSON values."""
    fields: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ProxyError(f"expected key=value, got {pair!r} (e.g. latency_ms=100)")
        try:
            fields[key.strip()] = json.loads(text)
        except ValueError:
            fields[key.strip()] = text  # a bare word such as direction=upstream
    return fields


class ControlClient:
    """Talk to ``gyro chaos proxy --control ADDR`` (or a ``FaultProxy`` with ``control=``)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 5.0) -> None:
        self.url = (url if "://" in url else f"http://{url}").rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise ProxyError(f"control URL must be http:// or https://, got {url!r}")
        self.token = token
        self.timeout = timeout

    def faults(self) -> dict[str, Any]:
        return self._request("GET", "/faults")

    def set(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the proxy's faults; returns the faults now in force."""
        return self._request("POST", "/faults", fields)

    def clear(self) -> dict[str, Any]:
        return self._request("DELETE", "/faults")

    def cut(self) -> int:
        return int(self._request("POST", "/cut")["cut"])

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/stats")

    def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        # The scheme was checked to be http(s) in __init__.
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("content-type", "application/json")
        if self.token:
            request.add_header("authorization", f"Bearer {self.token}")
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            raise ProxyError(_error_message(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TargetError(
                f"cannot reach the proxy's control API: {reason} (is `gyro chaos proxy --control` running?)",
                target=self.url,
            ) from None
        except ValueError as exc:
            raise TargetError(
                f"answered something that is not JSON: {exc}", target=self.url
            ) from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        message = str(json.loads(exc.read())["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        message = exc.reason
    return f"{exc.code}: {message}"
