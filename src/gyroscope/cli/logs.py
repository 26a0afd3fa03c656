"""``gyro logs``: serve, ship, query, tail, prove, verify, redact and inspect the log store.

Commands that read (query, stats, prove, verify) work on the data directory directly, read-only,
even while ``gyro up`` or ``gyro logs serve`` writes to it; ``--url`` asks a running server instead.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click

from gyroscope.core import default_data_dir, run, run_alone
from gyroscope.errors import TargetError
from gyroscope.logs import (
    LogsConfig,
    LogServer,
    LogStore,
    Shipper,
    consistency_proof,
    inclusion_proof,
    parse_query,
    redact,
    run_log_query,
    run_metric_query,
    verify_proof,
    verify_store,
)
from gyroscope.logs._errors import BadInputError
from gyroscope.logs._ingest import parse_time
from gyroscope.logs._logql import MetricQuery, parse_duration

_data_dir = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Data directory (default $GYRO_DATA_DIR or ./.gyroscope); logs live in <data-dir>/logs.",
)
_url = click.option(
    "--url", default=None, help="Ask a running log server instead, e.g. http://127.0.0.1:3100."
)
_json = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
_token = click.option(
    "--token",
    envvar="GYRO_LOGS_TOKEN",
    default=None,
    help="Bearer token of the log server (default $GYRO_LOGS_TOKEN).",
)


def _store_path(data_dir: Path | None) -> Path:
    return (data_dir or default_data_dir()) / "logs"


def _open(data_dir: Path | None, *, readonly: bool = True) -> LogStore:
    path = _store_path(data_dir)
    if readonly and not (path / "segments").is_dir():
        raise BadInputError(
            f"{path}: no log store here (ingest something first, or pass --data-dir)"
        )
    return LogStore(path, bloom=False).open(readonly=readonly)


def _request(
    url: str,
    path: str,
    token: str | None,
    *,
    params: dict[str, Any] | None = None,
    post: bool = False,
) -> urllib.request.Request:
    full = url.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
    if not full.startswith(("http://", "https://")):
        raise BadInputError(f"--url must start with http:// or https://, got {url!r}")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return urllib.request.Request(  # noqa: S310 - scheme checked above
        full, data=b"" if post else None, headers=headers, method="POST" if post else "GET"
    )


def _http_error(exc: urllib.error.HTTPError, url: str) -> TargetError:
    with exc:  # closes the connection under the error
        body = exc.read().decode(errors="replace").strip()
    try:
        message = str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = body or f"HTTP {exc.code}"
    if exc.code == 401:
        message += " (pass --token or set GYRO_LOGS_TOKEN)"
    return TargetError(f"HTTP {exc.code}: {message}", target=url)


def _get(url: str, path: str, params: dict[str, Any], token: str | None = None) -> Any:
    req = _request(url, path, token, params=params)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - scheme checked
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise _http_error(exc, url) from None
    except OSError as exc:
        raise TargetError(str(exc), target=url) from exc


@click.group()
def logs() -> None:
    """Durable, searchable, tamper-evident logs.

    \b
    Examples:
      gyro logs serve --listen 127.0.0.1:3100 --syslog-udp 127.0.0.1:1514
      gyro logs ship /var/log/app.log --url http://127.0.0.1:3100 --label job=app
      gyro logs query '{job="app"} |= "error"' --since 1h
      gyro logs prove 42 > proof.json && gyro logs verify --proof proof.json
      gyro logs verify        # scrub every segment against the signed Merkle checkpoints
    """


@logs.command()
@_data_dir
@click.option("--listen", default="127.0.0.1:3100", show_default=True, help="HTTP address.")
@click.option("--syslog-udp", default=None, help="Syslog over UDP, e.g. 127.0.0.1:1514.")
@click.option("--syslog-tcp", default=None, help="Syslog over TCP, e.g. 127.0.0.1:1514.")
@click.option(
    "--token",
    envvar="GYRO_LOGS_TOKEN",
    default=None,
    help="Bearer token clients must send (required when not on loopback; $GYRO_LOGS_TOKEN).",
)
@click.option(
    "--nats",
    "nats_servers",
    multiple=True,
    metavar="URL",
    help="Replicated mode: a JetStream server (repeat for each node).",
)
@click.option(
    "--nats-node-conf",
    "nats_confs",
    multiple=True,
    type=click.Path(exists=True),
    help="nats.conf of a local node, so its files are checked against the Merkle log.",
)
def serve(
    data_dir: Path | None,
    listen: str,
    syslog_udp: str | None,
    syslog_tcp: str | None,
    token: str | None,
    nats_servers: tuple[str, ...],
    nats_confs: tuple[str, ...],
) -> None:
    """Run the log server alone until Ctrl-C.

    \b
    Example:
      gyro logs serve --listen 127.0.0.1:3100
      curl -s 127.0.0.1:3100/api/logs/push -d '{"labels":{"job":"app"},"line":"hello"}'
    """
    from gyroscope.core import validate_config

    raw: dict[str, Any] = {
        "listen": listen,
        "syslog_udp": syslog_udp,
        "syslog_tcp": syslog_tcp,
        "token": token,
    }
    if nats_servers:
        raw["replication"] = {"servers": list(nats_servers), "node_configs": list(nats_confs)}
    cfg = validate_config(LogsConfig, raw)
    server = LogServer(cfg, _store_path(data_dir))

    def ready(s: Any) -> None:
        click.echo(f"log server on {s.http.url} ({s.store.merkle.size} records)", err=True)

    run(run_alone(server, on_ready=ready))


@logs.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--url", default="http://127.0.0.1:3100", show_default=True, help="The log server.")
@click.option(
    "--label", "labels", multiple=True, metavar="NAME=VALUE", help="Stream label (repeat)."
)
@click.option(
    "--state",
    type=click.Path(path_type=Path),
    default=None,
    help="Position file (default FILE.gyro-pos next to the file).",
)
@click.option("--follow/--once", default=True, show_default=True, help="Keep following the file.")
@_token
def ship(
    file: Path,
    url: str,
    labels: tuple[str, ...],
    state: Path | None,
    follow: bool,
    token: str | None,
) -> None:
    """Tail FILE into a log server: follows rotation, remembers its position, no duplicates.

    \b
    Example:
      gyro logs ship /var/log/app.log --label job=app --label env=prod
    """
    parsed = {}
    for item in labels or ("job=" + file.stem,):
        name, sep, value = item.partition("=")
        if not sep:
            raise BadInputError(f"--label {item!r}: expected NAME=VALUE")
        parsed[name] = value
    shipper = Shipper(
        file, url, parsed, state or file.with_name(file.name + ".gyro-pos"), token=token
    )
    try:
        sent = shipper.run(follow=follow)
    except KeyboardInterrupt:
        sent = shipper.sent_lines
    click.echo(
        f"shipped {sent} lines ({shipper.duplicates} duplicate batches skipped by the server)",
        err=True,
    )


def _time_range(since: str, start: str | None, end: str | None) -> tuple[int, int]:
    now = time.time_ns()
    stop = parse_time(end, where="--to", default=now)
    begin = parse_time(start, where="--from", default=stop - parse_duration(since))
    return begin, stop


@logs.command()
@click.argument("query")
@_data_dir
@_url
@click.option("--since", default="1h", show_default=True, help="How far back (with no --from).")
@click.option("--from", "start", default=None, help="Start: RFC 3339, seconds or nanoseconds.")
@click.option("--to", "end", default=None, help="End (default now).")
@click.option("--limit", default=100, show_default=True, help="Most lines to print.")
@click.option("--forward", is_flag=True, help="Oldest first (default newest first).")
@click.option("--step", default="1m", show_default=True, help="Step of metric queries.")
@_token
@_json
def query(
    query: str,
    data_dir: Path | None,
    url: str | None,
    since: str,
    start: str | None,
    end: str | None,
    limit: int,
    forward: bool,
    step: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Run a LogQL query.

    \b
    Examples:
      gyro logs query '{service="api", level=~"err|warn"} |= "timeout"' --since 15m
      gyro logs query '{service="api"} | json | status >= 500' --limit 20 --json
      gyro logs query 'sum by (level) (count_over_time({service="api"}[5m]))' --step 5m
    """
    begin, stop = _time_range(since, start, end)
    q = parse_query(query)
    if url:
        data = _get(
            url,
            "/loki/api/v1/query_range",
            {
                "query": query,
                "start": begin,
                "end": stop,
                "limit": limit,
                "direction": "forward" if forward else "backward",
                "step": parse_duration(step) / 1e9,
            },
            token,
        )["data"]
    else:
        store = _open(data_dir)
        try:
            if isinstance(q, MetricQuery):
                data = {
                    "resultType": "matrix",
                    "result": run_metric_query(
                        store, q, start_ns=begin, end_ns=stop, step_ns=parse_duration(step)
                    ),
                }
            else:
                res = run_log_query(
                    store, q, start_ns=begin, end_ns=stop + 1, limit=limit, backward=not forward
                )
                data = {"resultType": "streams", "result": res.streams()}
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps(data))
        return
    _print_result(data)


def _print_result(data: dict[str, Any]) -> None:
    if data["resultType"] == "matrix":
        for series in data["result"]:
            click.echo(json.dumps(series["metric"]))
            for t, v in series["values"]:
                click.echo(f"  {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t))}  {v}")
        return
    rows = [(int(ts), s["stream"], line) for s in data["result"] for ts, line in s["values"]]
    for ts, labels, line in sorted(rows, key=lambda r: r[0]):
        stamp = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts / 1e9))
            + f".{ts % 10**9 // 10**6:03d}Z"
        )
        label_text = ",".join(f"{k}={v}" for k, v in labels.items())
        click.echo(f"{stamp} {{{label_text}}} {line}")


@logs.command()
@click.argument("query")
@click.option("--url", default="http://127.0.0.1:3100", show_default=True, help="The log server.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they arrive.")
@click.option("-n", "--lines", default=10, show_default=True, help="Lines of backlog first.")
@_token
def tail(query: str, url: str, follow: bool, lines: int, token: str | None) -> None:
    """Print the newest lines matching QUERY, and with -f every new one as it is stored.

    \b
    Example:
      gyro logs tail -f '{job="app"} |= "error"'
      GYRO_LOGS_TOKEN=s3cret gyro logs tail --url https://logs.example:3100 '{job="app"}'
    """
    parse_query(query)
    if not follow:
        data = _get(
            url, "/loki/api/v1/query_range", {"query": query, "limit": lines, "start": 0}, token
        )["data"]
        _print_result(data)
        return
    req = _request(url, "/api/logs/tail", token, params={"query": query, "limit": lines})
    try:
        with urllib.request.urlopen(req, timeout=3600) as resp:  # noqa: S310 - scheme checked
            for raw in resp:
                item = json.loads(raw)
                label_text = ",".join(f"{k}={v}" for k, v in item["labels"].items())
                click.echo(f"{item['ts']} {{{label_text}}} {item['line']}")
    except KeyboardInterrupt:
        return
    except urllib.error.HTTPError as exc:
        raise _http_error(exc, url) from None
    except OSError as exc:
        raise TargetError(str(exc), target=url) from exc


@logs.command()
@_data_dir
@_url
@_token
@_json
def stats(data_dir: Path | None, url: str | None, token: str | None, as_json: bool) -> None:
    """Records, segments, bytes, streams, the latest signed checkpoint, damage found.

    \b
    Example:
      gyro logs stats --json
    """
    if url:
        data = _get(url, "/api/logs/stats", {}, token)
    else:
        store = _open(data_dir)
        cp = store.checkpoints.latest()
        data = {
            "records": store.merkle.size,
            "segments": len(store.segments),
            "bytes": sum(s.size for s in store.segments),
            "streams": len(store.labels()),
            "damaged_regions": [str(d) for d in store.damage],
            "checkpoint": cp.as_dict() if cp else None,
        }
        store.close()
    if as_json:
        click.echo(json.dumps(data))
        return
    for key, value in data.items():
        click.echo(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")


@logs.command()
@click.argument("seq", type=int)
@_data_dir
@_url
@click.option(
    "--since-size",
    type=int,
    default=None,
    help="Instead: prove the log of this many records is a prefix of the current one.",
)
@_token
def prove(
    seq: int, data_dir: Path | None, url: str | None, since_size: int | None, token: str | None
) -> None:
    """Print an inclusion proof for record SEQ (RFC 6962 JSON), anchored to a signed checkpoint.

    \b
    Examples:
      gyro logs prove 42 > proof.json
      gyro logs prove 0 --since-size 1000 > consistency.json
    """
    if url:
        doc = (
            _get(url, "/api/logs/consistency", {"old": since_size}, token)
            if since_size
            else _get(url, "/api/logs/prove", {"seq": seq}, token)
        )
    else:
        store = _open(data_dir)
        try:
            doc = (
                consistency_proof(store, since_size) if since_size else inclusion_proof(store, seq)
            )
        finally:
            store.close()
    click.echo(json.dumps(doc, indent=2))


@logs.command()
@_data_dir
@click.option(
    "--proof",
    "proof_file",
    type=click.File("r"),
    default=None,
    help="Check this proof document (from `gyro logs prove`) instead of the store.",
)
@click.option(
    "--key",
    "key_file",
    type=click.File("r"),
    default=None,
    help="Trusted public key (PEM) for --proof; default: the key inside the proof.",
)
@click.option(
    "--deep", is_flag=True, help="Check every record even in segments whose seal matches."
)
@_json
def verify(
    data_dir: Path | None, proof_file: Any, key_file: Any, deep: bool, as_json: bool
) -> None:
    """Scrub the store (CRC, sequence, Merkle leaves, signed checkpoints), or check a proof.

    Exit status 1 and one line per problem (kind, file, byte offset) when anything is wrong.

    \b
    Examples:
      gyro logs verify
      gyro logs verify --proof proof.json --key checkpoint.pub
    """
    if proof_file is not None:
        try:
            doc = json.load(proof_file)
        except ValueError as exc:
            raise BadInputError(f"{proof_file.name}: not JSON: {exc}") from None
        click.echo(verify_proof(doc, public_pem=key_file.read() if key_file else None))
        return
    store = _open(data_dir)
    try:
        report = verify_store(store, deep=deep)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        for p in report.problems:
            click.echo(str(p))
        click.echo(
            f"{'OK' if report.ok else 'FAILED'}: {report.records} records in {report.segments} "
            f"segments ({report.sealed} matched their signed seal), "
            f"{report.checkpoints} signed checkpoints, {len(report.problems)} problems "
            f"({report.seconds:.2f}s)"
        )
    if not report.ok:
        sys.exit(1)


@logs.command()
@click.option("--url", default="http://127.0.0.1:3100", show_default=True, help="The log server.")
@_token
@_json
def replicas(url: str, token: str | None, as_json: bool) -> None:
    """Check every JetStream replica against the Merkle log now (and repair a bad one).

    Exit status 1 when a replica was missing or damaging records.

    \b
    Example:
      gyro logs replicas --url http://127.0.0.1:3100
    """
    req = _request(url, "/api/logs/replicas/check", token, post=True)
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:  # noqa: S310 - scheme checked
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise _http_error(exc, url) from None
        with exc:
            body = json.loads(exc.read())
    except OSError as exc:
        raise TargetError(str(exc), target=url) from exc
    if as_json:
        click.echo(json.dumps(body))
    else:
        for node in body["nodes"]:
            click.echo(node["summary"])
        if body.get("repaired"):
            click.echo("repair: the damaged replicas were rebuilt from a healthy one")
    if not body["ok"]:
        sys.exit(1)


@logs.command(name="redact")
@click.argument("seq", type=int)
@_data_dir
def redact_cmd(seq: int, data_dir: Path | None) -> None:
    """Erase record SEQ's line for good; proofs and checkpoints stay valid (the leaf hash is kept).

    Needs the store to itself: stop `gyro up` / `gyro logs serve` first.

    \b
    Example:
      gyro logs redact 42
    """
    store = _open(data_dir, readonly=False)
    try:
        redact(store, seq)
    finally:
        store.close()
    click.echo(f"record {seq} redacted")


__all__ = ["logs"]
