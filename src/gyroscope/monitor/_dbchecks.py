"""Database checks: connect, time a trivial query, read key statistics (Redis, PostgreSQL, MySQL).

A check never raises: an unreachable database, a refused login or a timeout is ``db_up 0`` plus a
one-line reason (``check_database`` returns it; the service logs it once per state change and shows
it in ``/api/v1/probes``). Reasons never contain the password.

>>> import asyncio
>>> cfg = DatabaseCheck(name="x", kind="redis", address="127.0.0.1:1", timeout=1)
>>> samples, reason = asyncio.run(check_database(cfg))
>>> samples[0][1], reason.startswith("redis 127.0.0.1:1:")
(0.0, True)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from gyroscope.monitor._config import DatabaseCheck
from gyroscope.monitor._exposition import Labels

__all__ = ["MysqlTarget", "check_database", "database_samples", "mysql_target"]

Samples = list[tuple[Labels, float]]

# SHOW GLOBAL STATUS variable -> our series suffix (counters end in _total, as Prometheus names them)
MYSQL_STATUS = {
    "Threads_connected": "threads_connected",
    "Threads_running": "threads_running",
    "Connections": "connections_total",
    "Aborted_connects": "aborted_connects_total",
    "Questions": "questions_total",
    "Queries": "queries_total",
    "Slow_queries": "slow_queries_total",
    "Uptime": "uptime_seconds",
}


def _labels(name: str, **labels: str) -> Labels:
    return tuple(sorted({"__name__": name, **labels}.items()))


async def check_database(cfg: DatabaseCheck) -> tuple[Samples, str]:
    """``(samples, reason)``: ``db_up``, ``db_query_seconds`` and statistics; reason "" when up."""
    base = {"job": cfg.name, "instance": cfg.address, "kind": cfg.kind}
    started = time.perf_counter()
    reason = ""
    try:
        stats = await asyncio.wait_for(_STATS[cfg.kind](cfg), cfg.timeout)
    except TimeoutError:
        stats, reason = {}, f"no answer within {cfg.timeout:g}s"
    except Exception as exc:  # every driver error is a failed check, never a crash
        stats, reason = {}, _describe(exc)
    if reason:
        reason = f"{cfg.kind} {cfg.address}: {reason}"
    out: Samples = [(_labels("db_up", **base), 0.0 if reason else 1.0)]
    if not reason:
        out.append((_labels("db_query_seconds", **base), time.perf_counter() - started))
    out += [(_labels(f"db_{key}", **base), value) for key, value in stats.items()]
    return out, reason


async def database_samples(cfg: DatabaseCheck) -> Samples:
    """``db_up``, ``db_query_seconds`` and a few key statistics; ``db_up 0`` when unreachable."""
    return (await check_database(cfg))[0]


def _describe(exc: BaseException) -> str:
    args: tuple[object, ...] = exc.args
    # PyMySQL errors are (code, message): "Access denied for user ... (error 1045)"
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        return f"{args[1]} (error {args[0]})"
    return str(exc) or type(exc).__name__


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return address.strip("[]"), default_port
    return host.strip("[]"), int(port)


async def _redis_stats(cfg: DatabaseCheck) -> dict[str, float]:
    import redis.asyncio as aioredis

    host, port = _host_port(cfg.address, 6379)
    password = cfg.dsn.get_secret_value() if cfg.dsn is not None else None
    client = aioredis.Redis(host=host, port=port, password=password)
    try:
        await client.ping()
        info = await client.info()
    finally:
        await client.aclose()
    keys = ("connected_clients", "used_memory", "keyspace_hits", "keyspace_misses")
    return {f"redis_{k}": float(info[k]) for k in keys if k in info}


async def _postgres_stats(cfg: DatabaseCheck) -> dict[str, float]:
    """PostgreSQL via asyncpg (the ``gyroscope[postgres]`` extra): connections, database size."""
    import asyncpg  # type: ignore[import-untyped]

    if cfg.dsn is not None:
        conn = await asyncpg.connect(cfg.dsn.get_secret_value(), timeout=cfg.timeout)
    else:
        host, port = _host_port(cfg.address, 5432)
        conn = await asyncpg.connect(
            host=host, port=port, user="postgres", database="postgres", timeout=cfg.timeout
        )
    try:
        connections = await conn.fetchval("SELECT count(*) FROM pg_stat_activity")
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
        rollbacks = await conn.fetchval(
            "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    return {
        "postgres_connections": float(connections),
        "postgres_database_size_bytes": float(size),
        "postgres_rollbacks_total": float(rollbacks or 0),
    }


@dataclass(frozen=True, slots=True)
class MysqlTarget:
    """Where and as whom to connect; from ``dsn`` (``mysql://user:pass@host:port/db``) or ``address``."""

    host: str
    port: int
    user: str
    password: str
    database: str | None


def mysql_target(cfg: DatabaseCheck) -> MysqlTarget:
    """Without a dsn: ``root`` without a password at ``address`` (as the PostgreSQL check does)."""
    if cfg.dsn is None:
        host, port = _host_port(cfg.address, 3306)
        return MysqlTarget(host, port, "root", "", None)
    url = urlsplit(cfg.dsn.get_secret_value())
    if url.scheme not in ("mysql", "mariadb"):
        raise ValueError("dsn must look like mysql://user:password@host:port/database")
    return MysqlTarget(
        (url.hostname or "127.0.0.1").strip("[]"),
        url.port or 3306,
        unquote(url.username or "root"),
        unquote(url.password or ""),
        url.path.strip("/") or None,
    )


async def _mysql_stats(cfg: DatabaseCheck) -> dict[str, float]:
    """MySQL/MariaDB via aiomysql (the ``gyroscope[mysql]`` extra): SELECT 1, then server status."""
    import aiomysql  # type: ignore[import-untyped]

    t = mysql_target(cfg)
    conn = await aiomysql.connect(
        host=t.host,
        port=t.port,
        user=t.user,
        password=t.password,
        db=t.database,
        connect_timeout=cfg.timeout,
    )
    try:
        async with conn.cursor() as cur:
            started = time.perf_counter()
            await cur.execute("SELECT 1")
            await cur.fetchall()
            latency = time.perf_counter() - started
            names = list(MYSQL_STATUS)
            marks = ", ".join(["%s"] * len(names))
            # parameterised: the driver quotes the names
            await cur.execute(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({marks})", names)
            rows = await cur.fetchall()
    finally:
        conn.close()
    out = {"mysql_select_seconds": latency}
    for name, value in rows:
        if name in MYSQL_STATUS:
            out[f"mysql_{MYSQL_STATUS[name]}"] = float(value)
    return out


_STATS = {"redis": _redis_stats, "postgres": _postgres_stats, "mysql": _mysql_stats}
