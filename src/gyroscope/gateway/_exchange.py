"""One proxied request: choose a replica, send the request, stream the answer back, or fail safely.

Hazards this module is built around:
- A retry is safe only before the first response byte reached the client, and only when the
  request can be sent again: a connect failure (nothing was sent), or an idempotent method, with
  the body still held in memory (up to ``retries.buffer_bytes``).
- A client that goes away aborts the upstream connection at once: the replica sees the close and
  frees its slot (a GPU slot for a model server). That connection never returns to the pool.
- Bytes flow as they arrive, each piece written at once (SSE events are not batched); when one
  side cannot keep up, the other side's reading is paused until it drains.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from gyroscope.gateway._extras import (
    admit,
    cached_answer,
    complete_extras,
    log_access,
    prepare_extras,
)
from gyroscope.gateway._request import dechunk, upstream_head
from gyroscope.gateway._response import (
    error_body,
    forwarded_headers,
    render_head,
    render_simple_head,
)

if TYPE_CHECKING:
    from gyroscope.gateway._cache import CachedResponse
    from gyroscope.gateway._client import ClientConnection
    from gyroscope.gateway._compress import Compressor
    from gyroscope.gateway._endpoint import Endpoint
    from gyroscope.gateway._gateway import Gateway, Route
    from gyroscope.gateway._head import SimpleHead
    from gyroscope.gateway._upstream import UpstreamConnection

__all__ = ["Exchange"]

# phases, for timeouts and for what a failure means
QUEUED: Final = 0
CONNECT: Final = 1
WAIT_HEAD: Final = 2
BODY: Final = 3
DONE: Final = 4


class Exchange:
    """A request from ``client`` through ``route`` to one replica (or more, when retried)."""

    # Defaults live on the class, so a plain request sets only what it changes: most exchanges
    # never touch the cache, compression, retries or rate-limit fields.
    phase = QUEUED
    deadline = 0.0
    progress = 0
    seen_progress = 0
    ep: Endpoint | None = None
    upconn: UpstreamConnection | None = None
    connect_task: asyncio.Task[UpstreamConnection] | None = None
    tried: tuple[Endpoint, ...] = ()
    attempts = 0
    retrying = False
    responded = False
    req_done = False
    status = 0
    body: list[bytes] | None = None  # request body not yet sent upstream
    body_size = 0
    replay: list[bytes] | None = None  # the whole body, while small enough to resend
    replayable = True
    resent = False
    chunked_in = False
    chunked_out = False
    expect_continue = False
    accept_encoding: bytes | None = None
    compressor: Compressor | None = None
    cache_key: bytes | None = None
    cache_body: list[bytes] | None = None
    cache_headers: list[tuple[bytes, bytes]] | None = None
    cache_size = 0
    cache_ttl = 0.0
    client_key: str | None = None
    tail: bytes | None = None
    until_close = False
    waiting_body = False
    request_id = b""

    def __init__(
        self,
        gw: Gateway,
        client: ClientConnection,
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        version: str,
        plain: tuple[Route, bytes, bytes] | None = None,
    ) -> None:
        self.gw = gw
        self.client = client
        self.method = method
        self.url = url
        self.headers = headers
        self.version = version
        self.started = gw.clock()
        if plain is not None:
            route, self.head, self.request_id = plain
            self.route: Route = route
            self.req_done = True
            return
        self.route = gw.routes[0] if gw.single_route else gw.match(url)
        # One pass over the request headers: the upstream head, and what it says about the body.
        (
            self.head,
            self.chunked_in,
            self.expect_continue,
            self.accept_encoding,
            self.request_id,
        ) = upstream_head(
            method,
            url,
            headers,
            client.peer_ip,
            self.route.compression is not None,
            gw.next_request_id,
        )

    @staticmethod
    def plain(
        gw: Gateway,
        client: ClientConnection,
        method: bytes,
        url: bytes,
        route: Route,
        head: bytes,
        request_id: bytes,
    ) -> Exchange:
        """A complete bodiless request whose upstream head is already built (see ``_request``)."""
        # A plain route reads no request header after the head is built.
        # Named, not ``cls``: compiled code then calls the constructor directly.
        return Exchange(gw, client, method, url, [], "1.1", (route, head, request_id))

    # -- request side ------------------------------------------------------------------------------
    def begin(self) -> None:
        """Headers are in: build the upstream head, apply limits, then dispatch (or wait for body)."""
        route, gw = self.route, self.gw
        if route.plain and not self.expect_continue:
            # No limits, cache or body key on this route. The common case (a replica free, an
            # idle pooled connection to it) is handled here: three calls less per request.
            eps = gw.available
            if eps and not gw.limited:
                ep = route.policy.pick(eps)
                if ep is not None:
                    conn = ep.pool.acquire()
                    if conn is not None:
                        self.ep = ep
                        ep.in_flight += 1
                        gw.in_flight += 1
                        self._attach(conn)
                        return
                    self._dispatched(ep)
                    return
            self.dispatch()
            return
        if self.expect_continue and not self.req_done:
            self.client.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if (route.limiter is not None or route.cache is not None) and not admit(self):
            return  # answered: rate-limited, or from the cache
        if route.key is None or not route.key.needs_body or self.req_done:
            self.dispatch()
        else:
            self.waiting_body = True

    def request_body(self, chunk: bytes) -> None:
        if self.phase == DONE:
            return
        self.body_size += len(chunk)
        if self.body_size > self.gw.limits.max_body_bytes:
            self.local(413, "request body too large", close=True)
            return
        data = b"%x\r\n%b\r\n" % (len(chunk), chunk) if self.chunked_in else chunk
        self._keep_for_replay(data)
        if self.upconn is not None and self.phase in (WAIT_HEAD, BODY):
            self.upconn.write(data)
        else:
            self._buffer(data)
            if self.body_size > 1 << 20:
                self.client.pause_reading()  # no replica yet: do not buffer without bound

    def _keep_for_replay(self, data: bytes) -> None:
        if not self.replayable:
            return
        if self.body_size > self.route.retry_buffer:
            self.replayable = False  # too big to keep: this request cannot be retried
            self.replay = None
        elif self.replay is None:
            self.replay = [data]
        else:
            self.replay.append(data)

    def _buffer(self, data: bytes) -> None:
        if self.body is None:
            self.body = [data]
        else:
            self.body.append(data)

    def request_done(self) -> None:
        self.req_done = True
        if self.phase == DONE:
            return
        end = b"0\r\n\r\n" if self.chunked_in else b""
        if end:
            self._keep_for_replay(end)
            if self.upconn is not None and self.phase in (WAIT_HEAD, BODY):
                self.upconn.write(end)
            else:
                self._buffer(end)
        if self.waiting_body:
            self.waiting_body = False
            self.dispatch()

    # -- choosing and connecting -----------------------------------------------------------------
    def dispatch(self) -> None:
        gw, route = self.gw, self.route
        key = None
        if route.key is not None:
            body = b"".join(self.replay or self.body or ()) if route.key.needs_body else b""
            if self.chunked_in and body:
                body = dechunk(body)
            key = route.key.key(self.headers, self.url, self.client.peer_ip, body)
        if gw.limited or self.tried:
            ep = gw.choose(route, key, self.tried)
        else:
            ep = route.policy.pick(gw.available, key) if gw.available else None
        if ep is None:
            if gw.any_full(self.tried) and gw.enqueue(self):
                self.phase = QUEUED
                self.deadline = gw.clock() + gw.limits.queue_timeout
                return
            reason = "no_replica" if not gw.available else "queue_full"
            route.counters.shed[reason] = route.counters.shed.get(reason, 0) + 1
            message = "no replica available" if reason == "no_replica" else "all replicas busy"
            self.local(503, message, float(gw.limits.retry_after))
            return
        self._dispatched(ep)

    def _dispatched(self, ep: Endpoint) -> None:
        self.ep = ep
        ep.in_flight += 1
        self.gw.in_flight += 1
        self._connect(ep)

    def _connect(self, ep: Endpoint) -> None:
        """Send on an idle pooled connection to ``ep``, or open a new one."""
        gw = self.gw
        conn = ep.pool.acquire()
        if conn is not None:
            self._attach(conn)
            return
        self.phase = CONNECT
        self.deadline = gw.clock() + gw.timeouts.connect
        task = gw.loop.create_task(ep.pool.connect(gw.timeouts.connect))
        self.connect_task = task
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[UpstreamConnection]) -> None:
        if self.connect_task is not task:
            if not task.cancelled() and task.exception() is None:
                conn = task.result()
                conn.pool.release(conn, self.gw.clock())  # we moved on; keep it for the next one
            return
        self.connect_task = None
        if task.cancelled() or task.exception() is not None:
            exc = None if task.cancelled() else task.exception()
            if exc is None or isinstance(exc, TimeoutError):
                self._failed("connect timeout", connect=True, status=504)  # as nginx answers
            else:
                self._failed(f"connect failed: {exc}", connect=True)
            return
        self._attach(task.result())

    def _attach(self, conn: UpstreamConnection) -> None:
        self.upconn = conn
        conn.exchange = self
        self.phase = WAIT_HEAD
        first_byte = self.gw.first_byte_timeout
        if first_byte:
            # Counted from now, when the request goes out: time spent queued for a free replica
            # or connecting has its own limits. Only a plain route attaching within ``begin``
            # (no deadline was ever set) may take its arrival time, read a moment ago.
            plain_now = self.deadline == 0.0 and self.route.plain
            self.deadline = (self.started if plain_now else self.gw.clock()) + first_byte
        body = self.body
        if body:
            self.body = None
            conn.write(self.head + b"".join(body))
        else:
            conn.write(self.head)
        if self.client.reading_paused:
            self.client.resume_reading()

    # -- response side -----------------------------------------------------------------------------
    def simple_response(self, conn: UpstreamConnection, head: SimpleHead, data: bytes) -> bool:
        """Forward a plain Content-Length answer (see ``_head``); False leaves it to httptools.

        The head goes out nearly as received, with the body bytes of the same read in one write.
        """
        route = self.route
        status, start, block, length, keep_alive, has_date = head
        if route.extras or self.method == b"HEAD" or status in route.retry_on_status:
            return False  # cache, compression, token counting, HEAD and retries need the full path
        self.status = status
        self.responded = True
        self.phase = BODY
        self.deadline = 0.0  # the sweeper arms the idle timeout when it first sees this phase
        self.progress += 1
        conn.keep_alive = keep_alive
        client = self.client
        keep = client.keep_alive and not client.closing and not self.gw.draining
        client.keep_alive = keep
        rid = self.request_id
        end = start + length
        if len(data) < end:
            conn.remaining = end - len(data)
            client.write(render_simple_head(status, block, has_date, keep, rid, data[start:]))
            return True
        if len(data) > end:
            conn.keep_alive = False  # bytes after the answer: the connection's state is unknown
        client.write(render_simple_head(status, block, has_date, keep, rid, data[start:end]))
        conn.exchange = None
        self.response_complete(conn)
        return True

    def response_head(
        self, conn: UpstreamConnection, status: int, headers: list[tuple[bytes, bytes]]
    ) -> bool:
        """Forward the head; True when no body follows (HEAD), so the parser must stop."""
        route = self.route
        if status in route.retry_on_status and self._may_retry(connect=False):
            self.upconn = None
            conn.exchange = None
            conn.abort()
            self._retry(f"status {status}")
            return False
        self.status = status
        self.responded = True
        self.phase = BODY
        self.deadline = 0.0  # the sweeper arms the idle timeout when it first sees this phase
        out, content_length, content_type, encoded, chunked = forwarded_headers(headers)
        no_body = self.method == b"HEAD" or status in (204, 304)
        self.until_close = not no_body and content_length is None and not chunked
        encoding = None
        if route.extras:
            encoding = prepare_extras(
                self, status, headers, content_length, content_type, encoded, no_body
            )
        if self.cache_body is not None:
            self.cache_headers = [h for h in out if h[0] not in (b"date", b"age")]
        if encoding is not None:
            out += ((b"content-encoding", encoding.encode()), (b"vary", b"accept-encoding"))
            content_length = None
        self._write_head(status, out, content_length, no_body)
        return self.method == b"HEAD"

    def _write_head(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        content_length: bytes | None,
        no_body: bool,
    ) -> None:
        client = self.client
        if content_length is not None or no_body:
            self.chunked_out = False
        elif self.version == "1.1":
            self.chunked_out = True
        else:
            client.keep_alive = False  # HTTP/1.0 client: the end of the body is the close
        keep = client.keep_alive and not client.closing and not self.gw.draining
        client.keep_alive = keep
        client.write(
            render_head(status, headers, content_length, self.chunked_out, keep, self.request_id)
        )

    def response_body(self, chunk: bytes) -> None:
        self.progress += 1
        if self.tail is not None:
            self.tail = (self.tail + chunk)[-4096:]
        if self.cache_body is not None:
            self.cache_size += len(chunk)
            if self.cache_size > self.route.cache_max_entry:
                self.cache_body = None
            else:
                self.cache_body.append(chunk)
        if self.compressor is not None:
            chunk = self.compressor.compress(chunk)
            if not chunk:
                return
        if self.chunked_out:
            self.client.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            self.client.write(chunk)

    def response_complete(self, conn: UpstreamConnection | None) -> None:
        if self.compressor is not None:
            rest = self.compressor.finish()
            if rest:
                self.client.write(b"%x\r\n%b\r\n" % (len(rest), rest))
        if self.chunked_out:
            self.client.write(b"0\r\n\r\n")
        now = self.gw.clock()
        if self.route.extras:
            complete_extras(self, now)
        self.upconn = None
        if conn is not None:
            if self.req_done:
                conn.pool.release(conn, now)
            else:
                conn.close()  # the request is still being sent: this connection is not reusable
        self._finish(gateway_error=False, now=now)

    # -- failures ----------------------------------------------------------------------------------
    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        self.upconn = None
        if self.phase == BODY and self.responded:
            if self.until_close:
                self.response_complete(None)  # a body delimited by the close has ended
                return
            # the response was cut short: the client must see a broken response, not a short one
            self.client.abort()
            self._finish(gateway_error=True)
            return
        if conn.uses > 1 and not conn.received and not self.resent and self.replayable:
            # A kept-alive connection the replica closed as we reused it (its idle timeout
            # crossed our request): nothing was processed, so send again on a fresh connection.
            self.resent = True
            self.body = list(self.replay) if self.replay else None
            if self.ep is not None:
                self._connect(self.ep)
                return
        self._failed(f"connection lost: {exc or 'closed by replica'}", connect=False)

    def upstream_garbage(self, conn: UpstreamConnection, message: str) -> None:
        self.upconn = None
        if self.responded:
            self.client.abort()
            self._finish(gateway_error=True)
            return
        self._failed(f"invalid response: {message}", connect=False, retry=False)

    def _failed(self, why: str, *, connect: bool, retry: bool = True, status: int = 502) -> None:
        if self.phase == DONE:
            return
        if retry and self._may_retry(connect=connect):
            self._retry(why)
            return
        self.local(status, f"upstream failed: {why}", gateway_error=True)

    def timed_out(self, now: float) -> None:
        """Called by the gateway's sweeper when ``deadline`` has passed."""
        phase = self.phase
        if phase == QUEUED:
            self.gw.dequeue(self)
            self.route.counters.shed["queue_timeout"] = (
                self.route.counters.shed.get("queue_timeout", 0) + 1
            )
            self.local(
                503, "timed out waiting for a free replica", float(self.gw.limits.retry_after)
            )
        elif phase == CONNECT:
            task, self.connect_task = self.connect_task, None
            if task is not None:
                task.cancel()
            self._failed("connect timeout", connect=True, status=504)
        elif phase == WAIT_HEAD:
            self._drop_upstream()
            self.local(504, "upstream did not answer in time", gateway_error=True)
        elif phase == BODY:
            self._drop_upstream()
            self.client.abort()
            self._finish(gateway_error=True)

    def client_gone(self) -> None:
        """The client closed its connection: stop the upstream work at once."""
        if self.phase == DONE:
            return
        if self.phase == QUEUED:
            self.gw.dequeue(self)
        self._drop_upstream()
        if not self.status:
            self.status = 499  # nginx's "client closed request"
        self._finish(gateway_error=False)

    def _drop_upstream(self) -> None:
        conn, self.upconn = self.upconn, None
        if conn is not None:
            conn.exchange = None
            conn.abort()

    def _may_retry(self, *, connect: bool) -> bool:
        route, gw = self.route, self.gw
        if self.responded or self.attempts >= route.retry_attempts or not self.replayable:
            return False
        if not connect and self.method not in route.retry_methods:
            return False
        if not route.budget.allow(gw.in_flight):
            return False
        return any(ep not in self.tried and ep is not self.ep for ep in gw.available)

    def _retry(self, why: str) -> None:
        ep = self.ep
        self.attempts += 1
        self.route.counters.retries += 1
        if not self.retrying:
            self.retrying = True
            self.route.budget.retrying += 1
        if ep is not None:
            self.tried += (ep,)
            self._release_ep(ep, self.status or 502, True, self.gw.clock())
        self.ep = None
        self.body = list(self.replay) if self.replay else None
        self.status = 0
        self.phase = QUEUED
        self.dispatch()

    # -- ending ------------------------------------------------------------------------------------
    def local(
        self,
        status: int,
        message: str,
        retry_after: float | None = None,
        *,
        gateway_error: bool = False,
        close: bool = False,
    ) -> None:
        """Answer from the gateway itself (errors, limits)."""
        if self.phase == DONE:
            return
        self._drop_upstream()
        if self.responded:
            self.client.abort()
            self._finish(gateway_error=gateway_error)
            return
        self.status = status
        self.responded = True
        headers = [(b"content-type", b"application/json")]
        if retry_after is not None:
            headers.append((b"retry-after", b"%d" % max(1, round(retry_after + 0.49))))
        body = error_body(status, message)
        if close or not self.req_done:
            self.client.keep_alive = False
        self._write_head(status, headers, b"%d" % len(body), self.method == b"HEAD")
        if self.method != b"HEAD":
            self.client.write(body)
        self._finish(gateway_error=gateway_error)

    def answer_cached(self, hit: CachedResponse, age: float) -> None:
        self.status = hit.status
        self.responded = True
        headers, body = cached_answer(self, hit)  # compressed as a miss would be
        out = [*headers, (b"age", b"%d" % int(age)), (b"x-cache", b"HIT")]
        no_body = self.method == b"HEAD"
        self._write_head(hit.status, out, b"%d" % len(body), no_body)
        if not no_body:
            self.client.write(body)
        self._finish(gateway_error=False)

    def _finish(self, *, gateway_error: bool, now: float = -1.0) -> None:
        # ``now``: the caller's clock reading (never negative), so the hot path reads it once.
        if self.phase == DONE:
            return
        self.phase = DONE
        # A connection still being opened goes to the pool when it is ready (see _connected).
        self.connect_task = None
        gw = self.gw
        if now < 0.0:
            now = gw.clock()
        if self.retrying:
            self.route.budget.retrying -= 1
        ep = self.ep
        if ep is not None:
            self._release_ep(ep, self.status, gateway_error, now)
        else:
            self.route.stats_for(None).observe(self.status, now - self.started)
        if gw.log_access:
            log_access(self, ep)
        self.client.exchange_done(self, now)

    def _release_ep(self, ep: Endpoint, status: int, gateway_error: bool, now: float) -> None:
        gw = self.gw
        ep.in_flight -= 1
        gw.in_flight -= 1
        elapsed = now - self.started
        route = self.route
        (route.stats.get(ep.name) or route.stats_for(ep)).observe(status, elapsed)
        if status != 499:
            if gw.track_latency and not gateway_error and status < 500:
                ep.observe_latency(elapsed, now)
            gw.outcome(ep, status, gateway_error, now)
        if gw.queue:
            gw.slot_freed()
