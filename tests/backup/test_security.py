"""Security review fixes: restore never writes through links it did not make nor outside its target,
database passwords stay off command lines, and the scheduler's HTTP server wants a token off
loopback."""

from __future__ import annotations

import os
import shlex
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gyroscope.backup import Repository, Snapshot, SourceError, backup, restore
from gyroscope.backup._sources import (
    PostgresSource,
    RedisSource,
    dump_sources,
    pg_without_password,
)
from gyroscope.cli.backup import backup as backup_cli

from .conftest import make_tree, snapshot_of
from .test_sources import postgres  # noqa: F401 - the module's PostgreSQL cluster fixture

SECRET = "s3cr3t-Pa55 'quoted'"


def _small_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "a.txt").write_text("restored\n")
    (src / "top.txt").write_text("top\n")
    return src


def _under(target: Path, src: Path) -> Path:
    return target / str(src).lstrip("/")


def test_planted_temporary_symlink_is_not_written_through(repo: Repository, tmp_path: Path) -> None:
    src = _small_tree(tmp_path)
    snap = backup(repo, [str(src)]).snapshot
    target = tmp_path / "target"
    docs = _under(target, src) / "docs"
    docs.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o640)
    other_victim = tmp_path / "victim2"
    other_victim.write_text("also precious\n")
    # The temporary name the old restore used, and a link at the final name of another file.
    os.symlink(victim, docs / ".a.txt.gyro-restore")
    os.symlink(other_victim, _under(target, src) / "top.txt")
    stats = restore(repo, snap, target)
    assert stats.errors == []
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o640
    assert other_victim.read_text() == "also precious\n"
    for path, text in ((docs / "a.txt", "restored\n"), (_under(target, src) / "top.txt", "top\n")):
        assert not path.is_symlink() and path.read_text() == text
    assert not [p for p in docs.iterdir() if p.name.startswith(".gyro-restore")]


@pytest.mark.parametrize("where", ["docs", "first"])
def test_symlinked_directory_in_the_target_is_refused(
    repo: Repository, tmp_path: Path, where: str
) -> None:
    src = _small_tree(tmp_path)
    snap = backup(repo, [str(src)]).snapshot
    target = tmp_path / "target"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A directory of the snapshot, or one above its paths (created by restore, not in it).
    first = target / str(src).lstrip("/").split("/")[0]
    link = _under(target, src) / "docs" if where == "docs" else first
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(elsewhere, link)
    stats = restore(repo, snap, target)
    assert list(elsewhere.iterdir()) == []
    assert link.is_symlink() and os.readlink(link) == str(elsewhere)
    assert stats.errors and all("is a symlink" in e for e in stats.errors)
    failed = {e.split(": ", 1)[0] for e in stats.errors}
    docs = str(src / "docs").lstrip("/")
    if where == "docs":
        assert failed == {docs, f"{docs}/a.txt"}
        assert (_under(target, src) / "top.txt").read_text() == "top\n"  # the others restored
    else:
        assert f"{docs}/a.txt" in failed and str(src / "top.txt").lstrip("/") in failed


def test_cli_restore_reports_each_refused_file_and_exits_non_zero(
    repo: Repository, tmp_path: Path
) -> None:
    src = _small_tree(tmp_path)
    backup(repo, [str(src)])
    target = tmp_path / "target"
    _under(target, src).mkdir(parents=True)
    os.symlink(tmp_path, _under(target, src) / "docs")
    result = CliRunner().invoke(
        backup_cli,
        ["restore", repo.location, "latest", "--target", str(target)],
        env={"GYRO_BACKUP_PASSWORD": "correct horse battery staple"},
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and all("is a symlink" in line for line in errors), result.stderr
    assert "2 file(s) could not be restored" in result.stderr
    assert "Traceback" not in result.output
    assert (_under(target, src) / "top.txt").read_text() == "top\n"


class _Crafted:
    """A snapshot whose tree was crafted (a hostile or corrupted repository)."""

    short_id = "crafted0"

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self._entries = entries

    def entries(self, repo: Repository) -> Iterator[dict[str, Any]]:
        return iter(self._entries)


def test_crafted_names_cannot_escape_the_target(repo: Repository, tmp_path: Path) -> None:
    src = _small_tree(tmp_path)
    snap = backup(repo, [str(src)]).snapshot
    real = next(e for e in snap.entries(repo) if e["p"].endswith("docs/a.txt"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("precious\n")
    target = outside / "target"
    absolute = tmp_path / "absolute.txt"
    evil = [
        {**real, "p": "../escape.txt"},
        {**real, "p": "sub/../../escape2.txt"},
        {**real, "p": str(absolute)},
        {**real, "p": "..", "t": "d"},
        {**real, "p": "../escdir", "t": "d"},
        {**real, "p": "../evil-link", "t": "l", "l": "/etc/passwd"},
        {**real, "p": "inside-link", "t": "h", "l": "../victim"},
        {**real, "p": "", "t": "f"},
    ]
    fine = [{**real, "p": "./ok/a.txt"}]
    stats = restore(repo, _Crafted(evil + fine), target)  # type: ignore[arg-type]
    assert sorted(p.name for p in outside.iterdir()) == ["target", "victim"]
    assert not absolute.exists()
    assert not (target / "inside-link").exists()
    assert (outside / "victim").stat().st_nlink == 1
    assert len(stats.errors) == len(evil) and all("unsafe name" in e for e in stats.errors)
    assert (target / "ok" / "a.txt").read_text() == "restored\n"


def test_in_place_restore_over_a_restore_keeps_links_and_metadata(
    repo: Repository, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src")
    os.symlink("docs", src / "dirlink")  # a symlink to a directory of the snapshot
    snap = backup(repo, [str(src)]).snapshot
    out = tmp_path / "out"
    assert restore(repo, snap, out).errors == []
    (_under(out, src) / "docs" / "a.txt").write_text("changed")
    again = restore(repo, snap, out, verify=True)
    assert again.errors == [] and again.files >= 1
    assert snapshot_of(_under(out, src)) == snapshot_of(src)
    assert os.readlink(_under(out, src) / "dirlink") == "docs"


# --- database passwords stay off command lines -----------------------------------------------

PG_FORMS = [
    f"postgresql://app:{SECRET.replace(' ', '%20').replace(chr(39), '%27')}@127.0.0.1:5432/main",
    "postgres://app@127.0.0.1/main?sslmode=disable&password="
    + SECRET.replace(" ", "%20").replace("'", "%27"),
    "host=127.0.0.1 port=5432 password='" + SECRET.replace("'", "\\'") + "' dbname=main user=app",
    "host=127.0.0.1 password = " + SECRET.replace(" ", "\\ ").replace("'", "\\'") + " dbname=main",
]


@pytest.mark.parametrize("dsn", PG_FORMS)
def test_postgres_password_never_in_argv_in_every_dsn_form(dsn: str) -> None:
    source = PostgresSource.parse(f"main={dsn}")
    assert source.password == SECRET
    assert "s3cr3t" not in source.dsn and "s3cr3t" not in repr(source)
    argv, env = source.command("/tmp/out.dump")
    assert not any("s3cr3t" in arg for arg in argv)
    assert env == {"PGPASSWORD": SECRET}
    assert "127.0.0.1" in source.dsn and "main" in source.dsn
    # Built from a config (not parse): the same.
    assert PostgresSource("main", dsn).command("/tmp/out.dump")[0] == argv


def test_key_value_dsn_keeps_other_settings_and_quoting() -> None:
    dsn, password = pg_without_password(r"host=/run/pg  application_name='a b\'c' password=x")
    assert password == "x"
    assert dsn == r"host='/run/pg' application_name='a b\'c'"
    assert pg_without_password("dbname=main host=h") == ("dbname=main host=h", None)
    assert pg_without_password("main") == ("main", None)
    with pytest.raises(SourceError) as caught:
        pg_without_password("host=h password='unterminated")
    assert "unterminated" not in str(caught.value)


def test_parse_errors_never_echo_the_dsn() -> None:
    with pytest.raises(SourceError) as caught:
        PostgresSource.parse(f"postgresql://app:{SECRET}@127.0.0.1/main")
    assert "s3cr3t" not in str(caught.value)
    with pytest.raises(SourceError) as caught:
        RedisSource.parse(f"=redis://:{SECRET}@127.0.0.1/0")
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["redis://:s3cr3t@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0?password=s3cr3t"]
)
def test_redis_password_never_in_argv(url: str) -> None:
    source = RedisSource.parse(f"cache={url}")
    argv, env = source.command("/tmp/out.rdb")
    assert source.url == "redis://127.0.0.1:6379/0"
    assert not any("s3cr3t" in arg for arg in argv) and env == {"REDISCLI_AUTH": "s3cr3t"}


def test_dump_tools_get_the_password_in_their_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``ps`` would show: stand-in pg_dump/redis-cli record their argv and environment."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "record"
    for tool, var in (("pg_dump", "PGPASSWORD"), ("redis-cli", "REDISCLI_AUTH")):
        script = bindir / tool
        script.write_text(
            f"#!{sys.executable}\n"
            "import os, sys\n"
            f"open({str(record)!r}, 'a').write(repr((sys.argv, os.environ.get({var!r}))) + '\\n')\n"
            "out = [a for a in sys.argv if a.startswith('--file=')]\n"
            "path = out[0][7:] if out else sys.argv[sys.argv.index('--rdb') + 1]\n"
            "open(path, 'wb').write(b'REDIS0011 stand-in')\n"
        )
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    sources = [
        PostgresSource.parse(f"main={PG_FORMS[2]}"),
        RedisSource.parse("cache=redis://127.0.0.1:6379/0?password=" + shlex.quote("s3cr3t")),
    ]
    with dump_sources(sources) as extra:
        assert len(extra) == 2
    calls = [eval(line) for line in record.read_text().splitlines()]
    assert [env for _, env in calls] == [SECRET, "s3cr3t"]
    assert not any("s3cr3t" in arg for argv, _ in calls for arg in argv)


def test_postgres_key_value_dsn_with_password_dumps_for_real(
    repo: Repository, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The rewritten key=value DSN is one libpq accepts (the test cluster trusts, so any password
    is accepted; the point is that the DSN still works once the password is moved out)."""
    from urllib.parse import urlsplit

    parts = urlsplit(request.getfixturevalue("postgres"))
    dsn = (
        f"host={parts.hostname} port={parts.port} user=postgres "
        f"password='{SECRET.replace(chr(39), chr(92) + chr(39))}' dbname=postgres"
    )
    with dump_sources([PostgresSource("kv", dsn)]) as extra:
        snap: Snapshot = backup(repo, [], extra=extra).snapshot
    out = tmp_path / "out"
    assert restore(repo, snap, out).errors == []
    assert (out / "@postgres" / "kv.dump").read_bytes()[:5] == b"PGDMP"


# --- gyro backup serve: a token off loopback --------------------------------------------------


def test_serve_refuses_exposed_listen_without_token_and_bad_listen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gyroscope.backup._serve import TOKEN_ENV, check_listen, read_token
    from gyroscope.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--listen: .*needs a token.*--token-file") as caught:
        check_listen("0.0.0.0:9464", None)
    assert caught.value.exit_code == 2
    with pytest.raises(ConfigError, match="needs a token"):
        check_listen("[::]:9464", "")
    assert check_listen("0.0.0.0:9464", "t0ken") == ("0.0.0.0", 9464)
    assert check_listen("127.0.0.1:9464", None) == ("127.0.0.1", 9464)
    with pytest.raises(ConfigError, match="--listen: expected host:port, got 'bogus'"):
        check_listen("bogus", None)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert read_token(None) is None
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert read_token(None) == "from-env"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert read_token(token_file) == "from-file"
    token_file.write_text("\n")
    with pytest.raises(ConfigError, match="token file is empty"):
        read_token(token_file)
    with pytest.raises(ConfigError, match="cannot read the token file"):
        read_token(tmp_path / "missing")


def test_bearer_check_is_exact() -> None:
    from types import SimpleNamespace

    from gyroscope.backup._serve import authorized

    def req(value: str | None) -> Any:
        return SimpleNamespace(headers={} if value is None else {"authorization": value})

    token = b"t0ken"
    assert authorized(req("Bearer t0ken"), token)
    assert authorized(req("bearer t0ken"), token)
    for wrong in (None, "", "Bearer", "Bearer t0ke", "Bearer t0ken2", "Basic t0ken", "t0ken"):
        assert not authorized(req(wrong), token), wrong
    assert not authorized(req("Bearer t\udcff0ken"), token)  # undecodable bytes: a 401, no crash


def _serve(config: Path, listen: str, env: dict[str, str], *extra: str) -> Any:
    import subprocess

    code = "from gyroscope.cli.backup import backup; backup.main(prog_name='gyro backup')"
    argv = [sys.executable, "-c", code, "serve", "-c", str(config), "--listen", listen, *extra]
    return subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_cli_serve_bad_or_exposed_listen_is_one_line_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"GYRO_BACKUP_SERVE_TOKEN": ""}
    bogus = runner.invoke(
        backup_cli, ["serve", "-c", str(tmp_path / "x.yaml"), "--listen", "bogus"], env=env
    )
    assert bogus.exit_code == 2, bogus.output
    assert bogus.stderr.strip().splitlines() == [
        "gyro: error: --listen: expected host:port, got 'bogus'"
    ]
    exposed = runner.invoke(
        backup_cli, ["serve", "-c", str(tmp_path / "x.yaml"), "--listen", "0.0.0.0:1"], env=env
    )
    assert exposed.exit_code == 2 and "needs a token" in exposed.stderr
    assert len(exposed.stderr.strip().splitlines()) == 1 and "Traceback" not in exposed.output
    empty = tmp_path / "token"
    empty.write_text("")
    no_token = runner.invoke(
        backup_cli,
        ["serve", "-c", str(tmp_path / "x.yaml"), "--token-file", str(empty)],
        env=env,
    )
    assert no_token.exit_code == 2 and "token file is empty" in no_token.stderr


def test_cli_serve_with_token_refuses_requests_without_it(tmp_path: Path) -> None:
    import signal
    import urllib.error
    import urllib.request

    from gyroscope.backup import KdfParams, Secret
    from gyroscope.testing import free_port, wait_for_port

    src = _small_tree(tmp_path)
    Repository.init(
        str(tmp_path / "repo"),
        Secret(password=b"serve-password"),
        kdf=KdfParams(time=1, memory_kib=8192, parallelism=1),
    )
    config = tmp_path / "gyroscope.yaml"
    config.write_text(
        "backup:\n"
        f"  repositories: [{{name: local, location: {tmp_path / 'repo'}, password: '${{PW}}'}}]\n"
        "  jobs:\n"
        "    - {name: files, repository: local, schedule: '0 3 * * *',\n"
        f"       sources: [{{type: files, paths: [{src}]}}]}}\n"
    )
    token_file = tmp_path / "serve.token"
    token_file.write_text("t0ken-for-metrics\n")
    port = free_port()
    env = {"PW": "serve-password", "GYRO_DATA_DIR": str(tmp_path / "data")}
    proc = _serve(config, f"127.0.0.1:{port}", env, "--token-file", str(token_file))
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        for path in ("/metrics", "/healthz"):
            url = f"http://127.0.0.1:{port}{path}"
            for header in (None, "Bearer wrong", "Bearer t0ken-for-metric"):
                request = urllib.request.Request(url)
                if header:
                    request.add_header("Authorization", header)
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(request, timeout=10)
                with refused.value as error:
                    assert error.code == 401
                    assert error.headers["www-authenticate"].startswith("Bearer")
            request = urllib.request.Request(url)
            request.add_header("Authorization", "Bearer t0ken-for-metrics")
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert resp.status == 200 and b"t0ken" not in resp.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


# --- gyro backup init: the key file, the password file ----------------------------------------


def test_cli_init_key_file_in_missing_directory_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        backup_cli, ["init", str(tmp_path / "repo"), "--key-file", str(tmp_path / "nodir" / "k")]
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        f"gyro: error: {tmp_path}/nodir/k: directory {tmp_path}/nodir does not exist "
        "(create it first)"
    ]
    assert not (tmp_path / "nodir").exists() and not (tmp_path / "repo").exists()


def test_cli_init_key_file_is_written_whole_and_never_over_anything(tmp_path: Path) -> None:
    runner = CliRunner()
    keys = tmp_path / "keys"
    keys.mkdir()
    key = keys / "repo.key"
    assert runner.invoke(backup_cli, ["init", str(tmp_path / "r1"), "--key-file", str(key)])
    text = key.read_text()
    assert len(text) == 65 and text.endswith("\n") and bytes.fromhex(text.strip())
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_nlink == 1
    assert os.listdir(keys) == ["repo.key"]  # no temporary left behind
    # An existing key is used as it is (a second repository with the same key).
    again = runner.invoke(backup_cli, ["init", str(tmp_path / "r2"), "--key-file", str(key)])
    assert again.exit_code == 0 and key.read_text() == text
    # A dangling symlink planted at the name: refused, and nothing is written where it points.
    planted = keys / "planted.key"
    os.symlink(tmp_path / "attacker-reads-this", planted)
    refused = runner.invoke(backup_cli, ["init", str(tmp_path / "r3"), "--key-file", str(planted)])
    assert refused.exit_code == 1 and "already exists" in refused.stderr
    assert "Traceback" not in refused.output
    assert not (tmp_path / "attacker-reads-this").exists()
    assert sorted(os.listdir(keys)) == ["planted.key", "repo.key"]


def test_cli_empty_password_file_says_so(tmp_path: Path) -> None:
    runner = CliRunner()
    for content in (b"", b"\n"):
        empty = tmp_path / "empty.txt"
        empty.write_bytes(content)
        result = runner.invoke(
            backup_cli,
            ["init", str(tmp_path / "repo"), "--password-file", str(empty)],
            env={"GYRO_BACKUP_PASSWORD": ""},
        )
        assert result.exit_code == 1
        assert result.stderr.strip().splitlines() == [
            f"gyro: error: {empty}: the password file is empty (its first line is the password)"
        ]
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    result = runner.invoke(
        backup_cli, ["init", str(tmp_path / "repo"), "--password-file", str(binary)]
    )
    assert result.exit_code == 1 and "is not text" in result.stderr
