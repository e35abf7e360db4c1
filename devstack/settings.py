"""Settings of `datasync up` (the local stack), read from the environment in one place.

The API, consumers and Lambdas have their own settings (datasync/settings.py, lambdas/config.py);
these are only the knobs of the local stack: which emulator it talks to, and how the apps run.
Where it keeps its state and which ports it uses is the local layout (datasync/local_layout.py),
which the tools that read a running stack share.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from datasync.local_layout import CHECKOUT as ROOT

# Local consumers long-poll for this long (unless DATASYNC_RECEIVE_WAIT_SECONDS is set): a
# consumer stops within one wait of SIGTERM, so 5 s keeps `make run`'s stop well inside its
# 30 s budget. Empty receives cost nothing on the emulator, and MiniStack re-scans a waiting
# queue every 100 ms whatever the wait, so a shorter wait adds one request per 5 s per thread.
LOCAL_RECEIVE_WAIT_SECONDS = 5
LOCAL_LAMBDA_CONCURRENCY = 3
# The intake shapes every live event for every destination. With batches of up to 100 records
# (ministack_main.py), 4 batches at once drained bursts of 2,000-20,000 at 2,040-2,560 events/s
# against 1,500-1,630 with 12, in a third of the worker memory (234 MB against 700): fewer
# processes, fuller batches (BENCHMARKS.md, "Batches as large as AWS's").
LOCAL_INTAKE_CONCURRENCY = 4


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # A LocalStack-compatible emulator someone else runs: no MiniStack is started then.
    external_endpoint: str | None = Field(None, validation_alias="DATASYNC_AWS_ENDPOINT_URL")
    # One worker thread per local consumer: SQLite takes one writer at a time anyway, and one
    # thread waiting out its batch window takes many record packs per call (BENCHMARKS.md).
    consumer_concurrency: int = Field(1, ge=1, validation_alias="DATASYNC_CONSUMER_CONCURRENCY")
    # Concurrent Lambda batches per destination function's event source mapping (its
    # MaximumConcurrency; AWS's minimum is 2): they take what the intake hands over, and replays.
    lambda_concurrency: int = Field(
        LOCAL_LAMBDA_CONCURRENCY, ge=2, le=5, validation_alias="DATASYNC_LAMBDA_CONCURRENCY"
    )
    intake_concurrency: int = Field(
        LOCAL_INTAKE_CONCURRENCY, ge=2, le=16, validation_alias="DATASYNC_INTAKE_CONCURRENCY"
    )
    ministack_venv: Path = Field(
        ROOT / ".tools" / "ministack", validation_alias="DATASYNC_MINISTACK_VENV"
    )
    ministack_log_level: str = Field("WARNING", validation_alias="MINISTACK_LOG_LEVEL")
    # Largest batch MiniStack's event source mappings hand a function (ministack_main.py):
    # AWS's 10,000 by default, so the Terraform's batch size (100) holds; MiniStack's own is 10.
    emulator_esm_max_batch: int = Field(
        10_000, ge=10, le=10_000, validation_alias="DATASYNC_EMULATOR_ESM_MAX_BATCH"
    )
    terraform_mirror: Path | None = Field(None, validation_alias="DATASYNC_TERRAFORM_MIRROR")
    receive_wait_seconds: int = Field(
        LOCAL_RECEIVE_WAIT_SECONDS, ge=0, le=20, validation_alias="DATASYNC_RECEIVE_WAIT_SECONDS"
    )

    @field_validator("external_endpoint", "terraform_mirror", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def ministack_executable(self) -> Path:
        return self.ministack_venv / "bin" / "ministack"

    @property
    def ministack_command(self) -> list[str]:
        """MiniStack started through our entry point (its own interpreter, our batch limit)."""
        return [
            str(self.ministack_venv / "bin" / "python"),
            str(ROOT / "devstack" / "ministack_main.py"),
            "--esm-max-batch",
            str(self.emulator_esm_max_batch),
        ]


def stack_settings() -> StackSettings:
    """The settings as the environment says now (tests change it between calls)."""
    return StackSettings()
