"""Settings of `datasync up` (the local stack), read from the environment in one place.

The API, consumers and Lambdas have their own settings (datasync/settings.py, lambdas/config.py);
these are only the knobs of the local stack: which emulator it talks to, where it keeps its
state and which ports it uses (its Layout, datasync/local_layout.py, which the tools that read
a running stack share), and how the apps run. docs/configuration.md is generated from them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from datasync.local_layout import (
    API_PORT_SETTING,
    DEFAULT_API_PORT,
    DEFAULT_EMULATOR_PORT,
    EMULATOR_HOST_SETTING,
    EMULATOR_PORT_SETTING,
    LOOPBACK,
    VAR_DIR_SETTING,
    Layout,
)
from datasync.local_layout import CHECKOUT as ROOT
from datasync.settings import DEFAULT_VAR_DIR, Settings, config_error, doc

# Local consumers long-poll for this long unless DATASYNC_RECEIVE_WAIT_SECONDS is set (the
# apps' setting, 20 s by default): a consumer stops within one wait of SIGTERM, so 5 s keeps
# `make run`'s stop well inside its 30 s budget. Empty receives cost nothing on the emulator, and
# MiniStack re-scans a waiting queue every 100 ms whatever the wait, so a shorter wait adds one
# request per 5 s per thread.
LOCAL_RECEIVE_WAIT_SECONDS = 5
LOCAL_LAMBDA_CONCURRENCY = 3
# The intake shapes every live event for every destination. With batches of up to 100 records
# (ministack_main.py), 4 batches at once drained bursts of 2,000-20,000 at 2,040-2,560 events/s
# against 1,500-1,630 with 12, in a third of the worker memory (234 MB against 700): fewer
# processes, fuller batches (BENCHMARKS.md, "Batches as large as AWS's").
LOCAL_INTAKE_CONCURRENCY = 4
MAKE_RUN = "`make run`"


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # Where the stack lives and listens (its Layout). The CLI reads DATASYNC_VAR_DIR too.
    var_dir: Path = Field(
        DEFAULT_VAR_DIR,
        validation_alias=VAR_DIR_SETTING,
        description="Where the local stack keeps its state: emulator and Terraform state, "
        "stores, logs, the env file (`make clean-state` forgets it)",
        json_schema_extra=doc(MAKE_RUN, "`make clean-state`"),
    )
    api_port: int = Field(
        DEFAULT_API_PORT,
        ge=1,
        le=65535,
        validation_alias=API_PORT_SETTING,
        description="Port of the local API (on 127.0.0.1)",
        json_schema_extra=doc(MAKE_RUN),
    )
    emulator_port: int = Field(
        DEFAULT_EMULATOR_PORT,
        ge=1,
        le=65535,
        validation_alias=EMULATOR_PORT_SETTING,
        description="Port MiniStack listens on",
        json_schema_extra=doc(MAKE_RUN),
    )
    emulator_host: str = Field(
        LOOPBACK,
        validation_alias=EMULATOR_HOST_SETTING,
        description="Address MiniStack binds (`0.0.0.0` for a kind cluster)",
        json_schema_extra=doc(MAKE_RUN, allowed="IP address"),
    )
    # A LocalStack-compatible emulator someone else runs: no MiniStack is started then.
    external_endpoint: str | None = Field(
        None,
        validation_alias="DATASYNC_AWS_ENDPOINT_URL",
        description="Use an already running LocalStack-compatible emulator instead of starting "
        "MiniStack",
        json_schema_extra=doc(MAKE_RUN, allowed="URL"),
    )
    # One worker thread per local consumer: SQLite takes one writer at a time anyway, and one
    # thread waiting out its batch window takes many record packs per call (BENCHMARKS.md).
    consumer_concurrency: int = Field(
        1,
        ge=1,
        validation_alias="DATASYNC_CONSUMER_CONCURRENCY",
        description="Worker threads per local consumer (its `--concurrency`; SQLite takes one "
        "writer at a time)",
        json_schema_extra=doc(MAKE_RUN),
    )
    # Concurrent Lambda batches per destination function's event source mapping (its
    # MaximumConcurrency; AWS's minimum is 2): they take what the intake hands over, and replays.
    lambda_concurrency: int = Field(
        LOCAL_LAMBDA_CONCURRENCY,
        ge=2,
        le=5,
        validation_alias="DATASYNC_LAMBDA_CONCURRENCY",
        description="Batches at once per destination's own function (what the intake hands "
        "over, and replays)",
        json_schema_extra=doc(MAKE_RUN),
    )
    intake_concurrency: int = Field(
        LOCAL_INTAKE_CONCURRENCY,
        ge=2,
        le=16,
        validation_alias="DATASYNC_INTAKE_CONCURRENCY",
        description="Intake batches at once (its event source mapping's `MaximumConcurrency`; "
        "each is a MiniStack worker process of ~58 MB; with batches of up to 100 records, 4 "
        "drained bursts faster than 12)",
        json_schema_extra=doc(MAKE_RUN),
    )
    ministack_venv: Path = Field(
        ROOT / ".tools" / "ministack",
        validation_alias="DATASYNC_MINISTACK_VENV",
        description="The virtual environment MiniStack is installed in (`make tools`)",
        json_schema_extra=doc(MAKE_RUN, "`make test`"),
    )
    ministack_log_level: str = Field(
        "WARNING",
        validation_alias="MINISTACK_LOG_LEVEL",
        description="MiniStack's own log level (its log is `<var dir>/local/logs/ministack.log`)",
        json_schema_extra=doc(MAKE_RUN, allowed="DEBUG, INFO, WARNING, ERROR"),
    )
    # Largest batch MiniStack's event source mappings hand a function (ministack_main.py):
    # AWS's 10,000 by default, so the Terraform's batch size (100) holds; MiniStack's own is 10.
    emulator_esm_max_batch: int = Field(
        10_000,
        ge=10,
        le=10_000,
        validation_alias="DATASYNC_EMULATOR_ESM_MAX_BATCH",
        description="The largest batch MiniStack's event source mappings hand a function (AWS's "
        "limit, so the Terraform's batch size of 100 holds; 10 is MiniStack's own cap)",
        json_schema_extra=doc(MAKE_RUN),
    )
    terraform_mirror: Path | None = Field(
        None,
        validation_alias="DATASYNC_TERRAFORM_MIRROR",
        description="A provider filesystem mirror for offline machines: Terraform then installs "
        "`hashicorp/*` from there and never contacts the registry",
        json_schema_extra=doc(MAKE_RUN, "`make test`"),
    )
    # Terraform's own variable: a file it names that does not exist only produces warnings.
    terraform_cli_config_file: Path | None = Field(
        None,
        validation_alias="TF_CLI_CONFIG_FILE",
        description="Terraform's CLI configuration; ignored when the file does not exist, "
        "replaced when `DATASYNC_TERRAFORM_MIRROR` is set",
        json_schema_extra=doc(MAKE_RUN, "`make test`"),
    )
    # botocore's own variable: only whether it is set counts here.
    aws_access_key_id: SecretStr | None = Field(
        None,
        validation_alias="AWS_ACCESS_KEY_ID",
        description="AWS credentials of the shell: when set, they are used to check the "
        "emulator's resources; unset, the emulator's dummy `test` keys",
        json_schema_extra=doc(MAKE_RUN, allowed="text (secret)"),
    )

    @field_validator(
        "external_endpoint",
        "terraform_mirror",
        "terraform_cli_config_file",
        "aws_access_key_id",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def layout(self) -> Layout:
        """Where this stack keeps its files, and the ports it listens on."""
        return Layout(
            self.var_dir,
            api_port=self.api_port,
            emulator_port=self.emulator_port,
            emulator_host=self.emulator_host,
        )

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
    try:
        return StackSettings()
    except ValidationError as exc:
        raise config_error(exc) from None


def consumer_receive_wait_seconds() -> int:
    """The long poll of the local consumers: the apps' DATASYNC_RECEIVE_WAIT_SECONDS when it is
    set, else LOCAL_RECEIVE_WAIT_SECONDS (quick stops) rather than the apps' default."""
    try:
        apps = Settings()
    except ValidationError as exc:
        raise config_error(exc) from None
    if "receive_wait_seconds" in apps.model_fields_set:
        return apps.receive_wait_seconds
    return LOCAL_RECEIVE_WAIT_SECONDS
