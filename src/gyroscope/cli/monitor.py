"""``gyro monitor``: run the monitor, query it, list targets and alerts, silence, acknowledge,
check rule files."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import click
import httpx

from gyroscope.core import default_data_dir, read_yaml, run, run_alone, validate_config
from gyroscope.errors import ConfigError, MonitorError
from gyroscope.monitor import (
    MonitorConfig,
    MonitorService,
    check_rule_file,
    parse_duration,
    parse_matcher,
    parse_weekdays,
)

__all__ = ["monitor"]

_URL = click.option(
    "--url",
    default="http://127.0.0.1:9464",
    show_default=True,
    envvar="GYRO_MONITOR_URL",
    help="The monitor's API (GYRO_MONITOR_URL).",
)
_TOKEN = click.option(
    "--token", default=None, envvar="GYRO_MONITOR_TOKEN", help="Bearer token, if set."
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group()
def monitor() -> None:
    """Monitoring and alerting: scrape, probe, store, query, alert.

    \b
    Examples:
      gyro monitor serve -c monitor.yaml
      gyro monitor query 'rate(vllm:request_success_total[1m])'
      gyro monitor alerts
      gyro monitor silence add 'job="demo"' --duration 2h --comment "deploy"
      gyro monitor rules check rules.yaml
    """


def _call(url: str, token: str | None, method: str, path: str, **kw: Any) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, headers=headers, timeout=10.0, **kw
        )
    except httpx.HTTPError as exc:
        raise MonitorError(
            f"cannot reach the monitor at {url}: {exc} (is `gyro monitor serve` running? pass --url)"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        reason = body.get("error") if isinstance(body, dict) else response.text.strip()
        raise MonitorError(f"{method} {path}: {reason}")
    return body


def load_monitor_config(path: Path) -> MonitorConfig:
    """A file with a ``monitor:`` section (gyroscope.yaml) or a monitor config on its own."""
    data = read_yaml(path)
    if isinstance(data, dict) and "monitor" in data:
        data = data["monitor"]
    return validate_config(MonitorConfig, data, path)


@monitor.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    required=True,
    help="monitor.yaml (or gyroscope.yaml with a monitor: section).",
)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Where data lives.")
def serve(config_path: Path, data_dir: Path | None) -> None:
    """Run the monitor until Ctrl-C or SIGTERM; SIGHUP (or POST /-/reload) re-reads rule files.

    \b
    Example monitor.yaml:
      listen: 127.0.0.1:9464
      scrape: [{job: demo, targets: ["127.0.0.1:8001"], interval: 5s}]
      rule_files: [rules.yaml]
      alerting:
        route: {receiver: ops, group_by: [alertname], group_wait: 0s}
        receivers: [{name: ops, webhook: {url: "http://127.0.0.1:5001/hook"}}]
    """
    config = load_monitor_config(config_path)
    base = (data_dir or default_data_dir()) / "monitor"
    service = MonitorService(config, base, config_dir=config_path.parent)

    def reload() -> None:
        try:
            count = service.reload_rules()
        except MonitorError as exc:
            click.echo(f"gyro: rules not reloaded, the old ones keep running: {exc}", err=True)
        else:
            click.echo(f"rules reloaded: {count} group(s)", err=True)

    def ready(svc: Any) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)  # as Prometheus
        click.echo(f"monitor listening on {svc.url} (Prometheus API at {svc.url}/api/v1)", err=True)

    run(run_alone(service, on_ready=ready))


@monitor.command()
@_URL
@_TOKEN
@_JSON
def targets(url: str, token: str | None, as_json: bool) -> None:
    """List scrape targets and their health.

    \b
    Example:
      gyro monitor targets --json
    """
    data = _call(url, token, "GET", "/api/v1/targets")["data"]["activeTargets"]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for t in data:
        error = f"  {t['lastError']}" if t["lastError"] else ""
        click.echo(f"{t['health']:<8} {t['scrapePool']:<16} {t['scrapeUrl']}{error}")


@monitor.command()
@_URL
@_TOKEN
@_JSON
def probes(url: str, token: str | None, as_json: bool) -> None:
    """List probes and database checks: result, latency and why a failing one fails.

    \b
    Example:
      gyro monitor probes
      ok    mysql    shop    127.0.0.1:3306  0.004s
      FAIL  mysql    legacy  10.0.0.9:3306   mysql 10.0.0.9:3306: Access denied ... (error 1045)
    """
    data = _call(url, token, "GET", "/api/v1/probes")["data"]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for p in sorted(data, key=lambda p: (p["kind"], p["name"])):
        state = "ok" if p["success"] else "FAIL"
        if p["success"] or not p.get("error"):
            detail = f"{p['duration']:.3f}s" if p.get("duration") is not None else ""
        else:
            detail = p["error"]
        click.echo(f"{state:<5} {p['kind']:<8} {p['name']:<16} {p['target']}  {detail}")


@monitor.command()
@click.argument("expr")
@click.option("--time", "at", default=None, help="Evaluation time (Unix seconds or RFC 3339).")
@_URL
@_TOKEN
@_JSON
def query(expr: str, at: str | None, url: str, token: str | None, as_json: bool) -> None:
    """Evaluate a PromQL EXPR now (or at --time).

    \b
    Examples:
      gyro monitor query up
      gyro monitor query 'sum by (job) (rate(vllm:request_success_total[1m]))' --json
    """
    params = {"query": expr, **({"time": at} if at else {})}
    data = _call(url, token, "GET", "/api/v1/query", params=params)["data"]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if data["resultType"] in ("scalar", "string"):
        click.echo(data["result"][1])
        return
    for item in data["result"]:
        labels = ",".join(f'{k}="{v}"' for k, v in item["metric"].items() if k != "__name__")
        name = item["metric"].get("__name__", "")
        click.echo(f"{name}{{{labels}}} {item['value'][1]}")


@monitor.command()
@_URL
@_TOKEN
@_JSON
def alerts(url: str, token: str | None, as_json: bool) -> None:
    """List active alerts (fingerprint, state, acknowledgement, labels).

    \b
    Example:
      gyro monitor alerts
    """
    data = _call(url, token, "GET", "/api/v2/alerts")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data:
        click.echo("no active alerts")
    for a in data:
        ack = f" acked by {a['acknowledged']['by']}" if a.get("acknowledged") else ""
        labels = " ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()))
        click.echo(f"{a['fingerprint']} {a['status']['state']:<10}{ack} {labels}")


@monitor.command()
@click.argument("fingerprint")
@click.option("--by", default="", help="Who acknowledges (shown in history).")
@click.option("--comment", default="", help="Why.")
@_URL
@_TOKEN
def ack(fingerprint: str, by: str, comment: str, url: str, token: str | None) -> None:
    """Acknowledge the firing alert FINGERPRINT: no repeats, no escalation until it resolves.

    \b
    Example:
      gyro monitor ack 3f2a9c0d1e2b4a5c --by alice --comment "looking"
    """
    _call(
        url, token, "POST", f"/api/v1/alerts/{fingerprint}/ack", json={"by": by, "comment": comment}
    )
    click.echo(f"acknowledged {fingerprint}")


@monitor.command()
@click.option("--alertname", default=None, help="Only this alert.")
@click.option("--fingerprint", default=None, help="Only this alert instance.")
@click.option("--since", default="24h", show_default=True, help="How far back (e.g. 1h, 7d).")
@click.option("--limit", default=200, show_default=True, help="At most this many events.")
@_URL
@_TOKEN
@_JSON
def history(
    alertname: str | None,
    fingerprint: str | None,
    since: str,
    limit: int,
    url: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Alert history: firing, resolved, notified, delivered, acknowledged, escalated.

    \b
    Example:
      gyro monitor history --alertname TargetDown --since 7d
    """
    try:
        start = time.time() - parse_duration(since)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--since") from None
    params: dict[str, Any] = {"since": start, "limit": limit}
    if alertname:
        params["alertname"] = alertname
    if fingerprint:
        params["fingerprint"] = fingerprint
    events = _call(url, token, "GET", "/api/v1/history", params=params)["data"]
    if as_json:
        click.echo(json.dumps(events, indent=2))
        return
    for e in events:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["time"]))
        labels = " ".join(f"{k}={v}" for k, v in sorted(e.get("labels", {}).items()))
        extra = e.get("receiver") or e.get("by") or ""
        click.echo(f"{when}Z {e['event']:<16} {extra:<12} {labels}".rstrip())


@monitor.group()
def silence() -> None:
    """Add, list and expire silences (one-off or recurring).

    \b
    Examples:
      gyro monitor silence add 'job="demo"' --duration 2h --comment "maintenance"
      gyro monitor silence list
    """


@silence.command("add")
@click.argument("matchers", nargs=-1, required=True)
@click.option("--duration", default="1h", show_default=True, help="How long (e.g. 2h, 30m).")
@click.option("--until", default=None, help="End time instead (RFC 3339 or Unix seconds).")
@click.option("--comment", default="", help="Why.")
@click.option("--by", default="", help="Who.")
@click.option("--weekdays", default="", help="Recurring: days, e.g. sat,sun (UTC).")
@click.option("--start", default="00:00", show_default=True, help="Recurring window start HH:MM.")
@click.option("--end", default="24:00", show_default=True, help="Recurring window end HH:MM.")
@_URL
@_TOKEN
def silence_add(
    matchers: tuple[str, ...],
    duration: str,
    until: str | None,
    comment: str,
    by: str,
    weekdays: str,
    start: str,
    end: str,
    url: str,
    token: str | None,
) -> None:
    """Silence alerts matching every MATCHER (name="value", name=~"regex", name!="value").

    \b
    Examples:
      gyro monitor silence add 'job="demo"' --duration 2h --comment deploy
      gyro monitor silence add 'severity="ticket"' --until 2030-01-01T00:00:00Z \\
          --weekdays sat,sun --start 22:00 --end 06:00
    """
    try:
        parsed = [parse_matcher(m) for m in matchers]
        day_numbers = parse_weekdays([d for d in weekdays.split(",") if d.strip()])
        now = time.time()
        ends = until if until else str(now + parse_duration(duration))
    except ValueError as exc:
        raise ConfigError(str(exc), key="silence") from None
    body: dict[str, Any] = {
        "matchers": [m.as_dict() for m in parsed],
        "startsAt": str(now),
        "endsAt": ends,
        "comment": comment,
        "createdBy": by,
    }
    if day_numbers:
        body["recurring"] = {"weekdays": day_numbers, "start": start, "end": end}
    result = _call(url, token, "POST", "/api/v2/silences", json=body)
    click.echo(result["silenceID"])


@silence.command("list")
@_URL
@_TOKEN
@_JSON
def silence_list(url: str, token: str | None, as_json: bool) -> None:
    """List silences.

    \b
    Example:
      gyro monitor silence list --json
    """
    data = _call(url, token, "GET", "/api/v2/silences")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for s in data:
        matchers = " ".join(
            f'{m["name"]}{"!" if not m["isEqual"] else ""}{"=~" if m["isRegex"] else "="}"{m["value"]}"'
            for m in s["matchers"]
        )
        click.echo(
            f"{s['id']} {s['status']['state']:<8} until {s['endsAt']} {matchers} {s['comment']}"
        )


@silence.command("expire")
@click.argument("silence_id")
@_URL
@_TOKEN
def silence_expire(silence_id: str, url: str, token: str | None) -> None:
    """End the silence SILENCE_ID now.

    \b
    Example:
      gyro monitor silence expire 0b6f...
    """
    _call(url, token, "DELETE", f"/api/v2/silence/{silence_id}")
    click.echo(f"expired {silence_id}")


@monitor.group()
def rules() -> None:
    """Rule file tools.

    \b
    Example:
      gyro monitor rules check rules/*.yaml
    """


@rules.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@_JSON
def rules_check(files: tuple[Path, ...], as_json: bool) -> None:
    """Check Prometheus rule FILES; prints file:line: rule: reason for each problem.

    \b
    Example:
      gyro monitor rules check rules/*.yaml
    """
    problems = [e for path in files for e in check_rule_file(path)]
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"file": e.path, "line": e.line, "rule": e.rule, "reason": e.reason}
                    for e in problems
                ],
                indent=2,
            )
        )
    else:
        for error in problems:
            click.echo(str(error), err=True)
        if not problems:
            click.echo(f"{len(files)} file(s) OK")
    if problems:
        raise SystemExit(1)
