"""`gyro backup` end to end through click: the commands a user types, their output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gyroscope.cli.backup import backup

from .conftest import make_tree, snapshot_of

PW = {"GYRO_BACKUP_PASSWORD": "hunter2-but-longer"}


@pytest.fixture
def cli(tmp_path: Path) -> tuple[CliRunner, str]:
    runner = CliRunner()
    repo = str(tmp_path / "repo")
    result = runner.invoke(
        backup, ["init", repo, "--kdf-memory", "8192", "--kdf-time", "1"], env=PW
    )
    assert result.exit_code == 0, result.output
    return runner, repo


def test_backup_restore_dump_check_forget(cli: tuple[CliRunner, str], tmp_path: Path) -> None:
    runner, repo = cli
    src = make_tree(tmp_path / "src")
    first = runner.invoke(backup, ["create", repo, str(src), "--tag", "nightly", "--json"], env=PW)
    assert first.exit_code == 0, first.output
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["files"] > 50
    assert any(line["type"] == "progress" for line in lines)

    second = runner.invoke(backup, ["create", repo, str(src)], env=PW)
    assert "unchanged" in second.stdout

    listing = runner.invoke(backup, ["snapshots", repo, "--json"], env=PW)
    snaps = [json.loads(line) for line in listing.stdout.splitlines()]
    assert len(snaps) == 2 and snaps[0]["tags"] == ["nightly"]

    out = tmp_path / "out"
    restored = runner.invoke(
        backup, ["restore", repo, snaps[0]["id"][:8], "--target", str(out)], env=PW
    )
    assert restored.exit_code == 0, restored.output
    assert snapshot_of(out / str(src).lstrip("/")) == snapshot_of(src)

    dumped = runner.invoke(backup, ["dump", repo, "latest", f"{src}/docs/a.txt"], env=PW)
    assert dumped.stdout_bytes == (src / "docs" / "a.txt").read_bytes()

    checked = runner.invoke(backup, ["check", repo, "--read-data-subset", "5%"], env=PW)
    assert checked.exit_code == 0 and "no errors" in checked.stdout
    drill = runner.invoke(backup, ["drill", repo], env=PW)
    assert drill.exit_code == 0 and ": ok" in drill.stdout

    dry = runner.invoke(backup, ["forget", repo, "--keep-last", "1", "--dry-run"], env=PW)
    assert "would remove" in dry.stdout
    real = runner.invoke(backup, ["forget", repo, "--keep-last", "1", "--prune"], env=PW)
    assert real.exit_code == 0 and "prune:" in real.stdout
    assert len(runner.invoke(backup, ["snapshots", repo], env=PW).stdout.splitlines()) == 1


def test_errors_are_one_line_without_traceback(cli: tuple[CliRunner, str], tmp_path: Path) -> None:
    runner, repo = cli
    wrong = runner.invoke(backup, ["snapshots", repo], env={"GYRO_BACKUP_PASSWORD": "nope"})
    assert wrong.exit_code == 1
    assert wrong.stderr.strip().splitlines() == [
        f"gyro: error: {repo}: wrong password or key file: no key of this repository opens with it"
    ]
    assert "Traceback" not in wrong.output
    missing = runner.invoke(backup, ["snapshots", repo], env={"GYRO_BACKUP_PASSWORD": ""})
    assert "no password" in missing.stderr and missing.exit_code == 1
    nothing = runner.invoke(backup, ["check", str(tmp_path / "none")], env=PW)
    assert "no repository here" in nothing.stderr
    bad_subset = runner.invoke(backup, ["check", repo, "--read-data-subset", "500%"], env=PW)
    assert bad_subset.exit_code == 2 and "percentage" in bad_subset.stderr


def test_password_file_and_password_never_printed(
    cli: tuple[CliRunner, str], tmp_path: Path
) -> None:
    runner, repo = cli
    pw_file = tmp_path / "pw"
    pw_file.write_text(PW["GYRO_BACKUP_PASSWORD"] + "\n")
    src = make_tree(tmp_path / "src")
    result = runner.invoke(
        backup, ["create", repo, str(src), "--password-file", str(pw_file), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert PW["GYRO_BACKUP_PASSWORD"] not in result.output


def test_key_file_init_creates_the_key(tmp_path: Path) -> None:
    runner = CliRunner()
    key = tmp_path / "repo.key"
    repo = str(tmp_path / "repo")
    assert runner.invoke(backup, ["init", repo, "--key-file", str(key)]).exit_code == 0
    assert key.stat().st_mode & 0o777 == 0o600
    assert runner.invoke(backup, ["snapshots", repo, "--key-file", str(key)]).exit_code == 0


def test_sqlite_source(cli: tuple[CliRunner, str], tmp_path: Path) -> None:
    import sqlite3

    runner, repo = cli
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table t (x)")
        conn.executemany("insert into t values (?)", [(i,) for i in range(1000)])
    writer = sqlite3.connect(db)
    writer.execute("begin immediate")  # an open write transaction: the backup API still copies
    writer.execute("insert into t values (-1)")
    result = runner.invoke(backup, ["create", repo, "--sqlite", f"app={db}"], env=PW)
    writer.rollback()
    writer.close()
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert (
        runner.invoke(backup, ["restore", repo, "latest", "--target", str(out)], env=PW).exit_code
        == 0
    )
    with sqlite3.connect(out / "@sqlite" / "app.db") as conn:
        assert conn.execute("select count(*), min(x) from t").fetchone() == (1000, 0)


@pytest.mark.parametrize("option", [["--kdf-memory", "8"], ["--kdf-time", "0"]])
def test_too_small_kdf_cost_is_one_clear_line(tmp_path: Path, option: list[str]) -> None:
    result = CliRunner().invoke(backup, ["init", str(tmp_path / "r"), *option], env=PW)
    assert result.exit_code == 2
    assert f"Invalid value for '{option[0]}'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()
