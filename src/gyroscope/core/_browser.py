"""Keep web pages away from gyroscope's local APIs.

An operator's browser can reach 127.0.0.1 too. Without a token (the loopback default), a page of
another site could otherwise send state-changing requests (a fault that crashes the demo, a reload)
or open a WebSocket tail of the logs, and a DNS-rebinding page (its own name resolving to
127.0.0.1) could even read the answers. Two checks close both doors:

- an ``Origin`` header (browsers send it on cross-site requests and every WebSocket handshake) must
  name the server itself, as the ``Host`` header does: the monitor's own page still works;
- on servers that take it (control APIs bound to loopback), ``Host`` must be a loopback address or
  ``localhost``: a rebinding page's requests carry its own name.

Clients that are not browsers (curl, gyro, Prometheus, Grafana's backend) send no ``Origin`` and a
loopback ``Host``, so they never notice.

>>> origin_problem({"origin": "http://evil.example", "host": "127.0.0.1:7070"}, check_host=False)
'cross-origin request refused (Origin http://evil.example is not this server)'
>>> origin_problem({"host": "127.0.0.1:7070"}, check_host=True) is None
True
>>> origin_problem({"host": "rebind.example:7070"}, check_host=True)
'Host rebind.example:7070 refused: this API answers loopback names only (DNS rebinding protection)'
"""

from __future__ import annotations

from urllib.parse import urlsplit

from gyroscope.core._config import is_loopback

__all__ = ["origin_problem"]


def _hostname(authority: str) -> str:
    """The host part of ``host[:port]`` (brackets of an IPv6 literal removed), lowercased."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _loopback_name(host: str) -> bool:
    # *.localhost resolves to loopback too (RFC 6761)
    return is_loopback(host) or host.endswith(".localhost")


def origin_problem(headers: dict[str, str], *, check_host: bool) -> str | None:
    """Why a request must be refused as coming from a web page, or None when it may proceed."""
    host = headers.get("host", "")
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.strip().lower():
            return f"cross-origin request refused (Origin {origin[:100]} is not this server)"
    if check_host and host and not _loopback_name(_hostname(host)):
        return (
            f"Host {host[:100]} refused: this API answers loopback names only "
            "(DNS rebinding protection)"
        )
    return None
