"""``gyro gateway``: run the load-balancing gateway and change its replicas at runtime."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from gyroscope.core import format_validation_error, run
from gyroscope.errors import ConfigError, GatewayError
from gyroscope.gateway import POLICIES, Gateway, GatewayConfig
from gyroscope.gateway._admin import call_admin
from gyroscope.gateway._run import WORKER_ENV, load_gateway_config, run_workers, serve

_ADMIN = click.option(
    "--admin",
    "admin_url",
    default="http://127.0.0.1:8081",
    show_default=True,
    envvar="GYRO_GATEWAY_ADMIN",
    help="The gateway's admin API (env GYRO_GATEWAY_ADMIN).",
)
_TOKEN = click.option(
    "--token", default=None, envvar="GYRO_GATEWAY_TOKEN", help="Admin bearer token, if set."
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")


@click.group()
def gateway() -> None:
    """A load-balancing gateway in front of model replicas.

    \b
    Examples:
      gyro gateway serve --upstream 127.0.0.1:8001 --upstream 127.0.0.1:8002 --policy p2c
      gyro gateway serve -c gateway.yaml --workers 2
      gyro gateway backends list
      gyro gateway backends drain d2
    """


@gateway.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="A gateway YAML file (or a gyroscope.yaml with a gateway: section).",
)
@click.option("--listen", default=None, help="host:port to serve on [127.0.0.1:8080].")
@click.option(
    "--upstream",
    "upstreams",
    multiple=True,
    metavar="[NAME=]HOST:PORT[@WEIGHT]",
    help="A replica (repeat). Ignored when -c gives backends.",
)
@click.option("--policy", type=click.Choice(POLICIES), default=None, help="Balancing policy [p2c].")
@click.option("--admin", default=None, help="Admin API host:port [127.0.0.1:8081]; 'off' disables.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes (SO_REUSEPORT); the admin port's /metrics adds all of them up.",
)
@click.option("--no-health-checks", is_flag=True, help="Turn active health checks off.")
def serve_cmd(
    config_path: Path | None,
    listen: str | None,
    upstreams: tuple[str, ...],
    policy: str | None,
    admin: str | None,
    workers: int | None,
    no_health_checks: bool,
) -> None:
    """Serve the gateway until Ctrl-C or SIGTERM (graceful drain); SIGHUP reloads -c FILE.

    \b
    Examples:
      gyro gateway serve --listen 127.0.0.1:8080 --upstream d1=127.0.0.1:8001 \\
                         --upstream d2=127.0.0.1:8002@2 --policy weighted_round_robin
      gyro gateway serve -c gateway.yaml
      curl -s localhost:8080/v1/models
    """
    config = _build_config(config_path, listen, upstreams, policy, admin, workers, no_health_checks)
    index_text = os.environ.get(WORKER_ENV)
    if config.workers > 1 and index_text is None:
        argv = ["-m", "gyroscope.cli.gateway", *sys.argv[sys.argv.index("serve") :]]
        sys.exit(run_workers(config, argv))
    run(serve(config, config_path=config_path, index=int(index_text or 0), on_ready=_announce))


gateway.add_command(serve_cmd, name="serve")


def _build_config(
    config_path: Path | None,
    listen: str | None,
    upstreams: tuple[str, ...],
    policy: str | None,
    admin: str | None,
    workers: int | None,
    no_health_checks: bool,
) -> GatewayConfig:
    base: dict[str, Any] = {}
    if config_path is not None:
        base = load_gateway_config(config_path).model_dump(mode="json", exclude_unset=True)
        for key, value in load_gateway_config(config_path).model_dump().items():
            if key == "admin_token" and value is not None:
                base[key] = value.get_secret_value()
    elif not upstreams:
        raise ConfigError("give -c FILE or at least one --upstream HOST:PORT", key="--upstream")
    if listen is not None:
        base["listen"] = listen
    if admin is not None:
        base["admin"] = None if admin == "off" else admin
    if workers is not None:
        base["workers"] = workers
    if upstreams:
        base["backends"] = [_parse_upstream(text, i) for i, text in enumerate(upstreams, 1)]
    if policy is not None:
        routes = base.get("routes") or [{}]
        base["routes"] = [{**route, "policy": policy} for route in routes]
    if no_health_checks:
        base["health"] = {**base.get("health", {}), "enabled": False}
    try:
        return GatewayConfig.model_validate(base)
    except ValidationError as exc:
        raise format_validation_error(exc, config_path) from None


def _parse_upstream(text: str, index: int) -> dict[str, Any]:
    name, sep, rest = text.rpartition("=")
    address, at, weight = (rest if sep else text).partition("@")
    if not weight.isdigit() and at:
        raise ConfigError(f"weight must be a whole number in {text!r}", key="--upstream")
    return {
        "name": name if sep else f"u{index}",
        "address": address,
        "weight": int(weight) if at else 1,
    }


def _announce(gw: Gateway) -> None:
    click.echo(
        f"gateway {gw.name!r} listening on {gw.url} ({len(gw.endpoints)} replicas)", err=True
    )
    if gw.admin is not None:
        click.echo(
            f"  admin API: {gw.admin.url}  (gyro gateway backends list --admin {gw.admin.url})",
            err=True,
        )


@gateway.group()
def backends() -> None:
    """List, add, remove, re-weight and drain replicas of a running gateway.

    \b
    Examples:
      gyro gateway backends list --json
      gyro gateway backends add d4 127.0.0.1:8004 --weight 2
      gyro gateway backends weight d1 3
      gyro gateway backends drain d2            # no new requests; in-flight ones finish
      gyro gateway backends remove d2           # drain, wait, remove
    """


@backends.command("list")
@_ADMIN
@_TOKEN
@_JSON
def list_cmd(admin_url: str, token: str | None, as_json: bool) -> None:
    """Show every replica: address, weight, health, in-flight requests.

    \b
    Example:
      gyro gateway backends list --admin http://127.0.0.1:8081
    """
    answer = _call(admin_url, "GET", "/v1/backends", None, token)
    rows = answer["backends"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'NAME':<16} {'ADDRESS':<22} {'WEIGHT':>6} {'IN-FLIGHT':>9}  STATE")
    for b in rows:
        state = _state(b)
        click.echo(
            f"{b['name']:<16} {b['address']:<22} {b['weight']:>6} {b['in_flight']:>9}  {state}"
        )


def _state(b: dict[str, Any]) -> str:
    if b["draining"]:
        return "draining"
    if b["ejected"]:
        return "ejected"
    if not b["healthy"]:
        return "down"
    return "up" if b["available"] else "unavailable"


@backends.command("add")
@click.argument("name")
@click.argument("address")
@click.option("--weight", type=click.IntRange(0, 1000), default=1, show_default=True)
@click.option(
    "--max-concurrent",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Requests at once on this replica (0: no limit).",
)
@_ADMIN
@_TOKEN
def add_cmd(
    name: str, address: str, weight: int, max_concurrent: int, admin_url: str, token: str | None
) -> None:
    """Add replica NAME at ADDRESS (host:port); it ramps up under slow start.

    \b
    Example:
      gyro gateway backends add d4 127.0.0.1:8004 --weight 2
    """
    body = {"name": name, "address": address, "weight": weight, "max_concurrent": max_concurrent}
    _call(admin_url, "POST", "/v1/backends", body, token)
    click.echo(f"added {name} at {address}")


@backends.command("remove")
@click.argument("name")
@click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for in-flight requests before removing anyway.",
)
@_ADMIN
@_TOKEN
def remove_cmd(name: str, timeout: float, admin_url: str, token: str | None) -> None:
    """Drain replica NAME, wait for its in-flight requests, then remove it.

    \b
    Example:
      gyro gateway backends remove d2 --timeout 60
    """
    answer = _call(
        admin_url,
        "DELETE",
        f"/v1/backends/{name}?timeout={timeout}",
        None,
        token,
        timeout=timeout + 10,
    )
    note = "" if answer.get("drained") else " (requests were still running at the timeout)"
    click.echo(f"removed {name}{note}")


@backends.command("weight")
@click.argument("name")
@click.argument("weight", type=click.IntRange(0, 1000))
@_ADMIN
@_TOKEN
def weight_cmd(name: str, weight: int, admin_url: str, token: str | None) -> None:
    """Set replica NAME's weight (0 sends it nothing new).

    \b
    Example:
      gyro gateway backends weight d1 3
    """
    _call(admin_url, "POST", f"/v1/backends/{name}/weight", {"weight": weight}, token)
    click.echo(f"{name}: weight {weight}")


@backends.command("drain")
@click.argument("name")
@click.option("--undo", is_flag=True, help="Put a drained replica back into rotation.")
@_ADMIN
@_TOKEN
def drain_cmd(name: str, undo: bool, admin_url: str, token: str | None) -> None:
    """Stop sending new requests to NAME; in-flight requests finish.

    \b
    Examples:
      gyro gateway backends drain d2
      gyro gateway backends drain d2 --undo
    """
    _call(admin_url, "POST", f"/v1/backends/{name}/drain", {"draining": not undo}, token)
    click.echo(f"{name}: {'back in rotation' if undo else 'draining'}")


@gateway.command()
@_ADMIN
@_TOKEN
def reload(admin_url: str, token: str | None) -> None:
    """Re-read the gateway's config file (same as SIGHUP); in-flight requests are kept.

    \b
    Example:
      gyro gateway reload --admin http://127.0.0.1:8081
    """
    answer = _call(admin_url, "POST", "/v1/reload", None, token)
    click.echo(f"reloaded: {len(answer.get('backends', []))} replicas")


@gateway.command("compile")
@click.option("--clean", is_flag=True, help="Remove the compiled build instead.")
def compile_cmd(clean: bool) -> None:
    """Compile the gateway's hot path with mypyc, for an installed gyroscope.

    The gateway then uses about 4 us less CPU per request, a fifth of its cost (a `make` in a
    clone does this already). Needs gcc, the Python headers (python3-dev) and
    `pip install 'gyroscope[compile]'`. Takes a minute or two; a running gateway picks the build
    up when it restarts. After upgrading gyroscope, compile again (until then the gateway runs
    its sources, and says so); before `pip uninstall`, run `--clean` (pip does not know these
    files).

    \b
    Examples:
      gyro gateway compile
      gyro gateway compile --clean
    """
    import tempfile

    from gyroscope.gateway import _compile

    if clean:
        try:
            removed = _compile.clean()
        except OSError as exc:  # a site-packages this user may not write
            raise GatewayError(f"cannot remove the compiled gateway: {exc}") from None
        click.echo(f"removed the compiled gateway ({len(removed)} files): the sources run")
        return
    problem = _compile.toolchain_problem()
    if problem is not None:  # checked first: an earlier build stays until a new one can be made
        raise GatewayError(f"cannot compile the gateway: {problem}")
    _compile.clean()
    with tempfile.TemporaryDirectory(prefix="gyro-compile-") as build_dir:
        try:
            count = _compile.compile_hot(Path(build_dir))
        except _compile.BuildFailed as exc:
            raise GatewayError(
                f"compiling the gateway failed ({exc}); see the errors above"
            ) from None
    click.echo(f"compiled {count} gateway modules in {_compile.GATEWAY}: used from the next start")


def _call(
    admin_url: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    token: str | None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    return call_admin(admin_url.rstrip("/") + path, method, data, token, timeout)


if __name__ == "__main__":
    from gyroscope.cli._main import main

    sys.argv.insert(1, "gateway")
    main()
