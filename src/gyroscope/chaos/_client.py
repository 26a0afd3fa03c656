"""A small synchronous client of a fault proxy's control API (what ``gyro chaos set`` uses).

>>> client = ControlClient("127.0.0.1:8474")
>>> client.url
'http://127.0.0.1:8474'
"""

from __future__ import annotations

import json
from typing import Any

from gyroscope.core import JsonCallError, call_json
from gyroscope.errors import ProxyError, TargetError

__all__ = ["ControlClient", "parse_assignments"]


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
        try:
            return call_json(self.url + path, method, data, token=self.token, timeout=self.timeout)
        except JsonCallError as exc:
            if exc.status is not None:
                raise ProxyError(f"{exc.status}: {exc.message or exc.reason}") from None
            if exc.not_json:
                raise TargetError(
                    f"answered something that is not JSON: {exc}", target=self.url
                ) from None
            raise TargetError(
                f"cannot reach the proxy's control API: {exc} "
                "(is `gyro chaos proxy --control` running?)",
                target=self.url,
            ) from None
