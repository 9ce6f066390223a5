"""A push whose transaction does not commit leaves no archive behind in the object store, and
never removes one that a version recorded in the registry points to."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from aegis.database.core import Database
from aegis.registry import catalog
from aegis.registry import service as registry_service
from aegis.registry.cosign_keys import generate_private_key
from aegis.registry.keyset import KeySet
from tests.support import services
from tests.support.logs import json_lines
from tests.support.proxy import TcpProxy
from tests.support.races import race
from tests.unit.registry.builders import keyset, listing

KEY = generate_private_key()
NAME = "example_multimodal"


def _build(root: Path, version: str) -> tuple[Path, Path]:
    source = root / f"src-{version}"
    source.mkdir(parents=True)
    (source / "params.json").write_text(json.dumps({"version": version}))
    archive = root / f"model-{version}.tar.gz"
    registry_service.build_archive(source, archive, name=NAME, version=version)
    return archive, registry_service.sign_archive(archive, KEY)


def _push(session: Session, root: Path, version: str, to: str, actor: str = "alice") -> None:
    archive, signature = _build(root / actor, version)
    trusted: KeySet = keyset(KEY)
    catalog.push(
        session=session, archive=archive, signature=signature, to=to, keyset=trusted, actor=actor
    )


def _refuse_at_commit(session: Session) -> None:
    """Write, in the push's transaction, a row the database refuses only at COMMIT: a deferred
    foreign key naming no row (both databases check it when the transaction commits)."""
    session.execute(text("CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)"))
    session.execute(
        text(
            "CREATE TEMP TABLE child (parent_id INTEGER REFERENCES parent (id) "
            "DEFERRABLE INITIALLY DEFERRED)"
        )
    )
    session.execute(text("INSERT INTO child VALUES (1)"))


def _terminate_connection(session: Session, database: Database) -> None:
    """End the push's server connection from another one, as a failover or an administrator
    would: its transaction is rolled back at once, and its commit fails."""
    pid = session.scalar(text("SELECT pg_backend_pid()"))
    with database.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _location(store: Path, version: str = "0.1") -> str:
    return store.as_uri() + f"/model-archives/example/{version}/"


def test_a_push_refused_at_commit_leaves_nothing_in_the_store(
    database: Database, tmp_path: Path, store: Path
) -> None:
    with pytest.raises(IntegrityError), database.unit_of_work() as session:
        _push(session, tmp_path, "0.1", _location(store))
        assert "model-archives/example/0.1/model.tar.gz" in listing(store)  # uploaded by now
        _refuse_at_commit(session)
    assert not {p for p in listing(store) if p.endswith((".gz", ".sig"))}
    with database.unit_of_work() as session:  # the location is free for the push made again
        assert catalog.list_versions(session=session) == []
        _push(session, tmp_path, "0.1", _location(store), actor="again")
    assert "model-archives/example/0.1/model.tar.gz" in listing(store)


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_a_push_whose_connection_is_ended_before_commit_leaves_nothing_in_the_store(
    database: Database, tmp_path: Path, store: Path
) -> None:
    with pytest.raises(OperationalError), database.unit_of_work() as session:
        _push(session, tmp_path, "0.1", _location(store))
        _terminate_connection(session, database)
    assert not {p for p in listing(store) if p.endswith((".gz", ".sig"))}


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_a_failed_push_keeps_the_archive_of_the_push_that_took_its_location_meanwhile(
    database: Database, tmp_path: Path, store: Path
) -> None:
    # The second push waits for the first one's claim on the location; the first one's
    # connection ends, the second records and uploads its own archive there and commits, and
    # only then does the first one learn that its commit failed.
    second_archive = tmp_path / "bob" / "model-0.2.tar.gz"

    def push_meanwhile() -> None:
        with database.unit_of_work() as session:
            _push(session, tmp_path, "0.2", _location(store), actor="bob")

    with pytest.raises(OperationalError), database.unit_of_work() as session:
        _push(session, tmp_path, "0.1", _location(store))
        racing = race(push_meanwhile)
        assert racing.waiting
        _terminate_connection(session, database)
        racing.done()
    stored = store / "model-archives" / "example" / "0.1"
    assert (stored / "model.tar.gz").read_bytes() == second_archive.read_bytes()
    assert (stored / "model.tar.gz.sig").read_bytes() == (
        second_archive.with_name("model-0.2.tar.gz.sig").read_bytes()
    )
    with database.unit_of_work() as session:
        assert [(v.version, v.pushed_by) for v in catalog.list_versions(session=session)] == [
            ("0.2", "bob")
        ]


@pytest.fixture
def proxied(db_url: str) -> Iterator[tuple[TcpProxy, Database]]:
    name = db_url.rsplit("/", 1)[1]
    with TcpProxy(services.PG_HOST, services.PG_PORT) as proxy:
        database = Database(
            f"postgresql+psycopg://{services.PG_USER}@127.0.0.1:{proxy.port}/{name}"
        )
        yield proxy, database
        database.dispose()


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_a_push_cut_off_from_the_database_warns_which_location_to_check(
    proxied: tuple[TcpProxy, Database],
    tmp_path: Path,
    store: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Without the database nobody can tell whether another push has taken the location since:
    # the files stay, and the warning names where they are.
    proxy, database = proxied
    with json_lines(capsys) as written:
        with pytest.raises(OperationalError), database.unit_of_work() as session:
            _push(session, tmp_path, "0.1", _location(store))
            proxy.cut()
        _, lines = written()
    warnings = [line for line in lines if line.get("event") == "model_push_cleanup_failed"]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "warning"
    assert warnings[0]["location"] == _location(store).rstrip("/")
    assert "model-archives/example/0.1/model.tar.gz" in listing(store)
