"""URLs in messages: only ``scheme://host[:port]`` and ``/…`` (Slack-style webhook URLs carry their
secret in the path, others in ``user:password@`` or the query).

>>> safe_url("https://hooks.example.com/services/T000/B000/XXXX")
'https://hooks.example.com/…'
>>> safe_url("http://bob:pw@127.0.0.1:9000")
'http://127.0.0.1:9000'
>>> label_url("https://bob:pw@127.0.0.1:9000/health?token=abc&full")
'https://127.0.0.1:9000/health?token=…&full'
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import SecretStr

__all__ = ["label_url", "reveal", "safe_url", "scrub_url"]


def reveal(url: str | SecretStr) -> str:
    """The URL to connect to (config values are SecretStr; a plain str is accepted as well)."""
    return url.get_secret_value() if isinstance(url, SecretStr) else url


def safe_url(url: str | SecretStr) -> str:
    """``scheme://host[:port]`` plus ``/…`` when anything followed; never userinfo or path."""
    text = reveal(url)
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # an unparsable port: show nothing of it
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    shown = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    rest = text.split("://", 1)[-1]
    return shown + ("/…" if "/" in rest or "?" in rest else "")


def scrub_url(text: str, url: str | SecretStr) -> str:
    """``text`` (e.g. an HTTP library's error) with the URL, its path and userinfo taken out."""
    full = reveal(url)
    text = text.replace(full, safe_url(full))
    parts = urlsplit(full)
    for secret in (parts.path, parts.query, parts.password or "", parts.username or ""):
        if len(secret) > 3:
            text = text.replace(secret, "…")
    return text


def label_url(url: str) -> str:
    """A probe target as a label value: host and path kept (they tell probes apart), userinfo
    dropped and query values masked (a token there would otherwise live on in every series)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url  # host:port or a DNS name: nothing secret in it
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    path, qmark, query = path.partition("?")
    masked = "&".join(
        name + ("=…" if eq else "") for name, eq, _ in (p.partition("=") for p in query.split("&"))
    )
    return f"{scheme}://{host}{slash}{path}{qmark}{masked}"
