"""``gyro demo``: run a simulated OpenAI-compatible model server, and inject faults into one."""

from __future__ import annotations

import json
from typing import Any

import click
from pydantic import SecretStr, ValidationError

from gyroscope.core import (
    JsonCallError,
    call_json,
    format_validation_error,
    is_loopback,
    run,
    run_alone,
)
from gyroscope.demo import DemoServer, DemoServerConfig, Faults, merge_faults, parse_fault_args
from gyroscope.errors import ConfigError, DemoError, TargetError

_SERVE_EXAMPLES = """
\b
Examples:
  gyro demo serve --port 8001 --slots 8 --seed 1
  gyro demo serve --fault error_rate=0.1 --fault latency_ms=200
  curl -s localhost:8001/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}'
"""


@click.group()
def demo() -> None:
    """A simulated OpenAI-compatible model server with runtime faults.

    \b
    Examples:
      gyro demo serve --port 8001
      gyro demo fault http://127.0.0.1:8001 error_rate=0.2 error_status=503
      gyro demo fault http://127.0.0.1:8001 --clear
    """


def _default(name: str) -> Any:
    return DemoServerConfig.model_fields[name].default


@demo.command(epilog=_SERVE_EXAMPLES)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535))
@click.option("--name", default="demo", show_default=True, help="Replica name (logs, health).")
@click.option("--model", default=_default("model"), show_default=True, help="Model name served.")
@click.option("--slots", default=_default("slots"), show_default=True, help="Sequences at once.")
@click.option("--seed", type=int, default=None, help="Seed for errors and answer lengths.")
@click.option("--max-queue", default=_default("max_queue"), show_default=True, help="Queue size.")
@click.option("--step-ms", default=_default("step_ms"), show_default=True, help="Step, batch 1.")
@click.option(
    "--step-alpha", default=_default("step_alpha"), show_default=True, help="Per extra sequence."
)
@click.option(
    "--prefill-ms-per-token",
    default=_default("prefill_ms_per_token"),
    show_default=True,
    help="Prefill cost per prompt token.",
)
@click.option(
    "--chars-per-token", default=_default("chars_per_token"), show_default=True, help="Prompt size."
)
@click.option(
    "--output-tokens-mean",
    default=_default("output_tokens_mean"),
    show_default=True,
    help="Mean answer length without max_tokens.",
)
@click.option(
    "--max-model-len", default=_default("max_model_len"), show_default=True, help="Context length."
)
@click.option("--admin-token", default=None, help="Bearer token for /admin (needed off loopback).")
@click.option(
    "--grace",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0, 600),
    help="Seconds in-flight requests get to finish on Ctrl-C/SIGTERM.",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="KEY=VALUE",
    help="Start with a fault (keys: gyro demo fault --help).",
)
def serve(
    host: str,
    port: int,
    faults: tuple[str, ...],
    admin_token: str | None,
    grace: float,
    **knobs: Any,
) -> None:
    """Serve a simulated model on HOST:PORT until Ctrl-C or SIGTERM.

    Endpoints: /v1/models, /v1/completions, /v1/chat/completions (stream or not), /health,
    /metrics (vLLM metric names) and /admin/faults.
    """
    try:
        initial = merge_faults(Faults(), parse_fault_args(faults))
    except DemoError as exc:
        raise ConfigError(str(exc), key="--fault") from None
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if not is_loopback(host) and not admin_token:
        raise ConfigError(
            f"listening on {host} (not loopback) needs --admin-token (or "
            "GYRO_DEMO_SERVE_ADMIN_TOKEN), since /admin/faults can crash the server",
            key="--host",
        )
    try:
        config = DemoServerConfig(
            listen=listen,
            admin_token=SecretStr(admin_token) if admin_token else None,
            faults=initial,
            **knobs,
        )
    except ValidationError as exc:
        error = format_validation_error(exc, None)
        raise ConfigError(error.message, key=f"--{(error.key or '').replace('_', '-')}") from None
    run(run_alone(DemoServer(config), grace=grace, on_ready=_announce))


def _announce(server: Any) -> None:
    url = server.url
    click.echo(f"demo model server {server.config.model!r} listening on {url}", err=True)
    click.echo(
        f"  try: curl -s {url}/v1/chat/completions -H 'content-type: application/json' "
        """-d '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}'""",
        err=True,
    )
    click.echo(f"  faults: gyro demo fault {url} error_rate=0.2   (Ctrl-C stops)", err=True)


def _faults_epilog() -> str:
    lines = ["\b", "Faults (KEY=VALUE):"]
    for key, field in Faults.model_fields.items():
        lines.append(f"  {key:20s} {(field.description or '').replace('``', '')}")
    return "\n".join(lines)


@demo.command(epilog=_faults_epilog())
@click.argument("url")
@click.argument("changes", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--clear", is_flag=True, help="Clear every fault.")
@click.option("--token", default=None, help="Admin bearer token, if the server has one.")
@click.option("--timeout", default=5.0, show_default=True, type=float, help="Seconds to wait.")
@click.option("--json", "as_json", is_flag=True, help="Print the server's faults as JSON.")
def fault(
    url: str,
    changes: tuple[str, ...],
    clear: bool,
    token: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Show, set (merge) or clear the faults of the demo server at URL.

    \b
    Examples:
      gyro demo fault http://127.0.0.1:8001                       # show
      gyro demo fault http://127.0.0.1:8001 latency_ms=300 hang=false
      gyro demo fault http://127.0.0.1:8001 refuse_connections=true clear_after_s=10
      gyro demo fault http://127.0.0.1:8001 --clear --json
    """
    if clear and changes:
        raise DemoError("give either KEY=VALUE changes or --clear, not both")
    method, body = "GET", None
    if clear:
        method = "DELETE"
    elif changes:
        method, body = "POST", json.dumps(parse_fault_args(changes)).encode()
    answer = _call(url.rstrip("/") + "/admin/faults", method, body, token, timeout)
    if as_json:
        click.echo(json.dumps(answer["faults"], indent=2, sort_keys=True))
    else:
        active = answer.get("active") or []
        click.echo(f"{url}: faults: " + (", ".join(active) if active else "none"))


def _call(
    url: str, method: str, body: bytes | None, token: str | None, timeout: float
) -> dict[str, Any]:
    if not url.startswith(("http://", "https://")):
        raise DemoError(f"expected a URL like http://127.0.0.1:8001, got {url!r}")
    try:
        return call_json(url, method, body, token=token, timeout=timeout)
    except JsonCallError as exc:
        if exc.status is not None:
            raise DemoError(f"{url}: {exc.message or f'HTTP {exc.status}'}") from None
        if exc.not_json:
            raise TargetError(f"answered something that is not JSON: {exc}", target=url) from None
        hint = " (is it refusing connections? faults with clear_after_s lift themselves)"
        raise TargetError(f"cannot reach the demo server: {exc}{hint}", target=url) from None
