"""One typed settings object for every process of the warehouse.

Values come from the environment (prefix ``TELEMETRY_``) and may be overridden
by command-line flags; they are read once at start. ``TELEMETRY_DATABASE_URL``
is the one setting that drives the receiver, migrations, dbt (``env_var`` in
``profiles.yml``) and Airflow.
"""

from __future__ import annotations

import datetime as dt
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/telemetry"
DEFAULT_TARGET = "127.0.0.1:50051"  # where senders find the receiver unless told otherwise
STATE_DIR = Path(__file__).resolve().parents[1] / ".state"  # local, git-ignored working state


class RetentionDays(BaseSettings):
    """How long raw rows are kept, per raw table, in days (DESIGN.md, "Orchestration")."""

    model_config = SettingsConfigDict(env_prefix="TELEMETRY_RETENTION_", extra="ignore")

    message_samples: int = Field(7, ge=1)
    minute_snapshots: int = Field(30, ge=1)
    host_minutes: int = Field(30, ge=1)
    product_events: int = Field(90, ge=1)
    accounts_created: int = Field(90, ge=1)

    def for_table(self, table: str) -> int:
        return int(getattr(self, table))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELEMETRY_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    # The receiver may connect with a role that can only insert into raw.
    ingest_database_url: str | None = None

    # Receiver
    listen: str = "127.0.0.1:50051"
    metrics_port: int = Field(9464, ge=0, le=65535)  # 0 disables /metrics
    ingest_tokens: SecretStr = SecretStr("")  # comma-separated bearer tokens
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    max_batch_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_batch_records: int = Field(50_000, ge=1)
    max_payload_bytes: int = Field(16 * 1024, ge=2)
    max_future_seconds: int = Field(300, ge=0)
    workers: int = Field(8, ge=1)
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    db_wait_seconds: float = Field(5.0, gt=0)  # longest wait of a batch for a database connection

    # Partitions created ahead of time, in days
    partitions_ahead_days: int = Field(3, ge=1)

    # Privacy, applied by the receiver's record rules (and so by the JSONL loader) before anything lands
    # comma-separated payload key paths to drop, e.g. "email,device.ip" (keys inside arrays are not looked into)
    payload_exclude_fields: Annotated[list[str], NoDecode] = Field(default_factory=list)
    hash_receiver_keys: bool = False  # store HMAC-SHA256(salt, receiver_public_key) instead of the key
    receiver_key_salt: SecretStr = SecretStr("")  # the HMAC key; required (16+ characters) with hash_receiver_keys

    retention: RetentionDays = Field(default_factory=RetentionDays)

    # Orchestration (Airflow DAGs)
    # The DAGs' start_date: with catchup on, unpausing a DAG schedules every interval from here on.
    # Set it to where the raw data begins; backfills may reach further back.
    schedule_start: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    # A reliability window [S, E) is computed once E + lag has passed, lag = this many window lengths.
    reliability_lag_windows: float = Field(1.0, ge=0)
    # dbt run artefacts (run_results.json, manifest) are kept per DAG run under this directory.
    artefacts_dir: Path = STATE_DIR / "artefacts"
    # Great Expectations file context; Data Docs land in <gx_dir>/uncommitted/data_docs/local_site/.
    gx_dir: Path = STATE_DIR / "gx"

    @field_validator("database_url", "ingest_database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL, e.g. postgresql://user@127.0.0.1:5432/telemetry")
        return value

    @field_validator("schedule_start")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

    @field_validator("payload_exclude_fields", mode="before")
    @classmethod
    def _field_paths(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            for path in value:
                if not isinstance(path, str) or not all(path.split(".")):
                    raise ValueError(f"{path!r} is not a key path like 'email' or 'device.ip'")
        return value

    @model_validator(mode="after")
    def _salt_with_hashing(self) -> Settings:
        if self.hash_receiver_keys and len(self.receiver_key_salt.get_secret_value()) < 16:
            raise ValueError(
                "TELEMETRY_HASH_RECEIVER_KEYS needs TELEMETRY_RECEIVER_KEY_SALT of at least 16 characters "
                "(public keys are public: an unsalted hash of one is a lookup away)"
            )
        return self

    def token_list(self) -> list[str]:
        return [t.strip() for t in self.ingest_tokens.get_secret_value().split(",") if t.strip()]

    @property
    def receiver_database_url(self) -> str:
        return self.ingest_database_url or self.database_url


def sender_token() -> str:
    """The bearer token a sender presents: TELEMETRY_TOKEN, else the first of TELEMETRY_INGEST_TOKENS."""
    token = os.environ.get("TELEMETRY_TOKEN", "").strip()
    if token:
        return token
    tokens = [t.strip() for t in os.environ.get("TELEMETRY_INGEST_TOKENS", "").split(",") if t.strip()]
    return tokens[0] if tokens else ""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
