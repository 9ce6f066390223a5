"""Refused callers of the engine and the executor, audited without letting a flood fill the log.

The backend audits each authentication failure as it happens (its logins are rate limited
first). The engine (a bad ``X-API-Key``) and the executor (a bad or replayed signature, an
action or namespace outside its own allow-list) have no such limit in front of them, and a
caller that retries in a tight loop would otherwise turn every refused request into a database
transaction on the audit chain. :class:`RefusalAuditor` records the **first** refusal of each
kind (event type, error code, caller address, resource, actor) at once, then folds the
repeats: the next record of that kind, at least :data:`WINDOW_S` later, carries ``repeats``
(how many were folded since the last record) and ``first_folded_at``.
:meth:`RefusalAuditor.flush` writes every pending count (the services call it on shutdown), so
a count is lost only if the process is killed; the services' metrics
(``aegis_auth_failures_total``, ``aegis_executor_actions_total``) count every refusal as well.

At most :data:`MAX_KINDS` kinds are tracked (kinds whose window has passed with nothing folded
make room first); beyond that, new callers share the address ``other``, so memory stays bounded
whatever the number of addresses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aegis.audit.journal import AuditWriter

WINDOW_S = 60.0
MAX_KINDS = 1024
OTHER = "other"


Key = tuple[str, str, str, str, str]  # event type, code, address, resource, actor


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused request, as the service saw it."""

    event_type: str  # "authentication.failed" or "access.denied"
    code: str  # the error's stable code
    reason: str  # its one-line message (never a secret)
    ip: str
    resource: str  # "POST /v1/actions"
    actor: str = "anonymous"


@dataclass
class _Kind:
    last_recorded: float  # monotonic
    folded: int = 0  # refusals since, not yet recorded
    first_folded_at: float | None = None  # wall clock
    latest: Refusal | None = None  # the last folded one: what a flush record describes


class RefusalAuditor:
    """Audit refusals of ``service`` through ``writer``, one record per kind per window.

    Thread-safe; the write itself happens outside the lock (it may take a database round trip
    or, when the database is down, a journal fsync)."""

    def __init__(
        self,
        writer: AuditWriter,
        *,
        service: str,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.writer = writer
        self.service = service
        self.window_s = window_s
        self.clock = clock
        self.wall_clock = wall_clock
        self._kinds: dict[Key, _Kind] = {}
        self._lock = threading.Lock()

    def refused(self, refusal: Refusal) -> bool:
        """Record ``refusal`` now, or fold it into the next record. True when recorded."""
        now = self.clock()
        with self._lock:
            key = self._key(refusal, now)
            kind = self._kinds.get(key)
            if kind is not None and now - kind.last_recorded < self.window_s:
                if kind.folded == 0:
                    kind.first_folded_at = self.wall_clock()
                kind.folded += 1
                kind.latest = refusal
                return False
            self._kinds[key] = _Kind(last_recorded=now)
        folded = kind.folded if kind is not None else 0
        first = kind.first_folded_at if kind is not None else None
        self._write(refusal, ip=key[2], repeats=folded, first_folded_at=first)
        return True

    def flush(self) -> int:
        """Write a record for every kind with folded refusals; how many records were written."""
        with self._lock:
            pending = [(key, kind) for key, kind in self._kinds.items() if kind.folded]
            for key, _ in pending:
                self._kinds[key] = _Kind(last_recorded=self.clock())
        for key, kind in pending:
            assert kind.latest is not None
            self._write(
                kind.latest,
                ip=key[2],
                repeats=kind.folded,
                first_folded_at=kind.first_folded_at,
                flushed=True,
            )
        return len(pending)

    def _key(self, refusal: Refusal, now: float) -> Key:
        """The kind ``refusal`` counts under: its own, or ``other`` once the table is full of
        kinds that still hold something (a kind past its window with nothing folded is the same
        as no entry, so those make room first)."""
        key = (refusal.event_type, refusal.code, refusal.ip, refusal.resource, refusal.actor)
        if key in self._kinds or len(self._kinds) < MAX_KINDS:
            return key
        for old in [k for k, v in self._kinds.items() if not v.folded]:
            if now - self._kinds[old].last_recorded >= self.window_s:
                del self._kinds[old]
        if len(self._kinds) < MAX_KINDS:
            return key
        return (refusal.event_type, refusal.code, OTHER, "", "")

    def _write(
        self,
        refusal: Refusal,
        *,
        ip: str,
        repeats: int,
        first_folded_at: float | None,
        flushed: bool = False,
    ) -> None:
        """One record: ``refusal`` and the ``repeats`` folded before it, or (``flushed``) only
        the folded ones, ``refusal`` being the last of them."""
        data: dict[str, object] = {
            "service": self.service,
            "ip": ip,
            "code": refusal.code,
            "reason": refusal.reason,
            "repeats": repeats,
        }
        if repeats and first_folded_at is not None:
            data["first_folded_at"] = datetime.fromtimestamp(first_folded_at, UTC).isoformat()
        if flushed:
            data["flushed"] = True
        self.writer.record(
            category="auth",
            event_type=refusal.event_type,
            actor=refusal.actor,
            resource=refusal.resource,
            outcome="denied",
            data=data,
        )
