"""The contract every executor backend meets, and the state vocabulary they share.

A backend turns one validated :class:`ExecutorActionRequest` into an :class:`ActionOutcome`: the
target's state before and after (for a dry run: as it would be after) and the API server's audit
ids. It raises :class:`aegis.executor.errors.ActionFailed` when it cannot complete the action.
It also reads a workload's recent log lines (:class:`PodLogs`), which changes nothing.
Allow-lists, bounds, signatures and idempotency are the service's job, not the backend's.

State dictionaries use the same keys on every backend:

* Deployment: ``replicas`` (int), ``revision`` (int or None), ``restarted_at`` (str or None),
  ``images`` ({container: image}); a rollback adds ``rollback_to_revision`` to ``after``.
* Pod: ``phase``, ``uid``, ``owner`` and ``deleted`` (bool).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from aegis.executor.errors import ActionFailed
from aegis.executor.schemas import DiffEntry, ExecutorActionRequest, ExecutorLogsRequest

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"

STATE_PATHS = {
    "replicas": "spec.replicas",
    "revision": f"metadata.annotations[{REVISION_ANNOTATION}]",
    "restarted_at": f"spec.template.metadata.annotations[{RESTARTED_AT_ANNOTATION}]",
    "phase": "status.phase",
}


@dataclass
class ActionOutcome:
    before: dict[str, Any]
    after: dict[str, Any]
    dry_run: bool
    audit_ids: list[str] = field(default_factory=list)


@dataclass
class PodLogs:
    """Recent log lines of a workload's pods, oldest first: (epoch seconds or None, text)."""

    pods: list[str]
    lines: list[tuple[float | None, str]]


class ExecutorBackend(Protocol):
    """Something that can act on (or plan against) deployments and pods, and read their logs."""

    @property
    def name(self) -> str: ...

    def execute(self, request: ExecutorActionRequest) -> ActionOutcome: ...

    def logs(self, request: ExecutorLogsRequest) -> PodLogs:
        """The target's recent lines; raises :class:`LogsUnavailable` when they cannot be read."""
        ...

    def close(self) -> None: ...


def diff_states(before: dict[str, Any], after: dict[str, Any]) -> list[DiffEntry]:
    """Field-level changes between two state dictionaries (keys present in both)."""
    entries: list[DiffEntry] = []
    for key, old in before.items():
        if key not in after:
            continue
        new = after[key]
        if key == "images" and isinstance(old, dict) and isinstance(new, dict):
            for container in sorted(set(old) | set(new)):
                if old.get(container) != new.get(container):
                    entries.append(
                        DiffEntry(
                            path=f"spec.template.spec.containers[{container}].image",
                            before=old.get(container),
                            after=new.get(container),
                        )
                    )
            continue
        if old != new:
            entries.append(DiffEntry(path=STATE_PATHS.get(key, key), before=old, after=new))
    return entries


def parse_revision(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def rollback_target(
    revisions: list[int], current: int | None, wanted: int | None, what: str, before: dict[str, Any]
) -> int:
    """Which revision a rollback goes to: ``wanted``, or the newest one before ``current``."""
    if wanted is not None:
        if wanted == current:
            raise ActionFailed(f"deployment {what} is already at revision {wanted}", before=before)
        if wanted not in revisions:
            raise ActionFailed(f"deployment {what} has no revision {wanted}", before=before)
        return wanted
    older = [r for r in revisions if current is None or r < current]
    if not older:
        raise ActionFailed(f"deployment {what} has no previous revision", before=before)
    return max(older)
