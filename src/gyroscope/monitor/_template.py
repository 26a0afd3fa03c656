"""The part of Prometheus's Go templates that alert annotations use.

Supported: ``{{ $labels.name }}``, ``{{ $value }}``, ``{{ .Labels.name }}``, ``{{ .Value }}``,
``{{ $externalLabels.name }}``, string literals, and the functions ``humanize``,
``humanizePercentage``, ``humanizeDuration``, ``printf``, ``toUpper``, ``toLower``, ``title``,
called directly or through pipes. Anything else is a ``TemplateError`` that ``rules check`` reports.

>>> render("{{ $labels.instance }} is down ({{ $value | humanize }})", {"instance": "a:1"}, 1234.5)
'a:1 is down (1.234k)'
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Mapping

__all__ = ["TemplateError", "check_template", "render"]

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)


class TemplateError(ValueError):
    """A template uses something this renderer does not know."""


def _humanize(value: float) -> str:
    if value == 0 or math.isnan(value) or math.isinf(value):
        return f"{value:.4g}"
    prefixes = ["", "k", "M", "G", "T", "P", "E"]
    small = ["", "m", "u", "n", "p"]
    if abs(value) >= 1:
        i = 0
        while abs(value) >= 1000 and i < len(prefixes) - 1:
            value /= 1000
            i += 1
        return f"{value:.4g}{prefixes[i]}"
    i = 0
    while abs(value) < 1 and i < len(small) - 1:
        value *= 1000
        i += 1
    return f"{value:.4g}{small[i]}"


def _duration(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.4g}ms"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size:
            parts.append(f"{int(value // size)}{unit}")
            value %= size
    parts.append(f"{int(value)}s")
    return " ".join(parts)


def _num(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TemplateError(f"expected a number, got {value!r}") from None


def _printf(fmt: object, *args: object) -> str:
    text = str(fmt).replace("%v", "%s")
    try:
        return text % args
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"printf {fmt!r}: {exc}") from None


FUNCTIONS: dict[str, Callable[..., str]] = {
    "humanize": lambda v: _humanize(_num(v)),
    "humanizePercentage": lambda v: f"{_num(v) * 100:.4g}%",
    "humanizeDuration": lambda v: _duration(_num(v)),
    "printf": _printf,
    "toUpper": lambda v: str(v).upper(),
    "toLower": lambda v: str(v).lower(),
    "title": lambda v: str(v).title(),
}


def _term(
    token: str, labels: Mapping[str, str], value: float, external: Mapping[str, str]
) -> object:
    if token in ("$value", ".Value"):
        return value
    for prefix, source in (
        ("$labels.", labels),
        (".Labels.", labels),
        ("$externalLabels.", external),
    ):
        if token.startswith(prefix):
            return source.get(token[len(prefix) :], "")
    if token[:1] == '"' or token[:1] == "`":
        return token[1:-1]
    try:
        return float(token)
    except ValueError:
        raise TemplateError(f"unknown template term {token!r}") from None


def _action(text: str, labels: Mapping[str, str], value: float, external: Mapping[str, str]) -> str:
    result: list[object] = []
    for stage in text.split("|"):
        try:
            words = shlex.split(stage.strip(), posix=False)
        except ValueError as exc:
            raise TemplateError(f"cannot parse {{{{ {text} }}}}: {exc}") from None
        if not words:
            raise TemplateError(f"empty pipeline stage in {{{{ {text} }}}}")
        if words[0] in FUNCTIONS:
            args = [_term(w, labels, value, external) for w in words[1:]]
            result = [FUNCTIONS[words[0]](*args, *result)]
        elif len(words) == 1 and not result:
            result = [_term(words[0], labels, value, external)]
        else:
            raise TemplateError(f"unknown template function {words[0]!r}")
    out = result[0] if result else ""
    if isinstance(out, float):
        return (
            repr(out) if not out.is_integer() else str(int(out)) if abs(out) < 1e15 else repr(out)
        )
    return str(out)


def render(
    template: str,
    labels: Mapping[str, str],
    value: float,
    external: Mapping[str, str] | None = None,
) -> str:
    """Expand every ``{{ ... }}`` in ``template``."""
    ext = external or {}
    return _ACTION.sub(lambda m: _action(m.group(1), labels, value, ext), template)


def check_template(template: str) -> None:
    """Raise ``TemplateError`` when ``template`` uses something ``render`` cannot do."""
    render(template, {}, 1.0, {})
