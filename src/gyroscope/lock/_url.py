"""Lock backend URLs: checked once where they enter (one ConfigError line), shown without secrets.

Credentials may sit in a backend URL (``redis://:PASS@host``, ``etcd://user:PASS@host``, or a
``?password=`` query for redis); every message that names an endpoint goes through ``redact_url``.

>>> redact_url("redis://:s3cret@127.0.0.1:6379/0?password=x")
'redis://***@127.0.0.1:6379/0'
>>> check_backend_url("zookeeper://127.0.0.1:99999")
Traceback (most recent call last):
gyroscope.errors.ConfigError: backend: zookeeper://127.0.0.1:99999: port 99999 is out of range 1-65535
"""

from __future__ import annotations

import re

from gyroscope.errors import ConfigError

__all__ = ["check_backend_url", "redact_url", "scrub"]

_HOST = re.compile(r"\A(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)\Z")  # name, IPv4 or [IPv6]
# Schemes whose URL names network hosts, and whether a comma-separated list is allowed.
_NETWORK = {"redis": False, "etcd": True, "zookeeper": True}


def _authority(rest: str) -> tuple[str, str, str]:
    """(userinfo, hosts, path+query) of what follows ``scheme://``; userinfo ends at the last @."""
    userinfo, at, after = rest.rpartition("@")
    if not at:
        after = rest
    slash = after.find("/")
    query = after.find("?")
    cut = min(i for i in (slash, query, len(after)) if i >= 0)
    return userinfo if at else "", after[:cut], after[cut:]


def redact_url(url: str) -> str:
    """``url`` without user:password and without its query string (which may hold a password)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, hosts, tail = _authority(rest)
    shown = ("***@" if userinfo else "") + hosts + tail.partition("?")[0]
    return f"{scheme}://{shown}" if sep else shown


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error message) with ``url``'s credentials replaced by ***."""
    _, sep, rest = url.partition("://")
    userinfo, _, tail = _authority(rest if sep else url)
    secrets = [s for s in (userinfo, *userinfo.split(":", 1)) if len(s) >= 3]
    query = tail.partition("?")[2]
    secrets += [v for p in query.split("&") if len(v := p.partition("=")[2]) >= 3]
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def check_backend_url(url: str) -> str:
    """The scheme of ``url`` once its hosts and ports are valid; else one ConfigError line."""
    scheme, sep, rest = url.partition("://")
    shown = redact_url(url)
    if not sep or not scheme:
        raise ConfigError(
            f"{shown}: expected scheme://..., e.g. redis://127.0.0.1:6379/0", key="backend"
        )
    if scheme not in _NETWORK:
        return scheme
    _, hosts, tail = _authority(rest)
    entries = hosts.split(",") if _NETWORK[scheme] else [hosts]
    if scheme == "etcd":  # members may carry their own http(s)://
        entries = [re.sub(r"\A(?:https?://)?(?:.*@)?", "", e.strip()) for e in rest.split(",")]
        entries = [e.strip("/") for e in entries if e.strip("/")]
    if not entries or not any(entries):
        raise ConfigError(f"{shown}: no host; expected {scheme}://host:port", key="backend")
    for entry in entries:
        _check_host_port(entry, shown)
    if scheme == "redis":
        db = tail.partition("?")[0].strip("/")
        if db and not db.isdigit():
            raise ConfigError(
                f"{shown}: database {db!r} is not a number; expected redis://host:port/0",
                key="backend",
            )
    return scheme


def _check_host_port(entry: str, shown: str) -> None:
    host, port = entry, ""
    if entry.startswith("["):
        end = entry.find("]")
        host, port = entry[: end + 1], entry[end + 1 :].removeprefix(":")
    elif ":" in entry:
        host, _, port = entry.rpartition(":")
    if not host or not _HOST.match(host):
        raise ConfigError(f"{shown}: invalid host {host!r}", key="backend")
    if port == "" and ":" not in entry.removeprefix(host):
        return
    if not port.isdigit():
        raise ConfigError(f"{shown}: port {port!r} is not a number", key="backend")
    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"{shown}: port {int(port)} is out of range 1-65535", key="backend")
