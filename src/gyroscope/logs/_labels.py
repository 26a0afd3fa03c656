"""Label sets: the identity of a stream, ``{service="api", level="error"}``.

A label set is stored in its canonical text form: names sorted, values quoted and escaped the way
Prometheus and Loki write them, so equal sets always have equal bytes.

>>> canonical({"service": "api", "level": "error"})
'{level="error",service="api"}'
>>> parse_labels('{service="api", level="error"}')
{'level': 'error', 'service': 'api'}
"""

from __future__ import annotations

import re

from gyroscope.logs._errors import BadInputError

__all__ = ["MAX_LABELS", "canonical", "parse_labels", "validate_labels"]

MAX_LABELS = 32
MAX_LABEL_VALUE = 1024
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\Z)')


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def validate_labels(labels: dict[str, str]) -> dict[str, str]:
    """Return ``labels`` sorted, or raise ``BadInputError`` saying which label is wrong."""
    if not labels:
        raise BadInputError('a stream needs at least one label, e.g. {job="app"}')
    if len(labels) > MAX_LABELS:
        raise BadInputError(f"too many labels ({len(labels)} > {MAX_LABELS})")
    for name, value in labels.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise BadInputError(f"invalid label name {name!r} (use [a-zA-Z_][a-zA-Z0-9_]*)")
        if not isinstance(value, str):
            raise BadInputError(f"label {name!r}: value must be a string, got {value!r}")
        if len(value) > MAX_LABEL_VALUE:
            raise BadInputError(f"label {name!r}: value longer than {MAX_LABEL_VALUE} characters")
    return dict(sorted(labels.items()))


def canonical(labels: dict[str, str]) -> str:
    """The canonical text of a label set (validated)."""
    ordered = validate_labels(labels)
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in ordered.items()) + "}"


def parse_labels(text: str) -> dict[str, str]:
    """Parse ``{a="b", c="d"}`` (the form Loki's protobuf push and our files use)."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise BadInputError(f'invalid label set {text!r}: expected {{name="value", ...}}')
    body = body[1:-1].strip()
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        match = _PAIR.match(body, pos)
        if match is None:
            raise BadInputError(f"invalid label set {text!r} near position {pos + 1}")
        labels[match.group(1)] = _unescape(match.group(2))
        pos = match.end()
    return validate_labels(labels)
