"""Embedded mode's first model: train, build, sign, push and mark production, once.

A fresh single-machine install (``aegis up``) has no model and nobody to approve one. When the
registry holds no version of ``MODEL_NAME`` at all, this creates a local signing key in the
data directory (``keys/model-signing.key``, 0600; its ``.pub`` becomes the trusted key when
``AEGIS_TRUSTED_KEYS`` is unset), trains the default engine model, builds and signs the archive
and records it as production, audited as ``model.bootstrapped`` — never as a four-eyes
promotion. Production installs push signed models from CI and promote them with approval.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.registry import catalog
from aegis.registry import service as registry_service
from aegis.registry.cosign_keys import generate_private_key, load_private_key, public_key_pem
from aegis.registry.errors import ModelExists, ModelLocationTaken
from aegis.registry.keyset import load_keyset


def signing_key_paths(settings: Settings) -> tuple[Path, Path]:
    folder = settings.data_dir / "keys"
    return folder / "model-signing.key", folder / "model-signing.pub"


def _key(settings: Settings) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    private, public = signing_key_paths(settings)
    if private.exists():
        key = load_private_key(private.read_bytes())
    else:
        private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = generate_private_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        public.write_bytes(public_key_pem(key.public_key()))
    return key, public


def ensure_model(settings: Settings, database: Database) -> str | None:
    """Bootstrap the production model if the registry holds no version of it at all. Returns
    its version when it did. A registry with versions but none in production (archived by an
    approved request, or pushed and awaiting approval) is left to the four-eyes promotion."""
    from aegis.engine.model import export_model_dir, train

    with database.unit_of_work() as session:
        if catalog.list_versions(session=session, name=settings.model_name):
            return None
    key, public = _key(settings)
    model = train(name=settings.model_name)
    with tempfile.TemporaryDirectory(prefix="aegis-bootstrap-") as tmp:
        source, archive = Path(tmp) / "model", Path(tmp) / "model.tar.gz"
        export_model_dir(model, source)
        registry_service.build_archive(source, archive, name=model.name, version=model.version)
        signature = registry_service.sign_archive(archive, key)
        target = (
            f"{settings.effective_object_store_url.rstrip('/')}/model-archives/"
            f"{model.name}/{model.version}"
        )
        keyset = load_keyset(settings.trusted_keys or str(public))
        try:
            with database.unit_of_work() as session:
                row = catalog.bootstrap_production(
                    session=session, archive=archive, signature=signature, to=target, keyset=keyset
                )
                return row.version
        # A version was pushed (or approved) meanwhile, perhaps to this very location: the
        # registry is no longer empty, and what it holds is left to four eyes.
        except (ModelExists, ModelLocationTaken):
            return None
