"""A subprocess to inject faults into: kill -9, pause, resume, restart, and always cleaned up.

The process runs in its own session (process group), and every signal goes to the whole group, so a
shell wrapper and the server it starts are killed, paused and resumed together, and nothing outlives
the ``with`` block.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from gyroscope.chaos._process import PauseHandle, pause
from gyroscope.errors import ProcessFaultError

__all__ = ["ManagedProcess"]

_Output = int | IO[Any] | None


class ManagedProcess:
    """Start ``argv`` now and keep control of it.

    >>> import sys
    >>> with ManagedProcess([sys.executable, "-c", "import time; time.sleep(60)"]) as proc:
    ...     old = proc.pid
    ...     proc.restart() != old and proc.running
    True
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        *,
        stdout: _Output = None,
        stderr: _Output = None,
    ) -> None:
        if not argv:
            raise ProcessFaultError("nothing to run: the command is empty")
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._stdout = stdout
        self._stderr = stderr
        self._proc = self._spawn()
        self._pause: PauseHandle | None = None
        self.restarts = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=self._stdout,
                stderr=self._stderr,
                start_new_session=True,
            )
        except OSError as exc:
            raise ProcessFaultError(f"cannot start {self.argv[0]!r}: {exc.strerror}") from None

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    @property
    def paused(self) -> bool:
        return self._pause is not None and not self._pause.resumed

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit; raise ``ProcessFaultError`` after ``timeout`` seconds."""
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ProcessFaultError(f"still running after {timeout:g} s", pid=self.pid) from None

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # exited meanwhile: nothing to signal
            os.killpg(self._proc.pid, sig)

    def kill(self, timeout: float = 5.0) -> int:
        """kill -9 the process (and its group) and wait until it is gone; returns its exit code."""
        self._signal_group(signal.SIGKILL)
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None
        return self.wait(timeout)

    def pause(self, seconds: float | None = None) -> PauseHandle:
        """SIGSTOP the process group; with ``seconds``, it runs again after that long."""
        if not self.running:
            raise ProcessFaultError("cannot pause: the process has exited", pid=self.pid)
        self._pause = pause(self.pid, seconds, group=True)
        return self._pause

    def resume(self) -> None:
        """SIGCONT the process group (whether or not it was paused through this object)."""
        if self._pause is not None:
            self._pause.resume()
            self._pause = None
        elif self.running:
            self._signal_group(signal.SIGCONT)

    def restart(self) -> int:
        """kill -9, then start the same command again; returns the new pid."""
        self.kill()
        self._proc = self._spawn()
        self.restarts += 1
        return self._proc.pid

    def terminate(self, timeout: float = 5.0) -> int:
        """SIGTERM (resuming it if paused, so it can act on it), then SIGKILL after ``timeout``."""
        if self.running:
            self._signal_group(signal.SIGTERM)
            self._signal_group(signal.SIGCONT)
            deadline = time.monotonic() + timeout
            while self.running and time.monotonic() < deadline:
                time.sleep(0.01)
        if self._pause is not None:
            with contextlib.suppress(ProcessFaultError):
                self._pause.resume()
            self._pause = None
        # Kill the group even when the leader has exited: a worker it started may linger.
        self._signal_group(signal.SIGKILL)
        return self.wait(timeout)

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.terminate()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"<ManagedProcess pid={self.pid} {state} argv={self.argv!r}>"
