"""Checks of the API's input: query parameters and JSON bodies, each failure a ``ValueError``
whose message names the parameter or field (the API answers it with a 400)."""

from __future__ import annotations

import math
from typing import Any

from gyroscope.monitor._silences import parse_time

__all__ = ["json_kind", "json_object", "one", "param_time", "step_seconds", "strings"]


def one(params: dict[str, list[str]], name: str, default: str | None = None) -> str:
    """The first value of query parameter ``name``; ``default`` when absent (else an error)."""
    values = params.get(name)
    if values:
        return values[0]
    if default is None:
        raise ValueError(f"missing parameter {name!r}")
    return default


def param_time(params: dict[str, list[str]], name: str, default: str | None = None) -> float:
    """Query parameter ``name`` as Unix seconds (see ``parse_time``)."""
    try:
        return parse_time(one(params, name, default))
    except ValueError as exc:
        raise ValueError(f"invalid parameter {name!r}: {exc}") from None


def step_seconds(text: str) -> float:
    """Seconds (``15``, ``0.5``) or a duration (``1m``); finite and > 0."""
    from gyroscope.monitor._config import parse_duration

    try:
        step = float(text)
    except ValueError:
        try:
            step = parse_duration(text)
        except ValueError:
            raise ValueError(
                f"invalid parameter 'step': {text!r} is not a number of seconds or a duration"
            ) from None
    if not math.isfinite(step) or step <= 0:
        raise ValueError(f"invalid parameter 'step': {text!r} must be a positive duration")
    return step


def json_object(value: Any, what: str) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an error naming ``what`` and what it got."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {json_kind(value)}")
    return value


def strings(value: Any, what: str) -> dict[str, str]:
    """A JSON object of labels or annotations (``null`` = empty); values become strings."""
    if value is None:
        return {}
    return {str(k): str(v) for k, v in json_object(value, what).items()}


def json_kind(value: Any) -> str:
    """How a JSON value is described in an error: ``an array``, ``a string``, ``null``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else "a string"
