"""Typed settings for every Aegis service.

One :class:`Settings` object is built once at start-up (:func:`load_settings`) and passed in.
Every field reads the environment variable named in ``docs/configuration.md`` and an optional
``.env`` file in the current directory. Secrets are ``SecretStr`` and never printed.

Two modes:

* ``embedded`` (default): SQLite and a filesystem object store inside the data directory, no Redis;
  secrets that are not set are generated once and kept in ``<data dir>/secrets.json`` (mode 0600).
* ``production``: a missing secret that the starting service uses is a start-up error that
  names the variable (:data:`SERVICE_SECRETS`); a service is never made to hold the others.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import secrets
import string
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from aegis.core.errors import ConfigError
from aegis.core.files import replace_atomically

# Secrets the platform needs. In embedded mode each is generated when unset.
GENERATED_SECRETS = (
    "jwt_secret",
    "jwt_refresh_secret",
    "executor_hmac_secret",
    "api_key",
    "alert_webhook_token",
)
# What production mode demands of each service at start-up: only what it uses (least
# privilege), so the engine never holds the executor's key or the backend's JWT keys. The
# backend signs executor requests, calls the engine and takes Alertmanager's webhook; ``up``
# runs all three; a CLI command needs none to start, and one that needs a secret says which
# when it reaches for it (:meth:`Settings.secret`).
SERVICE_SECRETS: dict[str, tuple[str, ...]] = {
    "backend": GENERATED_SECRETS,
    "up": GENERATED_SECRETS,
    "engine": ("api_key",),
    "executor": ("executor_hmac_secret",),
    "cli": (),
}


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class MetricQuery(BaseModel):
    """A PromQL query whose recent window the backend sends the engine with an incident.

    ``query`` is a :class:`string.Template`: ``$namespace``, ``$pods`` (a regex matching the
    workload's pods) and ``$deployment`` are filled from the alert (``docs/incidents.md``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_:][A-Za-z0-9_:]*$", max_length=128)
    query: str = Field(min_length=1, max_length=2000)
    family: Literal["memory", "cpu", "latency", "load", "errors", "restarts", "other"] | None = None

    @field_validator("query")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        try:
            string.Template(value).substitute(namespace="n", pods="p", deployment="d")
        except (KeyError, ValueError) as exc:
            raise ValueError(
                f"unknown or malformed placeholder {exc}: use $namespace, $pods, $deployment"
            ) from None
        if "$namespace" not in value and "${namespace}" not in value:
            raise ValueError("the query must select the incident's $namespace")
        return value


_CONTAINERS = 'namespace="$namespace", pod=~"$pods", container!=""'
DEFAULT_METRIC_QUERIES = (
    MetricQuery(
        name="container_cpu_usage_cores",
        query=f"sum(rate(container_cpu_usage_seconds_total{{{_CONTAINERS}}}[2m]))",
        family="cpu",
    ),
    MetricQuery(
        name="container_memory_working_set_bytes",
        query=f"sum(container_memory_working_set_bytes{{{_CONTAINERS}}})",
        family="memory",
    ),
    MetricQuery(
        name="kube_pod_container_status_restarts_total",
        query='sum(kube_pod_container_status_restarts_total{namespace="$namespace", pod=~"$pods"})',
        family="restarts",
    ),
)


MAX_ACTION_WINDOW_S = 30 * 86_400


class Settings(BaseSettings):
    """Every setting Aegis reads. Field docs are the documented defaults."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=False,
    )

    # --- where and how -----------------------------------------------------------------------
    mode: Literal["embedded", "production"] = Field(
        "embedded", validation_alias=_env("AEGIS_MODE", "mode")
    )
    data_dir: Path = Field(Path(".aegis"), validation_alias=_env("AEGIS_DATA_DIR", "data_dir"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias=_env("LOG_LEVEL", "log_level")
    )
    log_json: bool = Field(True, validation_alias=_env("LOG_JSON", "log_json"))

    # --- stores ------------------------------------------------------------------------------
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL", "database_url"))
    database_connect_timeout_s: float = Field(
        30.0,
        gt=0,
        validation_alias=_env("DATABASE_CONNECT_TIMEOUT_S", "database_connect_timeout_s"),
    )
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL", "redis_url"))
    object_store_url: str | None = Field(
        None, validation_alias=_env("OBJECT_STORE_URL", "object_store_url")
    )
    audit_store_url: str | None = Field(
        None, validation_alias=_env("AUDIT_STORE_URL", "AUDIT_S3_BUCKET", "audit_store_url")
    )
    audit_signing_key_file: Path | None = Field(
        None, validation_alias=_env("AUDIT_SIGNING_KEY_FILE", "audit_signing_key_file")
    )
    audit_verify_key_file: Path | None = Field(
        None, validation_alias=_env("AUDIT_VERIFY_KEY_FILE", "audit_verify_key_file")
    )
    audit_checkpoint_interval_s: float = Field(
        300.0,
        ge=1,
        validation_alias=_env("AUDIT_CHECKPOINT_INTERVAL_S", "audit_checkpoint_interval_s"),
    )
    backup_dir: Path | None = Field(None, validation_alias=_env("BACKUP_DIR", "backup_dir"))
    retention_days: int = Field(
        14, ge=1, le=36_500, validation_alias=_env("RETENTION_DAYS", "retention_days")
    )

    # --- secrets -----------------------------------------------------------------------------
    jwt_secret: SecretStr | None = Field(None, validation_alias=_env("JWT_SECRET", "jwt_secret"))
    jwt_secret_previous: SecretStr | None = Field(
        None, validation_alias=_env("JWT_SECRET_PREVIOUS", "jwt_secret_previous")
    )
    jwt_refresh_secret: SecretStr | None = Field(
        None, validation_alias=_env("JWT_REFRESH_SECRET", "jwt_refresh_secret")
    )
    jwt_refresh_secret_previous: SecretStr | None = Field(
        None, validation_alias=_env("JWT_REFRESH_SECRET_PREVIOUS", "jwt_refresh_secret_previous")
    )
    executor_hmac_secret: SecretStr | None = Field(
        None, validation_alias=_env("EXECUTOR_HMAC_SECRET", "executor_hmac_secret")
    )
    executor_hmac_secret_previous: SecretStr | None = Field(
        None,
        validation_alias=_env("EXECUTOR_HMAC_SECRET_PREVIOUS", "executor_hmac_secret_previous"),
    )
    api_key: SecretStr | None = Field(None, validation_alias=_env("API_KEY", "api_key"))
    api_key_previous: SecretStr | None = Field(
        None, validation_alias=_env("API_KEY_PREVIOUS", "api_key_previous")
    )
    alert_webhook_token: SecretStr | None = Field(
        None, validation_alias=_env("ALERT_WEBHOOK_TOKEN", "alert_webhook_token")
    )

    # --- tokens ------------------------------------------------------------------------------
    access_token_ttl_s: int = Field(
        900, ge=30, validation_alias=_env("ACCESS_TOKEN_TTL_S", "access_token_ttl_s")
    )
    refresh_token_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, validation_alias=_env("REFRESH_TOKEN_TTL_S", "refresh_token_ttl_s")
    )
    oidc_issuer: str | None = Field(None, validation_alias=_env("OIDC_ISSUER", "oidc_issuer"))
    oidc_audience: str | None = Field(None, validation_alias=_env("OIDC_AUDIENCE", "oidc_audience"))
    oidc_roles_claim: str = Field(
        "groups", validation_alias=_env("OIDC_ROLES_CLAIM", "oidc_roles_claim")
    )
    oidc_role_map: dict[str, list[str]] = Field(
        default_factory=dict, validation_alias=_env("OIDC_ROLE_MAP", "oidc_role_map")
    )

    # --- rate limits -------------------------------------------------------------------------
    rate_limit_login_per_minute: int = Field(
        10,
        ge=1,
        validation_alias=_env("RATE_LIMIT_LOGIN_PER_MINUTE", "rate_limit_login_per_minute"),
    )
    rate_limit_api_per_minute: int = Field(
        600, ge=1, validation_alias=_env("RATE_LIMIT_API_PER_MINUTE", "rate_limit_api_per_minute")
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, validation_alias=_env("MAX_BODY_BYTES", "max_body_bytes")
    )
    # Addresses or networks (comma-separated) of the proxies whose X-Forwarded-For names the
    # client. Empty: nobody's, so a caller cannot pick the address its limits are counted under.
    trusted_proxies: str = Field("", validation_alias=_env("TRUSTED_PROXIES", "trusted_proxies"))

    # --- services ----------------------------------------------------------------------------
    backend_host: str = Field("127.0.0.1", validation_alias=_env("BACKEND_HOST", "backend_host"))
    backend_port: int = Field(
        3000, ge=0, le=65535, validation_alias=_env("BACKEND_PORT", "PORT", "backend_port")
    )
    engine_host: str = Field("127.0.0.1", validation_alias=_env("ENGINE_HOST", "engine_host"))
    engine_port: int = Field(
        8000, ge=0, le=65535, validation_alias=_env("ENGINE_PORT", "engine_port")
    )
    executor_host: str = Field("127.0.0.1", validation_alias=_env("EXECUTOR_HOST", "executor_host"))
    executor_port: int = Field(
        8080, ge=0, le=65535, validation_alias=_env("EXECUTOR_PORT", "executor_port")
    )
    ai_engine_url: str | None = Field(None, validation_alias=_env("AI_ENGINE_URL", "ai_engine_url"))
    ai_engine_enabled: bool = Field(
        True, validation_alias=_env("AI_ENGINE_ENABLED", "ai_engine_enabled")
    )
    ai_engine_required: bool = Field(
        False, validation_alias=_env("AI_ENGINE_REQUIRED", "ai_engine_required")
    )
    ai_engine_timeout_s: float = Field(
        2.0, gt=0, le=300, validation_alias=_env("AI_ENGINE_TIMEOUT_S", "ai_engine_timeout_s")
    )
    executor_url: str | None = Field(None, validation_alias=_env("EXECUTOR_URL", "executor_url"))
    executor_enabled: bool = Field(
        True, validation_alias=_env("EXECUTOR_ENABLED", "executor_enabled")
    )
    rollout_track: Literal["stable", "canary", ""] | None = Field(
        None, validation_alias=_env("ROLLOUT_TRACK", "rollout_track")
    )
    background_jobs: bool = Field(
        True, validation_alias=_env("AEGIS_BACKGROUND_JOBS", "background_jobs")
    )
    # At most 30 days: past that a date computed from them overflows (every request a 500)
    action_approval_ttl_s: float = Field(
        3600.0,
        ge=1,
        le=MAX_ACTION_WINDOW_S,
        validation_alias=_env("ACTION_APPROVAL_TTL_S", "action_approval_ttl_s"),
    )
    action_recheck_window_s: float = Field(
        600.0,
        ge=1,
        le=MAX_ACTION_WINDOW_S,
        validation_alias=_env("ACTION_RECHECK_WINDOW_S", "action_recheck_window_s"),
    )
    action_max_attempts: int = Field(
        8, ge=1, validation_alias=_env("ACTION_MAX_ATTEMPTS", "action_max_attempts")
    )

    # --- incident context: what the backend sends the engine besides the alert ---------------
    prometheus_url: str | None = Field(
        None, validation_alias=_env("PROMETHEUS_URL", "prometheus_url")
    )
    prometheus_timeout_s: float = Field(
        2.0, gt=0, le=60, validation_alias=_env("PROMETHEUS_TIMEOUT_S", "prometheus_timeout_s")
    )
    incident_metrics_lookback_s: int = Field(
        3600,
        ge=60,
        le=86400,
        validation_alias=_env("INCIDENT_METRICS_LOOKBACK_S", "incident_metrics_lookback_s"),
    )
    incident_metrics_step_s: int = Field(
        15,
        ge=1,
        le=3600,
        validation_alias=_env("INCIDENT_METRICS_STEP_S", "incident_metrics_step_s"),
    )
    incident_log_lines: int = Field(
        500, ge=0, le=5000, validation_alias=_env("INCIDENT_LOG_LINES", "incident_log_lines")
    )
    incident_logs_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        validation_alias=_env("INCIDENT_LOGS_TIMEOUT_S", "incident_logs_timeout_s"),
    )
    incident_metric_queries: list[MetricQuery] = Field(
        default_factory=lambda: list(DEFAULT_METRIC_QUERIES),
        max_length=20,
        validation_alias=_env("INCIDENT_METRIC_QUERIES", "incident_metric_queries"),
    )

    # --- AI engine ---------------------------------------------------------------------------
    model_signing_required: bool = Field(
        True, validation_alias=_env("MODEL_SIGNING_REQUIRED", "model_signing_required")
    )
    model_name: str = Field("example_multimodal", validation_alias=_env("MODEL_NAME", "model_name"))
    trusted_keys: str | None = Field(
        None, validation_alias=_env("AEGIS_TRUSTED_KEYS", "COSIGN_PUB_KEY", "trusted_keys")
    )
    batch_max_size: int = Field(32, ge=1, validation_alias=_env("BATCH_MAX_SIZE", "batch_max_size"))
    batch_max_latency_ms: float = Field(
        5.0, ge=0, validation_alias=_env("BATCH_MAX_LATENCY_MS", "batch_max_latency_ms")
    )
    batch_queue_limit: int = Field(
        1024, ge=1, validation_alias=_env("BATCH_QUEUE_LIMIT", "batch_queue_limit")
    )
    model_watch_interval_s: float = Field(
        15.0,
        ge=0.1,
        le=3600,
        validation_alias=_env("MODEL_WATCH_INTERVAL_S", "model_watch_interval_s"),
    )

    # --- derived -----------------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+pysqlite:///{(self.data_dir / 'aegis.db').resolve()}"

    @property
    def effective_object_store_url(self) -> str:
        if self.object_store_url:
            return self.object_store_url
        return (self.data_dir / "objects").resolve().as_uri()

    @property
    def effective_audit_store_url(self) -> str:
        if self.audit_store_url:
            url = self.audit_store_url
            return url if "://" in url else f"s3://{url}/audit"  # AUDIT_S3_BUCKET form
        return self.effective_object_store_url.rstrip("/") + "/audit"

    @property
    def effective_audit_signing_key_file(self) -> Path:
        return self.audit_signing_key_file or self.data_dir / "keys" / "audit-signing.key"

    @property
    def effective_audit_verify_key_file(self) -> Path:
        if self.audit_verify_key_file:
            return self.audit_verify_key_file
        return self.effective_audit_signing_key_file.with_suffix(".pub")

    @property
    def audit_journal_path(self) -> Path:
        return self.data_dir / "audit-journal.jsonl"

    @property
    def effective_backup_dir(self) -> Path:
        return self.backup_dir if self.backup_dir else self.data_dir / "backups"

    @property
    def effective_ai_engine_url(self) -> str:
        return self.ai_engine_url or f"http://{self.engine_host}:{self.engine_port}"

    @property
    def effective_executor_url(self) -> str:
        return self.executor_url or f"http://{self.executor_host}:{self.executor_port}"

    def secret(self, name: str) -> str:
        """The plain value of a secret; :func:`load_settings` guarantees the service's own
        (:data:`SERVICE_SECRETS`) are set, anything else fails closed here, naming it."""
        value = getattr(self, name)
        if value is None:
            raise ConfigError(f"{name.upper()} is not set")
        return str(value.get_secret_value())

    # --- executor (owned by src/aegis/executor; documented in docs/executor.md) ----------------
    # Unset lists and backend take mode-dependent defaults: embedded mode acts on the local demo
    # workload in the demo namespaces; production mode uses Kubernetes and allows no namespace
    # until EXECUTOR_ALLOWED_NAMESPACES names some (fail closed).
    executor_backend: Literal["kubernetes", "dry-run", "local"] | None = Field(
        None, validation_alias=_env("EXECUTOR_BACKEND", "executor_backend")
    )
    executor_allowed_namespaces: Annotated[list[str] | None, NoDecode] = Field(
        None, validation_alias=_env("EXECUTOR_ALLOWED_NAMESPACES", "executor_allowed_namespaces")
    )
    executor_allowed_actions: Annotated[list[str] | None, NoDecode] = Field(
        None, validation_alias=_env("EXECUTOR_ALLOWED_ACTIONS", "executor_allowed_actions")
    )
    executor_min_replicas: int = Field(
        0, ge=0, validation_alias=_env("EXECUTOR_MIN_REPLICAS", "executor_min_replicas")
    )
    executor_max_replicas: int = Field(
        20, ge=0, validation_alias=_env("EXECUTOR_MAX_REPLICAS", "executor_max_replicas")
    )

    @field_validator(
        "jwt_secret",
        "jwt_secret_previous",
        "jwt_refresh_secret",
        "jwt_refresh_secret_previous",
        "executor_hmac_secret",
        "executor_hmac_secret_previous",
        "api_key",
        "api_key_previous",
        "alert_webhook_token",
        "backup_encryption_key",
        mode="before",
    )
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        """``X=`` (an env file's empty line) means no secret, never the empty key, which would
        sign and verify for anyone."""
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("executor_allowed_namespaces", "executor_allowed_actions", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """Accept ``a,b,c`` or a JSON list from the environment."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, value: str | None) -> str | None:
        """A URL the Redis client reads, checked here so that the service does not start and
        fail later with the client's own error; the message never repeats the value (the URL
        may hold a password)."""
        if not value:
            return value
        from redis.connection import parse_url

        try:
            parse_url(value)  # type: ignore[no-untyped-call]
        except ValueError:
            raise ValueError(
                "not a URL the Redis client reads: redis://[:PASSWORD@]HOST[:PORT][/DB], "
                "rediss://... or unix://PATH"
            ) from None
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        """Each entry an address or a network, else the service does not start: uvicorn takes a
        typo (or a network with host bits set) for a host name that never matches, silently,
        and ``*`` for every peer, which would let any caller choose its own address."""
        parts = [part.strip() for part in value.split(",") if part.strip()]
        for number, part in enumerate(parts, start=1):
            if part == "*":
                raise ValueError(
                    "'*' would believe X-Forwarded-For from every peer: name the proxies' "
                    "addresses or networks"
                )
            try:
                (ipaddress.ip_network if "/" in part else ipaddress.ip_address)(part)
            except ValueError:
                # by position, not value: no setting's value is echoed (settings hold secrets)
                raise ValueError(f"entry {number} is not an IP address or network") from None
        return ",".join(parts)

    @property
    def effective_executor_backend(self) -> str:
        if self.executor_backend:
            return self.executor_backend
        return "local" if self.mode == "embedded" else "kubernetes"

    @property
    def effective_executor_allowed_namespaces(self) -> list[str]:
        if self.executor_allowed_namespaces is not None:
            return list(self.executor_allowed_namespaces)
        return ["demo", "staging-*", "default"] if self.mode == "embedded" else []

    @property
    def effective_executor_allowed_actions(self) -> list[str]:
        if self.executor_allowed_actions is not None:
            return list(self.executor_allowed_actions)
        return ["restart_deployment", "scale_deployment", "delete_pod", "rollback_deployment"]

    # --- backup (owned by src/aegis/backup; documented in docs/operations/backup-restore.md) --
    # BACKUP_DIR and RETENTION_DAYS are in "stores" above. When set, backups are encrypted with
    # AES-256-GCM under a key derived from this secret (HKDF-SHA256); restore needs the same value.
    backup_encryption_key: SecretStr | None = Field(
        None, validation_alias=_env("BACKUP_ENCRYPTION_KEY", "backup_encryption_key")
    )


def validate_database_url(url: str, *, name: str = "DATABASE_URL") -> None:
    """Raise a one-line :class:`ConfigError` for a URL SQLAlchemy cannot parse or drive."""
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - parsing it is the check ("h:abc" raises here)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{name} is malformed: expected e.g. "
            "postgresql+psycopg://user:password@host:5432/dbname or sqlite:///path/aegis.db"
        ) from None
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigError(
            f"{name} uses unsupported backend {parsed.get_backend_name()!r}: "
            "use postgresql+psycopg:// or sqlite://"
        )
    try:
        parsed.get_dialect().import_dbapi()
    except (ImportError, NoSuchModuleError):
        raise ConfigError(
            f"{name} names driver {parsed.get_driver_name()!r}, which is not installed: "
            "use postgresql+psycopg:// or sqlite://"
        ) from None


def ensure_data_dir(path: Path) -> None:
    """Create the data directory (0700) and prove it is writable."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryFile(dir=path):  # a name of its own: services start together
            pass
    except OSError as exc:
        raise ConfigError(
            f"data directory {path} is not writable ({exc.strerror}): "
            "set AEGIS_DATA_DIR to a folder this user can write"
        ) from None


def _load_or_create_secrets(path: Path, missing: list[str]) -> dict[str, str]:
    """Read ``path``, adding a fresh value for each name in ``missing`` it lacks.

    Processes starting together on a new data dir (``aegis up``, the executor, a migration) must
    end up with one set of secrets, or the backend signs with a key the executor never saw: the
    read-modify-write runs under an exclusive lock on ``<path>.lock``.
    """
    lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        added = {name: secrets.token_urlsafe(32) for name in missing if name not in stored}
        if added:
            stored |= added
            replace_atomically(path, json.dumps(stored).encode(), mode=0o600)
        path.chmod(0o600)
    finally:
        os.close(lock_fd)  # closing the last descriptor releases the lock
    return stored


PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "replace-me", "default"}
MIN_SECRET_LENGTH = 16


def _check_production_secrets(settings: Settings, service: str) -> None:
    for name in SERVICE_SECRETS[service]:
        value = getattr(settings, name)
        if value is None:
            raise ConfigError(
                f"{name.upper()} must be set in production mode (AEGIS_MODE=production)"
            )
        # a *_PREVIOUS secret is accepted as the secret itself during a rotation
        previous = getattr(settings, f"{name}_previous", None)
        for checked, secret in ((name, value), (f"{name}_previous", previous)):
            plain = secret.get_secret_value() if secret is not None else None
            if plain is not None and (
                plain.lower() in PLACEHOLDER_SECRETS or len(plain) < MIN_SECRET_LENGTH
            ):
                raise ConfigError(
                    f"{checked.upper()} is a placeholder or shorter than {MIN_SECRET_LENGTH} "
                    "characters; set a long random value"
                )


def env_name(field: str) -> str:
    """The environment variable a settings field reads (its first alias)."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices) and alias.choices:
        return str(alias.choices[0])
    return field.upper()


def _invalid_setting(exc: ValidationError | SettingsError) -> ConfigError:
    """One line naming the variable and what is wrong with it, never its value (it may be a
    secret)."""
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        loc = [str(part) for part in first.get("loc", ())]
        name = env_name(loc[0]) if loc else "a setting"
        where = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        return ConfigError(f"{name}{where} is invalid: {message}")
    found = re.search(r'field "(\w+)"', str(exc))
    name = env_name(found.group(1)) if found else "a setting"
    return ConfigError(f"{name} is invalid: not valid JSON")


def read_settings(**overrides: object) -> Settings:
    """Settings from the environment (and ``.env``), checked; raises :class:`ConfigError` with
    one line naming the problem. No side effects: see :func:`load_settings` for those."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except (ValidationError, SettingsError) as exc:
        raise _invalid_setting(exc) from None
    except UnicodeDecodeError:
        raise ConfigError("the .env file is not UTF-8 text") from None


def load_settings(service: str = "cli", **overrides: object) -> Settings:
    """Build the one Settings object for ``service`` (a :data:`SERVICE_SECRETS` key): read env,
    check it, fill embedded secrets.

    Raises :class:`ConfigError` with one line naming the problem.
    """
    if service not in SERVICE_SECRETS:
        raise ValueError(f"unknown service {service!r}")
    settings = read_settings(**overrides)
    ensure_data_dir(settings.data_dir)
    validate_database_url(settings.effective_database_url)
    if settings.mode == "production":
        _check_production_secrets(settings, service)
        return settings
    missing = [name for name in GENERATED_SECRETS if getattr(settings, name) is None]
    if missing:
        stored = _load_or_create_secrets(settings.data_dir / "secrets.json", missing)
        settings = settings.model_copy(update={name: SecretStr(stored[name]) for name in missing})
    return settings
