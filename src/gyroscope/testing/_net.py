"""Loopback ports and the rule for tests that need a real server.

A test that needs a real server (Redis, etcd, ...) started by ``scripts/services.sh`` calls
``require_server``: when the server is missing it skips on a developer's machine but *fails* in CI
(``CI=true``), so a broken install step can never turn into a silently green run.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["free_port", "port_open", "require_server", "wait_for_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts on ``host:port``; raise ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not port_open(host, port, timeout=0.2):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")
        time.sleep(0.05)


def require_server(name: str, host: str, port: int) -> None:
    """Skip (developer machine) or fail (CI) the calling test when ``name`` is not listening."""
    import pytest

    if port_open(host, port):
        return
    message = f"{name} is not running on {host}:{port}; start it with scripts/services.sh start"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
