"""The SFTP backend against a real OpenSSH sshd on loopback (started by scripts/services.sh)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gyroscope.backup import (
    BackendError,
    Repository,
    RetentionPolicy,
    Secret,
    backup,
    check,
    dump,
    forget,
    list_snapshots,
    prune,
    restore,
)
from gyroscope.testing import require_server

from .conftest import FAST_KDF, make_tree, race_inits, snapshot_of
from .test_init_if_missing import assert_only_objects_listed, plant_writes_in_progress

SERVICES = os.environ.get("GYRO_SERVICES_DIR", "/tmp/gyroscope-services")
DEFAULT_URL = (
    f"sftp://{os.environ.get('USER', 'root')}@127.0.0.1:12222{SERVICES}/sshd/repos"
    f"?key={SERVICES}/sshd/client_ed25519&known_hosts={SERVICES}/sshd/known_hosts"
)


@pytest.fixture
def sftp_url() -> str:
    url = os.environ.get("GYRO_TEST_SFTP_URL", DEFAULT_URL)
    parts = urlsplit(url)
    require_server("sshd", parts.hostname or "127.0.0.1", parts.port or 22)
    base, _, query = url.partition("?")
    return f"{base}/{uuid.uuid4().hex}?{query}"


def test_sftp_round_trip_check_and_prune(sftp_url: str, tmp_path: Path) -> None:
    secret = Secret(password=b"sftp password")
    repo = Repository.init(sftp_url, secret, kdf=FAST_KDF)
    src = make_tree(tmp_path / "src")
    first = backup(repo, [str(src)]).snapshot
    expected = snapshot_of(src)
    (src / "docs" / "a.txt").write_text("second version")
    second = backup(repo, [str(src)])
    assert second.stats.files_read == 1

    reopened = Repository.open(sftp_url, secret)
    assert [s.id for s in list_snapshots(reopened)] == [first.id, second.snapshot.id]
    out = tmp_path / "out"
    assert restore(reopened, first, out).errors == []
    assert snapshot_of(out / str(src).lstrip("/")) == expected
    import io

    buf = io.BytesIO()
    dump(reopened, second.snapshot, f"{src}/docs/a.txt", buf)
    assert buf.getvalue() == b"second version"
    assert check(reopened, read_data=True).ok
    forget(reopened, RetentionPolicy(last=1))
    prune(reopened, min_pack_age=0)
    assert check(reopened, read_data=True).ok
    assert restore(reopened, second.snapshot, tmp_path / "out2").errors == []
    reopened.close()
    repo.close()


def test_unknown_host_key_is_refused(sftp_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    base, _, query = sftp_url.partition("?")
    key = dict(p.split("=", 1) for p in query.split("&"))["key"]
    with pytest.raises(BackendError, match="cannot connect"):
        Repository.open(f"{base}?key={key}&known_hosts={empty}", Secret(password=b"x"))


def test_racing_inits_over_sftp_make_one_repository(sftp_url: str) -> None:
    race_inits(sftp_url)


def test_uploads_in_progress_are_not_objects(sftp_url: str, tmp_path: Path) -> None:
    """Another host's upload in progress (a dot-named temporary) is never listed as a key, an
    index or a pack."""
    secret = Secret(password=b"sftp password")
    repo = Repository.init(sftp_url, secret, kdf=FAST_KDF)
    snap = backup(repo, [str(make_tree(tmp_path / "src"))]).snapshot
    repo.close()
    plant_writes_in_progress(Path(urlsplit(sftp_url).path))  # sshd runs on this machine
    again = Repository.open(sftp_url, secret)
    assert_only_objects_listed(again)
    assert check(again, read_data=True).ok
    assert restore(again, snap, tmp_path / "out").errors == []
    again.close()
