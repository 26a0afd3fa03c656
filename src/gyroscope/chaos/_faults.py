"""What a fault proxy does to traffic: one immutable ``Faults`` value, replaced at runtime.

Every field defaults to "no fault", so ``Faults()`` is a transparent proxy. Values are validated
once, here, whether they come from Python, YAML, the HTTP control API or the CLI.

>>> Faults(latency_ms=100, direction="downstream").active()
True
>>> Faults.parse({"latency_ms": -1})
Traceback (most recent call last):
...
gyroscope.errors.ProxyError: faults: latency_ms: Input should be greater than or equal to 0, got -1
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError

from gyroscope.core import StrictModel
from gyroscope.errors import ProxyError

__all__ = ["Direction", "Faults"]

Direction = Literal["both", "upstream", "downstream"]

_HOUR_MS = 3_600_000


class Faults(StrictModel):
    """The faults one proxy applies; ``Faults()`` applies none.

    - ``latency_ms`` + ``jitter_ms``: each chunk is held ``latency_ms`` plus a uniform random
      ``0..jitter_ms`` before it is forwarded; chunks never overtake each other.
    - ``bandwidth_bps``: at most this many **bytes** per second per direction (0 = unlimited).
    - ``blackhole``: accept and keep connections open, but drop every byte.
    - ``reset``: new connections are accepted, then reset (RST).
    - ``refuse``: stop listening, so new connections are refused; clearing it listens again.
    - ``slow_close_ms``: hold a close (FIN) this long before passing it on.
    - ``timeout_ms``: stall (drop data) and close each connection this long after the fault
      reaches it (0 = off), like Toxiproxy's ``timeout`` toxic.
    - ``direction``: which way latency, bandwidth, blackhole and timeout's stall apply:
      ``upstream`` (client to server), ``downstream`` (server to client) or ``both``.

    >>> Faults(bandwidth_bps=1024).model_dump()["bandwidth_bps"]
    1024
    """

    latency_ms: int = Field(default=0, ge=0, le=_HOUR_MS)
    jitter_ms: int = Field(default=0, ge=0, le=_HOUR_MS)
    bandwidth_bps: int = Field(default=0, ge=0)
    blackhole: bool = False
    reset: bool = False
    refuse: bool = False
    slow_close_ms: int = Field(default=0, ge=0, le=_HOUR_MS)
    timeout_ms: int = Field(default=0, ge=0, le=_HOUR_MS)
    direction: Direction = "both"

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, base: Faults | None = None) -> Faults:
        """Validate ``data`` (merged over ``base``); raise ``ProxyError`` with one clear line."""
        if not isinstance(data, Mapping):
            raise ProxyError(f"faults: expected a JSON object of fault fields, got {data!r}")
        merged = {**(base.model_dump() if base is not None else {}), **data}
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise ProxyError(_one_line(exc)) from None

    def active(self) -> bool:
        """True when this applies any fault at all."""
        return self != _NONE

    def applies_to(self, direction: Literal["upstream", "downstream"]) -> bool:
        """True when direction-bound faults (latency, bandwidth, blackhole) act on ``direction``."""
        return self.direction in ("both", direction)

    def describe(self) -> str:
        """The active fields as ``key=value`` pairs, for logs and health reports."""
        changed = self.model_dump(exclude_defaults=True)
        return " ".join(f"{k}={v}" for k, v in changed.items()) or "none"


_NONE = Faults()


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "faults"
    if first["type"] == "extra_forbidden":
        known = ", ".join(Faults.model_fields)
        return f"faults: unknown field {key!r} (known fields: {known})"
    message = first["msg"].removeprefix("Value error, ")
    if "input" in first and not isinstance(first["input"], dict | list):
        message += f", got {first['input']!r}"
    return f"faults: {key}: {message}"
