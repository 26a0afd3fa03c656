"""``gyro lock``: hold a lock while a command runs, inspect and break locks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from typing import Any

import click

from gyroscope.core import default_data_dir
from gyroscope.lock import Lock, LockBackend, LockError, LockTimeout, open_backend

__all__ = ["lock"]

log = logging.getLogger(__name__)

LEASE_LOST_EXIT = 75  # EX_TEMPFAIL: the command was stopped because the lock was lost


def _default_backend() -> str:
    return f"sqlite://{(default_data_dir() / 'locks.db').resolve()}"


@click.group()
@click.option(
    "--backend",
    metavar="URL",
    default=None,
    help="sqlite:///path | redis://host:port/db | etcd://host:port,... | zookeeper://host:port "
    "(default: sqlite in the data dir). Env: GYRO_LOCK_BACKEND.",
)
@click.pass_context
def lock(ctx: click.Context, backend: str | None) -> None:
    """Distributed locks with leases and fencing tokens.

    \b
    Examples:
      gyro lock run nightly-backup -- ./backup.sh        # like flock(1), across hosts
      gyro lock --backend redis://127.0.0.1:6379/0 status nightly-backup
      gyro lock list --json
      gyro lock break nightly-backup --yes               # administrative, logged
    """
    ctx.obj = backend or _default_backend()


def _run(coro: Any) -> Any:
    from gyroscope.core import run

    return run(coro)


@lock.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option(
    "--ttl",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Lease in seconds, renewed every ttl/3 while the command runs.",
)
@click.option(
    "--timeout",
    "-w",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up after waiting this long (default: wait forever).",
)
@click.option("--nonblock", "-n", is_flag=True, help="Fail at once if the lock is held.")
@click.option("--fair", is_flag=True, help="Queue waiters first-come first-served.")
@click.pass_obj
def run(
    url: str,
    name: str,
    command: tuple[str, ...],
    ttl: float,
    timeout: float | None,
    nonblock: bool,
    fair: bool,
) -> None:
    """Run COMMAND while holding lock NAME; exit with the command's exit code.

    The fencing token is in $GYRO_LOCK_TOKEN (pass it to every write the lock protects). If the
    lease is lost while the command runs, the command gets SIGTERM and gyro exits 75.

    \b
    Examples:
      gyro lock run nightly-backup -- ./backup.sh
      gyro lock run --nonblock --ttl 10 reindex -- python reindex.py --all
    """
    code = _run(
        _run_locked(
            url, name, list(command), ttl=ttl, fair=fair, patience=0 if nonblock else timeout
        )
    )
    sys.exit(code)


async def _run_locked(
    url: str, name: str, argv: list[str], *, ttl: float, fair: bool, patience: float | None
) -> int:
    holder = Lock(name, url, ttl=ttl, fair=fair)
    try:
        token = await holder.acquire(timeout=patience, blocking=patience != 0)
        if token is None:
            raise LockTimeout(f"held by someone else (waited {patience or 0:g}s)", lock_name=name)
        env = {**os.environ, "GYRO_LOCK_TOKEN": str(token), "GYRO_LOCK_NAME": name}
        try:
            proc = await asyncio.create_subprocess_exec(*argv, env=env)
        except OSError as exc:
            await holder.release()
            raise LockError(f"cannot run {argv[0]!r}: {exc.strerror}") from None
        code = await _supervise(holder, proc)
        if code == LEASE_LOST_EXIT:
            return code
        await holder.release()
        return code
    finally:
        await holder.aclose()


async def _supervise(holder: Lock, proc: asyncio.subprocess.Process) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, proc.send_signal, sig)
    lost = asyncio.create_task(holder.lease_lost.wait())
    done = asyncio.create_task(proc.wait())
    try:
        await asyncio.wait({lost, done}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    if done.done():
        lost.cancel()
        return done.result()
    click.echo(f"gyro: error: lock {holder.name!r} was lost; stopping the command", err=True)
    proc.terminate()
    try:
        await asyncio.wait_for(done, 10)
    except TimeoutError:
        proc.kill()
        await done
    return LEASE_LOST_EXIT


async def _with_backend(url: str, fn: Any) -> Any:
    backend: LockBackend = open_backend(url)
    try:
        return await fn(backend)
    finally:
        with contextlib.suppress(LockError):
            await backend.aclose()


@lock.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(url: str, name: str, as_json: bool) -> None:
    """Show who holds lock NAME (exit 0), or that it is free (exit 1).

    \b
    Example:
      gyro lock status nightly-backup --json
    """
    info = _run(_with_backend(url, lambda b: b.inspect(name)))
    if as_json:
        click.echo(json.dumps(info.as_dict() if info else {"name": name, "owner": None}))
    elif info is None:
        click.echo(f"{name}: free")
    else:
        click.echo(
            f"{name}: held by {info.owner}, token {info.token}, "
            f"ttl {_fmt_ttl(info.ttl_remaining)}, {info.waiters} waiting"
        )
    sys.exit(0 if info else 1)


def _fmt_ttl(ttl: float | None) -> str:
    return "-" if ttl is None else f"{ttl:.1f}s"


@lock.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one array).")
@click.pass_obj
def list_(url: str, as_json: bool) -> None:
    """List every held lock.

    \b
    Example:
      gyro lock --backend redis://127.0.0.1:6379/0 list
    """
    infos = _run(_with_backend(url, lambda b: b.list_locks()))
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in infos]))
        return
    if not infos:
        click.echo("no locks held")
    for info in infos:
        click.echo(
            f"{info.name}\t{info.owner}\ttoken {info.token}\tttl {_fmt_ttl(info.ttl_remaining)}"
        )


@lock.command("break")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def break_(url: str, name: str, yes: bool) -> None:
    """Drop the current holder of NAME (administrative; the holder learns it lost the lock).

    Fencing still protects resources: the old holder's token stays stale.

    \b
    Example:
      gyro lock break nightly-backup --yes
    """
    if not yes:
        click.confirm(f"break lock {name!r}? its holder will lose it", abort=True)
    info = _run(_with_backend(url, lambda b: b.force_release(name)))
    if info is None:
        click.echo(f"{name}: was not held")
        sys.exit(1)
    log.warning("lock %s broken from the CLI (owner %s, token %d)", name, info.owner, info.token)
    click.echo(f"{name}: broke the hold of {info.owner} (token {info.token})")
