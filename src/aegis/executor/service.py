"""What the executor does with one ``POST /v1/actions``, in the order it does it.

1. kill switch (``EXECUTOR_ENABLED=false`` -> 503, nothing else is looked at);
2. signature, timestamp window and nonce (401; 503 ``nonce_store_reset`` when the nonce store
   lost its memory after the request was signed, see :mod:`aegis.executor.nonces`);
3. body validation (422: unknown action type, bad params);
4. allow-list of actions and namespaces, replica bounds (403, 422) — checked here even though
   the backend's policy engine already allowed the action (defence in depth);
5. idempotency: the key is claimed in the database *before* acting, so a key is acted on at
   most once; the same key with the same body returns the stored result, with another body 409;
6. the backend acts (or dry-runs); the result, success or failure, is stored under the key.

Every outcome increments ``aegis_executor_actions_total{action, outcome}`` with outcome
``succeeded``, ``failed``, ``rejected`` or ``replayed`` (a stored result returned again).

``POST /v1/logs`` (:func:`handle_logs`) reads a workload's recent log lines for the AI engine:
signature, timestamp and nonce as above, then the namespace allow-list; it changes nothing, so
the kill switch, which stops actions, does not stop it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from aegis.audit.refusals import Refusal, RefusalAuditor
from aegis.core import metrics
from aegis.core.config import Settings
from aegis.core.errors import ConfigError
from aegis.core.logging import get_logger, request_id_var
from aegis.database.core import Database
from aegis.executor.backends.protocol import ActionOutcome, ExecutorBackend, diff_states
from aegis.executor.errors import (
    ActionFailed,
    ActionNotAllowed,
    ExecutorDisabled,
    ExecutorError,
    IdempotencyConflict,
    IdempotencyInProgress,
    IdempotencyStoreUnavailable,
    NamespaceNotAllowed,
    NonceReplayed,
    NonceStoreReset,
    ReplicasOutOfBounds,
    SignatureRejected,
)
from aegis.executor.models import ExecutorAction
from aegis.executor.nonces import NonceStore
from aegis.executor.schemas import (
    ACTION_TYPES,
    ACTIONS_PATH,
    LOGS_PATH,
    ExecutorActionRequest,
    ExecutorActionResult,
    ExecutorLogsResult,
    LogLine,
    parse_logs_request,
    parse_request,
)
from aegis.executor.signing import MAX_CLOCK_SKEW_S, verify_request

log = get_logger(__name__)

# A nonce must outlive every timestamp that could still be accepted: ±skew, plus a margin.
NONCE_TTL_S = 2 * MAX_CLOCK_SKEW_S + 10
OUTCOMES = ("succeeded", "failed", "rejected", "replayed")


def initialise_metrics() -> None:
    """Create every known series at 0, so the first failure is visible to ``increase()``."""
    for action in ACTION_TYPES:
        for outcome in OUTCOMES:
            metrics.EXECUTOR_ACTIONS.labels(action, outcome)
    metrics.EXECUTOR_ACTIONS.labels("unknown", "rejected")


@dataclass(frozen=True)
class ExecutorPolicy:
    """The executor's own allow-list and replica bounds (``EXECUTOR_ALLOWED_*``, ``*_REPLICAS``)."""

    namespaces: tuple[str, ...]
    actions: frozenset[str]
    min_replicas: int
    max_replicas: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ExecutorPolicy:
        actions = settings.effective_executor_allowed_actions
        unknown = sorted(set(actions) - set(ACTION_TYPES))
        if unknown:
            raise ConfigError(
                f"EXECUTOR_ALLOWED_ACTIONS names unknown actions {', '.join(unknown)}; "
                f"known: {', '.join(ACTION_TYPES)}"
            )
        if settings.executor_min_replicas > settings.executor_max_replicas:
            raise ConfigError("EXECUTOR_MIN_REPLICAS is greater than EXECUTOR_MAX_REPLICAS")
        return cls(
            namespaces=tuple(settings.effective_executor_allowed_namespaces),
            actions=frozenset(actions),
            min_replicas=settings.executor_min_replicas,
            max_replicas=settings.executor_max_replicas,
        )

    def check(self, request: ExecutorActionRequest) -> None:
        """Raise 403 for what is not allowed here, 422 for a replica count out of bounds."""
        if request.action not in self.actions:
            raise ActionNotAllowed(
                f"action {request.action} is not allowed by this executor "
                "(EXECUTOR_ALLOWED_ACTIONS)"
            )
        self.check_namespace(request.namespace)
        replicas = request.replicas
        if (
            request.action == "scale_deployment"
            and replicas is not None
            and not (self.min_replicas <= replicas <= self.max_replicas)
        ):
            raise ReplicasOutOfBounds(
                f"replicas {replicas} is outside the allowed range "
                f"{self.min_replicas}..{self.max_replicas}"
            )

    def check_namespace(self, namespace: str) -> None:
        if not any(fnmatchcase(namespace, pattern) for pattern in self.namespaces):
            raise NamespaceNotAllowed(
                f"namespace {namespace!r} is not in the executor's allow-list "
                "(EXECUTOR_ALLOWED_NAMESPACES)"
            )


@dataclass
class Executor:
    """Everything one executor process needs to handle actions."""

    settings: Settings
    database: Database
    backend: ExecutorBackend
    nonces: NonceStore
    policy: ExecutorPolicy
    refusals: RefusalAuditor
    clock: Callable[[], float] = time.time

    def secrets(self) -> list[str | None]:
        previous = self.settings.executor_hmac_secret_previous
        return [
            self.settings.secret("executor_hmac_secret"),
            previous.get_secret_value() if previous is not None else None,
        ]

    def close(self) -> None:
        try:
            self.refusals.flush()
        finally:
            self.backend.close()
            self.nonces.close()


def handle_action(
    executor: Executor,
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    peer: str = "unknown",
) -> ExecutorActionResult:
    """Authenticate, validate, authorise and run one action request (see the module doc)."""
    label = "unknown"
    requester = "anonymous"
    try:
        if not executor.settings.executor_enabled:
            raise ExecutorDisabled("executor disabled")
        _verified(executor, method=method, path=path, headers=headers, body=body)
        request = parse_request(body)
        label, requester = request.action, request.requested_by
        executor.policy.check(request)
        result = run_once(executor, request)
    except ExecutorError as exc:
        metrics.EXECUTOR_ACTIONS.labels(label, "rejected").inc()
        log.warning("executor_rejected", action=label, code=exc.code, reason=exc.message)
        _refused(executor, exc, peer=peer, resource=f"{method} {ACTIONS_PATH}", actor=requester)
        raise
    outcome = "replayed" if result.idempotent_replay else result.status
    metrics.EXECUTOR_ACTIONS.labels(label, outcome).inc()
    return result


def _verified(
    executor: Executor, *, method: str, path: str, headers: Mapping[str, str], body: bytes
) -> None:
    """Signature, timestamp window and a fresh nonce, or :class:`SignatureRejected` (401)."""
    verified = verify_request(
        secrets=executor.secrets(),
        method=method,
        path=path,
        headers=headers,
        body=body,
        now=executor.clock(),
    )
    claimed = executor.nonces.claim(
        verified.nonce, ttl_s=NONCE_TTL_S, signed_at=verified.timestamp
    )  # NonceStoreReset (503) when the store may have forgotten this nonce
    if not claimed:
        raise NonceReplayed("nonce already used (replayed request)")


def handle_logs(
    executor: Executor,
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    peer: str = "unknown",
) -> ExecutorLogsResult:
    """Authenticate, validate and authorise one log request, then read the lines."""
    requester = "anonymous"
    try:
        _verified(executor, method=method, path=path, headers=headers, body=body)
        request = parse_logs_request(body)
        requester = request.requested_by
        executor.policy.check_namespace(request.namespace)
        found = executor.backend.logs(request)
    except ExecutorError as exc:
        log.warning("executor_logs_refused", code=exc.code, reason=exc.message)
        _refused(executor, exc, peer=peer, resource=f"{method} {LOGS_PATH}", actor=requester)
        raise
    return ExecutorLogsResult(
        pods=found.pods,
        lines=[LogLine(timestamp=at, message=text) for at, text in found.lines],
        backend=executor.backend.name,
    )


def _refused(
    executor: Executor, exc: ExecutorError, *, peer: str, resource: str, actor: str
) -> None:
    """A bad signature (``authentication.failed``, also counted in
    ``aegis_auth_failures_total``) or a signed request outside this executor's own allow-list or
    bounds (``access.denied``, by whoever the body names) is audited, folded per caller and code
    (:mod:`aegis.audit.refusals`). So is a signed request refused because the nonce store lost
    its memory after it was signed (``authentication.failed``, ``nonce_store_reset``): it may be
    a replay, and its one-time use could not be checked. The rest (kill switch, malformed body,
    idempotency) is the backend's to audit: it sent them and gets the answer."""
    if isinstance(exc, (SignatureRejected, NonceStoreReset)):
        metrics.AUTH_FAILURES.labels(f"executor_{exc.code}").inc()
        event_type, actor = "authentication.failed", "anonymous"
    elif isinstance(exc, (ActionNotAllowed, NamespaceNotAllowed, ReplicasOutOfBounds)):
        event_type = "access.denied"
    else:
        return
    executor.refusals.refused(
        Refusal(event_type, exc.code, exc.message, ip=peer, resource=resource, actor=actor)
    )


def run_once(executor: Executor, request: ExecutorActionRequest) -> ExecutorActionResult:
    """Act on ``request`` at most once per idempotency key."""
    digest = request.digest()
    try:
        # Committed before acting: a crash after this point leaves the key in_progress, never
        # free, so the action cannot run twice.
        with executor.database.unit_of_work() as session:
            stored = claim(session=session, request=request, digest=digest)
    except SQLAlchemyError:
        raise IdempotencyStoreUnavailable(
            "executor database unreachable; refusing to execute"
        ) from None
    if stored is not None:
        return stored
    result = _act(executor, request)
    try:
        with executor.database.unit_of_work() as session:
            complete(session=session, result=result)
    except SQLAlchemyError:
        # The action happened; the caller still gets its result to audit.
        log.error("executor_result_not_stored", action_id=request.action_id, exc_info=True)
    return result


def claim(
    *, session: Session, request: ExecutorActionRequest, digest: str
) -> ExecutorActionResult | None:
    """Take the idempotency key (None) or return the stored result of the earlier request.

    Raises 409 when the key belongs to a different request or to one still in progress.
    """
    row = ExecutorAction(
        idempotency_key=request.idempotency_key,
        request_digest=digest,
        action_id=request.action_id,
        action=request.action,
        namespace=request.namespace,
        name=request.name,
        requested_by=request.requested_by,
        dry_run=request.dry_run,
        state="in_progress",
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = session.execute(
            select(ExecutorAction).where(ExecutorAction.idempotency_key == request.idempotency_key)
        ).scalar_one()
        return _earlier_result(existing, digest)
    return None


def _earlier_result(existing: ExecutorAction, digest: str) -> ExecutorActionResult:
    if existing.request_digest != digest:
        raise IdempotencyConflict(
            "idempotency key already used for a different request; nothing was executed"
        )
    if existing.state != "done" or existing.result is None:
        raise IdempotencyInProgress(
            "an action with this idempotency key is in progress or was interrupted; "
            "check the target, then retry with a new key"
        )
    stored = ExecutorActionResult.model_validate_json(existing.result)
    return stored.model_copy(update={"idempotent_replay": True})


def complete(*, session: Session, result: ExecutorActionResult) -> None:
    row = session.get(ExecutorAction, result.idempotency_key)
    if row is None:  # the claim was committed before acting; this would be a bug
        raise RuntimeError(f"idempotency key for action {result.action_id} vanished")
    row.state = "done"
    row.status = result.status
    row.result = result.model_dump_json()
    row.finished_at = result.finished_at


def _act(executor: Executor, request: ExecutorActionRequest) -> ExecutorActionResult:
    started = datetime.now(UTC)
    error: str | None = None
    try:
        outcome = executor.backend.execute(request)
    except ActionFailed as exc:
        error = exc.message
        outcome = ActionOutcome(
            before=exc.before, after={}, dry_run=request.dry_run, audit_ids=exc.audit_ids
        )
    except Exception as exc:  # a bug or an unexpected client error: recorded, never retried
        log.error("executor_backend_error", action_id=request.action_id, exc_info=True)
        error = f"backend error ({type(exc).__name__}); see the executor log"
        outcome = ActionOutcome(before={}, after={}, dry_run=request.dry_run)
    result = ExecutorActionResult(
        action_id=request.action_id,
        status="failed" if error else "succeeded",
        dry_run=outcome.dry_run,
        diff=diff_states(outcome.before, outcome.after),
        before=outcome.before,
        after=outcome.after,
        kube_audit_ids=outcome.audit_ids,
        error=error,
        backend=executor.backend.name,
        action=request.action,
        namespace=request.namespace,
        name=request.name,
        params=request.params,
        idempotency_key=request.idempotency_key,
        requested_by=request.requested_by,
        request_id=request_id_var.get(),
        started_at=started,
        finished_at=datetime.now(UTC),
    )
    log.info(
        "executor_action",
        action_id=result.action_id,
        action=result.action,
        namespace=result.namespace,
        name=result.name,
        status=result.status,
        dry_run=result.dry_run,
        backend=result.backend,
        requested_by=result.requested_by,
        error=result.error,
        kube_audit_ids=result.kube_audit_ids,
    )
    return result
