"""Push, four-eyes promotion, and the fail-closed loader (fetch_and_prepare_model_for_load)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select, text

from aegis.audit.models import AuditEntry
from aegis.core import metrics
from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.registry import catalog, loader
from aegis.registry import service as registry_service
from aegis.registry.cosign_keys import generate_private_key, public_key_pem
from aegis.registry.errors import (
    FourEyesRequired,
    ManifestMismatch,
    ModelCacheUnwritable,
    ModelExists,
    ModelLocationTaken,
    ModelSourceInvalid,
    NoTrustedKeys,
    SignatureInvalid,
    UntrustedKey,
)
from aegis.registry.keyset import load_keyset
from aegis.registry.loader import DigestMismatch, fetch_and_prepare_model_for_load
from aegis.storage.errors import InvalidStoreUrl
from tests.support.races import at_once, race

ROUNDS, PREPARERS = 5, 8  # preparers of one model at once, from an empty cache each round


def _model_dir(root: Path, payload: str = "1", extra: dict[str, str] | None = None) -> Path:
    folder = root / f"src-{payload}"
    folder.mkdir()
    (folder / "params.json").write_text(json.dumps({"threshold": payload}))
    (folder / "weights").mkdir()
    (folder / "weights" / "w.json").write_text("[1, 2, 3]")
    for name, content in (extra or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)
    return folder


@pytest.fixture
def signing(tmp_path: Path) -> tuple[object, Path]:
    key = generate_private_key()
    pub = tmp_path / "cosign.pub"
    pub.write_bytes(public_key_pem(key.public_key()))
    return key, pub


def _build(
    tmp_path: Path,
    key: object,
    version: str = "0.1",
    payload: str = "1",
    extra: dict[str, str] | None = None,
) -> tuple[Path, Path]:
    archive = tmp_path / f"model-{version}.tar.gz"
    registry_service.build_archive(
        _model_dir(tmp_path, payload + version, extra),
        archive,
        name="example_multimodal",
        version=version,
    )
    sig = registry_service.sign_archive(archive, key)  # type: ignore[arg-type]
    return archive, sig


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], db_url: str, signing: tuple[object, Path]
) -> Settings:
    return make_settings(database_url=db_url, trusted_keys=str(signing[1]))


def _events(database: Database, prefix: str = "model.") -> list[str]:
    with database.unit_of_work() as session:
        return [
            e.event_type
            for e in session.scalars(
                select(AuditEntry)
                .where(AuditEntry.event_type.like(f"{prefix}%"))
                .order_by(AuditEntry.seq)
            )
        ]


def _push_and_promote(
    database: Database,
    settings: Settings,
    tmp_path: Path,
    key: object,
    version: str = "0.1",
    extra: dict[str, str] | None = None,
) -> None:
    archive, sig = _build(tmp_path, key, version, extra=extra)
    store = (tmp_path / "store").as_uri() + f"/model-archives/example/{version}/"
    with database.unit_of_work() as session:
        catalog.push(
            session=session,
            archive=archive,
            signature=sig,
            to=store,
            keyset=load_keyset(settings.trusted_keys or ""),
            actor="alice",
        )
        promotion = catalog.request_promotion(
            session=session,
            name="example_multimodal",
            version=version,
            to="production",
            actor="alice",
        )
        promotion_id = promotion.id
    with database.unit_of_work() as session:
        catalog.approve(session=session, promotion_id=promotion_id, actor="bob")


def test_push_promote_with_four_eyes_then_load(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    archive, sig = _build(tmp_path, signing[0])
    store = (tmp_path / "store").as_uri() + "/model-archives/example/0.1/"
    with database.unit_of_work() as session:
        row = catalog.push(
            session=session,
            archive=archive,
            signature=sig,
            to=store,
            keyset=load_keyset(str(signing[1])),
            actor="alice",
        )
        assert row.stage == "staging"
        promotion = catalog.request_promotion(
            session=session,
            name="example_multimodal",
            version="0.1",
            to="production",
            actor="alice",
        )
        promotion_id = promotion.id
    with pytest.raises(FourEyesRequired), database.unit_of_work() as session:
        catalog.approve(session=session, promotion_id=promotion_id, actor="alice")
    with database.unit_of_work() as session:
        catalog.approve(session=session, promotion_id=promotion_id, actor="bob")
    prepared = fetch_and_prepare_model_for_load(
        "example_multimodal", settings=settings, database=database
    )
    assert json.loads((prepared.path / "params.json").read_text()) == {"threshold": "10.1"}
    assert _events(database) == [
        "model.pushed",
        "model.promotion_requested",
        "model.promotion_approved",
        "model.promoted",
        "model.verified",
    ]


def test_push_to_a_url_with_a_query_is_refused_before_writing(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    archive, sig = _build(tmp_path, signing[0])
    store = tmp_path / "store"
    with pytest.raises(InvalidStoreUrl) as info, database.unit_of_work() as session:
        catalog.push(
            session=session,
            archive=archive,
            signature=sig,
            to=f"{store.as_uri()}/?sig=SECRET",
            keyset=load_keyset(settings.trusted_keys or ""),
            actor="alice",
        )
    assert "must not carry credentials, a query" in info.value.message
    assert "SECRET" not in info.value.message
    assert not store.exists()


def test_promoting_a_new_version_archives_the_old_one(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    _push_and_promote(database, settings, tmp_path, signing[0], "0.1")
    _push_and_promote(database, settings, tmp_path, signing[0], "0.2")
    with database.unit_of_work() as session:
        stages = {v.version: v.stage for v in catalog.list_versions(session=session)}
    assert stages == {"0.1": "archived", "0.2": "production"}
    prepared = fetch_and_prepare_model_for_load(
        "example_multimodal", settings=settings, database=database
    )
    assert prepared.version == "0.2"


def test_signature_by_an_untrusted_key_is_refused_counted_and_audited(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    _push_and_promote(database, settings, tmp_path, signing[0])
    # the published signature is replaced by one from another key
    with database.unit_of_work() as session:
        row = catalog.production(session=session, name="example_multimodal")
        sig_path = Path(row.signature_uri.removeprefix("file://"))
    (tmp_path / "other").mkdir()
    other = _build(tmp_path / "other", generate_private_key())[1]
    sig_path.write_bytes(other.read_bytes())
    before = metrics.MODEL_SIGNATURE_ERRORS.labels("untrusted_key")._value.get()
    with pytest.raises((UntrustedKey, SignatureInvalid)):
        fetch_and_prepare_model_for_load("example_multimodal", settings=settings, database=database)
    assert "model.load_refused" in _events(database)
    total = sum(
        metrics.MODEL_SIGNATURE_ERRORS.labels(r)._value.get()
        for r in ("untrusted_key", "signature_invalid")
    )
    assert total > before


def test_archive_swapped_in_the_store_is_refused(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    _push_and_promote(database, settings, tmp_path, signing[0])
    with database.unit_of_work() as session:
        row = catalog.production(session=session, name="example_multimodal")
        archive_path = Path(row.archive_uri.removeprefix("file://"))
        sig_path = Path(row.signature_uri.removeprefix("file://"))
    # a different archive, validly signed by the trusted key, but not the one registered
    (tmp_path / "evil").mkdir()
    evil, evil_sig = _build(tmp_path / "evil", signing[0], payload="evil")
    archive_path.write_bytes(evil.read_bytes())
    sig_path.write_bytes(evil_sig.read_bytes())
    with pytest.raises(DigestMismatch):
        fetch_and_prepare_model_for_load("example_multimodal", settings=settings, database=database)


def test_no_trusted_key_means_nothing_loads(
    database: Database,
    make_settings: Callable[..., Settings],
    db_url: str,
    tmp_path: Path,
    signing: tuple[object, Path],
    settings: Settings,
) -> None:
    _push_and_promote(database, settings, tmp_path, signing[0])
    keyless = make_settings(database_url=db_url, trusted_keys=None)
    with pytest.raises(NoTrustedKeys):
        fetch_and_prepare_model_for_load("example_multimodal", settings=keyless, database=database)


def test_cached_model_is_reverified_and_a_changed_file_is_replaced(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    _push_and_promote(database, settings, tmp_path, signing[0])
    first = fetch_and_prepare_model_for_load(
        "example_multimodal", settings=settings, database=database
    )
    (first.path / "params.json").write_text('{"threshold": "tampered"}')
    again = fetch_and_prepare_model_for_load(
        "example_multimodal", settings=settings, database=database
    )
    assert json.loads((again.path / "params.json").read_text()) == {"threshold": "10.1"}


def test_digest_tampered_in_the_registry_is_refused(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    _push_and_promote(database, settings, tmp_path, signing[0])
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE model_versions SET digest = :d"), {"d": "0" * 64})
    with pytest.raises(DigestMismatch):
        fetch_and_prepare_model_for_load("example_multimodal", settings=settings, database=database)


def test_a_model_file_named_manifest_json_below_the_root_loads(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    # Only the root manifest.json is Aegis's; one in a subfolder is the model's own file.
    extra = {"tokenizer/manifest.json": '{"vocab": 3}'}
    _push_and_promote(database, settings, tmp_path, signing[0], extra=extra)
    for _ in range(2):  # extracted, then found intact in the cache
        prepared = fetch_and_prepare_model_for_load(
            "example_multimodal", settings=settings, database=database
        )
        assert (prepared.path / "tokenizer" / "manifest.json").read_text() == '{"vocab": 3}'


def test_a_registry_version_that_is_a_path_is_refused_and_writes_nothing(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    _push_and_promote(database, settings, tmp_path, signing[0])
    escape = settings.data_dir.parent / "escaped"  # DATA_DIR/model-cache/<name>/../../../
    with database.engine.begin() as conn:  # a row written before versions were checked on push
        conn.execute(text("UPDATE model_versions SET version = '../../../escaped'"))
    with pytest.raises(ModelSourceInvalid):
        fetch_and_prepare_model_for_load("example_multimodal", settings=settings, database=database)
    assert not escape.exists()
    assert _events(database)[-1] == "model.load_refused"


def test_an_unwritable_model_cache_is_refused_and_audited(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    _push_and_promote(database, settings, tmp_path, signing[0])
    (settings.data_dir / "model-cache").write_text("a file where the cache folder should be")
    with pytest.raises(ModelCacheUnwritable, match="the model cache cannot be written"):
        fetch_and_prepare_model_for_load("example_multimodal", settings=settings, database=database)
    assert _events(database)[-1] == "model.load_refused"


def _push_0_2_is_refused_as_taken(
    database: Database,
    settings: Settings,
    tmp_path: Path,
    signing: tuple[object, Path],
    *,
    to: str,
    payload: str = "2",
) -> None:
    """Push a new version 0.2 to ``to``: refused, as 0.1 holds that location."""
    (tmp_path / "next").mkdir()
    archive, sig = _build(tmp_path / "next", signing[0], "0.2", payload=payload)
    with pytest.raises(ModelLocationTaken) as info, database.unit_of_work() as session:
        catalog.push(
            session=session,
            archive=archive,
            signature=sig,
            to=to,
            keyset=load_keyset(settings.trusted_keys or ""),
            actor="alice",
        )
    assert "example_multimodal 0.1" in info.value.message


def test_push_to_the_location_of_another_version_is_refused_and_keeps_it_loadable(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    _push_and_promote(database, settings, tmp_path, signing[0], "0.1")
    taken = (tmp_path / "store").as_uri() + "/model-archives/example/0.1/"
    _push_0_2_is_refused_as_taken(database, settings, tmp_path, signing, to=taken, payload="1")
    prepared = fetch_and_prepare_model_for_load(
        "example_multimodal", settings=settings, database=database
    )
    assert prepared.version == "0.1"


@pytest.mark.parametrize(
    "spell",
    [
        lambda uri: uri.replace("file://", "file://localhost", 1),
        lambda uri: uri.replace("file://", "FILE://", 1),
        lambda uri: uri.replace("/example/", "/ex%61mple/"),
        lambda uri: uri.replace("/example/", "/example%2f"),
    ],
    ids=["localhost", "upper-case-scheme", "percent-encoded", "encoded-slash"],
)
def test_push_to_another_spelling_of_another_versions_location_is_refused_and_keeps_it(
    database: Database,
    settings: Settings,
    tmp_path: Path,
    signing: tuple[object, Path],
    spell: Callable[[str], str],
) -> None:
    _push_and_promote(database, settings, tmp_path, signing[0], "0.1")
    taken = (tmp_path / "store").as_uri() + "/model-archives/example/0.1/"
    stored = tmp_path / "store" / "model-archives" / "example" / "0.1" / "model.tar.gz"
    before = stored.read_bytes()
    _push_0_2_is_refused_as_taken(database, settings, tmp_path, signing, to=spell(taken))
    assert stored.read_bytes() == before
    prepared = fetch_and_prepare_model_for_load(
        "example_multimodal", settings=settings, database=database
    )
    assert prepared.version == "0.1"


def test_push_to_a_location_a_version_recorded_under_another_spelling_holds_is_refused(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    """Versions pushed before locations were checked for other spellings may be recorded as
    ``file://localhost/...``: they still load, and a push to their location is refused."""
    _push_and_promote(database, settings, tmp_path, signing[0], "0.1")
    taken = (tmp_path / "store").as_uri() + "/model-archives/example/0.1/"
    stored = tmp_path / "store" / "model-archives" / "example" / "0.1" / "model.tar.gz"
    before = stored.read_bytes()
    with database.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE model_versions SET archive_uri = replace(archive_uri, 'file://', "
                "'file://localhost'), signature_uri = replace(signature_uri, 'file://', "
                "'file://localhost')"
            )
        )
    _push_0_2_is_refused_as_taken(database, settings, tmp_path, signing, to=taken)
    assert stored.read_bytes() == before
    prepared = fetch_and_prepare_model_for_load(
        "example_multimodal", settings=settings, database=database
    )
    assert prepared.version == "0.1"


def test_push_to_another_spelling_of_a_free_location_is_refused_naming_its_own(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    archive, sig = _build(tmp_path, signing[0], "0.1")
    canonical = (tmp_path / "store").as_uri() + "/model-archives/example/0.1/"
    with pytest.raises(InvalidStoreUrl) as info, database.unit_of_work() as session:
        catalog.push(
            session=session,
            archive=archive,
            signature=sig,
            to=canonical.replace("file://", "file://localhost", 1),
            keyset=load_keyset(settings.trusted_keys or ""),
            actor="alice",
        )
    assert f"write it as {canonical!r}" in info.value.message
    assert not (tmp_path / "store").exists()
    with database.unit_of_work() as session:
        assert catalog.list_versions(session=session) == []


# On SQLite every transaction takes the one write lock at BEGIN (aegis.database.core): pushes
# take turns there by design.
@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("second", "refusal"),
    [("0.2", ModelLocationTaken), ("0.1", ModelExists)],  # or the same, rebuilt
)
def test_two_pushes_to_one_location_at_once_keep_the_first_archive(
    database: Database,
    settings: Settings,
    tmp_path: Path,
    signing: tuple[object, Path],
    second: str,
    refusal: type[Exception],
) -> None:
    location = (tmp_path / "store").as_uri() + "/model-archives/example/0.1/"
    stored = tmp_path / "store" / "model-archives" / "example" / "0.1" / "model.tar.gz"
    keyset = load_keyset(settings.trusted_keys or "")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first_archive, first_sig = _build(tmp_path / "a", signing[0], "0.1")
    second_archive, second_sig = _build(tmp_path / "b", signing[0], second, payload="2")

    def push_meanwhile() -> str:
        with database.unit_of_work() as session:
            return catalog.push(
                session=session,
                archive=second_archive,
                signature=second_sig,
                to=location,
                keyset=keyset,
                actor="bob",
            ).version

    with database.unit_of_work() as session:
        catalog.push(
            session=session,
            archive=first_archive,
            signature=first_sig,
            to=location,
            keyset=keyset,
            actor="alice",
        )
        racing = race(push_meanwhile)

    with pytest.raises(refusal):  # the check alone let both through: nothing stored it
        racing.done()
    assert stored.read_bytes() == first_archive.read_bytes()  # not the loser's
    with database.unit_of_work() as session:
        listed = [(v.version, v.pushed_by) for v in catalog.list_versions(session=session)]
        promotion_id = catalog.request_promotion(
            session=session, name="example_multimodal", version="0.1", to="production", actor="al"
        ).id
    assert listed == [("0.1", "alice")]
    with database.unit_of_work() as session:
        catalog.approve(session=session, promotion_id=promotion_id, actor="carol")
    prepared = fetch_and_prepare_model_for_load(
        "example_multimodal", settings=settings, database=database
    )
    assert json.loads((prepared.path / "params.json").read_text()) == {"threshold": "10.1"}


def test_preparers_racing_into_one_cache_folder_all_load_it(
    database: Database, settings: Settings, tmp_path: Path, signing: tuple[object, Path]
) -> None:
    # As engine processes sharing DATA_DIR: each verifies and extracts, and all but the first
    # find the folder that one renamed into place. Several rounds, each from an empty cache.
    _push_and_promote(database, settings, tmp_path, signing[0])
    cache = settings.data_dir / "model-cache" / "example_multimodal" / "0.1"

    def prepare() -> Path:
        return fetch_and_prepare_model_for_load(
            "example_multimodal", settings=settings, database=database
        ).path

    for _ in range(ROUNDS):
        shutil.rmtree(cache, ignore_errors=True)
        paths = at_once([prepare] * PREPARERS)
        assert set(paths) == {cache / "model"}
        assert json.loads((cache / "model" / "params.json").read_text()) == {"threshold": "10.1"}
        # nothing left beside it (no private folder of a preparer that came second)
        assert sorted(p.name for p in cache.iterdir()) == [
            "model",
            "model.tar.gz",
            "model.tar.gz.sig",
        ]
    assert "model.load_refused" not in _events(database)
    assert _events(database, "model.verified") == ["model.verified"] * ROUNDS * PREPARERS


@pytest.mark.parametrize(("tampered", "used"), [(False, True), (True, False)])
def test_a_folder_another_preparer_put_in_place_is_used_only_when_it_matches(
    database: Database,
    settings: Settings,
    tmp_path: Path,
    signing: tuple[object, Path],
    tampered: bool,
    used: bool,
) -> None:
    # The rename that lost the race: the folder found in place is checked as a cached one is.
    _push_and_promote(database, settings, tmp_path, signing[0])
    archive = tmp_path / "store" / "model-archives" / "example" / "0.1" / "model.tar.gz"
    sig = archive.with_name("model.tar.gz.sig")
    with database.unit_of_work() as session:
        manifest = dict(
            catalog.get_version(session=session, name="example_multimodal", version="0.1").manifest
        )
    keyset = load_keyset(settings.trusted_keys or "")
    ours, theirs = tmp_path / "ours" / "model", tmp_path / "cache" / "model"
    registry_service.verify_and_extract(archive, sig.read_bytes(), keyset, ours)
    registry_service.verify_and_extract(archive, sig.read_bytes(), keyset, theirs)
    if tampered:
        (theirs / "params.json").write_text('{"threshold": "tampered"}')

    if used:
        loader._place(ours, theirs, manifest)
    else:
        with pytest.raises(ManifestMismatch):
            loader._place(ours, theirs, manifest)
    assert ours.exists()  # never moved over theirs
