"""Service configuration: every setting is an `LC_`-prefixed environment variable."""

from __future__ import annotations

import secrets
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The built-in secret: accepted only with LC_ENV=dev (security.md, "Start-up that explains itself").
DEFAULT_SECRET = "dev-secret-change-me-dev-secret-change-me"
# LC_ENV=test without LC_SECRET_KEY: a secret of this process only (replicas that must accept
# each other's tokens and links are given one LC_SECRET_KEY).
_PROCESS_SECRET = secrets.token_urlsafe(32)
# A production secret is at least this long (HS256 keys: 256 bits; 32 characters of a random
# token are more than that).
MIN_PRODUCTION_SECRET = 32
# Placeholders seen in this repository's own files, refused in production like the default.
_PLACEHOLDER_SECRETS = frozenset({DEFAULT_SECRET, "change-me-in-production-change-me-please"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LC_", env_file=".env", extra="ignore")

    env: Literal["dev", "test", "production"] = "dev"
    database_url: str = "sqlite+aiosqlite:///./live_collab.db"
    # A streaming replica of database_url (PostgreSQL) for the heavy, lag-tolerant reads
    # (scale.md); reads go to the primary while it lags more than replica_max_lag_seconds.
    database_replica_url: str | None = None
    replica_max_lag_seconds: float = Field(default=10.0, gt=0, le=3600)
    db_replica_pool_size: int = Field(default=10, ge=1, le=500)
    # empty: the built-in development secret (dev), a per-process random one (test), refused (production)
    secret_key: str = ""
    token_ttl_seconds: int = 3600 * 12
    bootstrap_operator_username: str | None = None
    bootstrap_operator_password: str | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # argon2 cost: the library's defaults in production; cheaper where tests hash many passwords.
    argon2_time_cost: int = 3
    argon2_memory_cost_kib: int = 65536
    # Threads that hash and verify passwords, off the event loop (argon2 releases the GIL).
    password_hash_threads: int = Field(default=2, ge=1, le=32)
    # Their nice value (Linux): on busy cores the event loop runs first, logins wait.
    password_hash_nice: int = Field(default=10, ge=0, le=19)
    # How long a replica may trust a session it has read as live before reading it again: an
    # ended session (logout, password change, suspension) is refused everywhere within this.
    session_check_seconds: float = Field(default=1.0, ge=0, le=1.0)
    # Failed logins that lock a username, or a client address, until the oldest leaves the window.
    login_failures_per_username: int = Field(default=10, ge=1)
    login_failures_per_client: int = Field(default=100, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=1)
    # Where those counts live: the database (default, shared by every replica), or this Redis
    # (`redis://host:6379/0`), its keys under the prefix.
    redis_url: str | None = None
    redis_key_prefix: str = Field(default="livecollab", min_length=1, max_length=64)
    # Background sweeper inside the service (timers); off in tests, which drive the clock.
    sweeper_interval_seconds: float = 5.0
    run_sweeper: bool = True
    max_body_bytes: int = 1_000_000
    # Request headers (security.md): more than this in one header, or in all, is 431.
    max_header_bytes: int = Field(default=8 * 1024, ge=1024)
    max_headers_total_bytes: int = Field(default=64 * 1024, ge=4096)
    # Connections a replica keeps to PostgreSQL (its steady concurrency; see app/db/session.py).
    db_pool_size: int = Field(default=40, ge=1, le=500)
    # Of those, how many are opened at start-up (PostgreSQL), before the first request: each new
    # connection costs a backend, its authentication and asyncpg's type introspection, which
    # the first requests after a start or a deploy would otherwise wait for.
    db_pool_warm: int = Field(default=32, ge=0, le=500)
    # A pooled PostgreSQL connection idle this long is pinged before reuse (app/db/session.py).
    db_ping_idle_seconds: float = Field(default=10.0, ge=0, le=86400)
    # Net allocations between young-generation garbage collections in the server (CPython: 700).
    gc_young_threshold: int = Field(default=50_000, ge=100, le=10_000_000)
    # The event stream (GET /v1/events/stream): how often a connection looks for new events, and
    # the longest silence before a comment line keeps proxies from closing it.
    event_stream_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    event_stream_keepalive_seconds: float = Field(default=15.0, gt=0, le=15)
    # The broker relay (docs/scaling.md, "Broker"): unset, no relay runs. `nats://host:4222`
    # (JetStream) or `amqp://user:password@host:5672/vhost` (RabbitMQ); several, comma-separated.
    event_broker_url: str | None = Field(default=None, validation_alias=AliasChoices("LC_EVENT_BROKER_URL", "LC_BROKER_URL"))
    event_broker_stream: str = Field(default="LIVECOLLAB", pattern=r"^[A-Za-z0-9_-]{1,64}$")  # JetStream stream
    event_broker_exchange: str = Field(default="livecollab", pattern=r"^[A-Za-z0-9_.:-]{1,200}$")  # RabbitMQ topic exchange
    # subjects / routing keys are `<prefix>.<event type>`
    event_broker_subject_prefix: str = Field(default="livecollab", pattern=r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
    # where a target the relay has never published to starts: every event of the outbox, or from now
    event_broker_start: Literal["earliest", "latest"] = "earliest"
    event_broker_batch: int = Field(default=1000, ge=1, le=10_000)
    log_level: str = "INFO"
    log_json: bool = True

    # Task orders
    accept_timeout_hours: int = 24
    review_days: int = 7
    link_window_before_minutes: int = 120
    link_window_after_minutes: int = 720
    cancel_compensation_bp: int = 3000
    top_up_expiry_days: int = 7
    # Live bases
    pool_min_experience_score: float = 4.0
    checkin_code_ttl_seconds: int = 1800
    cooperation_days: int = 30
    # Base of the links the service hands out (QR pictures, check-in URLs, diagrams, downloads):
    # unset, each link takes the scheme and host of the request it is made in, honouring
    # X-Forwarded-Proto/-Host from LC_TRUSTED_PROXIES (comma list of addresses or networks).
    public_base_url: str | None = None
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    # SMS gateway: empty → the recorder adapter.
    sms_gateway_url: str | None = None
    # Webhook hosts let through without the public-address check (comma list of names or
    # addresses, e.g. `127.0.0.1,localhost` for a receiver in development); empty everywhere by default.
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _split_origins(cls, values: dict) -> dict:
        for name in ("cors_origins", "trusted_proxies", "webhook_allowed_hosts"):
            raw = values.get(name) if isinstance(values, dict) else None
            if isinstance(raw, str):
                values[name] = [o.strip() for o in raw.split(",") if o.strip()]
        return values

    @model_validator(mode="before")
    @classmethod
    def _env_aliases(cls, values: Any) -> Any:
        if isinstance(values, dict) and str(values.get("env", "")).lower() == "development":
            values["env"] = "dev"
        return values

    @model_validator(mode="after")
    def _replica_is_postgres(self) -> Settings:
        if self.database_replica_url and not (
            self.database_replica_url.startswith("postgresql") and self.database_url.startswith("postgresql")
        ):
            raise ValueError("LC_DATABASE_REPLICA_URL needs PostgreSQL for both LC_DATABASE_URL and the replica")
        return self

    @model_validator(mode="after")
    def _secret_per_env(self) -> Settings:
        """The built-in secret only with LC_ENV=dev; a random one per process with LC_ENV=test
        unless one is given; with LC_ENV=production a given secret of at least 32 characters."""
        if self.env == "production":
            if not self.secret_key or self.secret_key in _PLACEHOLDER_SECRETS or len(self.secret_key) < MIN_PRODUCTION_SECRET:
                raise ValueError(
                    f"LC_SECRET_KEY must be set to a random secret of at least {MIN_PRODUCTION_SECRET} characters "
                    "(not the built-in development one) when LC_ENV=production"
                )
        elif self.secret_key == DEFAULT_SECRET and self.env != "dev":
            raise ValueError("LC_SECRET_KEY: the built-in development secret is accepted only with LC_ENV=dev")
        elif not self.secret_key:
            self.secret_key = DEFAULT_SECRET if self.env == "dev" else _PROCESS_SECRET
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def test_clock_enabled(self) -> bool:
        return self.env != "production"


@lru_cache
def get_settings() -> Settings:
    return Settings()
