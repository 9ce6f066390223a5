"""What a policy set is asked (:class:`EvaluationRequest`) and answers (:class:`Decision`).

The wire shape, exactly as the API takes it::

    {"subject": "role:operator" | ["user:alice", "role:operator", ...],
     "action": "restart_deployment",
     "resource": {"namespace": "staging-a", "name": "web", "labels": {...}?},
     "context": {"confidence"?, "severity"?, "replicas"?, "recent_actions"?, "now"?}}

and the answer ``{"decision": "allow"|"deny"|"require_approval", "policies": [{"id", "version"}],
"reason"}`` (:meth:`Decision.as_dict`). A context field left out is *unknown*; how unknown inputs
are resolved (always towards the more restrictive outcome) is in ``docs/policy.md``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, NamedTuple, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from aegis.policy.document import (
    ACTIONS_SETTING_REPLICAS,
    REQUEST_SUBJECT_PATTERN,
    Action,
    Effect,
    LabelKey,
    LabelValue,
    NamespaceStr,
    NameStr,
    PolicyRef,
    Severity,
)

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
MAX_SUBJECTS = 64
MAX_RECENT_ACTIONS = 10_000
_REQUEST_SUBJECT = re.compile(REQUEST_SUBJECT_PATTERN)


def _subjects(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ValueError("must be a subject or a non-empty list of subjects")
    if len(items) > MAX_SUBJECTS:
        raise ValueError(f"at most {MAX_SUBJECTS} subjects")
    out: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str) or _REQUEST_SUBJECT.fullmatch(item) is None:
            raise ValueError(
                f"{item!r} is not a subject (user:NAME, role:NAME or principal:ai-engine)"
            )
        out[item] = None
    return tuple(out)


@lru_cache(maxsize=8192)
def subject_keys(subjects: tuple[str, ...]) -> frozenset[str]:
    """Each subject, ``KIND:*`` for each kind among them, and ``*`` (memoised: pure)."""
    kinds = [s[: s.index(":")] + ":*" for s in subjects]
    return frozenset((*subjects, *kinds, "*"))


def _timestamp(value: Any, index: int) -> datetime:
    parsed = value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if not isinstance(parsed, datetime) or parsed.tzinfo is None:
        raise ValueError(f"item {index} must be an ISO 8601 timestamp with a time zone")
    try:
        return _utc(parsed)
    except ValueError:
        raise ValueError(f"item {index} is out of range in UTC") from None


def _utc(value: datetime) -> datetime:
    """``value`` in UTC; ValueError when that leaves years 1-9999 (0001-01-01T00:00+14:00)."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range in UTC (years 1 to 9999)") from None


def _recent_actions(value: Any) -> int | tuple[datetime, ...] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("must be >= 0")
        return value
    if isinstance(value, list | tuple):
        if len(value) > MAX_RECENT_ACTIONS:
            raise ValueError(f"at most {MAX_RECENT_ACTIONS} timestamps")
        return tuple(_timestamp(item, i) for i, item in enumerate(value))
    raise ValueError("must be a count (integer >= 0) or a list of timestamps")


SubjectList = Annotated[
    tuple[str, ...],
    PlainValidator(_subjects),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": REQUEST_SUBJECT_PATTERN},
                {
                    "type": "array",
                    "items": {"type": "string", "pattern": REQUEST_SUBJECT_PATTERN},
                    "minItems": 1,
                    "maxItems": MAX_SUBJECTS,
                },
            ]
        }
    ),
]
RecentActions = Annotated[
    int | tuple[datetime, ...] | None,
    PlainValidator(_recent_actions),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "array", "items": {"type": "string", "format": "date-time"}},
                {"type": "null"},
            ]
        }
    ),
]


class ResourceRef(BaseModel):
    """The object acted on."""

    model_config = _STRICT

    namespace: NamespaceStr
    name: NameStr
    labels: dict[LabelKey, LabelValue] | None = None


class RequestContext(BaseModel):
    """Facts about the request. Left out = unknown (``now`` defaults to the current time)."""

    model_config = _STRICT

    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    severity: Severity | None = None
    # The replica count a scale sets; ignored for actions that set none.
    replicas: int | None = Field(default=None, ge=0, le=100_000)
    # Earlier actions on the same (namespace, name): a count, or their timestamps.
    recent_actions: RecentActions = None
    now: Annotated[datetime, Field(strict=False)] = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("now", mode="before")
    @classmethod
    def _no_epoch_numbers(cls, value: Any) -> Any:
        if not isinstance(value, str | datetime):
            raise ValueError("must be an ISO 8601 timestamp with a time zone")
        return value

    @field_validator("now")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone (e.g. 2026-11-23T10:00:00Z)")
        return _utc(value)


class EvaluationRequest(BaseModel):
    """One question: may ``subject`` do ``action`` on ``resource`` given ``context``?

    ``subject`` is one subject or several (a user and each of their roles); a policy matches
    when any of them does.
    """

    model_config = _STRICT

    subject: SubjectList
    action: Action
    resource: ResourceRef
    context: RequestContext = Field(default_factory=RequestContext)

    @model_validator(mode="after")
    def _replicas_for_scale(self) -> Self:
        if self.action in ACTIONS_SETTING_REPLICAS and self.context.replicas is None:
            raise ValueError(f"context.replicas: {self.action} needs the replica count it sets")
        return self

    # Derived values are computed on access, never cached on the instance: model_copy(update=)
    # copies an instance's __dict__, so a cached value could outlive the field it came from.
    @property
    def subject_keys(self) -> frozenset[str]:
        """What policy subjects match this request: each subject, ``KIND:*`` for each of their
        kinds, and ``*``."""
        return subject_keys(self.subject)

    @property
    def minute_of_week(self) -> int:
        """Minutes since Monday 00:00 UTC of ``context.now``."""
        now = self.context.now
        return now.weekday() * 1440 + now.hour * 60 + now.minute


class Decision(NamedTuple):
    """The answer: the effect, the policies that decided it (sorted by id) and why.

    (A named tuple: immutable and cheap to build, which matters on the evaluation path.)
    """

    effect: Effect
    policies: tuple[PolicyRef, ...]
    reason: str

    @property
    def allowed(self) -> bool:
        """True only for ALLOW: REQUIRE_APPROVAL must not be executed without an approval."""
        return self.effect is Effect.ALLOW

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.effect.value,
            "policies": [{"id": ref.id, "version": ref.version} for ref in self.policies],
            "reason": self.reason,
        }
