"""Scraping (including a target answering garbage), HTTP/TCP/DNS probes, host, GPU and Redis checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gyroscope.core import HttpServer, Request, Response
from gyroscope.monitor import TSDB, Engine
from gyroscope.monitor._checks import database_samples, gpu_samples, gpu_status, host_samples, probe
from gyroscope.monitor._chunks import is_stale
from gyroscope.monitor._config import DatabaseCheck, HostConfig, ProbeConfig
from gyroscope.monitor._scrape import ScrapeTarget
from gyroscope.testing import free_port, require_server


class Target:
    def __init__(self) -> None:
        self.body = b'# TYPE req counter\nreq_total{code="200"} 5\nqueue 2\n'
        self.status = 200
        self.server = HttpServer(self.handle, port=0, name="target")

    async def handle(self, request: Request) -> Response:
        if request.path == "/json":
            return Response.json({"status": {"ready": True}, "items": [1, 2]})
        return Response(self.body, status=self.status)


@pytest.fixture
async def target() -> Target:
    t = Target()
    await t.server.start()
    yield t  # type: ignore[misc]
    await t.server.stop(0.5)


def values(db: TSDB, query: str, t: float) -> dict[str, float]:
    result = Engine(db).instant(query, t)
    assert isinstance(result, list)
    return {dict(lb).get("__name__", "") + str(sorted(dict(lb).items())): v for lb, v in result}  # type: ignore[misc]


async def test_scrape_stores_samples_and_garbage_stores_nothing(
    tmp_path: Path, target: Target
) -> None:
    db = TSDB(tmp_path / "t.sqlite")
    async with httpx.AsyncClient() as client:
        scraper = ScrapeTarget(db, client, job="app", address=f"127.0.0.1:{target.server.port}")
        await scraper.scrape_once(1_000_000)
        assert scraper.state.health == "up" and scraper.state.samples == 2
        got = Engine(db).instant('req_total{job="app"}', 1000.0)
        assert got == [
            (
                (
                    ("__name__", "req_total"),
                    ("code", "200"),
                    ("instance", scraper.address),
                    ("job", "app"),
                ),
                5.0,
            )
        ]
        target.body = b'req_total{code="200"} 6\n<html>oops</html>\n'
        await scraper.scrape_once(1_001_000)
        assert scraper.state.health == "down"
        assert "line 2" in scraper.state.last_error
        assert "not the Prometheus text format" in scraper.state.last_error
        (sid,) = db.series_ids([("__name__", "=", "req_total")])
        stored = db.read(sid, 1_001_000, 1_001_000).values
        assert len(stored) == 1 and is_stale(stored)[0]  # the 6 was taken back; a staleness marker
        # nothing from the garbage page was stored, the old series went stale, up is 0
        assert Engine(db).instant("req_total", 1001.0) == []
        assert [v for _, v in Engine(db).instant("up", 1001.0)] == [0.0]  # type: ignore[misc]
        target.body = b"queue 3\n"
        await scraper.scrape_once(1_002_000)
        assert [v for _, v in Engine(db).instant("queue", 1002.0)] == [3.0]  # type: ignore[misc]
        assert scraper.as_dict()["health"] == "up"


async def test_unreachable_target_is_down(tmp_path: Path) -> None:
    db = TSDB(tmp_path / "t.sqlite")
    async with httpx.AsyncClient() as client:
        scraper = ScrapeTarget(db, client, job="app", address=f"127.0.0.1:{free_port()}", timeout=2)
        await scraper.scrape_once(1_000_000)
    assert scraper.state.health == "down"
    assert [v for _, v in Engine(db).instant("up", 1000.0)] == [0.0]  # type: ignore[misc]


def _by_name(samples: list[tuple[tuple[tuple[str, str], ...], float]]) -> dict[str, float]:
    return {dict(lb)["__name__"]: v for lb, v in samples}


async def test_http_probe_checks_status_body_and_json(target: Target) -> None:
    base = f"http://127.0.0.1:{target.server.port}"
    async with httpx.AsyncClient() as client:
        ok = _by_name(
            await probe(
                ProbeConfig(
                    name="p", target=f"{base}/json", json_path="status.ready", json_value=True
                ),
                client,
            )
        )
        assert ok["probe_success"] == 1.0 and ok["probe_http_status_code"] == 200.0
        assert ok["probe_duration_seconds"] > 0
        wrong = _by_name(
            await probe(
                ProbeConfig(name="p", target=f"{base}/json", json_path="items.1", json_value=3),
                client,
            )
        )
        assert wrong["probe_success"] == 0.0
        body = _by_name(
            await probe(ProbeConfig(name="p", target=f"{base}/m", body_regex="queue \\d"), client)
        )
        assert body["probe_success"] == 1.0
        target.status = 503
        bad = _by_name(await probe(ProbeConfig(name="p", target=f"{base}/m"), client))
        assert bad["probe_success"] == 0.0 and bad["probe_http_status_code"] == 503.0
        down = _by_name(
            await probe(ProbeConfig(name="p", target=f"http://127.0.0.1:{free_port()}/"), client)
        )
        assert down["probe_success"] == 0.0


async def test_http_probe_labels_carry_no_credentials(target: Target) -> None:
    """A target's user:password and query values reach the replica but never a label: series and
    alerts keep their labels for as long as the data is retained."""
    port = target.server.port
    url = f"http://probe:s3cret-pw@127.0.0.1:{port}/m?token=t0ken-value&verbose"
    async with httpx.AsyncClient() as client:
        samples = await probe(ProbeConfig(name="p", target=url), client)
    assert _by_name(samples)["probe_success"] == 1.0
    instances = {dict(lb)["instance"] for lb, _ in samples}
    assert instances == {f"http://127.0.0.1:{port}/m?token=…&verbose"}
    assert "s3cret" not in repr(samples) and "t0ken" not in repr(samples)


async def test_tcp_and_dns_probes(target: Target) -> None:
    async with httpx.AsyncClient() as client:
        up = _by_name(
            await probe(
                ProbeConfig(name="t", kind="tcp", target=f"127.0.0.1:{target.server.port}"), client
            )
        )
        down = _by_name(
            await probe(
                ProbeConfig(name="t", kind="tcp", target=f"127.0.0.1:{free_port()}"), client
            )
        )
        dns = _by_name(await probe(ProbeConfig(name="d", kind="dns", target="localhost"), client))
        nodns = _by_name(
            await probe(
                ProbeConfig(name="d", kind="dns", target="no-such-host.invalid", timeout=5), client
            )
        )
    assert (up["probe_success"], down["probe_success"]) == (1.0, 0.0)
    assert (dns["probe_success"], nodns["probe_success"]) == (1.0, 0.0)


def test_host_metrics_and_no_gpu() -> None:
    import os

    import psutil

    own = psutil.Process(os.getpid()).name()
    samples = host_samples(HostConfig(processes=[own]))
    mine = [dict(lb) for lb, _ in samples if dict(lb).get("pid") == str(os.getpid())]
    assert {m["__name__"] for m in mine} == {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    }
    got = _by_name(samples)
    assert got["node_memory_total_bytes"] > got["node_memory_available_bytes"] > 0
    assert "node_load1" in got and "node_filesystem_size_bytes" in got
    assert gpu_status().startswith("no GPU")
    assert gpu_samples() == []


async def test_redis_check() -> None:
    require_server("redis", "127.0.0.1", 16379)
    got = _by_name(
        await database_samples(DatabaseCheck(name="r", kind="redis", address="127.0.0.1:16379"))
    )
    assert (
        got["db_up"] == 1.0 and got["db_query_seconds"] > 0 and "db_redis_connected_clients" in got
    )


async def test_database_down_is_a_sample() -> None:
    got = _by_name(
        await database_samples(
            DatabaseCheck(name="r", kind="redis", address=f"127.0.0.1:{free_port()}", timeout=1)
        )
    )
    assert got == {"db_up": 0.0}


async def test_https_probe_reports_certificate_expiry(tmp_path: Path) -> None:
    import asyncio
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    not_after = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem, key_pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_pem, key_pem)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            trusted = _by_name(
                await probe(
                    ProbeConfig(
                        name="tls", target=f"https://localhost:{port}/", ca_file=str(cert_pem)
                    ),
                    client,
                )
            )
            untrusted = _by_name(
                await probe(ProbeConfig(name="tls", target=f"https://localhost:{port}/"), client)
            )
    finally:
        server.close()
    assert trusted["probe_success"] == 1.0
    assert trusted["probe_ssl_earliest_cert_expiry"] == not_after.timestamp()
    assert untrusted["probe_success"] == 0.0


@pytest.fixture
def postgres() -> Iterator[int]:
    """A throwaway PostgreSQL (binaries from /usr/local/bin), run as nobody since root may not."""
    import os
    import shutil
    import subprocess

    initdb = shutil.which("initdb") or "/usr/local/bin/initdb"
    pg_ctl = shutil.which("pg_ctl") or "/usr/local/bin/pg_ctl"
    if not Path(initdb).exists():
        message = "PostgreSQL binaries (initdb, pg_ctl) are not installed"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="gyro-pg-"))  # not under pytest's root-only directory
    prefix = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if prefix:
        shutil.chown(base, "nobody")
    port = free_port()
    subprocess.run(
        [*prefix, initdb, "-D", str(base / "data"), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [
            *prefix,
            pg_ctl,
            "-D",
            str(base / "data"),
            "-o",
            options,
            "-l",
            str(base / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield port
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(base / "data"), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


async def test_postgres_check(postgres: int) -> None:
    got = _by_name(
        await database_samples(
            DatabaseCheck(name="pg", kind="postgres", address=f"127.0.0.1:{postgres}")
        )
    )
    assert got["db_up"] == 1.0 and got["db_postgres_connections"] >= 1
    assert got["db_postgres_database_size_bytes"] > 0


def test_a_timestamped_sample_repeated_by_the_next_scrape_stays_fresh(tmp_path: Path) -> None:
    """Federation: a place's sample keeps its own timestamp and may come twice, when it is scraped
    more often than it is measured. It is still there, so never stale; it goes stale only once
    the page stops listing it."""
    from gyroscope.monitor._scrape import TargetState, ingest_text

    db = TSDB(tmp_path / "t.sqlite")
    state = TargetState(honor_labels=True)
    page = 'probe_success{instance="api",location="p2"} 0 1000000\n'
    for t_ms in (1_000_200, 1_000_700, 1_001_200):  # the same sample, three scrapes
        ingest_text(page, db, state, (), t_ms)
        db.commit()
        got = Engine(db).instant("probe_success == 0", t_ms / 1000)
        assert [v for _, v in got] == [0.0], t_ms  # type: ignore[misc]
    ingest_text("", db, state, (), 1_001_700)
    db.commit()
    assert Engine(db).instant("probe_success", 1001.7) == []
