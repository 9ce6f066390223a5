"""The engine serves only signed, promoted models; a new promotion hot-swaps; a bad one
leaves the old model serving."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.engine import synthetic
from aegis.engine.app import create_app
from aegis.engine.errors import ModelNotLoaded
from aegis.engine.model import EngineModel, export_model_dir, train
from aegis.engine.signed_loader import RetryGate, reload_if_changed, signed_loader
from aegis.engine.state import ModelHolder, ModelMeta
from aegis.registry import catalog
from aegis.registry.cosign_keys import generate_private_key, public_key_pem
from tests.support.factories import audit_events
from tests.support.releases import MODEL, Releases, promote


@pytest.fixture
def releases(tmp_path: Path, database: Database) -> Releases:
    return Releases.start(tmp_path, database)


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str, releases: Releases) -> Settings:
    """Settings trusting the releases' key."""
    return make_settings(database_url=db_url, trusted_keys=str(releases.pub))


def _serving_first_release(
    settings: Settings, database: Database, releases: Releases
) -> ModelHolder:
    """A holder serving release 0.1, loaded as the engine's watcher loads it."""
    releases.release("0.1")
    holder = ModelHolder()
    assert reload_if_changed(holder, settings, database) is True
    return holder


def test_hot_swap_on_promotion_and_old_model_kept_on_bad_signature(
    settings: Settings, database: Database, releases: Releases
) -> None:
    releases.release("0.1")
    holder = ModelHolder()
    with TestClient(
        create_app(settings, holder=holder, loader=signed_loader(settings, database))
    ) as client:
        deadline = time.monotonic() + 60  # the first load runs in the background
        while not client.get("/health").json()["model_loaded"] and time.monotonic() < deadline:
            time.sleep(0.05)
        health = client.get("/health").json()
        assert health["model"]["version"] == "0.1" and health["model"]["signer"]

        releases.release("0.2")
        assert reload_if_changed(holder, settings, database) is True
        assert client.get("/health").json()["model"]["version"] == "0.2"

        releases.release("0.3", sign_with=generate_private_key())
        assert reload_if_changed(holder, settings, database) is False
        health = client.get("/health").json()
    assert health["model"]["version"] == "0.2"  # still serving the last good model
    assert health["last_error"]


def test_no_trusted_key_nothing_loads_and_health_says_why(
    make_settings: Callable[..., Settings], db_url: str, database: Database, releases: Releases
) -> None:
    releases.release("0.1")
    keyless = make_settings(database_url=db_url, trusted_keys=None)
    holder = ModelHolder()
    assert holder.load(signed_loader(keyless, database)) is False
    with TestClient(create_app(keyless, holder=holder)) as client:
        health = client.get("/health").json()
        predict = client.post(
            "/predict", json={"incident": {}}, headers={"X-API-Key": keyless.secret("api_key")}
        )
    assert health["model_loaded"] is False
    assert "trusted" in health["reason"]
    assert predict.status_code == 503


def test_a_refused_version_is_retried_with_backoff_and_a_new_one_at_once(
    settings: Settings, database: Database, releases: Releases
) -> None:
    releases.release("0.1")
    holder, gate, now = ModelHolder(), RetryGate(base_s=10.0, cap_s=25.0), [1000.0]

    def check() -> bool:
        return reload_if_changed(holder, settings, database, gate=gate, clock=lambda: now[0])

    def refusals() -> int:
        return len(audit_events(database, "model.load_refused"))

    assert check() is True
    releases.release("0.2", sign_with=generate_private_key())
    assert check() is False and refusals() == 1
    now[0] += 9.9
    assert check() is False and refusals() == 1  # held back: not fetched, verified, audited
    now[0] += 0.1
    assert check() is False and refusals() == 2  # tried again after 10 s, then after 20 s
    now[0] += 19.9
    assert check() is False and refusals() == 2
    now[0] += 0.1
    assert check() is False and refusals() == 3
    now[0] += 25.0  # the wait stops growing at cap_s
    assert check() is False and refusals() == 4

    releases.release("0.3")  # a new production version: tried at once
    assert check() is True
    assert holder.current is not None and holder.current.meta.version == "0.3"
    assert gate.failures == 0


def test_the_watcher_leaves_a_running_load_alone(
    settings: Settings, database: Database, releases: Releases
) -> None:
    releases.release("0.1")
    holder, started, release = ModelHolder(), threading.Event(), threading.Event()
    load = signed_loader(settings, database)

    def slow_start_up_load() -> tuple[EngineModel, ModelMeta]:
        started.set()
        release.wait(30)
        return load()

    start_up = threading.Thread(target=holder.load, args=(slow_start_up_load,))
    start_up.start()
    assert started.wait(30)
    assert holder.loading
    assert reload_if_changed(holder, settings, database) is False  # no second load of 0.1
    release.set()
    start_up.join(30)
    assert holder.current is not None and not holder.loading
    assert len(audit_events(database, "model.verified")) == 1


def test_a_signed_model_that_does_not_load_is_refused_audited_and_the_old_one_serves(
    settings: Settings, database: Database, releases: Releases, tmp_path: Path
) -> None:
    holder = _serving_first_release(settings, database, releases)
    source = tmp_path / "broken"
    export_model_dir(train(version="0.2"), source)
    (source / "model.json").write_text("{}")  # signed, verifies, but is no engine model
    releases.push_source(source, "0.2")
    promote(database, "0.2")

    assert reload_if_changed(holder, settings, database) is False
    assert holder.current is not None and holder.current.meta.version == "0.1"
    assert holder.last_error and "model.json" in holder.last_error
    refused = audit_events(database, "model.load_refused")
    assert [(e.resource, e.outcome) for e in refused] == [(f"model:{MODEL}/0.2", "refused")]
    assert "model_format_error" in str(refused[0].data)


def test_a_revoked_signing_key_stops_the_model_it_signed_and_is_audited(
    settings: Settings, database: Database, releases: Releases
) -> None:
    holder = _serving_first_release(settings, database, releases)
    successor = generate_private_key()
    releases.pub.write_bytes(public_key_pem(successor.public_key()))  # the old key is removed

    assert reload_if_changed(holder, settings, database) is False  # nor loaded again
    with pytest.raises(ModelNotLoaded):
        holder.require()
    unloaded = audit_events(database, "model.unloaded")
    assert [(e.resource, e.outcome) for e in unloaded] == [(f"model:{MODEL}/0.1", "refused")]
    assert "untrusted_key" in str(unloaded[0].data)
    assert len(audit_events(database, "model.load_refused")) == 1


def test_a_model_archived_with_none_in_its_place_stops_serving_until_one_is_promoted(
    settings: Settings, database: Database, releases: Releases
) -> None:
    """An approved promotion to "archived" takes the model out of service: it makes no more
    predictions (503; the backend stores incidents without them), /health says why, and the
    next production version serves."""
    holder = _serving_first_release(settings, database, releases)
    promote(database, "0.1", to="archived")

    assert reload_if_changed(holder, settings, database) is False
    assert reload_if_changed(holder, settings, database) is False  # stopped, and audited, once
    with TestClient(create_app(settings, holder=holder)) as client:
        health = client.get("/health").json()
        predict = client.post(
            "/predict",
            json={"incident": synthetic.incident(seed=1)},
            headers={"X-API-Key": settings.secret("api_key")},
        )
    assert health["model_loaded"] is False
    assert "no longer in production" in health["reason"]
    assert predict.status_code == 503
    unloaded = audit_events(database, "model.unloaded")
    assert [(e.resource, e.outcome) for e in unloaded] == [(f"model:{MODEL}/0.1", "refused")]
    assert "not_in_production" in str(unloaded[0].data)

    releases.release("0.2")
    assert reload_if_changed(holder, settings, database) is True
    assert holder.current is not None and holder.current.meta.version == "0.2"


def test_during_a_key_rotation_models_signed_by_either_key_serve(
    settings: Settings, database: Database, releases: Releases
) -> None:
    holder = _serving_first_release(settings, database, releases)
    successor = generate_private_key()
    old_pub = releases.pub.read_bytes()
    releases.pub.write_bytes(old_pub + public_key_pem(successor.public_key()))

    assert reload_if_changed(holder, settings, database) is False  # 0.1 keeps serving
    assert holder.current is not None and holder.current.meta.version == "0.1"
    releases.release("0.2", sign_with=successor)
    assert reload_if_changed(holder, settings, database) is True
    assert holder.current is not None and holder.current.meta.version == "0.2"
    assert not audit_events(database, "model.unloaded")


def test_a_signed_archive_holding_another_version_s_model_is_refused(
    settings: Settings, database: Database, releases: Releases, tmp_path: Path
) -> None:
    holder = _serving_first_release(settings, database, releases)
    source = tmp_path / "relabelled"
    export_model_dir(train(version="0.1"), source)  # last release's model, pushed as 0.2
    releases.push_source(source, "0.2")
    promote(database, "0.2")

    assert reload_if_changed(holder, settings, database) is False
    assert holder.current is not None and holder.current.meta.version == "0.1"
    assert holder.last_error and "0.2" in holder.last_error
    refused = audit_events(database, "model.load_refused")
    assert [e.resource for e in refused] == [f"model:{MODEL}/0.2"]


def test_predictions_name_the_signed_archive_health_and_the_registry_name(
    settings: Settings, database: Database, releases: Releases
) -> None:
    # Action requests record the prediction's digest: an auditor must find it in the registry.
    holder = _serving_first_release(settings, database, releases)
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    with TestClient(create_app(settings, holder=holder)) as client:
        health = client.get("/health").json()
        answer = client.post(
            "/predict", json={"incident": synthetic.incident()}, headers={"X-API-Key": key}
        )
    assert answer.status_code == 200
    with database.unit_of_work() as session:
        registered = catalog.production(session=session, name=MODEL)
    assert answer.json()["model"]["digest"] == health["model"]["digest"]
    assert health["model"]["digest"] == f"sha256:{registered.digest}"
