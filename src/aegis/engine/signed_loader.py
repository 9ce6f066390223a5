"""The engine's model source: the signed, registry-promoted model, and nothing else.

``signed_loader(settings, database)`` returns the loader the engine's model holder runs at
start-up and on every reload. It goes through
:func:`aegis.registry.loader.fetch_and_prepare_model_for_load` (signature, digest, safe
extraction — fail closed), then reads the data-only model directory. A failed load raises, so
the holder keeps serving the model it had and ``/health`` shows the reason.

``watch_registry`` reloads when the registry's production version changes (hot swap: in-flight
batches finish on the old model; a failed verification leaves the old one serving).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aegis.core.config import Settings
from aegis.core.logging import get_logger
from aegis.database.core import Database
from aegis.engine.model import EngineModel, load_model_dir
from aegis.engine.state import ModelHolder, ModelMeta
from aegis.registry import catalog
from aegis.registry.loader import fetch_and_prepare_model_for_load

log = get_logger(__name__)
WATCH_EVERY_S = 15.0


def signed_loader(
    settings: Settings, database: Database
) -> Callable[[], tuple[EngineModel, ModelMeta]]:
    def load() -> tuple[EngineModel, ModelMeta]:
        prepared = fetch_and_prepare_model_for_load(
            settings.model_name, settings=settings, database=database
        )
        model = load_model_dir(prepared.path)
        return model, ModelMeta(
            name=prepared.name,
            version=prepared.version,
            digest=f"sha256:{prepared.digest}",
            signer=prepared.key_id,
            source="registry",
        )

    return load


def production_version(settings: Settings, database: Database) -> str | None:
    with database.unit_of_work() as session:
        try:
            return catalog.production(session=session, name=settings.model_name).version
        except catalog.ModelNotFound:
            return None


def reload_if_changed(holder: ModelHolder, settings: Settings, database: Database) -> bool:
    """Load the production version when it is not what is served. False when nothing changed
    or the load failed (the old model keeps serving; ``holder.last_error`` says why)."""
    wanted = production_version(settings, database)
    current = holder.current
    if wanted is None or (current is not None and current.meta.version == wanted):
        return False
    return holder.load(signed_loader(settings, database))


async def watch_registry(holder: ModelHolder, settings: Settings, database: Database) -> None:
    """Reload whenever the production version differs from what is served."""
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        try:
            await asyncio.to_thread(reload_if_changed, holder, settings, database)
        except Exception as exc:  # the watcher must outlive any one failure
            log.warning("model_watch_failed", error=type(exc).__name__)
