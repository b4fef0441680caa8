"""One typed settings object for every process of the warehouse.

Values come from the environment (prefix ``TELEMETRY_``) and may be overridden
by command-line flags; they are read once at start. ``TELEMETRY_DATABASE_URL``
is the one setting that drives the receiver, migrations, dbt (``env_var`` in
``profiles.yml``) and Airflow.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from collectors.ingest.privacy import IpMode
from collectors.ingest.registry import RAW_TABLES

# Settings that may hold a secret can also be read from a file named by <VARIABLE>_FILE (the convention of
# Docker and Kubernetes secrets), so the value appears neither in `ps` nor in the process environment.
SECRET_FILE_SETTINGS = (
    "database_url",
    "ingest_database_url",
    "ingest_tokens",
    "sampling_salt",
    "receiver_key_salt",
    "ip_salt",
)
# What gRPC metadata (and an HTTP header) can carry: visible ASCII; a token must not contain spaces either.
_TOKEN_CHARACTERS = frozenset(chr(c) for c in range(0x21, 0x7F))

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/telemetry"
DEFAULT_TARGET = "127.0.0.1:50051"  # where senders find the receiver unless told otherwise

PACKAGE_DIR = Path(__file__).resolve().parent


def _checkout() -> Path | None:
    """The repository checkout this package runs from (an editable install, the tests), if it does."""
    root = PACKAGE_DIR.parent
    return root if (root / "dbt_project" / "dbt_project.yml").is_file() and (root / "dags").is_dir() else None


CHECKOUT = _checkout()
# Local, git-ignored working state (dbt targets, artefacts, GX). TELEMETRY_STATE_DIR moves it: the test suite's
# parallel workers each take their own, so that no two dbt runs share a target directory.
STATE_DIR = Path(os.environ.get("TELEMETRY_STATE_DIR") or (CHECKOUT or Path.cwd()) / ".state")


def default_dbt_project() -> Path:
    """The dbt project: the checkout's ``dbt_project/``, else the copy an installed wheel carries."""
    return CHECKOUT / "dbt_project" if CHECKOUT is not None else PACKAGE_DIR / "dbt_project"


class MartRetentionDays(BaseSettings):
    """How long the marts keep their rows per grain, in days (TELEMETRY_MART_RETENTION_<GRAIN>): the weekly cleanup
    deletes older periods once the coarser rows built from them exist (collectors.orchestration.mart_retention)."""

    model_config = SettingsConfigDict(env_prefix="TELEMETRY_MART_RETENTION_", extra="ignore")

    hourly: int = Field(30, ge=1)
    daily: int = Field(90, ge=1)
    weekly: int = Field(180, ge=1)
    monthly: int = Field(365, ge=1)

    def for_grain(self, grain: str) -> int:
        return int(getattr(self, grain))


class _Retention(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELEMETRY_RETENTION_", extra="ignore")

    # Data quality: raw.rejects rows (refused records, kept to be looked into) are deleted by the weekly cleanup
    # after this many days (TELEMETRY_RETENTION_REJECTS); a count per day, source and reason stays in
    # quality.rejects_daily.
    rejects: int = Field(30, ge=1)

    def for_table(self, table: str) -> int:
        return int(getattr(self, table))


# How long raw rows are kept, per raw table, in days (TELEMETRY_RETENTION_<TABLE>; defaults from the registry),
# and raw.rejects (TELEMETRY_RETENTION_REJECTS).
RetentionDays = create_model(
    "RetentionDays",
    __base__=_Retention,
    **{t.name: (int, Field(t.retention_days, ge=1)) for t in RAW_TABLES},  # type: ignore[call-overload]
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELEMETRY_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    # The receiver may connect with a role that can only insert into raw.
    ingest_database_url: str | None = None

    # Receiver
    listen: str = "127.0.0.1:50051"
    grpc_reflection: bool = True  # gRPC server reflection (grpcurl list / describe), open like health checks
    # The HTTP/JSON receiver, in the same process: host:port, or empty to turn it off.
    http_listen: str = "127.0.0.1:8080"
    # Origins a browser may send from (CORS), e.g. "https://app.example"; none by default.
    http_cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Per token, on both transports: requests per second and burst (a token bucket); 0, the default, turns the
    # limit off (status-im telemetry's own server runs at 10 per second, burst 1).
    rate_limit_per_second: float = Field(0.0, ge=0)
    rate_limit_burst: int = Field(10, ge=1)
    metrics_port: int = Field(9464, ge=0, le=65535)  # 0 disables /metrics
    metrics_addr: str = "127.0.0.1"  # 0.0.0.0 to let a Prometheus on another host scrape it
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
    # A call whose request has not fully arrived this long after it started is refused (slow or stalled senders
    # must not hold anything for long); calls beyond max_concurrent_calls are refused at once.
    receive_timeout_seconds: float = Field(10.0, gt=0)
    max_concurrent_calls: int = Field(256, ge=1)
    # The longest the receiver works on one batch when the client set no shorter deadline; what is not stored or
    # refused by then is answered as "resend" (IngestAck.retry_indexes) instead of blocking the client.
    max_batch_seconds: float = Field(20.0, gt=0)
    # Request bytes being parsed and written at once; a request waits for room. Bounds the receiver's memory,
    # which is a small multiple of this (parsed records and rows cost more than their wire bytes).
    max_inflight_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    max_ids_per_list: int = Field(50_000, ge=1)  # user ids per state list of a minute snapshot
    # What raw.rejects keeps of one refused record: its first bytes (the size and a SHA-256 of the whole are kept)
    max_reject_bytes: int = Field(64 * 1024, ge=256)
    max_line_bytes: int = Field(1024 * 1024, ge=1024)  # the JSONL loader refuses longer lines

    # Partitions created ahead of time, in days
    partitions_ahead_days: int = Field(3, ge=1)
    # How long the weekly cleanup keeps an expired partition detached (restorable) before dropping it, in days
    detached_grace_days: int = Field(7, ge=0)

    # Privacy, applied by the receiver's record rules (and so by the JSONL loader) before anything lands
    # comma-separated payload key paths to drop, e.g. "email,device.ip" (keys inside arrays are not looked into)
    payload_exclude_fields: Annotated[list[str], NoDecode] = Field(default_factory=list)
    hash_receiver_keys: bool = False  # store HMAC-SHA256(salt, receiver_public_key) instead of the key
    receiver_key_salt: SecretStr = SecretStr("")  # the HMAC key; required (16+ characters) with hash_receiver_keys
    # Data minimisation: per "channel/event", "channel" or "*" (the most specific wins), the payload key paths an
    # event may keep, as JSON, e.g. {"app/purchase": ["amount", "item.sku"], "*": ["screen"]}; other keys are
    # removed. Events no entry matches keep their payload, unless payload_allow_required: then they keep none.
    payload_allow_fields: Annotated[dict[str, list[str]], NoDecode] = Field(default_factory=dict)
    payload_allow_required: bool = False
    # IP anonymisation of the payload keys ip_fields (comma-separated key paths): "truncate" keeps the /24 of an
    # IPv4 address and the /48 of an IPv6 one, "hmac" stores HMAC-SHA256(ip_salt, address); a value that is not
    # an IP address refuses the event. Off in code (nothing changes unasked); the compose stack truncates.
    ip_anonymization: IpMode = "off"
    ip_fields: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["ip"])
    ip_salt: SecretStr = SecretStr("")  # the HMAC key; required (16+ characters) with ip_anonymization=hmac

    # Sampling of product events by user, by the senders that read these settings (the JSONL loader; a client
    # built with Sampling.from_settings): the share of users kept per "channel/event", "channel" or "*" (the most
    # specific wins, 1 when none matches), as JSON, e.g. {"app": 0.1, "app/purchase": 1}. The salt keys the hash
    # that picks the users: keep it secret and stable, or another set of users is sampled from then on.
    sampling_rates: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    sampling_salt: SecretStr = SecretStr("")

    retention: RetentionDays = Field(default_factory=RetentionDays)
    mart_retention: MartRetentionDays = Field(default_factory=MartRetentionDays)

    # Orchestration (Airflow DAGs)
    # The DAGs' start_date: with catchup on, unpausing a DAG schedules every interval from here on.
    # Set it to where the raw data begins; backfills may reach further back.
    schedule_start: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    # A reliability window [S, E) is computed once E + lag has passed, lag = this many window lengths.
    reliability_lag_windows: float = Field(1.0, ge=0)
    # A receiver counts for a window when heard before it within this many days (at most the message samples'
    # retention: the builds cut it to that).
    reliability_lookback_days: int = Field(7, ge=0)
    # dbt run artefacts (run_results.json, manifest) are kept per DAG run under this directory.
    artefacts_dir: Path = STATE_DIR / "artefacts"
    # Great Expectations file context; Data Docs land in <gx_dir>/uncommitted/data_docs/local_site/.
    gx_dir: Path = STATE_DIR / "gx"
    # The dbt project the builds run (and its profiles.yml).
    dbt_project_dir: Path = Field(default_factory=default_dbt_project)

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, values: object) -> object:
        """``TELEMETRY_<NAME>_FILE``: read that setting from the file (its first line) unless it is given."""
        if not isinstance(values, dict):
            return values
        for name in SECRET_FILE_SETTINGS:
            path = os.environ.get(f"TELEMETRY_{name.upper()}_FILE")
            if values.get(name) is None and path and not os.environ.get(f"TELEMETRY_{name.upper()}"):
                values = {**values, name: read_secret_file(Path(path), f"TELEMETRY_{name.upper()}_FILE")}
        return values

    @field_validator("ingest_tokens")
    @classmethod
    def _tokens_sendable(cls, value: SecretStr) -> SecretStr:
        for position, token in enumerate(split_tokens(value.get_secret_value()), 1):
            check_token(token, f"token {position}")
        return value

    @model_validator(mode="after")
    def _room_for_a_batch(self) -> Settings:
        if self.max_inflight_bytes < self.max_batch_bytes:
            raise ValueError("TELEMETRY_MAX_INFLIGHT_BYTES must be at least TELEMETRY_MAX_BATCH_BYTES")
        return self

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

    @field_validator("http_cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("payload_exclude_fields", "ip_fields", mode="before")
    @classmethod
    def _field_paths(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            _check_key_paths(value)
        return value

    @field_validator("payload_allow_fields", "sampling_rates", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        """JSON from the environment; empty (an unset compose variable) is none."""
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                return json.loads(value)
            except ValueError as error:
                raise ValueError(f"not JSON: {error}") from None
        return value

    @field_validator("payload_allow_fields")
    @classmethod
    def _allow_lists(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, paths in value.items():
            _check_event_key(key)
            _check_key_paths(paths)
        return value

    @field_validator("sampling_rates")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        for key, rate in value.items():
            _check_event_key(key)
            if not 0 < rate <= 1:
                raise ValueError(f"the rate of {key!r} must be in (0, 1], not {rate}")
        return value

    @model_validator(mode="after")
    def _salt_with_hashing(self) -> Settings:
        if self.hash_receiver_keys and len(self.receiver_key_salt.get_secret_value()) < 16:
            raise ValueError(
                "TELEMETRY_HASH_RECEIVER_KEYS needs TELEMETRY_RECEIVER_KEY_SALT of at least 16 characters "
                "(public keys are public: an unsalted hash of one is a lookup away)"
            )
        if self.ip_anonymization == "hmac" and len(self.ip_salt.get_secret_value()) < 16:
            raise ValueError(
                "TELEMETRY_IP_ANONYMIZATION=hmac needs TELEMETRY_IP_SALT of at least 16 characters "
                "(there are only 2^32 IPv4 addresses: an unsalted hash of one is a lookup away)"
            )
        if self.ip_anonymization != "off" and not self.ip_fields:
            raise ValueError("TELEMETRY_IP_ANONYMIZATION needs TELEMETRY_IP_FIELDS: the payload keys to anonymise")
        return self

    def token_list(self) -> list[str]:
        return split_tokens(self.ingest_tokens.get_secret_value())

    @property
    def receiver_database_url(self) -> str:
        return self.ingest_database_url or self.database_url


def _check_event_key(key: str) -> None:
    """``key`` must be ``"channel/event"``, ``"channel"`` or ``"*"`` (the keys of per-event settings)."""
    parts = key.split("/")
    if key != "*" and (len(parts) > 2 or not all(parts) or "*" in key):
        raise ValueError(f"{key!r} is not 'channel/event', 'channel' or '*'")


def _check_key_paths(paths: object) -> None:
    for path in paths:  # type: ignore[attr-defined]
        if not isinstance(path, str) or not all(path.split(".")):
            raise ValueError(f"{path!r} is not a key path like 'email' or 'device.ip'")


def split_tokens(text: str) -> list[str]:
    """Comma-separated tokens; whitespace around each (a trailing newline of a secret file) is not part of it."""
    return [t.strip() for t in text.split(",") if t.strip()]


def check_token(token: str, what: str = "the token") -> str:
    """Raise ValueError unless ``token`` can travel in gRPC metadata and an HTTP header (visible ASCII)."""
    bad = sorted({c for c in token if c not in _TOKEN_CHARACTERS})
    if not token or bad:
        shown = ", ".join(repr(c) for c in bad[:3]) or "nothing"
        raise ValueError(
            f"{what} must be visible ASCII without spaces (it contains {shown}); check for a stray newline or quote"
        )
    return token


def read_secret_file(path: Path, what: str) -> str:
    """The first line of a secret file, without its line break."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{what}: cannot read {path}: {error.strerror}") from None
    return text.splitlines()[0].strip() if text.strip() else ""


def sender_token() -> str:
    """The bearer token a sender presents: TELEMETRY_TOKEN (or the file TELEMETRY_TOKEN_FILE names), else the
    first of TELEMETRY_INGEST_TOKENS."""
    token = os.environ.get("TELEMETRY_TOKEN", "").strip()
    if not token and os.environ.get("TELEMETRY_TOKEN_FILE"):
        token = read_secret_file(Path(os.environ["TELEMETRY_TOKEN_FILE"]), "TELEMETRY_TOKEN_FILE")
    if token:
        return token
    tokens = split_tokens(os.environ.get("TELEMETRY_INGEST_TOKENS", ""))
    return tokens[0] if tokens else ""


def password_in_url(url: str | None) -> bool:
    """True when a PostgreSQL URL carries a password (which a command line would show to every user in ``ps``)."""
    if not url:
        return False
    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False


def database_url_override(args: argparse.Namespace, prog: str) -> str | None:
    """The URL a command line gives (flag or file), with a warning when a password sits on the command line."""
    if getattr(args, "database_url_file", None) is not None:
        return read_secret_file(args.database_url_file, "--database-url-file")
    if args.database_url and password_in_url(args.database_url):
        with contextlib.suppress(OSError):
            print(
                f"{prog}: warning: --database-url carries a password, which every user of this machine can read "
                "in `ps`; use TELEMETRY_DATABASE_URL or --database-url-file instead",
                file=sys.stderr,
            )
    return args.database_url


def describe(error: ValidationError) -> str:
    """A settings error without the values given: they may be secrets (a token, a salt, a password in a URL)."""
    return "\n".join(
        f"  {'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors(include_input=False)
    )


def settings_from_command_line(args: argparse.Namespace, prog: str) -> Settings | None:
    """The settings, with the command line's database URL if it gives one; None once it has said on stderr why
    they are invalid (the caller exits with 2)."""
    try:
        override = database_url_override(args, prog)
        return Settings(**({"database_url": override} if override else {}))
    except ValidationError as error:
        print(f"{prog}: invalid settings:\n{describe(error)}", file=sys.stderr)
    except ValueError as error:
        print(f"{prog}: {error}", file=sys.stderr)
    return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
