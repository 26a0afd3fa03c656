"""Gateway errors: each says what went wrong with which replica and what to do."""

from __future__ import annotations

from gyroscope.errors import GatewayError

__all__ = ["AdminApiError", "BackendExistsError", "UnknownBackendError"]


class UnknownBackendError(GatewayError):
    """No replica has that name."""

    exit_code = 2

    def __init__(self, name: str) -> None:
        self.backend = name
        super().__init__(f"no backend named {name!r} (see `gyro gateway backends list`)")


class BackendExistsError(GatewayError):
    """A replica with that name is already configured."""

    exit_code = 2

    def __init__(self, name: str) -> None:
        self.backend = name
        super().__init__(f"backend {name!r} already exists (remove it first or pick another name)")


class AdminApiError(GatewayError):
    """The admin API could not be reached or refused the request."""

    retryable = True

    def __init__(self, message: str, *, url: str) -> None:
        self.url = url
        super().__init__(f"{url}: {message}")
