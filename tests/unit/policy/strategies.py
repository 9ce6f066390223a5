"""Hypothesis strategies over a small universe, so random policies and requests often meet."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from aegis.policy import EvaluationRequest, Policy
from aegis.policy.document import ACTIONS, DAYS, SEVERITIES

# Repeated entries weight the draw: most random policies should meet most random requests.
NAMESPACE_GLOBS = [
    "*", "*", "*", "*", "*", "*", "staging-*", "staging-*", "staging-*", "kube-*", "kube-*",
    "prod", "staging-a", "s*-a", "*-a",
    "?????", "[sk]*", "kube-[!p]*", "*a*", "prod-[0-9]", "default",
]  # fmt: skip
NAMESPACES = ["staging-a", "staging-b", "prod", "prod-1", "kube-system", "kube-public", "sa"]
NAME_GLOBS = ["*", "*", "*", "*", "*", "*", "web", "api", "web-*", "*-0", "db-?"]
NAMES = ["web", "api", "web-1", "db-0", "db-x"]
SUBJECTS = ["user:alice", "user:bob", "role:operator", "role:approver", "principal:ai-engine"]
POLICY_SUBJECTS = [*SUBJECTS, *["*"] * 6, "role:*", "role:*", "user:*", "principal:*"]
POLICY_ACTIONS = [*ACTIONS, *["*"] * 5]
LABEL_KEYS = ["tier", "app"]
LABEL_VALUES = ["web", "db", "critical"]
TIMES = ["00:00", "02:00", "09:00", "12:30", "17:00", "22:00", "23:59", "24:00"]
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)
_BOOL = st.booleans()
_SOMETIMES = st.integers(0, 3).map(lambda n: n == 0)  # one time in four


def _subset(items: list[str], *, min_size: int = 1, max_size: int = 3) -> Any:
    return _subset_of(tuple(items), min_size, max_size)


@functools.cache
def _subset_of(items: tuple[str, ...], min_size: int, max_size: int) -> Any:
    # Built once per shape: constructing strategies inside draws dominates the run time.
    return st.lists(st.sampled_from(items), min_size=min_size, max_size=max_size, unique=True)


@functools.cache
def _choice(items: tuple[Any, ...]) -> Any:
    return st.sampled_from(items)


@functools.cache
def _ints(low: int, high: int) -> Any:
    return st.integers(low, high)


@st.composite
def time_windows(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(_STARTS)
    end = draw(_choice(tuple(t for t in TIMES if t not in (start, "00:00"))))
    return {"days": draw(_subset(list(DAYS), max_size=7)), "start": start, "end": end}


@st.composite
def conditions(draw: st.DrawFn, *, allow_empty: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(_SOMETIMES):
        out["min_confidence"] = draw(_choice((0.0, 0.5, 0.8, 0.9, 1.0)))
    if draw(_SOMETIMES):
        out["severities"] = draw(_subset(list(SEVERITIES)))
    if draw(_SOMETIMES):
        out["time_windows"] = draw(_WINDOW_LISTS)
    if draw(_SOMETIMES):
        out["max_actions"] = {
            "count": draw(_ints(1, 4)),
            "per_minutes": draw(_choice((10, 60, 120))),
        }
    if draw(_SOMETIMES):
        low = draw(_ints(0, 5))
        high = draw(_choice((None, *range(low, 13))))
        out["replicas"] = {"min": low} | ({} if high is None else {"max": high})
    if not out and not allow_empty:
        out["min_confidence"] = 0.8
    return out


@st.composite
def label_selectors(draw: st.DrawFn) -> dict[str, Any]:
    match = draw(_LABELS)
    expressions = []
    for _ in range(draw(_ints(0 if match else 1, 2))):
        operator = draw(_choice(("In", "NotIn", "Exists", "DoesNotExist")))
        values = draw(_subset(LABEL_VALUES)) if operator in ("In", "NotIn") else []
        expressions.append(
            {"key": draw(_choice(tuple(LABEL_KEYS))), "operator": operator, "values": values}
        )
    return {"match_labels": match, "match_expressions": expressions}


@st.composite
def policy_documents(draw: st.DrawFn, effect: str | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "namespaces": draw(_subset(NAMESPACE_GLOBS, max_size=2)),
        "names": draw(_subset(NAME_GLOBS, max_size=2)),
    }
    if draw(_SOMETIMES):
        resources["labels"] = draw(label_selectors())
    doc: dict[str, Any] = {
        "id": "placeholder",
        "version": draw(_ints(1, 4)),
        "effect": effect or draw(_choice(("allow", "allow", "deny", "require_approval"))),
        "subjects": draw(_subset(POLICY_SUBJECTS, max_size=2)),
        "actions": draw(_subset(POLICY_ACTIONS, max_size=2)),
        "resources": resources,
        "conditions": draw(conditions()),
    }
    if draw(_SOMETIMES):
        doc["unless"] = draw(conditions(allow_empty=False))
    return doc


@st.composite
def policy_lists(draw: st.DrawFn, max_size: int = 12, prefix: str = "p") -> list[Policy]:
    docs = draw(st.lists(_DOCUMENTS, min_size=1, max_size=max_size))
    return [Policy.model_validate(d | {"id": f"{prefix}{i}"}) for i, d in enumerate(docs)]


def single_policy(effect: str, policy_id: str = "added") -> Any:
    return policy_documents(effect=effect).map(
        lambda d: Policy.model_validate(d | {"id": policy_id})
    )


@st.composite
def request_dicts(draw: st.DrawFn) -> dict[str, Any]:
    action = draw(_choice(ACTIONS))
    now = MONDAY + timedelta(minutes=draw(_ints(0, 7 * 1440 - 1)), seconds=draw(_ints(0, 59)))
    context: dict[str, Any] = {"now": now}
    if draw(_ints(0, 4)):
        context["confidence"] = draw(_choice((0.0, 0.3, 0.5, 0.8, 0.85, 0.9, 1.0)))
    if draw(_ints(0, 4)):
        context["severity"] = draw(_choice(SEVERITIES))
    if action == "scale_deployment" or draw(_BOOL):
        context["replicas"] = draw(_ints(0, 14))
    recent = draw(_ints(0, 4))
    if recent == 1:
        context["recent_actions"] = draw(_ints(0, 5))
    elif recent > 1:
        minutes_ago = draw(_AGES)
        context["recent_actions"] = [now - timedelta(minutes=m) for m in minutes_ago]
    resource: dict[str, Any] = {
        "namespace": draw(_choice(tuple(NAMESPACES))),
        "name": draw(_choice(tuple(NAMES))),
    }
    if draw(_ints(0, 4)):
        resource["labels"] = draw(_LABELS)
    return {
        "subject": draw(_subset(SUBJECTS)),
        "action": action,
        "resource": resource,
        "context": context,
    }


_STARTS = st.sampled_from(TIMES[:-1])
_WINDOW_LISTS = st.lists(time_windows(), min_size=1, max_size=2)
_LABELS = st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES))
_AGES = st.lists(st.sampled_from([-5, 0, 5, 10, 30, 59, 60, 61, 119, 120, 121, 500]), max_size=5)
_DOCUMENTS = policy_documents()
requests = request_dicts().map(EvaluationRequest.model_validate)
