"""The engine serves only signed, promoted models; a new promotion hot-swaps; a bad one
leaves the old model serving."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.engine.app import create_app
from aegis.engine.model import export_model_dir, train
from aegis.engine.signed_loader import reload_if_changed, signed_loader
from aegis.engine.state import ModelHolder
from aegis.registry import catalog
from aegis.registry import service as registry_service
from aegis.registry.cosign_keys import generate_private_key, public_key_pem
from aegis.registry.keyset import load_keyset


def _release(
    tmp: Path,
    database: Database,
    key: object,
    pub: Path,
    version: str,
    *,
    sign_with: ec.EllipticCurvePrivateKey | None = None,
) -> None:
    source, archive = tmp / f"m{version}", tmp / f"m{version}.tar.gz"
    export_model_dir(train(version=version), source)
    registry_service.build_archive(source, archive, name="example_multimodal", version=version)
    good = registry_service.sign_archive(archive, key)  # type: ignore[arg-type]
    with database.unit_of_work() as session:
        catalog.push(
            session=session,
            archive=archive,
            signature=good,
            to=(tmp / "store" / version).as_uri(),
            keyset=load_keyset(str(pub)),
            actor="ci",
        )
        promotion = catalog.request_promotion(
            session=session,
            name="example_multimodal",
            version=version,
            to="production",
            actor="alice",
        )
        catalog.approve(session=session, promotion_id=promotion.id, actor="bob")
    if sign_with is not None:  # the stored signature is replaced after the push
        (tmp / "store" / version / "model.tar.gz.sig").write_bytes(
            registry_service.sign_archive(archive, sign_with).read_bytes()
        )


def test_hot_swap_on_promotion_and_old_model_kept_on_bad_signature(
    make_settings: Callable[..., Settings], db_url: str, database: Database, tmp_path: Path
) -> None:
    key = generate_private_key()
    pub = tmp_path / "cosign.pub"
    pub.write_bytes(public_key_pem(key.public_key()))
    settings = make_settings(database_url=db_url, trusted_keys=str(pub))
    _release(tmp_path, database, key, pub, "0.1")
    holder = ModelHolder()
    with TestClient(
        create_app(settings, holder=holder, loader=signed_loader(settings, database))
    ) as client:
        deadline = time.monotonic() + 60  # the first load runs in the background
        while not client.get("/health").json()["model_loaded"] and time.monotonic() < deadline:
            time.sleep(0.05)
        health = client.get("/health").json()
        assert health["model"]["version"] == "0.1" and health["model"]["signer"]

        _release(tmp_path, database, key, pub, "0.2")
        assert reload_if_changed(holder, settings, database) is True
        assert client.get("/health").json()["model"]["version"] == "0.2"

        _release(tmp_path, database, key, pub, "0.3", sign_with=generate_private_key())
        assert reload_if_changed(holder, settings, database) is False
        health = client.get("/health").json()
    assert health["model"]["version"] == "0.2"  # still serving the last good model
    assert health["last_error"]


def test_no_trusted_key_nothing_loads_and_health_says_why(
    make_settings: Callable[..., Settings], db_url: str, database: Database, tmp_path: Path
) -> None:
    key = generate_private_key()
    pub = tmp_path / "cosign.pub"
    pub.write_bytes(public_key_pem(key.public_key()))
    _release(tmp_path, database, key, pub, "0.1")
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
