"""A scheduled job creates its repository on first run only when the config says so."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from gyroscope.backup import Repository, Secret, list_snapshots

from .conftest import FAST_KDF, make_tree, race_inits

PW = "first-run-password"


def _yaml(tmp_path: Path, src: Path, init: bool) -> Path:
    path = tmp_path / "gyroscope.yaml"
    flag = ", init_if_missing: true" if init else ""
    path.write_text(
        "backup:\n"
        f"  repositories: [{{name: local, location: {tmp_path / 'repo'}, password: '${{PW}}'{flag}}}]\n"
        "  jobs:\n"
        "    - {name: files, repository: local, schedule: '* * * * *',\n"
        f"       sources: [{{type: files, paths: [{src}]}}]}}\n"
    )
    return path


@pytest.mark.parametrize("init", [False, True])
def test_missing_repository_is_created_only_when_asked(tmp_path: Path, init: bool) -> None:
    from gyroscope.cli.backup import backup

    src = make_tree(tmp_path / "src", big=100_000)
    config = _yaml(tmp_path, src, init)
    result = CliRunner().invoke(backup, ["run", "files", "-c", str(config)], env={"PW": PW})
    if not init:
        assert result.exit_code != 0 and "no repository here" in result.stderr
        assert not (tmp_path / "repo" / "config").exists()
        return
    assert result.exit_code == 0, result.output
    repo = Repository.open(str(tmp_path / "repo"), Secret(password=PW.encode()))
    assert len(list_snapshots(repo)) == 1
    repo.close()
    again = CliRunner().invoke(backup, ["run", "files", "-c", str(config)], env={"PW": PW})
    assert again.exit_code == 0, again.output  # the second run opens what the first created


def test_init_if_missing_needs_a_password(tmp_path: Path) -> None:
    from gyroscope.backup import BackupConfig

    with pytest.raises(ValueError, match="init_if_missing needs a password"):
        BackupConfig.model_validate(
            {
                "repositories": [
                    {"name": "r", "location": "/x", "key_file": "/k", "init_if_missing": True}
                ]
            }
        )


def test_simultaneous_first_runs_create_one_repository(tmp_path: Path) -> None:
    """A job's backup and its drill may fire in the same minute on two threads: they must end up
    on one repository, with one master key, not two keys behind the same password."""
    from concurrent.futures import ThreadPoolExecutor

    from gyroscope.backup import BackupConfig
    from gyroscope.backup._jobs import open_repository
    from gyroscope.core import validate_config

    config = validate_config(
        BackupConfig,
        {
            "repositories": [
                {
                    "name": "local",
                    "location": str(tmp_path / "repo"),
                    "password": PW,
                    "init_if_missing": True,
                }
            ],
        },
    )
    start = threading.Barrier(6)

    def first_run(_: int) -> tuple[str, bytes]:
        start.wait()
        repo = open_repository(config, "local")
        try:
            return repo.config["id"], repo.key.chunk_id(b"same bytes")
        finally:
            repo.close()

    with ThreadPoolExecutor(6) as pool:
        seen = set(pool.map(first_run, range(6)))
    assert len(seen) == 1  # one repository id, one chunk-id key
    assert len(list((tmp_path / "repo" / "keys").iterdir())) == 1


def test_racing_inits_of_a_local_directory_make_one_repository(tmp_path: Path) -> None:
    race_inits(str(tmp_path / "repo"), racers=6)


def test_a_stray_key_never_unlocks_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A key that wraps another master key under the same password (left by an init that lost a
    race before this safeguard) is skipped: the reader still decrypts what was written."""
    from gyroscope.backup import backup, restore
    from gyroscope.backup._backend import LocalBackend, ObjectInfo
    from gyroscope.backup._crypto import MasterKey, wrap_key

    secret = Secret(password=PW.encode())
    repo = Repository.init(str(tmp_path / "repo"), secret, kdf=FAST_KDF)
    src = make_tree(tmp_path / "src", big=50_000)
    snap = backup(repo, [str(src)]).snapshot
    (key_name,) = [k.name for k in repo.backend.list("keys")]
    doc = json.loads(repo.backend.read(key_name))
    doc["key"] = wrap_key(MasterKey.generate(), secret.kek(doc))
    repo.backend.write("keys/" + "0" * 32, json.dumps(doc).encode())
    repo.close()
    stray = "keys/" + "0" * 32
    listed = LocalBackend.list

    def stray_first(self: LocalBackend, prefix: str) -> list[ObjectInfo]:
        return sorted(listed(self, prefix), key=lambda info: info.name != stray)

    monkeypatch.setattr(LocalBackend, "list", stray_first)  # tried first: it must be skipped
    with caplog.at_level(logging.WARNING, logger="gyroscope.backup._repo"):
        for _ in range(3):  # a scheduled job opens it again and again: one warning, not three
            again = Repository.open(str(tmp_path / "repo"), secret)
            again.close()
    warned = f"{tmp_path / 'repo'}: ignoring {stray} (left by an init that lost a race)"
    assert [r.getMessage() for r in caplog.records].count(warned) == 1
    again = Repository.open(str(tmp_path / "repo"), secret)
    assert restore(again, snap, tmp_path / "out").errors == []
    again.close()


def plant_writes_in_progress(root: Path) -> None:
    """What a crashed or concurrent writer leaves: temporaries named with a leading dot, as the
    local backend (atomic_write, create_new) and the SFTP backend name them, holding no JSON."""
    for name in ("keys/.k.tmp-1", "keys/.tmp-2", "index/.i.new-3", "data/00/.tmp-4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"half-writ")


def assert_only_objects_listed(repo: Repository) -> None:
    for prefix in ("keys", "index", "data"):
        names = [info.name.rsplit("/", 1)[-1] for info in repo.backend.list(prefix)]
        assert names and not [name for name in names if name.startswith(".")], prefix


def test_writes_in_progress_are_not_objects(tmp_path: Path) -> None:
    """A reader opening the repository while another process writes a key, an index or a pack
    must not read its temporaries: the first CI run of the init race failed on exactly that."""
    from gyroscope.backup import backup, check, restore

    secret = Secret(password=PW.encode())
    repo = Repository.init(str(tmp_path / "repo"), secret, kdf=FAST_KDF)
    snap = backup(repo, [str(make_tree(tmp_path / "src"))]).snapshot
    repo.close()
    plant_writes_in_progress(tmp_path / "repo")
    again = Repository.open(str(tmp_path / "repo"), secret)
    assert_only_objects_listed(again)
    assert check(again, read_data=True).ok
    assert restore(again, snap, tmp_path / "out").errors == []
    again.close()


def test_a_key_taken_back_after_listing_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loser of an init race deletes its key; a reader that listed it a moment before goes
    on to the next key instead of failing on the missing one."""
    from gyroscope.backup._backend import LocalBackend, ObjectInfo

    secret = Secret(password=PW.encode())
    Repository.init(str(tmp_path / "repo"), secret, kdf=FAST_KDF).close()
    listed = LocalBackend.list

    def with_a_vanished_key(self: LocalBackend, prefix: str) -> list[ObjectInfo]:
        found = listed(self, prefix)
        gone = [ObjectInfo("keys/" + "0" * 32, 100, 0.0)] if prefix == "keys" else []
        return gone + found

    monkeypatch.setattr(LocalBackend, "list", with_a_vanished_key)
    Repository.open(str(tmp_path / "repo"), secret).close()
