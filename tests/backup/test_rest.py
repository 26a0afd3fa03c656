"""`gyro backup repo-serve`: a repository over HTTP, append-only enforced by the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gyroscope.backup import (
    AppendOnlyError,
    BackendError,
    Repository,
    RetentionPolicy,
    Secret,
    backup,
    check,
    forget,
    list_snapshots,
    prune,
    restore,
)
from gyroscope.backup._rest import RepoServer
from gyroscope.errors import ConfigError
from gyroscope.testing import free_port, wait_for_port
from tests.backup.conftest import FAST_KDF, make_tree, race_inits, snapshot_of

Serve = Callable[..., tuple[str, subprocess.Popen[bytes]]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start ``gyro backup repo-serve DIR`` in a process of its own; stopped (kill -9) at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(directory: Path, *args: str, env: dict[str, str] | None = None) -> tuple[str, Any]:
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gyroscope.cli",
                "backup",
                "repo-serve",
                str(directory),
                "--listen",
                f"127.0.0.1:{port}",
                *args,
            ],
            env={**os.environ, **(env or {})},
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        wait_for_port("127.0.0.1", port, timeout=30)
        return f"http://127.0.0.1:{port}/", proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def _init_local(path: Path, secret: Secret) -> None:
    Repository.init(str(path), secret, kdf=FAST_KDF).close()


def test_round_trip_over_http(serve: Serve, tmp_path: Path) -> None:
    secret = Secret(password=b"pw over http")
    _init_local(tmp_path / "repo", secret)
    url, _ = serve(tmp_path / "repo")
    src = make_tree(tmp_path / "src")
    expected = snapshot_of(src)
    repo = Repository.open(url, secret)
    first = backup(repo, [str(src)]).snapshot
    (src / "docs" / "a.txt").write_text("second version")
    second = backup(repo, [str(src)])
    assert second.stats.files_read == 1
    out = tmp_path / "out"
    assert restore(repo, first, out).errors == []
    assert snapshot_of(out / str(src).lstrip("/")) == expected
    assert check(repo, read_data=True).ok
    forget(repo, RetentionPolicy(last=1))  # a read-write server lets a client prune
    prune(repo, min_pack_age=0)
    assert [s.id for s in list_snapshots(repo)] == [second.snapshot.id]
    assert check(repo, read_data=True).ok
    repo.close()


def test_append_only_server_refuses_what_the_client_does_not(serve: Serve, tmp_path: Path) -> None:
    """The client opens the repository normally: only the server stands between it and deletion."""
    secret = Secret(password=b"ransomware test")
    _init_local(tmp_path / "repo", secret)
    url, _ = serve(tmp_path / "repo", "--append-only")
    src = make_tree(tmp_path / "src", big=200_000)
    repo = Repository.open(url, secret)
    first = backup(repo, [str(src)]).snapshot
    (src / "new.txt").write_text("added later")
    backup(repo, [str(src)])  # adding snapshots works, and their lock files come and go
    with pytest.raises(AppendOnlyError, match="append-only"):
        repo.backend.delete(f"snapshots/{first.id}")
    pack = next(i.name for i in repo.backend.list("data"))
    stored = repo.backend.read(pack)
    with pytest.raises(AppendOnlyError, match="overwrite"):
        repo.backend.write(pack, b"encrypted by ransomware")
    repo.backend.write(pack, stored)  # a retried upload of the same bytes is accepted
    assert not list(tmp_path.joinpath("repo", "locks").iterdir())
    repo.close()
    # Everything is still there and restores.
    local = Repository.open(str(tmp_path / "repo"), secret)
    assert check(local, read_data=True).ok
    assert restore(local, first, tmp_path / "out").errors == []
    # Retention runs on the storage host, against the directory.
    forget(local, RetentionPolicy(last=1))
    prune(local, min_pack_age=0)
    assert len(list_snapshots(local)) == 1
    local.close()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/objects/..%2F..%2Fetc%2Fpasswd",
        "/v1/objects/data/..%2F..%2Fsecret",
        "/v1/objects/data/.hidden",
        "/v1/objects/keys",
        "/v1/objects/%2Fetc%2Fpasswd",
        "/v1/objects/other/x",
        "/v1/objects/config%00",
        "/v1/objects/data/%252e%252e/x",
    ],
)
def test_names_outside_the_repository_are_refused(serve: Serve, tmp_path: Path, path: str) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "secret").write_text("do not serve")
    url, _ = serve(tmp_path / "repo")
    for method in ("GET", "PUT", "DELETE"):
        answer = httpx.request(method, url.rstrip("/") + path, content=b"x", timeout=10)
        assert answer.status_code in (400, 404), (method, path, answer.status_code)
    assert (tmp_path / "secret").read_text() == "do not serve"
    assert list((tmp_path / "repo").iterdir()) == []


def test_token_is_required_and_never_in_the_url(serve: Serve, tmp_path: Path) -> None:
    secret = Secret(password=b"pw")
    _init_local(tmp_path / "repo", secret)
    (tmp_path / "token").write_text("s3cret-token\n")
    url, _ = serve(tmp_path / "repo", "--token-file", str(tmp_path / "token"))
    assert httpx.get(url + "v1/objects/config", timeout=10).status_code == 401
    with pytest.raises(BackendError, match="refused the token"):
        Repository.open(url, secret)
    repo = Repository.open(f"{url}?token_file={tmp_path / 'token'}", secret)
    assert list_snapshots(repo) == []
    assert "s3cret" not in repo.location
    repo.close()


def test_beyond_loopback_without_a_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a token"):
        RepoServer(tmp_path, listen="0.0.0.0:8010")


def test_server_killed_mid_backup_then_rerun_completes(serve: Serve, tmp_path: Path) -> None:
    """kill -9 of the server during an upload: a clear error, and a rerun after restart finishes."""
    secret = Secret(password=b"pw kill")
    _init_local(tmp_path / "repo", secret)
    url, proc = serve(tmp_path / "repo")
    src = tmp_path / "src"
    src.mkdir()
    rng = __import__("random").Random(7)
    for i in range(24):
        (src / f"f{i:02}.bin").write_bytes(rng.randbytes(2_000_000))
    repo = Repository.open(url, secret)
    written = 0
    real_write = repo.backend.write

    def write_then_kill(name: str, data: bytes | bytearray | memoryview) -> None:
        nonlocal written
        real_write(name, data)
        written += 1
        if written == 2:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    repo.backend.write = write_then_kill  # type: ignore[method-assign]
    with pytest.raises(BackendError):
        backup(repo, [str(src)])
    repo.close()
    url2, _ = serve(tmp_path / "repo")
    again = Repository.open(url2, secret)
    result = backup(again, [str(src)])
    assert check(again, read_data=True).ok
    out = tmp_path / "out"
    assert restore(again, result.snapshot, out).errors == []
    restored = out / str(src).lstrip("/")
    assert all((restored / p.name).read_bytes() == p.read_bytes() for p in src.iterdir())
    again.close()


@pytest.mark.parametrize("append_only", [False, True])
def test_racing_inits_over_http_make_one_repository(
    serve: Serve, tmp_path: Path, append_only: bool
) -> None:
    (tmp_path / "repo").mkdir()
    url, _ = serve(tmp_path / "repo", *(["--append-only"] if append_only else []))
    race_inits(url, deletable=not append_only)
