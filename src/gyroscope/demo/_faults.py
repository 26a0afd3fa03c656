"""The faults a demo model server can be told to show, and how they are parsed and merged.

Faults are one frozen model; changing them builds a new one (``merge_faults``), so a request that
has read ``server.faults`` sees one consistent set for its whole life. Values come from JSON
(``POST /admin/faults``), from ``--fault key=value`` flags, or from ``gyroscope.yaml``; every bad
key or value becomes one ``DemoError`` line that names the key and what was expected.

>>> merge_faults(Faults(), {"error_rate": "0.25", "error_status": 503}).error_rate
0.25
>>> parse_fault_args(["hang=true", "latency_ms=200"])
{'hang': 'true', 'latency_ms': '200'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from gyroscope.core import StrictModel
from gyroscope.errors import DemoError

__all__ = ["Faults", "merge_faults", "parse_fault_args"]


class Faults(StrictModel):
    """What the server does wrong on purpose. The defaults are a healthy server.

    >>> Faults(error_rate=0.1).active()
    ['error_rate']
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of inference requests (0..1) answered with ``error_status`` instead of a completion."""
    error_status: int = Field(default=500, ge=400, le=599)
    """The HTTP status of an injected error (400..599)."""
    latency_ms: float = Field(default=0.0, ge=0.0, le=3_600_000.0)
    """Added before the first token of every inference request (the slot is not held meanwhile)."""
    token_delay_ms: float = Field(default=0.0, ge=0.0, le=60_000.0)
    """Added to every decode step, so every token of every running sequence comes this much later."""
    hang: bool = False
    """Inference requests are accepted and never answered (until the client gives up)."""
    close_mid_stream: bool = False
    """The connection is cut (reset) after ``close_after_tokens`` tokens."""
    close_after_tokens: int = Field(default=3, ge=0, le=1_000_000)
    """How many tokens ``close_mid_stream`` lets through before the cut."""
    crash: bool = False
    """The process exits at once (``os._exit(70)``); under ``gyro up`` that is the whole daemon."""
    refuse_connections: bool = False
    """Stop listening: new connections are refused, open ones carry on; clearing listens again."""
    unhealthy: bool = False
    """``GET /health`` answers 503."""
    down: bool = False
    """The replica is gone, as if its process died: it stops listening and resets every open
    connection (admin included, so pair it with ``clear_after_s`` to bring it back)."""
    clear_after_s: float = Field(default=0.0, ge=0.0, le=86_400.0)
    """When > 0, every fault is cleared this many seconds after being set (0: until cleared)."""

    def active(self) -> list[str]:
        """Names of the faults that differ from a healthy server (settings such as
        ``error_status`` count only with the fault they tune)."""
        names = []
        for name in ("error_rate", "latency_ms", "token_delay_ms"):
            if getattr(self, name) > 0:
                names.append(name)
        for name in (
            "hang",
            "close_mid_stream",
            "crash",
            "refuse_connections",
            "unhealthy",
            "down",
        ):
            if getattr(self, name):
                names.append(name)
        return names


def merge_faults(current: Faults, changes: Mapping[str, Any]) -> Faults:
    """``current`` with ``changes`` applied; raises ``DemoError`` naming the first bad key."""
    known = Faults.model_fields
    for key in changes:
        if key not in known:
            raise DemoError(f"unknown fault {key!r} (known: {', '.join(known)})")
    try:
        return Faults.model_validate({**current.model_dump(), **changes})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise DemoError(
            f"fault {key}: {message[:1].lower()}{message[1:]}, got {first.get('input')!r}"
        ) from None


def parse_fault_args(args: Iterable[str]) -> dict[str, str]:
    """Turn ``["key=value", ...]`` into a mapping (values stay text; ``merge_faults`` converts)."""
    changes: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key.strip():
            raise DemoError(f"expected key=value, got {arg!r} (e.g. error_rate=0.1)")
        changes[key.strip()] = value.strip()
    return changes
