"""The policy document: its model, its vocabulary and the JSON Schema published from it.

``docs/policy.md`` is the prose reference; ``docs/policy-schema.json`` is generated from
:func:`policy_json_schema` (regenerate: ``python -m aegis.policy > docs/policy-schema.json``)
and a test keeps the two identical. The model is the source of truth: a few rules the JSON
Schema cannot say (a reversed glob range, ``replicas.min <= max``, ``start != end``) are checked
here only.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from aegis.policy.globs import GLOB_MAX_LENGTH, GLOB_PATTERN, check_glob


class Effect(StrEnum):
    """What a policy says about the requests it applies to."""

    ALLOW = "allow"
    DENY = "deny"
    REQUIRE_APPROVAL = "require_approval"


# The actions Aegis can take; a policy naming any other is refused (a typo in a deny must not
# silently match nothing). Keep in step with ``aegis.executor.schemas.ActionType``.
Action = Literal["restart_deployment", "scale_deployment", "delete_pod", "rollback_deployment"]
ACTIONS: tuple[Action, ...] = get_args(Action)
# Actions that set a replica count; ``conditions.replicas`` concerns only these.
ACTIONS_SETTING_REPLICAS = frozenset({"scale_deployment"})
Severity = Literal["info", "warning", "error", "critical"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = get_args(Day)
# Known non-human principals (a typo like ``principal:ai_engine`` is refused, not ignored).
PRINCIPALS: tuple[str, ...] = ("ai-engine",)
SUBJECT_KINDS: tuple[str, ...] = ("user", "role", "principal")

ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"
# Every name a local user may have (``aegis.auth.schemas.USERNAME_PATTERN``): a user named
# ``_ops`` must be nameable by a policy, and their requests decidable at all. Roles too.
SUBJECT_NAME = r"[A-Za-z0-9._@-]{1,128}"
# A user is also an OIDC subject, which OIDC Core lets be up to 255 characters of any kind
# (Auth0's ``auth0|5f7c...``; ``aegis.auth.oidc.SUBJECT_PATTERN``): no control character, and no
# leading ``*``, which would read as the wildcard.
USER_NAME = r"[^\x00-\x1f\x7f*][^\x00-\x1f\x7f]{0,254}"
_PRINCIPAL = f"principal:(?:{'|'.join(PRINCIPALS)})"
SUBJECT_PATTERN = (
    rf"^(?:\*|user:(?:\*|{USER_NAME})|role:(?:\*|{SUBJECT_NAME})|principal:\*|{_PRINCIPAL})$"
)
# A concrete subject in a request: no wildcards.
REQUEST_SUBJECT_PATTERN = rf"^(?:user:{USER_NAME}|role:{SUBJECT_NAME}|{_PRINCIPAL})$"
SUBJECT_MAX_LENGTH = len("user:") + 255
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
LABEL_KEY_PATTERN = (
    r"^(?:[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^(?:[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
TIME_PATTERN = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _matching(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if compiled.fullmatch(value) is None:
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


def _published(pattern: str, max_length: int, description: str) -> WithJsonSchema:
    schema = {"type": "string", "pattern": pattern, "maxLength": max_length}
    return WithJsonSchema({**schema, "description": description})


GlobStr = Annotated[
    str,
    AfterValidator(check_glob),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": GLOB_PATTERN,
            "maxLength": GLOB_MAX_LENGTH,
            "description": "Glob: * any run, ? one character, [a-c] / [!a-c] a set; "
            "characters a-z 0-9 . -",
        }
    ),
]
# Each string kind: a length cap, a check with a readable error, the pattern it publishes.
Subject = Annotated[
    str,
    Field(max_length=SUBJECT_MAX_LENGTH),
    _matching(
        SUBJECT_PATTERN,
        "a subject (user:NAME, role:NAME, principal:ai-engine, user:*, role:*, principal:* or *)",
    ),
    _published(
        SUBJECT_PATTERN,
        SUBJECT_MAX_LENGTH,
        "user:NAME, role:NAME, principal:ai-engine; user:*, role:*, principal:* or * for any",
    ),
]
LabelKey = Annotated[
    str,
    Field(max_length=317),
    _matching(LABEL_KEY_PATTERN, "a Kubernetes label key"),
    _published(LABEL_KEY_PATTERN, 317, "Kubernetes label key"),
]
LabelValue = Annotated[
    str,
    Field(max_length=63),
    _matching(LABEL_VALUE_PATTERN, "a Kubernetes label value"),
    _published(LABEL_VALUE_PATTERN, 63, "Kubernetes label value"),
]
PolicyId = Annotated[
    str,
    Field(max_length=128),
    _matching(ID_PATTERN, "a policy id (a-z, 0-9, '.', '_', '-'; starting with a letter or digit)"),
    _published(ID_PATTERN, 128, "Stable identifier: a-z, 0-9, '.', '_', '-'"),
]
NamespaceStr = Annotated[
    str,
    Field(max_length=63),
    _matching(NAMESPACE_PATTERN, "a Kubernetes namespace name"),
    _published(NAMESPACE_PATTERN, 63, "namespace"),
]
NameStr = Annotated[
    str,
    Field(max_length=253),
    _matching(NAME_PATTERN, "a Kubernetes object name"),
    _published(NAME_PATTERN, 253, "object name"),
]
TimeOfDay = Annotated[
    str,
    Field(max_length=5),
    _matching(TIME_PATTERN, "a time HH:MM (00:00 to 24:00)"),
    _published(TIME_PATTERN, 5, "HH:MM, UTC"),
]


class PolicyRef(NamedTuple):
    """Which document decided: id and version."""

    id: str
    version: int


class LabelExpression(BaseModel):
    """One Kubernetes-style set-based requirement on a label."""

    model_config = _STRICT

    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> Self:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(BaseModel):
    """Kubernetes label-selector semantics: every requirement must hold."""

    model_config = _STRICT

    match_labels: Annotated[
        dict[LabelKey, LabelValue],
        WithJsonSchema(
            {
                "type": "object",
                "propertyNames": {"pattern": LABEL_KEY_PATTERN, "maxLength": 317},
                "additionalProperties": {
                    "type": "string",
                    "pattern": LABEL_VALUE_PATTERN,
                    "maxLength": 63,
                },
                "description": "label key -> value; every pair must be present",
            }
        ),
    ] = Field(default_factory=dict)
    match_expressions: list[LabelExpression] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.match_labels and not self.match_expressions:
            raise ValueError("set match_labels or match_expressions (or drop labels)")
        return self


class Resources(BaseModel):
    """Which objects: namespace and name globs, optionally a label selector."""

    model_config = _STRICT

    namespaces: list[GlobStr] = Field(min_length=1)
    names: list[GlobStr] = Field(default_factory=lambda: ["*"], min_length=1)
    labels: LabelSelector | None = None


class TimeWindow(BaseModel):
    """A weekly window in UTC: ``[start, end)`` on each listed day; wraps midnight when
    ``end < start`` (the part after midnight belongs to the day the window starts)."""

    model_config = _STRICT

    days: list[Day] = Field(default_factory=lambda: list(DAYS), min_length=1)
    start: TimeOfDay
    end: TimeOfDay

    @field_validator("start")
    @classmethod
    def _start_before_midnight(cls, value: str) -> str:
        if value == "24:00":
            raise ValueError("start must be 00:00 to 23:59")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == self.end:
            raise ValueError("start equals end; use start 00:00, end 24:00 for a whole day")
        return self


class MaxActions(BaseModel):
    """Blast radius: at most ``count`` actions on one target per ``per_minutes``."""

    model_config = _STRICT

    count: int = Field(ge=1, le=1_000_000)
    per_minutes: int = Field(ge=1, le=525_600)


class ReplicaBounds(BaseModel):
    """Bounds on the replica count a scale sets (inclusive)."""

    model_config = _STRICT

    min: int = Field(default=0, ge=0, le=100_000)
    max: int | None = Field(default=None, ge=0, le=100_000)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


class Conditions(BaseModel):
    """Predicates over the request context; a set holds when every condition in it holds."""

    model_config = _STRICT

    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    severities: list[Severity] | None = Field(default=None, min_length=1)
    time_windows: list[TimeWindow] | None = Field(default=None, min_length=1)
    max_actions: MaxActions | None = None
    replicas: ReplicaBounds | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in type(self).model_fields)


class Policy(BaseModel):
    """One versioned policy document (see ``docs/policy.md`` for the semantics)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
        title="Aegis policy",
        json_schema_extra={"description": "An Aegis policy document (YAML or JSON)."},
    )

    id: PolicyId
    version: int = Field(default=1, ge=1)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    effect: Annotated[Effect, Field(strict=False)]
    subjects: list[Subject] = Field(min_length=1)
    actions: list[Literal[Action, "*"]] = Field(min_length=1)
    resources: Resources
    conditions: Conditions = Field(default_factory=Conditions)
    unless: Conditions | None = None

    @model_validator(mode="after")
    def _unless_not_empty(self) -> Self:
        if self.unless is not None and self.unless.is_empty():
            raise ValueError("unless: set at least one condition (or drop unless)")
        return self

    @property
    def ref(self) -> PolicyRef:
        return PolicyRef(self.id, self.version)

    def canonical_dict(self) -> dict[str, Any]:
        """The document with defaults filled in and absent optionals left out: what digests,
        bundles and the database store."""
        return self.model_dump(mode="json", exclude_none=True)


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a policy document, for YAML and JSON alike."""
    schema = Policy.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def policy_json_schema_text() -> str:
    """The published form of :func:`policy_json_schema` (``docs/policy-schema.json``)."""
    return json.dumps(policy_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
