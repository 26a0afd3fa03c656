"""The load engine of one process: closed or open model over a keep-alive connection pool.

Closed model: ``users`` connections, each sending its next request as soon as the previous answer
arrives (after an optional think time); stages may add or retire users. Open model: requests are
due at the times a ``Schedule`` gives, whatever the server does; a due request takes an idle
connection, opens a new one (up to ``max_connections``) or waits in a queue. Its latency counts from
the time it was due, and how late it actually left is recorded as ``lag``.

Hazards handled here: a refused or unreachable target (every attempt is a counted error, retried
after a short pause so a dead target does not spin a core), a server that never answers (per-request
timeouts, swept every 100 ms), a server that speaks garbage (parser errors count as ``protocol``),
and the end of the run (no new sends; requests in flight get a short grace, then count as
``unfinished``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gyroscope.bench._conn import Conn, StreamConn, classify
from gyroscope.bench._recorder import Interval, Recorder, RunData
from gyroscope.bench._schedule import Schedule, stage_level
from gyroscope.bench._target import RequestSpec, Target, encode_request
from gyroscope.bench._units import Stage

__all__ = ["Engine", "WorkerPlan"]

log = logging.getLogger(__name__)

_RETRY_PAUSE = 0.01  # after a failed connect, so a dead target does not spin a core
_SWEEP = 0.1


@dataclass(frozen=True, kw_only=True)
class WorkerPlan:
    """What one worker process runs (picklable, sent to worker processes)."""

    target: Target
    address: tuple[str, int]
    requests: tuple[RequestSpec, ...]
    stages: tuple[Stage, ...]
    warmup: float = 0.0
    count: int | None = None
    timeout: float = 30.0
    connect_timeout: float = 5.0
    max_connections: int = 1000
    think_time: float = 0.0
    poisson: bool = False
    seed: int | None = None
    workers: int = 1
    index: int = 0
    drain: float = 2.0
    stream: bool = False
    rows: tuple[dict[str, str], ...] = ()
    llm: dict[str, Any] = field(default_factory=dict)

    @property
    def open_model(self) -> bool:
        return self.stages[0].kind == "rate"

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.stages)


def weighted_order(weights: list[float], slots: int = 100) -> list[int]:
    """One cycle of request indices in proportion to ``weights``, spread evenly (smooth weighted
    round robin, as nginx balances upstreams), so any stretch of a run sees the intended mix.

    >>> weighted_order([3, 1], slots=4)
    [0, 0, 1, 0]
    """
    scale = slots / max(sum(weights), 1e-9)
    ints = [max(1, round(w * scale)) for w in weights]
    total = sum(ints)
    current = [0] * len(ints)
    order = []
    for _ in range(total):
        for i, w in enumerate(ints):
            current[i] += w
        best = max(range(len(ints)), key=current.__getitem__)
        current[best] -= total
        order.append(best)
    return order


class Engine:
    """Runs one ``WorkerPlan`` on the current event loop and returns what it measured."""

    def __init__(
        self,
        plan: WorkerPlan,
        *,
        on_tick: Callable[[Interval], None] | None = None,
        tracker: Callable[[Engine], Any] | None = None,
    ) -> None:
        self.plan = plan
        self.rec = Recorder()
        self.on_tick = on_tick
        self.tracker = tracker  # makes each streaming connection's decoder in LLM mode
        self.conns: set[Conn] = set()
        self.idle: deque[Conn] = deque()
        self.pending: deque[float] = deque()
        self.connecting = 0
        self.remaining = plan.count if plan.count is not None else -1
        self.stopping = False
        self.interrupted = False
        self.users = 0
        self.peak = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pick = self._picker()
        self._ssl = plan.target.ssl_context()
        self._schedule: Schedule | None = None
        self._t_start = 0.0
        self._t_measure = 0.0
        self._lag = self.rec.buffers["lag"]
        self.open_model = plan.open_model
        # The closed model without think time or stream tracking takes a shorter path per response.
        self._fast = not self.open_model and plan.think_time <= 0 and tracker is None

    # -- request selection -------------------------------------------------------------------

    def _picker(self) -> Callable[[], tuple[bytes, frozenset[int]]]:
        plan = self.plan
        rows = list(plan.rows) or [{}]
        encoded = [
            [
                (encode_request(r.render(row) if r.variables else r, plan.target), r.expect)
                for row in rows
            ]
            if r.variables
            else [(encode_request(r, plan.target), r.expect)]
            for r in plan.requests
        ]
        if len(encoded) == 1 and len(encoded[0]) == 1:
            only = encoded[0][0]
            return lambda: only
        order = weighted_order([r.weight for r in plan.requests])
        which = itertools.cycle(order)
        rows_at = [itertools.cycle(range(plan.index, plan.index + len(e))) for e in encoded]

        def pick() -> tuple[bytes, frozenset[int]]:
            i = next(which)
            versions = encoded[i]
            return versions[next(rows_at[i]) % len(versions)]

        return pick

    # -- running -------------------------------------------------------------------------------

    async def run(self, start_at: float | None = None) -> RunData:
        """Run the plan; ``start_at`` (monotonic) lines several workers up on one start time."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._done = loop.create_future()
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        self._t_start = time.monotonic()
        plan = self.plan
        self._t_measure = self._t_start + plan.warmup
        if plan.warmup > 0:
            self.rec.recording = False
            loop.call_later(plan.warmup, self._end_warmup)
        else:
            self.rec.start(self._t_measure)
        loop.call_later(plan.warmup + plan.duration, self.stop)
        loop.call_later(_SWEEP, self._sweep)
        loop.call_later(plan.warmup + 1.0 if plan.warmup > 0 else 1.0, self._tick)
        if self.open_model:
            warm = (
                (
                    Stage(
                        duration=plan.warmup,
                        start=plan.stages[0].start,
                        end=plan.stages[0].start,
                        kind="rate",
                    ),
                )
                if plan.warmup > 0
                else ()
            )
            self._schedule = Schedule(
                warm + plan.stages,
                workers=plan.workers,
                index=plan.index,
                poisson=plan.poisson,
                seed=plan.seed,
            )
            self._next_due = self._schedule.next()
            self._fire()
        else:
            self._adjust_users()
        try:
            await self._done
        except asyncio.CancelledError:
            self.interrupted = True
        await self._drain()
        data = self.rec.finish(time.monotonic())
        data.counters["unsent"] += sum(1 for due in self.pending if due >= self._t_measure)
        data.counters["peak_connections"] = self.peak
        return data

    def stop(self, *, interrupted: bool = False) -> None:
        """Stop sending; requests in flight get ``plan.drain`` seconds to finish."""
        self.interrupted = self.interrupted or interrupted
        if self._done is not None and not self._done.done():
            self.stopping = True
            self._done.set_result(None)

    async def _drain(self) -> None:
        deadline = time.monotonic() + min(self.plan.drain, self.plan.timeout)
        # Polling keeps the hot path free of per-response bookkeeping for this rare moment.
        while any(c.busy for c in self.conns) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        unfinished = sum(1 for c in self.conns if c.busy and c.start >= self._t_measure)
        self.rec.data.counters["unfinished"] += unfinished
        for conn in list(self.conns):
            conn.busy = False
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        self.conns.clear()

    def _end_warmup(self) -> None:
        self.rec.start(time.monotonic())
        self.rec.recording = True

    def _tick(self) -> None:
        if self._done is None or self._done.done():
            return
        now = time.monotonic()
        interval = self.rec.tick(now)
        if self.on_tick is not None:
            self.on_tick(interval)
        # Aim at the end of the next whole second of the run (timers may fire a little early or
        # late; the next deadline does not drift with them).
        due = self._t_measure + interval.t + 2
        self._loop.call_later(max(0.0, due - time.monotonic()), self._tick)  # type: ignore[union-attr]

    def _sweep(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        timeout = self.plan.timeout
        for conn in list(self.conns):
            if conn.busy and now - conn.sent > timeout:
                conn.fail("timeout")
        if not self.open_model:
            self._adjust_users()
        self._loop.call_later(_SWEEP, self._sweep)  # type: ignore[union-attr]

    # -- connections ---------------------------------------------------------------------------

    def _open(self, delay: float = 0.0) -> None:
        conn = Conn(self) if self.tracker is None else StreamConn(self, self.tracker(self))
        self.connecting += 1
        task = self._loop.create_task(self._connect(conn, delay))  # type: ignore[union-attr]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: Conn, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        host, port = self.plan.address
        try:
            await asyncio.wait_for(
                self._loop.create_connection(  # type: ignore[union-attr]
                    lambda: conn,
                    host,
                    port,
                    ssl=self._ssl,
                    server_hostname=self.plan.target.host if self._ssl else None,
                ),
                self.plan.connect_timeout,
            )
        except (OSError, TimeoutError, ValueError) as exc:
            self.connecting -= 1
            self._connect_failed(classify(exc))

    def on_ready(self, conn: Conn) -> None:
        self.connecting -= 1
        self.conns.add(conn)
        self.peak = max(self.peak, len(self.conns))
        if self.stopping:
            conn.close()
            return
        self._next(conn, time.monotonic())

    def _connect_failed(self, kind: str) -> None:
        if self.stopping:
            return
        # The attempt stands for one request: count it, then try again after a pause.
        if self.open_model:
            if self.pending:
                due = self.pending.popleft()
                if due >= self._t_measure:
                    self.rec.error(kind)
            if self.pending:
                self._open(_RETRY_PAUSE)
        else:
            if self.remaining == 0:
                self._maybe_finish()
                return
            self.remaining -= 1
            self.rec.error(kind)
            self._open(_RETRY_PAUSE)

    def on_failure(self, conn: Conn, kind: str) -> None:
        self.conns.discard(conn)
        if kind and conn.start >= self._t_measure:
            self.rec.error(kind)
        if self.stopping:
            return
        if self.open_model:
            if self.pending and len(self.conns) + self.connecting < self.plan.max_connections:
                self._open()
        elif not conn.retire:
            self._open(_RETRY_PAUSE if kind else 0.0)
        else:
            self.users -= 1
        self._maybe_finish()

    def on_response(self, conn: Conn, status: int, keep_alive: bool) -> None:
        now = time.monotonic()
        rec = self.rec
        if rec.recording and conn.start >= self._t_measure:
            rec.requests += 1
            rec.latency.append(int((now - conn.start) * 1e6))
            rec.bytes_in += conn.nbytes
            rec.status[status] += 1
            if status in conn.expect:
                rec.ok += 1
            else:
                rec.failed += 1
                rec.errors["bad_status"] += 1
            if conn.slot is not None:
                conn.slot.finish(now, status in conn.expect)
        conn.slot = None
        if keep_alive and self._fast and self.remaining and not self.stopping and not conn.retire:
            data, expect = self._pick()
            if self.remaining > 0:
                self.remaining -= 1
            rec.bytes_out += len(data)
            conn.send(data, now, expect, now)
            return
        if not keep_alive:
            self.conns.discard(conn)
            conn.close()
            if not self.stopping and not (conn.retire and not self.open_model):
                if not self.open_model or self.pending:
                    self._open()
            elif conn.retire:
                self.users -= 1
            self._maybe_finish()
            return
        self._next(conn, now)

    # -- what a free connection does next ------------------------------------------------------

    def _next(self, conn: Conn, now: float) -> None:
        if self.stopping:
            self._maybe_finish()
            return
        if self.open_model:
            if self.pending:
                self._send(conn, self.pending.popleft(), now)
            else:
                self.idle.append(conn)
            return
        if conn.retire:
            self.conns.discard(conn)
            conn.close()
            self.users -= 1
            return
        if self.remaining == 0:
            self._maybe_finish()
            return
        think = self.plan.think_time
        if think > 0:
            self._loop.call_later(think, self._send_closed, conn)  # type: ignore[union-attr]
        else:
            self._send(conn, now, now)

    def _send_closed(self, conn: Conn) -> None:
        if not self.stopping and not conn.closed and not conn.busy and self.remaining != 0:
            now = time.monotonic()
            self._send(conn, now, now)

    def _send(self, conn: Conn, due: float, now: float) -> None:
        data, expect = self._pick()
        if self.remaining > 0:
            self.remaining -= 1
        if self.rec.recording:
            self.rec.bytes_out += len(data)
            if self.open_model:
                self._lag.append(int((now - due) * 1e6))
        conn.send(data, due, expect, now)
        sink = conn.sink
        if sink is not None:
            sink.reset(due)
            conn.slot = sink

    def _maybe_finish(self) -> None:
        if self.remaining == 0 and not any(c.busy for c in self.conns) and not self.pending:
            self.stop()

    # -- the two load models -------------------------------------------------------------------

    def _fire(self) -> None:
        """Open model: send every request that is due, then sleep until the next one."""
        if self.stopping or self._schedule is None:
            return
        now = time.monotonic()
        elapsed = now - self._t_start
        due = self._next_due
        while due is not None and due <= elapsed:
            if self.remaining == 0:
                break
            self._dispatch(self._t_start + due, now)
            due = self._schedule.next()
        self._next_due = due
        if due is None or self.remaining == 0:
            return
        # libuv timers tick in whole milliseconds and round a shorter wait down to zero, which
        # would spin the loop; wait at least 1 ms (a late send shows up as lag, never hidden).
        self._loop.call_later(max(0.001, due - elapsed), self._fire)  # type: ignore[union-attr]

    def _dispatch(self, due: float, now: float) -> None:
        while self.idle:
            conn = self.idle.popleft()
            if not conn.closed:
                self._send(conn, due, now)
                return
        self.pending.append(due)
        if len(self.conns) + self.connecting < self.plan.max_connections and (
            self.connecting < len(self.pending)
        ):
            self._open()

    def _adjust_users(self) -> None:
        """Closed model: start or retire users to follow the stage level."""
        if self.stopping:
            return
        elapsed = time.monotonic() - self._t_start - self.plan.warmup
        level = stage_level(self.plan.stages, max(elapsed, 0.0))
        if level is None:
            return
        share = round(level) // self.plan.workers + (
            1 if self.plan.index < round(level) % self.plan.workers else 0
        )
        while self.users < share:
            self.users += 1
            self._open()
        if self.users > share:
            extra = self.users - share
            for conn in self.conns:
                if extra == 0:
                    break
                if not conn.retire:
                    conn.retire = True
                    extra -= 1
