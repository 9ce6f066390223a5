"""What the engine serves: the model holder (atomic hot swap) and the batcher around it.

:class:`ModelHolder` keeps the model being served as one immutable :class:`Serving` record behind
one reference. :meth:`ModelHolder.swap` prepares the new model first (compiles it, checks the
lockstep kernel) and then replaces the reference in one assignment: a batch takes the reference
once when it starts, so in-flight batches finish on the model they started with and the next
batch uses the new one; nothing is dropped or mixed. :meth:`ModelHolder.load` runs a loader
(the registry's verify-and-load) and, if it raises, records the error and keeps serving the
previous model. With no model at all, ``/predict`` and ``/infer`` answer 503 ``model_not_loaded``
and ``/health`` says why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aegis.core import metrics
from aegis.core.config import Settings
from aegis.core.errors import AegisError
from aegis.core.logging import get_logger
from aegis.engine import scoring
from aegis.engine.batching import DynamicBatcher
from aegis.engine.errors import ModelNotLoaded
from aegis.engine.model import EngineModel
from aegis.engine.recommender import OutcomeStats

log = get_logger(__name__)
Item = tuple[scoring.Admitted, OutcomeStats]
Loader = Callable[[], "tuple[EngineModel, ModelMeta]"]
NO_MODEL_YET = "no model has been loaded yet"


@dataclass(frozen=True)
class ModelMeta:
    """Where a model came from (the registry fills ``digest`` and ``signer`` after verifying)."""

    name: str
    version: str
    digest: str | None = None
    signer: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Serving:
    prepared: scoring.PreparedModel
    meta: ModelMeta
    loaded_at: float  # wall clock, seconds since the epoch


class ModelHolder:
    """The model being served, swapped atomically; the last load error; why none is loaded."""

    def __init__(self) -> None:
        self._current: Serving | None = None
        self._lock = threading.Lock()
        self._loading = threading.Lock()  # one load at a time: start-up and the watcher
        self.last_error: str | None = None
        self.not_loaded_reason: str = NO_MODEL_YET

    @property
    def current(self) -> Serving | None:
        return self._current

    def require(self) -> Serving:
        serving = self._current
        if serving is None:
            raise ModelNotLoaded(f"no model is loaded: {self.not_loaded_reason}")
        return serving

    def swap(
        self, new_model: EngineModel | scoring.PreparedModel, meta: ModelMeta | None = None
    ) -> Serving | None:
        """Serve ``new_model`` from the next batch on; returns what was served before."""
        prepared = (
            new_model
            if isinstance(new_model, scoring.PreparedModel)
            else scoring.prepare(new_model)
        )
        model = prepared.model
        meta = meta or ModelMeta(name=model.name, version=model.version, digest=model.digest)
        serving = Serving(prepared, meta, time.time())
        with self._lock:
            old, self._current = self._current, serving
            self.last_error = None
            self.not_loaded_reason = ""
        if old is not None and (old.meta.name, old.meta.version) != (meta.name, meta.version):
            metrics.MODEL_LOADED.labels(old.meta.name, old.meta.version).set(0)
        metrics.MODEL_LOADED.labels(meta.name, meta.version).set(1)
        log.info("model_swapped", name=meta.name, version=meta.version, digest=meta.digest)
        return old

    def fail(self, reason: str) -> None:
        """Record a failed load or verification; the model being served (if any) stays."""
        with self._lock:
            self.last_error = reason
            if self._current is None:
                self.not_loaded_reason = reason
        log.warning("model_load_failed", reason=reason, still_serving=self._current is not None)

    def clear(self, reason: str) -> None:
        """Stop serving (e.g. the signing key was revoked): 503 until the next swap."""
        with self._lock:
            old, self._current = self._current, None
            self.not_loaded_reason = reason
        if old is not None:
            metrics.MODEL_LOADED.labels(old.meta.name, old.meta.version).set(0)

    @property
    def loading(self) -> bool:
        """Whether a load is running now (the registry watcher waits for the next check)."""
        return self._loading.locked()

    def load(self, loader: Loader) -> bool:
        """Run ``loader`` and swap in what it returns; on failure keep the old model. Loads run
        one at a time, so two never fetch, verify and extract into the cache together."""
        with self._loading:
            try:
                model, meta = loader()
                self.swap(model, meta)
            except AegisError as exc:
                self.fail(exc.message)
                return False
            except Exception as exc:
                log.error("model_loader_crashed", exc_info=exc)
                self.fail(f"model loading failed: {type(exc).__name__}")
                return False
            return True


class EngineState:
    """The engine app's state: settings, model holder, batcher."""

    def __init__(self, settings: Settings, holder: ModelHolder | None = None) -> None:
        self.settings = settings
        self.holder = holder or ModelHolder()
        self.batcher: DynamicBatcher[Item, scoring.Result] = DynamicBatcher(
            self._run,
            max_size=settings.batch_max_size,
            max_latency_ms=settings.batch_max_latency_ms,
            queue_limit=settings.batch_queue_limit,
        )

    def _run(self, items: list[Item]) -> Sequence[scoring.Result]:
        serving = self.holder.current  # one model for the whole batch
        if serving is None:
            error = ModelNotLoaded(f"no model is loaded: {self.holder.not_loaded_reason}")
            return [error] * len(items)
        return scoring.score_batch(serving.prepared, items)
