"""Model releases as CI makes them: train, build, sign, push, then promote with four eyes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from aegis.database.core import Database
from aegis.engine.model import export_model_dir, train
from aegis.registry import catalog
from aegis.registry import service as registry_service
from aegis.registry.cosign_keys import generate_private_key, public_key_pem
from aegis.registry.keyset import load_keyset

MODEL = "example_multimodal"


@dataclass(frozen=True)
class Releases:
    """Versions of the example model pushed to ``tmp/store`` and signed by one new key, whose
    public half (``pub``) is what a test trusts."""

    tmp: Path
    database: Database
    key: ec.EllipticCurvePrivateKey
    pub: Path

    @classmethod
    def start(cls, tmp: Path, database: Database) -> Releases:
        key = generate_private_key()
        pub = tmp / "cosign.pub"
        pub.write_bytes(public_key_pem(key.public_key()))
        return cls(tmp, database, key, pub)

    def release(self, version: str, *, sign_with: ec.EllipticCurvePrivateKey | None = None) -> None:
        """Push ``version`` and make it production. ``sign_with``: replace the stored
        signature with one by that key after the push, as someone with write access to the
        store could."""
        archive = self.push(version)
        promote(self.database, version)
        if sign_with is not None:
            (self.tmp / "store" / version / "model.tar.gz.sig").write_bytes(
                registry_service.sign_archive(archive, sign_with).read_bytes()
            )

    def push(self, version: str) -> Path:
        """Train, build and sign ``version``, push it to ``tmp/store/VERSION`` (the push checks
        the signature against ``pub``); it lands in staging. Returns the archive."""
        source = self.tmp / f"m{version}"
        export_model_dir(train(version=version), source)
        return self.push_source(source, version)

    def push_source(self, source: Path, version: str) -> Path:
        """Build the model folder ``source`` as ``version``, sign it and push it (as
        :meth:`push`), whatever the folder holds. Returns the archive."""
        archive = self.tmp / f"{source.name}.tar.gz"
        registry_service.build_archive(source, archive, name=MODEL, version=version)
        signature = registry_service.sign_archive(archive, self.key)
        with self.database.unit_of_work() as session:
            catalog.push(
                session=session,
                archive=archive,
                signature=signature,
                to=(self.tmp / "store" / version).as_uri(),
                keyset=load_keyset(str(self.pub)),
                actor="ci",
            )
        return archive


def promote(database: Database, version: str, *, to: str = "production") -> None:
    """Move a pushed ``version`` to stage ``to``: alice asks, bob approves."""
    with database.unit_of_work() as session:
        promotion = catalog.request_promotion(
            session=session, name=MODEL, version=version, to=to, actor="alice"
        )
        catalog.approve(session=session, promotion_id=promotion.id, actor="bob")
