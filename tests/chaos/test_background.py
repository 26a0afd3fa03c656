"""The sync face: ``FaultProxy.background`` on its own (uvloop) thread, driven from plain code."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from gyroscope.chaos import FaultProxy, Faults
from gyroscope.errors import AddressInUseError, ProxyError
from gyroscope.testing import require_server


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


@pytest.fixture
def echo_address() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def rtt(sock: socket.socket, data: bytes = b"ping") -> float:
    start = time.monotonic()
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        got += chunk
    assert got == data
    return time.monotonic() - start


def test_background_proxy_controlled_from_this_thread(echo_address: str) -> None:
    with FaultProxy.background(upstream=echo_address, name="bg") as proxy:
        assert proxy.address == f"127.0.0.1:{proxy.port}"
        assert proxy.health().status == "ok"
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            rtt(sock)
            assert proxy.update_faults(latency_ms=150).latency_ms == 150
            # 150 ms each way; uvloop's timers tick in whole milliseconds, so allow one
            assert rtt(sock) >= 0.299
            proxy.set_faults(Faults(refuse=True))
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            proxy.clear_faults()
            assert rtt(sock) < 0.3
            assert proxy.cut() == 1
            with pytest.raises(ConnectionResetError):
                rtt(sock)
        stats = proxy.stats()
        assert stats.connections_cut == 1 and stats.connections_accepted == 1
    assert proxy.stats().connections_active == 0  # stopped; still readable from this thread
    assert proxy.health().status == "down"


def test_bad_faults_are_one_line_errors(echo_address: str) -> None:
    with FaultProxy.background(upstream=echo_address) as proxy:
        with pytest.raises(ProxyError, match=r"latency_ms.*greater than or equal to 0"):
            proxy.update_faults(latency_ms=-5)
        with pytest.raises(ProxyError, match="unknown field 'latncy_ms'"):
            proxy.update_faults(latncy_ms=5)
        assert not proxy.faults.active()


def test_port_in_use_is_reported(echo_address: str) -> None:
    host, port = echo_address.split(":")
    with (
        pytest.raises(AddressInUseError, match="address already in use"),
        FaultProxy.background(upstream=echo_address, listen=f"{host}:{port}"),
    ):
        pass


def test_redis_through_the_proxy() -> None:
    require_server("redis", "127.0.0.1", 16379)
    redis = pytest.importorskip("redis")
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    with FaultProxy.background(upstream="127.0.0.1:16379", name="redis") as proxy:
        client = redis.Redis(
            host="127.0.0.1", port=proxy.port, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
        )
        try:
            client.set("gyro:chaos:test", b"v")
            assert client.get("gyro:chaos:test") == b"v"
            proxy.update_faults(latency_ms=200)
            start = time.monotonic()
            assert client.ping()
            assert time.monotonic() - start >= 0.4
            proxy.set_faults(Faults(blackhole=True))
            with pytest.raises(redis.TimeoutError):
                client.ping()
            proxy.clear_faults()
            client.connection_pool.disconnect()
            assert client.ping()
            accepted = proxy.stats().connections_accepted
            assert proxy.cut() == 1
            # The RST crosses loopback asynchronously under load: redis-py either notices it in
            # its pool's health check, or its next command fails on the reset socket. Either
            # way the following command goes over a new connection.
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
            assert client.ping()
            assert proxy.stats().connections_accepted == accepted + 1
            client.delete("gyro:chaos:test")
        finally:
            client.close()


def test_half_close_and_reset_on_uvloop(echo_address: str) -> None:
    payload = bytes(range(256)) * 1024
    with FaultProxy.background(upstream=echo_address) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # our FIN reaches the server; its answer still comes back
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
            assert got == payload
        proxy.update_faults(reset=True)
        # The RST may beat the end of connect() (a socket with a timeout) or come on recv().
        with (
            pytest.raises(ConnectionResetError),
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock,
        ):
            sock.recv(10)
        assert proxy.stats().connections_reset == 1


def test_control_api_token(echo_address: str) -> None:
    import httpx

    with FaultProxy.background(
        upstream=echo_address, control="127.0.0.1:0", control_token="s3cret"
    ) as proxy:
        assert proxy.control_url is not None
        with httpx.Client(base_url=proxy.control_url, timeout=10, trust_env=False) as http:
            assert http.get("/faults").status_code == 401
            bad = http.get("/faults", headers={"authorization": "Bearer nope"})
            assert bad.status_code == 401
            good = http.post(
                "/faults", json={"latency_ms": 5}, headers={"authorization": "Bearer s3cret"}
            )
            assert good.status_code == 200
        assert proxy.faults.latency_ms == 5


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_faults_changing_under_traffic_never_lose_or_reorder(echo_address: str, seed: int) -> None:
    """Latency, jitter, bandwidth and direction change every few ms from another thread while
    data streams both ways: every byte still arrives, in order."""
    import random

    rng = random.Random(seed)
    payload = rng.randbytes(512 * 1024)
    received = bytearray()
    with (
        FaultProxy.background(upstream=echo_address, seed=seed) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock,
    ):

        def read_all() -> None:
            while len(received) < len(payload):
                chunk = sock.recv(65536)
                if not chunk:
                    return
                received.extend(chunk)

        reader = threading.Thread(target=read_all)
        reader.start()
        writer = threading.Thread(target=sock.sendall, args=(payload,))
        writer.start()
        deadline = time.monotonic() + 60
        while reader.is_alive() and time.monotonic() < deadline:
            proxy.set_faults(
                Faults(
                    latency_ms=rng.choice([0, 0, 1, 5, 20]),
                    jitter_ms=rng.choice([0, 10]),
                    bandwidth_bps=rng.choice([0, 0, 2_000_000, 8_000_000]),
                    direction=rng.choice(["both", "upstream", "downstream"]),
                )
            )
            time.sleep(rng.uniform(0.002, 0.03))
        proxy.clear_faults()
        reader.join(timeout=30)
        writer.join(timeout=30)
    assert bytes(received) == payload
