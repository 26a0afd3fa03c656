"""Process faults: kill -9, pause (SIGSTOP, then SIGCONT), resume.

A paused process keeps its sockets and locks but runs no code, which is exactly what a long GC pause,
a VM freeze or a swapped-out host looks like from outside: the hazard that leases and fencing tokens
exist for. ``pause(pid, seconds)`` resumes it from a timer thread, so it works from sync and async
code alike; the returned handle resumes early.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from types import TracebackType

import psutil

from gyroscope.errors import ProcessFaultError

__all__ = ["PauseHandle", "kill", "pause", "resume", "wait_gone"]


def _signal(pid: int, sig: signal.Signals, *, group: bool = False) -> None:
    if pid <= 0:
        raise ProcessFaultError("not a process id (expected a positive number)", pid=pid)
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        raise ProcessFaultError("no such process (it may have exited already)", pid=pid) from None
    except PermissionError:
        raise ProcessFaultError(
            f"not permitted to send {sig.name} (the process belongs to another user)", pid=pid
        ) from None


def _gone(pid: int) -> bool:
    """True when ``pid`` has exited: reaped when it is our child, else absent or a zombie."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        reaped = 0  # not our child: ask the kernel whether it still exists
    else:
        if reaped == pid:
            return True
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float = 5.0) -> None:
    """Wait until ``pid`` has exited; raise ``ProcessFaultError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            raise ProcessFaultError(f"still running {timeout:g} s after it was killed", pid=pid)
        time.sleep(0.01)


def kill(pid: int, *, timeout: float = 5.0) -> None:
    """SIGKILL ``pid`` (kill -9) and wait until it is gone (reaping it when it is our child).

    >>> kill(999_999_999)
    Traceback (most recent call last):
    ...
    gyroscope.errors.ProcessFaultError: pid 999999999: no such process (it may have exited already)
    """
    _signal(pid, signal.SIGKILL)
    wait_gone(pid, timeout)


def resume(pid: int) -> None:
    """SIGCONT ``pid``: a paused process runs again."""
    _signal(pid, signal.SIGCONT)


def _wait_stopped(pid: int, timeout: float = 2.0) -> None:
    """SIGSTOP is asynchronous; wait until the kernel reports the process stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = psutil.Process(pid).status()
        except psutil.NoSuchProcess:
            raise ProcessFaultError("exited while being paused", pid=pid) from None
        if status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
            return
        time.sleep(0.005)


class PauseHandle:
    """A paused process; ``resume()`` (or leaving the ``with`` block) lets it run again.

    >>> handle = pause(os.getpid(), seconds=0.1)  # doctest: +SKIP
    >>> handle.resume()  # doctest: +SKIP
    """

    def __init__(self, pid: int, seconds: float | None, *, group: bool = False) -> None:
        self.pid = pid
        self.seconds = seconds
        self._group = group
        self._lock = threading.Lock()
        self._resumed = threading.Event()
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self._resume_quietly)
            self._timer.daemon = True
            self._timer.start()

    @property
    def resumed(self) -> bool:
        return self._resumed.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the process has been resumed (by the timer or ``resume()``)."""
        return self._resumed.wait(timeout)

    def resume(self) -> None:
        """Resume now (cancelling the timer); does nothing when already resumed."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if self._resumed.is_set():
                return
            self._resumed.set()
            _signal(self.pid, signal.SIGCONT, group=self._group)

    def cancel(self) -> None:
        """Forget the timer without signalling (the process was killed, say)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._resumed.set()

    def _resume_quietly(self) -> None:
        with contextlib.suppress(ProcessFaultError):  # it may have exited meanwhile
            self.resume()

    def __enter__(self) -> PauseHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._resume_quietly()


def pause(pid: int, seconds: float | None = None, *, group: bool = False) -> PauseHandle:
    """SIGSTOP ``pid``; with ``seconds``, SIGCONT it after that long. Returns a ``PauseHandle``.

    ``group=True`` signals the process group ``pid`` leads (a service and its workers).
    """
    if seconds is not None and seconds < 0:
        raise ProcessFaultError(f"pause length must be >= 0 seconds, got {seconds}", pid=pid)
    _signal(pid, signal.SIGSTOP, group=group)
    _wait_stopped(pid)
    return PauseHandle(pid, seconds, group=group)
