"""Config plumbing: YAML errors, ${ENV} substitution, one-line errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from gyroscope.core import StrictModel, load_config, parse_host_port, validate_config
from gyroscope.errors import ConfigError


class Inner(StrictModel):
    port: int = Field(default=1, ge=1)


class Root(StrictModel):
    name: str = "x"
    secret: str | None = None
    items: list[Inner] = Field(default_factory=list)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_valid_file_loads(tmp_path: Path) -> None:
    cfg = load_config(Root, write(tmp_path, "name: a\nitems:\n  - port: 5\n"))
    assert cfg.name == "a"
    assert cfg.items[0].port == 5


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(Root, write(tmp_path, "")).name == "x"


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_config(Root, tmp_path / "nope.yaml")


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"c\.yaml:2:\d+: invalid YAML"):
        load_config(Root, write(tmp_path, "name: a\n  bad: [\n"))


def test_unknown_key_names_key_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(Root, write(tmp_path, "items:\n  - port: 5\n    colour: red\n"))
    assert "items[0].colour: unknown key" in str(info.value)
    assert info.value.key == "items[0].colour"


def test_wrong_type_says_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(Root, write(tmp_path, "items:\n  - port: many\n"))
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'c.yaml'}: items[0].port: ")
    assert "integer" in message and "'many'" in message
    assert "\n" not in message


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Root, write(tmp_path, "- a\n- b\n"))


def test_env_substitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GYRO_T_SECRET", "s3cret")
    cfg = load_config(
        Root, write(tmp_path, "secret: ${GYRO_T_SECRET}\nname: ${GYRO_T_UNSET:-dflt}\n")
    )
    assert cfg.secret == "s3cret"
    assert cfg.name == "dflt"


def test_missing_env_var_names_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GYRO_T_MISSING", raising=False)
    with pytest.raises(
        ConfigError, match=r"secret: environment variable GYRO_T_MISSING is not set"
    ):
        load_config(Root, write(tmp_path, "secret: ${GYRO_T_MISSING}\n"))


def test_models_are_frozen() -> None:
    cfg = validate_config(Root, {"name": "a"})
    with pytest.raises(ValueError, match="frozen"):
        cfg.name = "b"  # type: ignore[misc]


@pytest.mark.parametrize("bad", ["8001", "host:", ":80", "h:99999", "h:port"])
def test_bad_host_port(bad: str) -> None:
    with pytest.raises(ValueError, match=r"host:port|port must"):
        parse_host_port(bad)
