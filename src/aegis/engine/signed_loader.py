"""The engine's model source: the signed, registry-promoted model, and nothing else.

``signed_loader(settings, database)`` returns the loader the engine's model holder runs at
start-up and on every reload. It goes through
:func:`aegis.registry.loader.fetch_and_prepare_model_for_load` (signature, digest, safe
extraction — fail closed), then reads the data-only model directory. A failed load raises, so
the holder keeps serving the model it had and ``/health`` shows the reason; a signed archive
that is not an engine model is refused like a bad signature (audited ``model.load_refused``,
counted).

``watch_registry`` reloads when the registry's production version changes (and stops serving
when none is left in production: an archived model predicts no more), checking every
``MODEL_WATCH_INTERVAL_S`` (hot swap: in-flight batches finish on the old model; a failed
verification leaves the old one serving). A version that failed to load is tried again with
backoff (:class:`RetryGate`), so a refused archive is not downloaded, verified and audited again
at every check; a new production version is tried at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from aegis.audit.journal import AuditWriter
from aegis.core.config import Settings
from aegis.core.logging import JobFailures, get_logger
from aegis.database.core import Database
from aegis.engine.errors import ModelFormatError
from aegis.engine.model import EngineModel, load_model_dir
from aegis.engine.state import ModelHolder, ModelMeta
from aegis.registry import catalog
from aegis.registry.errors import ModelNotFound, RegistryError, UntrustedKey
from aegis.registry.keyset import keyset_from_settings
from aegis.registry.loader import fetch_and_prepare_model_for_load, record_refusal

log = get_logger(__name__)


def signed_loader(
    settings: Settings, database: Database
) -> Callable[[], tuple[EngineModel, ModelMeta]]:
    def load() -> tuple[EngineModel, ModelMeta]:
        prepared = fetch_and_prepare_model_for_load(
            settings.model_name, settings=settings, database=database
        )
        try:
            model = load_model_dir(prepared.path)
            if (model.name, model.version) != (prepared.name, prepared.version):
                # predictions name model.json's model, /health and the watcher the registry's
                raise ModelFormatError(
                    f"model.json holds {model.name} {model.version}, not the registry's "
                    f"{prepared.name} {prepared.version}"
                )
        except ModelFormatError as exc:  # signed and verified, but not a model the engine reads
            writer = AuditWriter(database, settings.audit_journal_path)
            record_refusal(writer, prepared.name, prepared.version, exc)
            raise
        # Predictions (and the action requests made from them) name the signed archive, as the
        # registry, /health and the audit log do, not the digest of the files inside it.
        digest = f"sha256:{prepared.digest}"
        return replace(model, digest=digest), ModelMeta(
            name=prepared.name,
            version=prepared.version,
            digest=digest,
            signer=prepared.key_id,
            source="registry",
        )

    return load


def production_version(settings: Settings, database: Database) -> str | None:
    with database.unit_of_work() as session:
        try:
            return catalog.production(session=session, name=settings.model_name).version
        except ModelNotFound:
            return None


@dataclass
class RetryGate:
    """When a version that failed to load may be tried again: ``base_s`` after the first
    failure, doubling after each further one, at most ``cap_s``. A load of any other version is
    never held back, and a success forgets the failures."""

    base_s: float
    cap_s: float = 600.0
    version: str | None = None
    failures: int = 0
    not_before: float = 0.0

    def allows(self, version: str, now: float) -> bool:
        return version != self.version or now >= self.not_before

    def record(self, version: str, ok: bool, now: float) -> None:
        if ok:
            self.version, self.failures, self.not_before = None, 0, 0.0
            return
        self.failures = self.failures + 1 if version == self.version else 1
        self.version = version
        self.not_before = now + min(self.cap_s, self.base_s * 2 ** (self.failures - 1))


def stop_if_signer_untrusted(holder: ModelHolder, settings: Settings, database: Database) -> bool:
    """Stop serving a registry model whose signing key is no longer trusted (revoked: removed
    from AEGIS_TRUSTED_KEYS), audited as ``model.unloaded``. True when it was stopped."""
    serving = holder.current
    if serving is None or serving.meta.source != "registry" or not settings.model_signing_required:
        return False
    meta = serving.meta
    reason: RegistryError
    try:
        if meta.signer in keyset_from_settings(settings):
            return False
        reason = UntrustedKey(
            f"the key {meta.signer} that signed {meta.name} {meta.version} is no longer trusted"
        )
    except RegistryError as exc:  # no key, or an unreadable key set: fail closed
        reason = exc
    _unload(holder, settings, database, code=reason.code, message=reason.message)
    return True


def _unload(
    holder: ModelHolder, settings: Settings, database: Database, *, code: str, message: str
) -> None:
    """Stop serving ``holder``'s model and audit it as ``model.unloaded`` (``code``: why)."""
    serving = holder.current
    if serving is None:
        return
    meta = serving.meta
    holder.clear(message)
    AuditWriter(database, settings.audit_journal_path).record(
        category="model",
        event_type="model.unloaded",
        actor="ai-engine",
        resource=f"model:{meta.name}/{meta.version}",
        outcome="refused",
        data={
            "model": meta.name,
            "version": meta.version,
            "key_id": meta.signer,
            "verification_result": f"refused: {message}",
            "reason": code,
        },
    )
    log.warning("model_unloaded", name=meta.name, version=meta.version, reason=code)


def reload_if_changed(
    holder: ModelHolder,
    settings: Settings,
    database: Database,
    *,
    gate: RetryGate | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Stop a model whose signer is no longer trusted, or that left production with no version in
    its place, then load the production version when it is not what is served. False when
    nothing was loaded: nothing changed, another load is still running (the start-up one), the
    ``gate`` holds a failed version back, or the load failed (the old model keeps serving;
    ``holder.last_error`` says why)."""
    if holder.loading:
        return False
    stop_if_signer_untrusted(holder, settings, database)
    wanted = production_version(settings, database)
    current = holder.current
    if wanted is None:
        # None in production (the served one archived by an approved promotion, nothing in its
        # place): an archived model makes no more predictions; the backend runs in fallback
        # mode until a version is promoted. A registry that cannot be read raises instead.
        if current is not None and current.meta.source == "registry":
            meta = current.meta
            message = (
                f"{meta.name} {meta.version} is no longer in production and no version of it "
                "is: promote one to serve again"
            )
            _unload(holder, settings, database, code="not_in_production", message=message)
        return False
    if current is not None and current.meta.version == wanted:
        return False
    if gate is not None and not gate.allows(wanted, clock()):
        return False
    ok = holder.load(signed_loader(settings, database))
    if gate is not None:
        gate.record(wanted, ok, clock())
    return ok


async def watch_registry(holder: ModelHolder, settings: Settings, database: Database) -> None:
    """Reload whenever the production version differs from what is served."""
    gate = RetryGate(base_s=settings.model_watch_interval_s)
    failures = JobFailures(log, "model_watch_failed")
    while True:
        await asyncio.sleep(settings.model_watch_interval_s)
        try:
            await asyncio.to_thread(reload_if_changed, holder, settings, database, gate=gate)
        except Exception as exc:  # the watcher must outlive any one failure
            failures.failed(exc)
        else:
            failures.succeeded()
