"""Config plumbing shared by every subsystem: YAML, ``${ENV}`` substitution, pydantic, one-line errors.

``load_config(Model, path)`` reads one file and returns a frozen model, or raises ``ConfigError``
naming the file, the key path and what was expected. The models themselves live with their
subsystems; the root of ``gyroscope.yaml`` is ``gyroscope.platform.GyroConfig``.

>>> class Demo(StrictModel):
...     port: int = 8000
>>> validate_config(Demo, {"port": "8001"}).port
8001
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from gyroscope.errors import ConfigError

__all__ = [
    "Address",
    "StrictModel",
    "format_validation_error",
    "is_loopback",
    "load_config",
    "parse_host_port",
    "read_yaml",
    "require_token_when_exposed",
    "validate_config",
]

M = TypeVar("M", bound="StrictModel")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, and a loaded config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_host_port(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:80`` for IPv6); raise ``ValueError`` with what was expected.

    >>> parse_host_port("127.0.0.1:8001"), parse_host_port("[::1]:9")
    (('127.0.0.1', 8001), ('::1', 9))
    """
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected host:port, got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535, got {port}")
    return host.strip("[]"), port


def _check_address(value: str) -> str:
    parse_host_port(value)
    return value


Address = Annotated[str, AfterValidator(_check_address)]
"""A ``host:port`` config value, checked when the config is loaded (``[::1]:80`` for IPv6)."""


def require_token_when_exposed(
    listen: str | None, token: object, *, what: str, key: str, env: str = "GYRO_TOKEN"
) -> None:
    """For config validators: a listener beyond loopback must have a token.

    >>> require_token_when_exposed("0.0.0.0:80", None, what="admin API", key="admin_token")
    Traceback (most recent call last):
    ValueError: admin API on 0.0.0.0 (not loopback) needs admin_token; set it, e.g. admin_token: ${GYRO_TOKEN}
    """
    if listen is None or token:
        return
    host, _ = parse_host_port(listen)
    if not is_loopback(host):
        field = key.rsplit(".", 1)[-1]
        raise ValueError(
            f"{what} on {host} (not loopback) needs {key}; set it, e.g. {field}: ${{{env}}}"
        )


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _substitute(node: Any, key: str, path: Path | None) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string, naming the key of a missing one."""
    if isinstance(node, dict):
        return {k: _substitute(v, f"{key}.{k}" if key else str(k), path) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, f"{key}[{i}]", path) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None:
            if default is None:
                raise ConfigError(
                    f"environment variable {name} is not set (export it or write ${{{name}:-default}})",
                    path=path,
                    key=key,
                )
            return default
        return value

    return _ENV_REF.sub(replace, node)


def format_validation_error(error: ValidationError, path: Path | None) -> ConfigError:
    """Turn pydantic's report into one line: the first problem's key path and reason."""
    first = error.errors()[0]
    key = ""
    for part in first["loc"]:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key (check its spelling; see the README for the keys each section takes)"
    elif (
        "input" in first
        and first["type"] not in ("missing",)
        and not isinstance(first["input"], dict | list)
    ):
        message = f"{message}, got {first['input']!r}"
    more = error.error_count() - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(message, path=path, key=key or None)


def validate_config(model: type[M], data: Any, path: Path | None = None) -> M:
    """Validate an already-parsed mapping (from YAML or code) against ``model``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of sections at the top level", path=path)
    data = _substitute(data, "", path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, path) from None


def read_yaml(path: Path) -> Any:
    """Read one YAML file; every problem becomes a ``ConfigError`` naming the file (and line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found (pass an existing file with -c)", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=path) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML: {problem}", path=where) from None
    return data


def load_config(model: type[M], path: Path) -> M:
    """Read ``path`` and validate it against ``model``."""
    return validate_config(model, read_yaml(path), path)
