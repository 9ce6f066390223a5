"""Embedded mode's first model (``aegis up``): made production without approval only in an
empty registry, never in place of a production version that was taken away."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.registry import bootstrap, catalog
from tests.support import factories
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
