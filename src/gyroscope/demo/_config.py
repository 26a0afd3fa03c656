"""Configuration of the demo model server (the ``demo:`` section of ``gyroscope.yaml``).

>>> cfg = DemoServerConfig(name="d1", listen="127.0.0.1:0", slots=4, seed=1)
>>> cfg.step_ms, cfg.faults.hang
(2.0, False)
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, SecretStr, model_validator

from gyroscope.core import Address, StrictModel, require_token_when_exposed
from gyroscope.demo._faults import Faults

__all__ = ["DemoConfig", "DemoServerConfig"]


class DemoServerConfig(StrictModel):
    """One simulated OpenAI-compatible model replica.

    The timing knobs describe a small, fast model (see ``gyroscope.demo._engine`` for the model):
    a decode step of ``step_ms`` with one sequence running, ``step_alpha`` slower for each extra
    running sequence, and prefill at ``prefill_ms_per_token`` per prompt token.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: str = "demo"
    listen: Address = "127.0.0.1:8001"
    model: str = "demo-model"
    slots: int = Field(default=64, ge=1, le=4096)
    seed: int | None = None
    max_queue: int = Field(default=1024, ge=0, le=1_000_000)
    """Requests waiting for a slot beyond this many are refused with 429."""
    step_ms: float = Field(default=2.0, gt=0.0, le=10_000.0)
    step_alpha: float = Field(default=0.02, ge=0.0, le=100.0)
    prefill_ms_per_token: float = Field(default=0.02, ge=0.0, le=1_000.0)
    chars_per_token: float = Field(default=4.0, gt=0.0, le=100.0)
    output_tokens_mean: int = Field(default=64, ge=1, le=1_000_000)
    """Mean answer length when a request sets no max_tokens (geometric: a seeded EOS chance)."""
    max_model_len: int = Field(default=8192, ge=2, le=10_000_000)
    """Prompt plus answer tokens beyond this are refused with 400, as vLLM does."""
    admin_token: SecretStr | None = None
    """Bearer token required by /admin/faults; mandatory when listening beyond loopback."""
    faults: Faults = Faults()

    @model_validator(mode="after")
    def _token_when_exposed(self) -> DemoServerConfig:
        # /admin/faults can crash the server, so it is never open beyond loopback.
        require_token_when_exposed(
            self.listen,
            self.admin_token,
            what="listening",
            key="admin_token",
            env="GYRO_DEMO_TOKEN",
        )
        return self


class DemoConfig(StrictModel):
    """The ``demo:`` section: the replicas ``gyro up`` starts."""

    replicas: list[DemoServerConfig] = Field(default_factory=list)
