"""Configuration of the demo model server (the ``demo:`` section of ``gyroscope.yaml``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from gyroscope.core import StrictModel, parse_host_port

__all__ = ["DemoConfig", "DemoServerConfig"]


class DemoServerConfig(StrictModel):
    """One simulated OpenAI-compatible model replica."""

    name: str = "demo"
    listen: str = "127.0.0.1:8001"
    model: str = "demo-model"
    slots: int = Field(default=8, ge=1, le=4096)
    seed: int | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_host_port(value)
        return value


class DemoConfig(StrictModel):
    """The ``demo:`` section: the replicas ``gyro up`` starts."""

    replicas: list[DemoServerConfig] = Field(default_factory=list)
