"""The ``dry-run`` backend: plans every action against a real target and changes nothing.

It wraps the backend the mode would otherwise use (``local`` in embedded mode, ``kubernetes``
in production) and forces ``dry_run`` on every request, so the before state and the diff are
real while the target stays untouched (on Kubernetes: a server-side ``dryRun=All``). Every
planned action is appended to a JSON-lines journal when one is given: the record of what the
executor would have done, for shadow-mode runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from aegis.executor.backends.protocol import ActionOutcome, ExecutorBackend, PodLogs
from aegis.executor.schemas import ExecutorActionRequest, ExecutorLogsRequest


class DryRunBackend:
    name = "dry-run"

    def __init__(self, target: ExecutorBackend, *, journal: Path | None = None) -> None:
        self.target = target
        self.journal = journal

    def execute(self, request: ExecutorActionRequest) -> ActionOutcome:
        planned = request.model_copy(update={"dry_run": True})
        outcome = self.target.execute(planned)
        outcome.dry_run = True
        if self.journal is not None:
            _append(self.journal, planned, outcome)
        return outcome

    def logs(self, request: ExecutorLogsRequest) -> PodLogs:
        """Reading changes nothing: the target's own logs."""
        return self.target.logs(request)

    def close(self) -> None:
        self.target.close()


def _append(journal: Path, request: ExecutorActionRequest, outcome: ActionOutcome) -> None:
    journal.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = json.dumps(
        {
            "request": request.model_dump(mode="json"),
            "before": outcome.before,
            "after": outcome.after,
            "kube_audit_ids": outcome.audit_ids,
        },
        sort_keys=True,
    )
    fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(line + "\n")
