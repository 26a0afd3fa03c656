"""`gyro logs ...` end to end through the root command (one-line errors, exit codes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gyroscope.cli import _main
from gyroscope.logs import LogStore, canonical
from gyroscope.logs._store import Entry


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setitem(_main.COMMANDS, "logs", "gyroscope.cli.logs:logs")
    store = LogStore(tmp_path / "logs", checkpoint_every=0).open()
    now = 1_800_000_000 * 10**9
    store.append(
        [
            Entry(canonical({"service": "api", "level": lv}), f"request {i} {lv}".encode(), now + i)
            for i, lv in enumerate(["info", "error", "info", "error"])
        ]
    )
    store.checkpoint()
    store.close()
    return tmp_path


def gyro(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(_main.cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_query_stats_prove_verify(data_dir: Path, tmp_path: Path) -> None:
    code, out, _ = gyro(
        "logs",
        "query",
        '{level="error"}',
        "--data-dir",
        str(data_dir),
        "--from",
        "1800000000",
        "--to",
        "1800000001",
        "--forward",
    )
    assert code == 0
    assert [line.split(" ", 2)[2] for line in out.splitlines()] == [
        "request 1 error",
        "request 3 error",
    ]
    code, out, _ = gyro("logs", "stats", "--data-dir", str(data_dir), "--json")
    assert code == 0 and json.loads(out)["records"] == 4
    code, out, _ = gyro("logs", "prove", "2", "--data-dir", str(data_dir))
    assert code == 0
    proof = tmp_path / "proof.json"
    proof.write_text(out)
    code, out, _ = gyro("logs", "verify", "--proof", str(proof))
    assert code == 0 and "record 2 is included" in out
    pub = data_dir / "logs" / "checkpoints" / "checkpoint.pub"
    code, out, _ = gyro("logs", "verify", "--proof", str(proof), "--key", str(pub))
    assert code == 0 and "record 2 is included" in out
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = tmp_path / "other.pub"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    code, _, err = gyro("logs", "verify", "--proof", str(proof), "--key", str(other))
    assert code == 1 and "signature does not verify" in err
    doc = json.loads(proof.read_text())
    doc["leaf_index"] = 1
    proof.write_text(json.dumps(doc))
    code, _, err = gyro("logs", "verify", "--proof", str(proof))
    assert code == 1 and err.startswith("gyro: error: record 1 is NOT included")
    code, out, _ = gyro("logs", "verify", "--data-dir", str(data_dir))
    assert code == 0 and out.startswith("OK: 4 records")


def test_verify_reports_damage_with_offset_and_fails(data_dir: Path) -> None:
    seg = next((data_dir / "logs" / "segments").glob("*.seg"))
    data = bytearray(seg.read_bytes())
    data[60] ^= 0x04
    seg.write_bytes(bytes(data))
    code, out, _ = gyro("logs", "verify", "--data-dir", str(data_dir))
    assert code == 1
    assert f"corrupt: {seg}: offset 0: CRC32C mismatch" in out
    assert "FAILED" in out


def test_redact_then_query(data_dir: Path) -> None:
    code, out, _ = gyro("logs", "redact", "1", "--data-dir", str(data_dir))
    assert code == 0
    code, out, _ = gyro(
        "logs",
        "query",
        '{level="error"}',
        "--data-dir",
        str(data_dir),
        "--from",
        "1800000000",
        "--to",
        "1800000001",
        "--json",
    )
    lines = [v[1] for s in json.loads(out)["result"] for v in s["values"]]
    assert lines == ["request 3 error"]
    assert gyro("logs", "verify", "--data-dir", str(data_dir))[0] == 0


def test_bad_input_is_one_line(data_dir: Path, tmp_path: Path) -> None:
    code, _, err = gyro("logs", "query", '{level="error"', "--data-dir", str(data_dir))
    assert code == 2 and err.count("\n") == 1 and "query ends early" in err
    code, _, err = gyro("logs", "query", '{a="b"}', "--data-dir", str(tmp_path / "nowhere"))
    assert code == 2 and "no log store here" in err
    assert "Traceback" not in err
