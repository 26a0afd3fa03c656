"""The error tree of gyroscope.

Every error gyroscope raises on purpose is a ``GyroscopeError``. Each subsystem has its own base, and
specific subclasses carry the context a user needs (``path``, ``key``, ``upstream``, ``lock_name``) and
say whether trying again can help (``retryable``)::

    GyroscopeError
     ├── ConfigError                  bad configuration: file, key path, what was expected
     ├── DataDirError                 the data directory is unusable
     │    └── DataDirLockedError      another daemon holds it
     ├── FileWriteError               a file could not be written (also an OSError)
     ├── ServiceError                 a service failed to start, stop or reload
     │    └── AddressInUseError       a listener's address is taken
     ├── TargetError                  a remote endpoint is unreachable or answered garbage
     ├── DemoError                    the demo model server
     ├── ChaosError                   fault injection
     │    ├── ProxyError              the TCP fault proxy
     │    │    └── ProxyConfigError   its options are invalid
     │    └── ProcessFaultError       kill, pause or restart of a process
     ├── BenchError                   load, stress and benchmark tests
     │    ├── ScenarioError           a malformed scenario or data file (file, line, key)
     │    ├── BenchRunError           a test started but could not finish
     │    └── ThresholdFailed         a CI threshold did not hold
     ├── LockError                    distributed locks
     ├── GatewayError                 the load-balancing gateway
     ├── LogStoreError                log management
     ├── MonitorError                 monitoring and alerting
     └── BackupError                  backup and recovery

The CLI prints ``str(error)`` as one line on stderr and exits non-zero; it never shows a traceback for
a ``GyroscopeError``. Driver exceptions are mapped at backend boundaries with
``raise SomeError(...) from exc``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AddressInUseError",
    "BackupError",
    "BenchError",
    "BenchRunError",
    "ChaosError",
    "ConfigError",
    "DataDirError",
    "DataDirLockedError",
    "DemoError",
    "FileWriteError",
    "GatewayError",
    "GyroscopeError",
    "LockError",
    "LogStoreError",
    "MonitorError",
    "ProcessFaultError",
    "ProxyConfigError",
    "ProxyError",
    "ScenarioError",
    "ServiceError",
    "TargetError",
    "ThresholdFailed",
]


class GyroscopeError(Exception):
    """Root of every error gyroscope raises on purpose.

    ``retryable`` tells callers whether the same call may succeed later (a timeout, a busy server)
    or never will (bad input).
    """

    retryable: bool = False
    exit_code: int = 1


class ConfigError(GyroscopeError):
    """A configuration file or option is invalid.

    >>> str(ConfigError("expected an integer", path="gyro.yaml", key="demo.replicas[0].slots"))
    'gyro.yaml: demo.replicas[0].slots: expected an integer'
    """

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, key: str | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.key = key
        where = ": ".join(part for part in (self.path, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class DataDirError(GyroscopeError):
    """The data directory cannot be created, opened or written."""

    def __init__(self, message: str, *, path: str | Path):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class FileWriteError(GyroscopeError, OSError):
    """A file could not be written: its directory is missing, the disk is full, no permission.

    Also an ``OSError`` with the original ``errno``, so code that handles a full disk still does.

    >>> str(FileWriteError("out/r.json", FileNotFoundError(2, "No such file or directory")))
    'out/r.json: cannot write: directory out does not exist (create it or choose another path)'
    """

    def __init__(self, path: str | Path, cause: OSError):
        self.path = str(path)
        reason = cause.strerror or str(cause)
        if isinstance(cause, FileNotFoundError):
            parent = Path(self.path).parent
            reason = f"directory {parent} does not exist (create it or choose another path)"
        OSError.__init__(self, cause.errno, f"{self.path}: cannot write: {reason}")

    def __str__(self) -> str:
        return str(self.strerror)


class DataDirLockedError(DataDirError):
    """Another gyroscope daemon already uses this data directory."""

    retryable = True


class ServiceError(GyroscopeError):
    """A service failed to start, stop or reload."""

    def __init__(self, message: str, *, service: str | None = None):
        self.service = service
        super().__init__(f"{service}: {message}" if service else message)


class AddressInUseError(ServiceError):
    """A listener could not bind because its address is already in use."""

    def __init__(self, host: str, port: int, *, service: str | None = None):
        self.host = host
        self.port = port
        super().__init__(
            f"cannot listen on {host}:{port}: address already in use "
            "(stop the other process or choose another port)",
            service=service,
        )


class TargetError(GyroscopeError):
    """A remote endpoint is unreachable, timed out or answered something we cannot use."""

    retryable = True

    def __init__(self, message: str, *, target: str):
        self.target = target
        super().__init__(f"{target}: {message}")


class DemoError(GyroscopeError):
    """The demo model server was given something it cannot do."""


class ChaosError(GyroscopeError):
    """Fault injection failed or was asked for something impossible."""


class ProxyError(ChaosError):
    """The TCP fault proxy could not start or apply a fault."""


class ProxyConfigError(ProxyError):
    """A fault proxy's options are invalid (an address, a missing token): bad input, exit 2."""

    exit_code = 2


class ProcessFaultError(ChaosError):
    """A process fault (kill, pause, restart) could not be applied."""

    def __init__(self, message: str, *, pid: int | None = None):
        self.pid = pid
        super().__init__(f"pid {pid}: {message}" if pid is not None else message)


class BenchError(GyroscopeError):
    """A load, stress or benchmark test cannot run as asked: a bad URL, duration, rate, stage,
    header, scenario or result file (exit 2, like every bad input)."""

    exit_code = 2


class BenchRunError(BenchError):
    """A test started but could not finish (every worker failed, interrupted too early)."""

    exit_code = 1


class ScenarioError(BenchError):
    """A scenario or data file is malformed; names the file, line and key."""

    exit_code = 2

    def __init__(
        self, message: str, *, path: str | Path, line: int | None = None, key: str | None = None
    ):
        self.path = str(path)
        self.line = line
        self.key = key
        where = self.path + (f":{line}" if line is not None else "")
        if key:
            where += f": {key}"
        super().__init__(f"{where}: {message}")


class ThresholdFailed(BenchError):
    """At least one CI threshold did not hold; the message lists every failing one."""

    exit_code = 1


class LockError(GyroscopeError):
    """Base of distributed lock errors."""


class GatewayError(GyroscopeError):
    """Base of load-balancing gateway errors."""


class LogStoreError(GyroscopeError):
    """Base of log management errors."""


class MonitorError(GyroscopeError):
    """Base of monitoring and alerting errors."""


class BackupError(GyroscopeError):
    """Base of backup and recovery errors."""
