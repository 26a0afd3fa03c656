"""Running a plan in this process or in ``workers`` processes, each with its own event loop.

Worker processes are fresh interpreters (``python -m gyroscope.bench._worker FD``, talking over a
socketpair with multiprocessing's pickle framing): nothing of the parent's loop or threads leaks in,
and unlike ``multiprocessing``'s spawn they never re-import the caller's ``__main__``. They import,
report ``ready``, and start together at one ``time.monotonic()`` instant the parent sends
(CLOCK_MONOTONIC is shared by all processes of the machine). Each second they send their interval so
the parent can show live progress; at the end they send their whole ``RunData`` (histograms encoded),
which the parent merges. Workers ignore SIGINT: Ctrl-C reaches the parent, which tells them to stop,
so a stopped run still returns everything measured until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from gyroscope.bench._engine import Engine, WorkerPlan
from gyroscope.bench._recorder import Interval, RunData
from gyroscope.core import run as run_loop
from gyroscope.errors import BenchRunError

__all__ = ["execute", "make_engine"]

ProgressFn = Callable[[int, Interval], None]


def make_engine(plan: WorkerPlan, on_tick: Callable[[Interval], None] | None = None) -> Engine:
    tracker = None
    if plan.stream:
        from gyroscope.bench._llm import make_tracker

        tracker = make_tracker(plan.llm)
    return Engine(plan, on_tick=on_tick, tracker=tracker)


def split_plan(plan: WorkerPlan, workers: int) -> list[WorkerPlan]:
    """One plan per worker: the rate, the users and the request count shared out."""
    plans = []
    for index in range(workers):
        count = None
        if plan.count is not None:
            count = plan.count // workers + (1 if index < plan.count % workers else 0)
        max_conns = max(1, plan.max_connections // workers)
        plans.append(
            dataclasses.replace(
                plan, workers=workers, index=index, count=count, max_connections=max_conns
            )
        )
    return plans


async def execute(
    plan: WorkerPlan,
    *,
    workers: int = 1,
    progress: ProgressFn | None = None,
    stop: asyncio.Event | None = None,
) -> tuple[RunData, bool]:
    """Run ``plan`` and return (merged data, interrupted). ``stop`` set -> stop early, keep data."""
    if workers <= 1:
        return await _in_process(plan, progress, stop)
    return await _in_workers(split_plan(plan, workers), progress, stop)


async def _in_process(
    plan: WorkerPlan, progress: ProgressFn | None, stop: asyncio.Event | None
) -> tuple[RunData, bool]:
    engine = make_engine(plan, on_tick=(lambda i: progress(0, i)) if progress else None)
    watcher = None
    if stop is not None:

        async def watch() -> None:
            await stop.wait()
            engine.stop(interrupted=True)

        watcher = asyncio.create_task(watch())
    try:
        data = await engine.run()
    finally:
        if watcher is not None:
            watcher.cancel()
    return data, engine.interrupted


def worker_main(fd: int) -> None:
    """Entry point of a worker process: read the plan from ``fd``, run it, send back the data."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pipe = Connection(fd)
    try:
        plan = pipe.recv()
        data, interrupted = run_loop(_worker(plan, pipe))
        pipe.send(("done", data.to_json(), interrupted))
    except BaseException as exc:  # report, never die silently: the parent would wait for nothing
        pipe.send(("failed", f"{type(exc).__name__}: {exc}", False))
    finally:
        pipe.close()


async def _worker(plan: WorkerPlan, pipe: Connection) -> tuple[RunData, bool]:
    loop = asyncio.get_running_loop()
    engine = make_engine(plan, on_tick=lambda i: pipe.send(("tick", i.to_json(), False)))
    pipe.send(("ready", None, False))
    start_at = await loop.run_in_executor(None, pipe.recv)
    if start_at == "stop":  # stopped before the start: nothing measured, nothing lost
        engine.interrupted = True
        return engine.rec.finish(time.monotonic()), True

    def on_message() -> None:
        try:
            message = pipe.recv()
        except EOFError:
            message = "stop"
        if message == "stop":
            engine.stop(interrupted=True)

    loop.add_reader(pipe.fileno(), on_message)
    try:
        data = await engine.run(start_at=float(start_at))
    finally:
        loop.remove_reader(pipe.fileno())
    return data, engine.interrupted


class _Workers:
    """The parent's side of a multi-process run: spawn, line up, relay progress, collect."""

    def __init__(self, plans: list[WorkerPlan], progress: ProgressFn | None) -> None:
        self.plans = plans
        self.progress = progress
        self.loop = asyncio.get_running_loop()
        self.pipes: list[Connection] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.results: dict[int, RunData] = {}
        self.failures: list[str] = []
        self.ready: set[int] = set()
        self.interrupted = False
        self.done: asyncio.Future[None] = self.loop.create_future()

    def spawn(self) -> None:
        for index, plan in enumerate(self.plans):
            ours, theirs = socket.socketpair()
            fd = theirs.fileno()
            argv = [sys.executable, "-m", "gyroscope.bench._worker", str(fd)]
            self.procs.append(subprocess.Popen(argv, pass_fds=(fd,)))
            theirs.close()
            pipe = Connection(ours.detach())
            pipe.send(plan)
            self.pipes.append(pipe)
            self.loop.add_reader(pipe.fileno(), self._on_readable, index)

    def stop(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send("stop")

    def _on_readable(self, index: int) -> None:
        try:
            kind, payload, flag = self.pipes[index].recv()
        except (EOFError, OSError):
            kind, payload, flag = "failed", "worker exited without a result", False
        if kind == "ready":
            self.ready.add(index)
            if len(self.ready) == len(self.plans):
                go = time.monotonic() + 0.05
                for pipe in self.pipes:
                    with contextlib.suppress(OSError):
                        pipe.send(go)
        elif kind == "tick":
            if self.progress is not None:
                self.progress(index, Interval.from_json(payload))
        else:
            self.loop.remove_reader(self.pipes[index].fileno())
            if kind == "done":
                self.results[index] = RunData.from_json(payload)
                self.interrupted = self.interrupted or bool(flag)
            else:
                self.failures.append(str(payload))
            if len(self.results) + len(self.failures) == len(self.plans) and not self.done.done():
                self.done.set_result(None)

    async def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError, ValueError):
                self.loop.remove_reader(pipe.fileno())
        for proc in self.procs:
            try:
                await self.loop.run_in_executor(None, proc.wait, 5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pipe in self.pipes:
            pipe.close()

    def merged(self) -> RunData:
        if self.failures and not self.results:
            raise BenchRunError(f"every worker failed: {self.failures[0]}")
        merged = RunData.merge([self.results[i] for i in sorted(self.results)])
        merged.warnings.extend(f"a worker failed: {f}" for f in self.failures)
        return merged


async def _in_workers(
    plans: list[WorkerPlan], progress: ProgressFn | None, stop: asyncio.Event | None
) -> tuple[RunData, bool]:
    workers = _Workers(plans, progress)
    stopper = None
    try:
        workers.spawn()
        if stop is not None:

            async def forward_stop() -> None:
                await stop.wait()
                workers.stop()

            stopper = asyncio.create_task(forward_stop())
        await workers.done
    finally:
        if stopper is not None:
            stopper.cancel()
        await workers.close()
    interrupted = workers.interrupted or bool(stop is not None and stop.is_set())
    return workers.merged(), interrupted


def stop_on_signals(stop: asyncio.Event) -> Callable[[], None]:
    """Set ``stop`` on SIGINT/SIGTERM; returns a function that puts the old handlers back."""
    loop = asyncio.get_running_loop()
    installed: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (
            NotImplementedError,
            RuntimeError,
            ValueError,
        ):  # pragma: no cover - not main thread
            pass

    def restore() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return restore
