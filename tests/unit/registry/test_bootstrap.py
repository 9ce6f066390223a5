"""Embedded mode's first model (``aegis up``): made production without approval only in an
empty registry, never in place of a production version that was taken away."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.engine.model import export_model_dir, train
from aegis.registry import bootstrap, catalog
from aegis.registry import service as registry_service
from aegis.registry.errors import ModelExists
from aegis.registry.keyset import load_keyset
from aegis.registry.models import ModelVersion
from tests.support import factories
from tests.support.races import race
from tests.support.releases import MODEL, Releases


def _stages(database: Database) -> dict[str, str]:
    with database.unit_of_work() as session:
        return {v.version: v.stage for v in catalog.list_versions(session=session, name=MODEL)}


def test_an_empty_registry_gets_a_bootstrapped_production_model(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    settings = make_settings(database_url=db_url)
    assert bootstrap.ensure_model(settings, database) == "0.1"
    assert _stages(database) == {"0.1": "production"}
    assert len(factories.audit_events(database, "model.bootstrapped")) == 1
    assert bootstrap.ensure_model(settings, database) is None  # once


def test_a_registry_whose_production_was_archived_is_not_bootstrapped_again(
    make_settings: Callable[..., Settings], db_url: str, database: Database, tmp_path: Path
) -> None:
    releases = Releases.start(tmp_path, database)
    releases.push("0.2")
    with database.unit_of_work() as session:  # the only version, archived (four eyes)
        request = catalog.request_promotion(
            session=session, name=MODEL, version="0.2", to="archived", actor="alice"
        )
        catalog.approve(session=session, promotion_id=request.id, actor="bob")
    settings = make_settings(database_url=db_url)  # embedded: the local bootstrap key

    assert bootstrap.ensure_model(settings, database) is None
    assert _stages(database) == {"0.2": "archived"}  # no production without approval
    assert not factories.audit_events(database, "model.bootstrapped")


def _bootstrap(database: Database, releases: Releases, version: str) -> ModelVersion:
    """``catalog.bootstrap_production`` of ``version``, signed by ``releases``' key, as
    ``ensure_model`` calls it once it found the registry empty."""
    source, archive = releases.tmp / f"boot{version}", releases.tmp / f"boot{version}.tar.gz"
    export_model_dir(train(version=version), source)
    registry_service.build_archive(source, archive, name=MODEL, version=version)
    signature = registry_service.sign_archive(archive, releases.key)
    with database.unit_of_work() as session:
        return catalog.bootstrap_production(
            session=session,
            archive=archive,
            signature=signature,
            to=(releases.tmp / "store" / version).as_uri(),
            keyset=load_keyset(str(releases.pub)),
        )


def test_a_version_pushed_after_the_emptiness_check_stops_the_bootstrap(
    database: Database, tmp_path: Path
) -> None:
    releases = Releases.start(tmp_path, database)
    releases.push("0.2")  # between ensure_model's check and its bootstrap

    with pytest.raises(ModelExists, match="bootstrap"):
        _bootstrap(database, releases, "0.1")
    assert _stages(database) == {"0.2": "staging"}
    assert not (tmp_path / "store" / "0.1").exists()  # nothing uploaded
    assert not factories.audit_events(database, "model.bootstrapped")


# On SQLite every transaction takes the one write lock at BEGIN (aegis.database.core).
@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_a_bootstrap_racing_an_approval_leaves_one_production_version(
    database: Database, tmp_path: Path
) -> None:
    releases = Releases.start(tmp_path, database)
    releases.push("0.2")
    with database.unit_of_work() as session:
        promotion_id = catalog.request_promotion(
            session=session, name=MODEL, version="0.2", to="production", actor="alice"
        ).id

    def bootstrap_meanwhile() -> str:
        return _bootstrap(database, releases, "0.1").version

    with database.unit_of_work() as session:
        catalog.approve(session=session, promotion_id=promotion_id, actor="bob")
        racing = race(bootstrap_meanwhile)
        assert racing.waiting  # for the approval's locks, then it reads 0.2 in production

    with pytest.raises(ModelExists):
        racing.done()
    assert _stages(database) == {"0.2": "production"}
    assert not factories.audit_events(database, "model.bootstrapped")


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_two_bootstraps_at_once_leave_one_production_version(
    database: Database, tmp_path: Path
) -> None:
    # The second cannot see the first's row (not committed yet) nor lock it: only the model's
    # own lock makes it wait.
    releases = Releases.start(tmp_path, database)
    source, archive = tmp_path / "boot0.1", tmp_path / "boot0.1.tar.gz"
    export_model_dir(train(version="0.1"), source)
    registry_service.build_archive(source, archive, name=MODEL, version="0.1")
    signature = registry_service.sign_archive(archive, releases.key)

    def bootstrap_meanwhile() -> str:
        return _bootstrap(database, releases, "0.2").version

    with database.unit_of_work() as session:
        catalog.bootstrap_production(
            session=session,
            archive=archive,
            signature=signature,
            to=(tmp_path / "store" / "0.1").as_uri(),
            keyset=load_keyset(str(releases.pub)),
        )
        racing = race(bootstrap_meanwhile)

    with pytest.raises(ModelExists):
        racing.done()
    assert _stages(database) == {"0.1": "production"}
    assert len(factories.audit_events(database, "model.bootstrapped")) == 1


def _waiting_for_a_lock(database: Database) -> bool:
    with database.engine.connect() as conn:
        return bool(
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).scalar()
        )


# SQLite's write lock taken at BEGIN keeps a push and the bootstrap from interleaving at all.
@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_a_push_to_the_bootstraps_own_location_meanwhile_leaves_start_up_running(
    make_settings: Callable[..., Settings], db_url: str, database: Database, tmp_path: Path
) -> None:
    """Someone pushes another version to where the bootstrap puts its archive while ``aegis up``
    starts: start-up goes on without a bootstrap, the pushed version left to four eyes."""
    settings = make_settings(database_url=db_url)
    releases = Releases.start(tmp_path, database)
    source, archive = tmp_path / "m0.2", tmp_path / "m0.2.tar.gz"
    export_model_dir(train(version="0.2"), source)
    registry_service.build_archive(source, archive, name=MODEL, version="0.2")
    signature = registry_service.sign_archive(archive, releases.key)
    location = f"{settings.effective_object_store_url.rstrip('/')}/model-archives/{MODEL}/0.1"

    with database.unit_of_work() as session:
        catalog.push(
            session=session,
            archive=archive,
            signature=signature,
            to=location,
            keyset=load_keyset(str(releases.pub)),
            actor="ci",
        )
        racing = race(lambda: bootstrap.ensure_model(settings, database))
        for _ in range(600):  # until the bootstrap's row waits for the push's (a guard)
            if _waiting_for_a_lock(database):
                break
            time.sleep(0.05)
        assert racing.waiting

    assert racing.done() is None
    assert _stages(database) == {"0.2": "staging"}
    assert not factories.audit_events(database, "model.bootstrapped")
