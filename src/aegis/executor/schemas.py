"""The executor's wire shapes: an action request and its result; a log request and its lines.

The action result carries everything the audit record of an action needs: who asked, what was asked,
what the target looked like before and after, the field-level diff and the Kubernetes API
server's ``Audit-Id`` values that tie it to the cluster's own audit log.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aegis.core.types import PRINTABLE
from aegis.executor.errors import InvalidActionRequest

ACTIONS_PATH = "/v1/actions"  # the one endpoint that acts
LOGS_PATH = "/v1/logs"  # read-only: a workload's recent log lines, for the AI engine

ActionType = Literal["restart_deployment", "scale_deployment", "delete_pod", "rollback_deployment"]
ACTION_TYPES: tuple[str, ...] = get_args(ActionType)
BackendName = Literal["kubernetes", "dry-run", "local"]
BACKEND_NAMES: tuple[str, ...] = get_args(BackendName)

# As the API server checks them (apimachinery's IsDNS1123Label, IsDNS1123Subdomain): a namespace
# is a DNS-1123 label, at most 63 characters; a deployment's or a pod's name a DNS-1123 subdomain,
# labels joined by single dots ("a..b", "a.-b" are not), at most 253 characters in all (with no
# limit per label). The pydantic fields take _SUBDOMAIN (its regex engine has no look-ahead) with
# max_length; NAME_PATTERN carries the length too, for a plain ``re`` check of a label value.
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
NAME_MAX_LENGTH = 253
_SUBDOMAIN = rf"^{_LABEL}(\.{_LABEL})*$"
NAME_PATTERN = rf"^(?=.{{1,{NAME_MAX_LENGTH}}}$){_LABEL}(\.{_LABEL})*$"
_PARAMS: dict[str, dict[str, bool]] = {  # action -> {param: required}
    "restart_deployment": {},
    "scale_deployment": {"replicas": True},
    "delete_pod": {},
    "rollback_deployment": {"revision": False},
}


class ExecutorActionRequest(BaseModel):
    """``POST /v1/actions`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action_id: str = Field(min_length=1, max_length=128, pattern=PRINTABLE)
    action: ActionType
    namespace: str = Field(pattern=NAMESPACE_PATTERN, max_length=63)
    name: str = Field(pattern=_SUBDOMAIN, max_length=NAME_MAX_LENGTH)
    params: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str = Field(min_length=1, max_length=200, pattern=PRINTABLE)
    dry_run: bool = False
    requested_by: str = Field(min_length=1, max_length=256, pattern=PRINTABLE)

    @model_validator(mode="after")
    def _check_params(self) -> ExecutorActionRequest:
        allowed = _PARAMS[self.action]
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            raise ValueError(f"params: {self.action} does not take {', '.join(unknown)}")
        for param, required in allowed.items():
            if param not in self.params:
                if required:
                    raise ValueError(f"params: {self.action} needs params.{param}")
                continue
            value = self.params[param]
            minimum = 0 if param == "replicas" else 1
            if type(value) is not int or value < minimum:  # bool is not a count
                raise ValueError(f"params.{param} must be an integer >= {minimum}")
        return self

    @property
    def replicas(self) -> int | None:
        value = self.params.get("replicas")
        return value if isinstance(value, int) else None

    @property
    def revision(self) -> int | None:
        value = self.params.get("revision")
        return value if isinstance(value, int) else None

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: equal for equal requests, whatever the byte layout."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class DiffEntry(BaseModel):
    path: str
    before: Any = None
    after: Any = None


class ExecutorActionResult(BaseModel):
    """``POST /v1/actions`` answer (200) for an action that ran (or was dry-run), either way."""

    action_id: str
    status: Literal["succeeded", "failed"]
    dry_run: bool
    diff: list[DiffEntry] = Field(default_factory=list)
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    kube_audit_ids: list[str] = Field(default_factory=list)
    error: str | None = None
    backend: BackendName
    # What was asked and by whom, so the result alone is enough for the audit record.
    action: ActionType
    namespace: str
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str
    requested_by: str
    request_id: str | None = None
    started_at: datetime
    finished_at: datetime
    # True when this is the stored result of an earlier request with the same idempotency key.
    idempotent_replay: bool = False


class ExecutorLogsRequest(BaseModel):
    """``POST /v1/logs`` body: the recent lines of one pod, or of a deployment's pods."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(pattern=NAMESPACE_PATTERN, max_length=63)
    deployment: str | None = Field(None, pattern=_SUBDOMAIN, max_length=NAME_MAX_LENGTH)
    pod: str | None = Field(None, pattern=_SUBDOMAIN, max_length=NAME_MAX_LENGTH)
    since_s: int = Field(3600, ge=1, le=86400)
    max_lines: int = Field(500, ge=1, le=5000)
    requested_by: str = Field(min_length=1, max_length=256, pattern=PRINTABLE)

    @model_validator(mode="after")
    def _one_target(self) -> ExecutorLogsRequest:
        if (self.deployment is None) == (self.pod is None):
            raise ValueError("name exactly one of deployment and pod")
        return self


class LogLine(BaseModel):
    timestamp: float | None = None  # epoch seconds, as the container runtime stamped it
    message: str


class ExecutorLogsResult(BaseModel):
    """``POST /v1/logs`` answer: the lines in time order, and the pods they came from."""

    pods: list[str]
    lines: list[LogLine]
    backend: BackendName


def parse_request(body: bytes) -> ExecutorActionRequest:
    """Validate a raw body; any problem is one :class:`InvalidActionRequest` line (422)."""
    try:
        return ExecutorActionRequest.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidActionRequest(_one_line(exc)) from None


def parse_logs_request(body: bytes) -> ExecutorLogsRequest:
    """Validate a raw ``/v1/logs`` body (422 with one line when it is not valid)."""
    try:
        return ExecutorLogsRequest.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidActionRequest(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    if first.get("type") == "literal_error" and where == "action":
        return (
            f"unknown action type {first.get('input')!r}; expected one of {', '.join(ACTION_TYPES)}"
        )
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if first.get("type") == "json_invalid":
        return "body is not valid JSON"
    return f"{where}: {message}" if where else message
