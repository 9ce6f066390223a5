from __future__ import annotations

import json
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr

from aegis.core.config import GENERATED_SECRETS, Settings, env_name, load_settings
from aegis.core.errors import ConfigError


def test_embedded_mode_generates_secrets_once_with_private_permissions(tmp_path: Path) -> None:
    first = load_settings(_env_file=None, data_dir=tmp_path / "d")
    second = load_settings(_env_file=None, data_dir=tmp_path / "d")

    secrets_file = tmp_path / "d" / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert first.secret("jwt_secret") == second.secret("jwt_secret")
    assert first.secret("jwt_secret") != first.secret("jwt_refresh_secret")
    assert set(json.loads(secrets_file.read_text())) >= {
        "jwt_secret",
        "executor_hmac_secret",
        "api_key",
    }


def test_services_starting_together_on_a_new_data_dir_share_one_set_of_secrets(
    tmp_path: Path,
) -> None:
    # `aegis up`, the executor and a migration may all start on a new data dir at once; each
    # generating its own secrets would leave the backend signing with a key the executor never saw.
    data_dir = tmp_path / "d"
    start = threading.Barrier(12)

    def start_service(_: int) -> str:
        start.wait()
        return load_settings(_env_file=None, data_dir=data_dir).secret("executor_hmac_secret")

    with ThreadPoolExecutor(max_workers=12) as pool:
        seen = list(pool.map(start_service, range(12)))

    stored = json.loads((data_dir / "secrets.json").read_text())
    assert set(seen) == {stored["executor_hmac_secret"]}
    assert sorted(p.name for p in data_dir.iterdir()) == ["secrets.json", "secrets.json.lock"]


def test_production_mode_refuses_to_start_without_a_secret_and_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET must be set"):
        load_settings("backend", _env_file=None, data_dir=tmp_path, mode="production")


@pytest.mark.parametrize(
    ("service", "needed"),
    [
        ("backend", set(GENERATED_SECRETS)),
        ("up", set(GENERATED_SECRETS)),
        ("engine", {"api_key"}),
        ("executor", {"executor_hmac_secret"}),
        ("cli", set()),
    ],
)
def test_production_mode_demands_of_each_service_only_the_secrets_it_uses(
    tmp_path: Path, service: str, needed: set[str]
) -> None:
    # least privilege: the engine must not be made to hold the executor's HMAC key, etc.
    given = {name: SecretStr(f"{name}-" + "v" * 32) for name in needed}
    settings = load_settings(service, _env_file=None, data_dir=tmp_path, mode="production", **given)

    for name in needed:
        without = {k: v for k, v in given.items() if k != name}
        with pytest.raises(ConfigError, match=f"{name.upper()} must be set"):
            load_settings(service, _env_file=None, data_dir=tmp_path, mode="production", **without)
    for name in set(GENERATED_SECRETS) - needed:
        assert getattr(settings, name) is None  # nothing generated or demanded
        with pytest.raises(ConfigError, match=f"{name.upper()} is not set"):
            settings.secret(name)  # a code path reaching for it fails closed, naming it


def test_production_mode_refuses_a_placeholder_secret(tmp_path: Path) -> None:
    values = {
        name: SecretStr("x" * 40)
        for name in (
            "jwt_secret",
            "jwt_refresh_secret",
            "executor_hmac_secret",
            "api_key",
            "alert_webhook_token",
        )
    }
    values["executor_hmac_secret"] = SecretStr("changeme")
    with pytest.raises(ConfigError, match="EXECUTOR_HMAC_SECRET"):
        load_settings("backend", _env_file=None, data_dir=tmp_path, mode="production", **values)


@pytest.mark.parametrize("previous", ["changeme", "short-key"])
def test_production_mode_refuses_a_placeholder_previous_secret(
    tmp_path: Path, previous: str
) -> None:
    # the executor accepts a signature made with EXECUTOR_HMAC_SECRET_PREVIOUS: a guessable one
    # opens the executor as surely as a guessable current secret
    with pytest.raises(ConfigError, match="EXECUTOR_HMAC_SECRET_PREVIOUS is a placeholder"):
        load_settings(
            "executor",
            _env_file=None,
            data_dir=tmp_path,
            mode="production",
            executor_hmac_secret=SecretStr("x" * 40),
            executor_hmac_secret_previous=SecretStr(previous),
        )


def test_malformed_database_url_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL is malformed"):
        load_settings(_env_file=None, data_dir=tmp_path, database_url="postgres//nope")


def test_unsupported_database_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsupported backend 'mysql'"):
        load_settings(_env_file=None, data_dir=tmp_path, database_url="mysql://u@h/db")


def test_unwritable_data_dir_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # even root cannot create a folder under a file
    with pytest.raises(ConfigError, match="is not writable"):
        load_settings(_env_file=None, data_dir=blocker / "sub")


def test_settings_read_runbook_variable_names_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BATCH_MAX_LATENCY_MS", "7.5")
    monkeypatch.setenv("MODEL_SIGNING_REQUIRED", "false")
    monkeypatch.setenv("RETENTION_DAYS", "30")
    settings = Settings(_env_file=None)
    assert settings.data_dir == tmp_path
    assert settings.batch_max_latency_ms == 7.5
    assert settings.model_signing_required is False
    assert settings.retention_days == 30


def test_secrets_are_not_rendered_in_repr(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None, data_dir=tmp_path)
    assert settings.secret("jwt_secret") not in repr(settings)
    assert settings.secret("api_key") not in str(settings.model_dump())


def test_an_empty_secret_is_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an env file's "X=" line: the empty key would sign and verify for anyone who knows it
    monkeypatch.chdir(tmp_path)
    for name in ("EXECUTOR_HMAC_SECRET_PREVIOUS", "JWT_SECRET_PREVIOUS", "API_KEY_PREVIOUS"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("EXECUTOR_HMAC_SECRET", "  ")

    settings = Settings(_env_file=None)

    assert settings.executor_hmac_secret_previous is None
    assert settings.jwt_secret_previous is None and settings.api_key_previous is None
    assert settings.executor_hmac_secret is None
    with pytest.raises(ConfigError, match="EXECUTOR_HMAC_SECRET must be set"):
        load_settings("executor", _env_file=None, data_dir=tmp_path, mode="production")


def test_every_malformed_setting_is_one_line_naming_its_variable_not_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a typo in any variable must say which one and why, without echoing what was set (it may
    # be a secret): never a pydantic dump, never a traceback
    marker = "zq-marker-7"
    values = [marker, f"-1{marker}", "-1", "0", "{", f'[{{"{marker}": 1}}]', "1e999"]
    refused = 0
    for field in Settings.model_fields:
        name = env_name(field)
        for value in values:
            with monkeypatch.context() as env:
                env.setenv(name, value)
                try:
                    load_settings(_env_file=None, data_dir=tmp_path / "d")
                except ConfigError as exc:
                    refused += 1
                    assert exc.message.startswith(name) or name in exc.message, exc.message
                    assert "\n" not in exc.message and marker not in exc.message, exc.message
    assert refused > len(Settings.model_fields)  # most variables refuse most of these values


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("*", "'\\*' would believe X-Forwarded-For from every peer"),
        ("10.0.0.0/8,ingress.local", "entry 2 is not an IP address or network"),
        ("10.0.0.1/8", "entry 1 is not an IP address or network"),  # host bits set
        ("10.0.0.0/33", "entry 1 is not an IP address or network"),
    ],
)
def test_trusted_proxies_that_uvicorn_would_misread_stop_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    """uvicorn takes a malformed entry for a host name that never matches (silently: every
    client then shares the ingress's limits) and '*' for every peer (any caller picks the
    address its limits and audit records are counted under). Neither starts."""
    monkeypatch.setenv("TRUSTED_PROXIES", value)
    with pytest.raises(ConfigError, match=f"^TRUSTED_PROXIES is invalid: {why}"):
        load_settings(_env_file=None, data_dir=tmp_path)


@pytest.mark.parametrize(
    "value", ["redis//cache:6379", "http://cache:6379", "redis://:s3cret@cache:notaport"]
)
def test_a_redis_url_the_client_cannot_read_stops_the_start_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # named as a setting, like any other, not "unexpected ValueError" once a service opens it;
    # the URL may hold the password, so it is not echoed
    monkeypatch.setenv("REDIS_URL", value)
    with pytest.raises(ConfigError, match=r"^REDIS_URL is invalid: not a URL") as caught:
        load_settings(_env_file=None, data_dir=tmp_path)
    assert "s3cret" not in caught.value.message and "\n" not in caught.value.message


@pytest.mark.parametrize("name", ["ACTION_APPROVAL_TTL_S", "ACTION_RECHECK_WINDOW_S"])
def test_an_action_window_too_long_for_a_date_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # 1e300 seconds from now is no date: every action request (or every success) would be a 500
    monkeypatch.setenv(name, "1e300")
    with pytest.raises(ConfigError, match=f"^{name} is invalid: .*less than or equal to 2592000"):
        load_settings(_env_file=None, data_dir=tmp_path)
    monkeypatch.setenv(name, str(30 * 86_400))
    assert load_settings(_env_file=None, data_dir=tmp_path)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_an_engine_timeout_of_no_time_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # 0 would time out every call to the engine (fallback mode for ever, with no error to see)
    monkeypatch.setenv("AI_ENGINE_TIMEOUT_S", value)
    with pytest.raises(ConfigError, match=r"^AI_ENGINE_TIMEOUT_S is invalid: .*greater than 0"):
        load_settings(_env_file=None, data_dir=tmp_path)


def test_trusted_proxies_are_read_as_a_list_of_addresses_and_networks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", " 10.0.0.0/16 , 192.168.1.2,, fd00::/8 ")
    settings = load_settings(_env_file=None, data_dir=tmp_path)
    assert settings.trusted_proxies == "10.0.0.0/16,192.168.1.2,fd00::/8"
