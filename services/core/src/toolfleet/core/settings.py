"""Settings: ``TOOLFLEET_*`` environment variables, then an optional TOML config file.

The config file is named by ``Settings(config_file=...)`` (``--config`` of ``toolfleet serve``
and ``toolfleet worker``) or else by ``TOOLFLEET_CONFIG``; its top-level keys are the field
names below, and each service reads its own table (``[sandbox]``, ``[sql]`` ...) of the same
file: :meth:`ServiceSettings.from_config`. Environment variables win over the file; nested
values such as ``api_keys`` are JSON in the environment
(``TOOLFLEET_API_KEYS='{"token": "tenant"}'``).
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

#: Set by a distributed worker for the tools it loads: its ordinal among every worker ever
#: started in the deployment (so a service can give each worker resources of its own).
WORKER_ORDINAL_ENV = "TOOLFLEET_WORKER_ORDINAL"


class _FileBacked(BaseSettings):
    """Settings read from init arguments, then the environment, then :meth:`file_values`."""

    @classmethod
    def file_values(cls) -> dict[str, Any]:
        """Values from the config file (none by default)."""
        return {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, InitSettingsSource(settings_cls, cls.file_values()))


class Settings(_FileBacked):
    """Every setting of a toolfleet process, gateway and workers alike."""

    model_config = SettingsConfigDict(env_prefix="TOOLFLEET_", extra="forbid")

    config_file: Path | None = Field(
        default=None, description="TOML file with settings (env: TOOLFLEET_CONFIG)."
    )
    host: str = Field(default="127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(default=8000, description="Port the gateway listens on.")
    log_level: str = Field(default="info", description="Logging level.")
    access_log: bool = Field(default=False, description="Log every HTTP request (costs time).")

    services: list[str] | None = Field(
        default=None, description="Services whose tools to load (None: every installed one)."
    )
    tools: list[str] | None = Field(
        default=None, description="Tool names to expose (None: every loaded tool)."
    )

    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, gt=0, description="Largest request body accepted (else 413)."
    )
    path_body_bytes: dict[str, int] = Field(
        default_factory=lambda: {"/run_code": 320 << 20},
        description="Largest request body of these exact paths, in place of max_body_bytes: "
        "SandboxFusion's /run_code carries a program's stdin and files (64 MiB of each, "
        "base64 and JSON-escaped, fit the default).",
    )
    max_in_flight: int = Field(
        default=1024, gt=0, description="Tool calls running at once before 429."
    )
    max_batch_calls: int = Field(default=512, gt=0, description="Most calls in one batch.")
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After sent with a 429.")
    default_timeout_s: float = Field(default=30.0, gt=0, description="Call timeout if unset.")
    max_timeout_s: float = Field(default=300.0, gt=0, description="Largest call timeout.")

    session_ttl_s: float = Field(default=1800.0, gt=0, description="Default idle session TTL.")
    max_session_ttl_s: float = Field(default=86400.0, gt=0, description="Largest session TTL.")
    max_sessions: int = Field(default=10000, gt=0, description="Live sessions per process.")
    session_sweep_s: float = Field(default=1.0, gt=0, description="Expiry check interval.")

    idempotency_ttl_s: float = Field(default=600.0, gt=0, description="Idempotency memory.")
    idempotency_max_entries: int = Field(default=100000, gt=0, description="Keys remembered.")

    mcp_allowed_hosts: list[str] = Field(
        default_factory=list,
        description='Host headers /mcp accepts, e.g. ["tools.example.org", "127.0.0.1:*"] '
        "(DNS-rebinding protection; 421 otherwise). Empty: Host is not checked.",
    )
    mcp_allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins that may use /mcp (403 otherwise; empty: not checked) and "
        'send cross-site form or text/plain requests to REST, e.g. ["https://app.example.org"].',
    )

    redis_url: str | None = Field(
        default=None,
        description="Distributed mode: the gateway sends calls to workers over this Redis "
        "(redis://host:port/db). None: every tool runs in the gateway's process (embedded).",
    )
    redis_prefix: str = Field(
        default="toolfleet", description="Prefix of every Redis key (one deployment each)."
    )
    max_backlog: int = Field(
        default=2048, gt=0, description="Calls queued or running per tool stream before 429."
    )
    reply_grace_s: float = Field(
        default=5.0,
        gt=0,
        description="How long past a call's deadline the gateway waits for "
        "its reply before answering with a retryable error.",
    )
    heartbeat_s: float = Field(default=1.0, gt=0, description="Worker heartbeat interval.")
    worker_dead_after_s: float = Field(
        default=3.0, gt=0, description="A worker silent this long is dead: its sessions are lost."
    )
    claim_idle_s: float = Field(
        default=5.0, gt=0, description="A call held this long by a silent worker is reclaimed."
    )
    max_deliveries: int = Field(
        default=3, ge=1, description="Deliveries of a call before it goes to the dead letters."
    )
    result_ttl_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a worker remembers a finished call's result "
        "(a redelivered copy gets it instead of running again).",
    )
    worker_concurrency: int = Field(
        default=64, gt=0, description="Calls one worker process runs at once."
    )
    drain_timeout_s: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long a worker waits for its calls."
    )
    drain_grace_s: float = Field(
        default=60.0,
        ge=0,
        description="On SIGTERM, how long a worker keeps serving the sessions it holds (taking "
        "no new calls or sessions) before it ends the rest, whose calls are told the state is "
        "lost; it leaves as soon as it holds none. Keep the pod's termination grace above "
        "drain_grace_s + drain_timeout_s.",
    )
    shutdown_grace_s: float = Field(
        default=25.0,
        ge=0,
        description="On SIGTERM, how long the gateway keeps answering the requests in flight "
        "(it takes no new ones, and /readyz says it is stopping).",
    )

    # operations: logs and the call log (docs/operations.md)
    log_format: str = Field(
        default="text",
        pattern="^(text|json)$",
        description="Log lines as text, or as JSON objects with the call, session, trajectory "
        "and request ids (for a log pipeline).",
    )
    log_calls: bool = Field(
        default=False,
        description="Log one line per finished call (gateway and workers): tool, outcome, "
        "time and ids. Off: only warnings and errors carry the ids.",
    )
    worker_heartbeat_file: Path | None = Field(
        default=None,
        description="A worker touches this file every heartbeat_s while its event loop runs "
        "(Redis reachable or not): a liveness probe for workers, which listen on no port.",
    )
    call_log: bool = Field(
        default=False,
        description="Record every call (tool, arguments, observation digest, timing, error "
        "kind, ids) in a database, for audit, export and replay.",
    )
    call_log_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the call log's database, e.g. "
        "postgresql+psycopg://user:password@host/db. None: the SQLite file call_log_path.",
    )
    call_log_path: Path = Field(
        default=Path("toolfleet-calls.sqlite3"),
        description="SQLite file of the call log when call_log_url is unset.",
    )
    call_log_observations: bool = Field(
        default=False,
        description="Also store each call's full observation (else only its digest).",
    )
    call_log_queue: int = Field(
        default=10000, gt=0, description="Calls waiting to be written before new ones are dropped."
    )
    call_log_batch: int = Field(default=500, gt=0, description="Most calls written at once.")
    call_log_flush_s: float = Field(
        default=0.5, gt=0, description="Longest a recorded call waits before it is written."
    )
    call_log_max_age_s: float | None = Field(
        default=30 * 86400.0, gt=0, description="Calls older than this are deleted (None: kept)."
    )
    call_log_max_rows: int | None = Field(
        default=None, gt=0, description="Only the newest this many calls are kept (None: all)."
    )
    call_log_retention_s: float = Field(
        default=600.0, gt=0, description="How often retention is applied."
    )

    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Bearer token -> tenant. Empty: auth off, every caller is tenant 'default'.",
    )

    @model_validator(mode="after")
    def _claim_after_death(self) -> Settings:
        if self.claim_idle_s <= self.worker_dead_after_s:
            raise ValueError(
                "claim_idle_s must be longer than worker_dead_after_s (a call is reclaimed "
                "only once its worker counts as dead)"
            )
        return self

    def __init__(self, **values: Any) -> None:
        # The file is named before the sources are built, and kept in config_file (also when
        # TOOLFLEET_CONFIG named it) so that services read their tables from the same file.
        path = values.get("config_file") or os.environ.get("TOOLFLEET_CONFIG") or None
        values["config_file"] = path
        token = _config_file.set(path)
        try:
            super().__init__(**values)
        finally:
            _config_file.reset(token)

    @classmethod
    def file_values(cls) -> dict[str, Any]:
        table = _read_config(_config_file.get())
        # other tables are services' sections ([sandbox] ...)
        return {k: v for k, v in table.items() if k in cls.model_fields or not isinstance(v, dict)}


class ServiceSettings(_FileBacked):
    """Base of a service's own settings: ``TOOLFLEET_<SERVICE>_*`` environment variables, then
    the ``[<section>]`` table of the config file.

    ``XSettings()`` reads the file ``TOOLFLEET_CONFIG`` names; :meth:`from_config` reads the
    file a process was started with (``Settings.config_file``), which is how services are
    configured by ``toolfleet serve --config`` and ``toolfleet worker --config``.
    """

    section: ClassVar[str | None] = None  # None: no table (a service with no settings)

    def __init__(self, **values: Any) -> None:
        token = None
        if _config_file.get() is _UNSET:
            token = _config_file.set(os.environ.get("TOOLFLEET_CONFIG") or None)
        try:
            super().__init__(**values)
        finally:
            if token is not None:
                _config_file.reset(token)

    @classmethod
    def from_config(cls, config_file: str | Path | None, **values: Any) -> Self:
        """These settings from the environment, then ``[section]`` of ``config_file`` (None:
        no file, the environment and defaults only)."""
        token = _config_file.set(config_file)
        try:
            return cls(**values)
        finally:
            _config_file.reset(token)

    @classmethod
    def file_values(cls) -> dict[str, Any]:
        if cls.section is None:
            return {}
        section = _read_config(_config_file.get()).get(cls.section, {})
        if not isinstance(section, dict):
            raise ValueError(f"[{cls.section}] of the toolfleet config file must be a table")
        return section


_UNSET: Any = object()
#: The config file being read while settings are built (None: no file).
_config_file: ContextVar[str | Path | None] = ContextVar("toolfleet_config_file", default=_UNSET)


def _read_config(path: str | Path | None) -> dict[str, Any]:
    """The TOML config file's tables ({} without a file); a named file must exist."""
    if path is None or path is _UNSET or path == "":
        return {}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"toolfleet config file not found: {path}")
    with path.open("rb") as f:
        return tomllib.load(f)
