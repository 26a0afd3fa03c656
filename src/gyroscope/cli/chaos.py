"""``gyro chaos``: a TCP fault proxy with a control API, its client, and process faults."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from typing import Any

import click

from gyroscope.chaos import (
    ControlClient,
    FaultProxy,
    Faults,
    kill,
    parse_assignments,
    pause,
    resume,
)
from gyroscope.chaos._schedule import Schedule, parse_duration, run_schedule
from gyroscope.core import run, run_alone
from gyroscope.errors import ProcessFaultError


@contextlib.contextmanager
def _sigterm_cleans_up() -> Iterator[None]:
    """Turn SIGTERM into SystemExit, so `finally` blocks resume or kill what we started."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """Parse ``500ms``, ``10s``, ``2m`` or plain seconds (an option callback)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@click.group()
def chaos() -> None:
    """Inject faults: a TCP proxy whose faults change at runtime, and process faults.

    \b
    Examples:
      gyro chaos proxy --listen 127.0.0.1:16380 --upstream 127.0.0.1:16379 --control 127.0.0.1:8474
      gyro chaos set 127.0.0.1:8474 latency_ms=200 jitter_ms=50
      gyro chaos cut 127.0.0.1:8474
      gyro chaos clear 127.0.0.1:8474
      gyro chaos pause 4242 --for 5
      gyro chaos run --restart-every 10s -- gyro demo serve --port 8001
    """


# -- the proxy -----------------------------------------------------------------------------------
_PROXY_EXAMPLES = """
\b
Examples:
  gyro chaos proxy --listen 127.0.0.1:16380 --upstream 127.0.0.1:16379 --control 127.0.0.1:8474
  gyro chaos proxy --listen 127.0.0.1:9000 --upstream 127.0.0.1:8001 --latency-ms 100 --jitter-ms 20
  gyro chaos proxy --listen 127.0.0.1:9000 --upstream 127.0.0.1:8001 --direction downstream \\
      --bandwidth-bps 65536
"""


@chaos.command(epilog=_PROXY_EXAMPLES)
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="host:port to accept on.")
@click.option("--upstream", required=True, help="host:port to forward to.")
@click.option("--name", default="proxy", show_default=True, help="Name in logs and health.")
@click.option("--control", default=None, help="host:port of the HTTP control API (off by default).")
@click.option("--control-token", default=None, help="Bearer token for the control API.")
@click.option("--latency-ms", type=click.IntRange(0), default=0, help="Delay per chunk.")
@click.option("--jitter-ms", type=click.IntRange(0), default=0, help="Extra random 0..N ms.")
@click.option("--bandwidth-bps", type=click.IntRange(0), default=0, help="Bytes/s per direction.")
@click.option("--blackhole", is_flag=True, help="Accept but forward nothing.")
@click.option("--reset", "reset_", is_flag=True, help="Reset (RST) new connections.")
@click.option("--refuse", is_flag=True, help="Refuse new connections (not listening).")
@click.option("--slow-close-ms", type=click.IntRange(0), default=0, help="Delay before a FIN.")
@click.option(
    "--timeout-ms", type=click.IntRange(0), default=0, help="Stall, then close after N ms."
)
@click.option(
    "--direction",
    type=click.Choice(["both", "upstream", "downstream"]),
    default="both",
    show_default=True,
    help="Where latency/bandwidth/blackhole/timeout apply (upstream = client to server).",
)
@click.option("--seed", type=int, default=None, help="Seed for jitter.")
@click.option("--json", "as_json", is_flag=True, help="Print the ready line as JSON.")
def proxy(
    listen: str,
    upstream: str,
    name: str,
    control: str | None,
    control_token: str | None,
    seed: int | None,
    as_json: bool,
    reset_: bool,
    **fault_options: Any,
) -> None:
    """Forward TCP from --listen to --upstream, injecting faults; run until Ctrl-C or SIGTERM.

    With --control, faults change at runtime over HTTP: GET/POST/DELETE /faults, POST /cut,
    GET /stats (or use `gyro chaos set/clear/cut`).
    """
    faults = Faults.parse({**fault_options, "reset": reset_})
    service = FaultProxy(
        upstream,
        listen,
        name,
        faults=faults,
        control=control,
        control_token=control_token,
        seed=seed,
    )

    def ready(_: object) -> None:
        info = {
            "name": name,
            "listen": service.address,
            "upstream": upstream,
            "control": service.control_url,
            "faults": service.faults.model_dump(exclude_defaults=True),
        }
        if as_json:
            click.echo(json.dumps(info))
        else:
            where = f"; control API at {service.control_url}" if service.control_url else ""
            click.echo(
                f"{name}: {service.address} -> {upstream} (faults: {service.faults.describe()}){where}"
            )
        sys.stdout.flush()

    run(run_alone(service, grace=1.0, on_ready=ready))


# -- control API clients ------------------------------------------------------------------------
_token_option = click.option(
    "--token", envvar="GYRO_CHAOS_TOKEN", default=None, help="Bearer token of the control API."
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")


def _show_faults(faults: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(faults))
    else:
        click.echo(f"faults: {Faults.model_validate(faults).describe()}")


@chaos.command(name="set")
@click.argument("url")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@_token_option
@_json_option
def set_(url: str, assignments: tuple[str, ...], token: str | None, as_json: bool) -> None:
    """Merge faults into the proxy whose control API is at URL.

    Keys: latency_ms, jitter_ms, bandwidth_bps, blackhole, reset, refuse, slow_close_ms,
    timeout_ms, direction (both | upstream | downstream).

    \b
    Examples:
      gyro chaos set 127.0.0.1:8474 latency_ms=200 jitter_ms=50 direction=downstream
      gyro chaos set http://127.0.0.1:8474 blackhole=true
    """
    _show_faults(ControlClient(url, token=token).set(**parse_assignments(assignments)), as_json)


@chaos.command()
@click.argument("url")
@_token_option
@_json_option
def clear(url: str, token: str | None, as_json: bool) -> None:
    """Clear every fault of the proxy at URL (it listens again after refuse).

    \b
    Example:
      gyro chaos clear 127.0.0.1:8474
    """
    _show_faults(ControlClient(url, token=token).clear(), as_json)


@chaos.command()
@click.argument("url")
@_token_option
@_json_option
def show(url: str, token: str | None, as_json: bool) -> None:
    """Show the faults in force at URL.

    \b
    Example:
      gyro chaos show 127.0.0.1:8474 --json
    """
    _show_faults(ControlClient(url, token=token).faults(), as_json)


@chaos.command()
@click.argument("url")
@_token_option
@_json_option
def cut(url: str, token: str | None, as_json: bool) -> None:
    """Reset every open connection through the proxy at URL (new ones still work).

    \b
    Example:
      gyro chaos cut 127.0.0.1:8474
    """
    count = ControlClient(url, token=token).cut()
    click.echo(json.dumps({"cut": count}) if as_json else f"cut {count} connection(s)")


@chaos.command()
@click.argument("url")
@_token_option
@_json_option
def stats(url: str, token: str | None, as_json: bool) -> None:
    """Connection and byte counters of the proxy at URL.

    \b
    Example:
      gyro chaos stats 127.0.0.1:8474 --json
    """
    counters = ControlClient(url, token=token).stats()
    if as_json:
        click.echo(json.dumps(counters))
    else:
        for key, value in counters.items():
            click.echo(f"{key}: {value}")


# -- process faults -------------------------------------------------------------------------------
@chaos.command(name="kill")
@click.argument("pid", type=int)
def kill_(pid: int) -> None:
    """kill -9 PID and wait until it is gone.

    \b
    Example:
      gyro chaos kill 4242
    """
    kill(pid)
    click.echo(f"killed {pid}")


@chaos.command(name="pause")
@click.argument("pid", type=int)
@click.option(
    "--for",
    "seconds",
    callback=_duration,
    metavar="DURATION",
    default=None,
    help="Resume after this long (5, 2s, 500ms).",
)
def pause_(pid: int, seconds: float | None) -> None:
    """SIGSTOP PID; with --for, wait and SIGCONT it (Ctrl-C resumes it early).

    \b
    Examples:
      gyro chaos pause 4242 --for 5s
      gyro chaos pause 4242 && sleep 3 && gyro chaos resume 4242
    """
    try:
        with _sigterm_cleans_up():
            handle = pause(pid, seconds)
            if seconds is None:
                click.echo(f"paused {pid} (resume it with: gyro chaos resume {pid})")
                return
            click.echo(f"paused {pid} for {seconds:g} s")
            handle.wait()
    finally:
        if seconds is not None:  # also when interrupted (Ctrl-C, SIGTERM): never leave it stopped
            with contextlib.suppress(ProcessFaultError):
                resume(pid)
    click.echo(f"resumed {pid}")


@chaos.command(name="resume")
@click.argument("pid", type=int)
def resume_(pid: int) -> None:
    """SIGCONT PID (undo `gyro chaos pause`).

    \b
    Example:
      gyro chaos resume 4242
    """
    resume(pid)
    click.echo(f"resumed {pid}")


@chaos.command(name="run", context_settings={"ignore_unknown_options": True})
@click.option(
    "--restart-every",
    callback=_duration,
    metavar="DURATION",
    default=None,
    help="kill -9 and restart this often.",
)
@click.option(
    "--pause-every",
    callback=_duration,
    metavar="DURATION",
    default=None,
    help="SIGSTOP this often...",
)
@click.option(
    "--pause-for",
    default="1s",
    callback=_duration,
    metavar="DURATION",
    show_default=True,
    help="...for this long.",
)
@click.option(
    "--kill-after",
    callback=_duration,
    metavar="DURATION",
    default=None,
    help="kill -9 once after this long, and end.",
)
@click.option(
    "--duration",
    callback=_duration,
    metavar="DURATION",
    default=None,
    help="Stop (SIGTERM) after this long.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_(
    command: tuple[str, ...],
    restart_every: float | None,
    pause_every: float | None,
    pause_for: float,
    kill_after: float | None,
    duration: float | None,
    as_json: bool,
) -> None:
    """Run COMMAND and inject process faults on a schedule; ends when it exits on its own.

    \b
    Examples:
      gyro chaos run --restart-every 10s -- gyro demo serve --port 8001
      gyro chaos run --pause-every 30s --pause-for 5s --duration 5m -- ./my-worker
      gyro chaos run --kill-after 20s -- redis-server --port 16390
    """
    schedule = Schedule(
        restart_every=restart_every,
        pause_every=pause_every,
        pause_for=pause_for,
        kill_after=kill_after,
        duration=duration,
    )

    def report(event: dict[str, Any]) -> None:
        if as_json:
            click.echo(json.dumps(event))
        else:
            detail = " ".join(f"{k}={v}" for k, v in event.items() if k != "event")
            click.echo(f"{event['event']}: {detail}")
        sys.stdout.flush()

    with _sigterm_cleans_up():
        code = run_schedule(list(command), schedule, report)
    if code:
        raise SystemExit(code)
