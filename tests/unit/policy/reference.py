"""A naive reference evaluator written straight from docs/policy.md.

It scans every policy document (no index, no compiled sets) and shares no matching code with
``aegis.policy``: globs go through ``fnmatch.fnmatchcase``, windows through plain day/time
comparisons. The indexed evaluator must agree with it on effect and deciding policies.
"""

from __future__ import annotations

from datetime import timedelta
from fnmatch import fnmatchcase

from aegis.policy import EvaluationRequest, Policy, PolicyRef
from aegis.policy.document import DAYS, Conditions, Effect, LabelSelector

Tri = bool | None


def kleene_and(values: list[Tri]) -> Tri:
    if any(v is False for v in values):
        return False
    if any(v is None for v in values):
        return None
    return True


def kleene_not(value: Tri) -> Tri:
    return None if value is None else not value


def subject_matches(pattern: str, subject: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(":*"):
        return subject.split(":", 1)[0] == pattern[:-2]
    return pattern == subject


def target_matches(policy: Policy, request: EvaluationRequest) -> bool:
    return (
        any(subject_matches(p, s) for p in policy.subjects for s in request.subject)
        and ("*" in policy.actions or request.action in policy.actions)
        and any(fnmatchcase(request.resource.namespace, g) for g in policy.resources.namespaces)
        and any(fnmatchcase(request.resource.name, g) for g in policy.resources.names)
    )


def labels_match(selector: LabelSelector, labels: dict[str, str] | None) -> Tri:
    if labels is None:
        return None
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    for expr in selector.match_expressions:
        if expr.operator == "In" and labels.get(expr.key) not in expr.values:
            return False
        if expr.operator == "NotIn" and expr.key in labels and labels[expr.key] in expr.values:
            return False
        if expr.operator == "Exists" and expr.key not in labels:
            return False
        if expr.operator == "DoesNotExist" and expr.key in labels:
            return False
    return True


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def in_windows(conditions: Conditions, request: EvaluationRequest) -> bool:
    assert conditions.time_windows is not None
    now = request.context.now
    today, yesterday = DAYS[now.weekday()], DAYS[(now.weekday() - 1) % 7]
    minute = now.hour * 60 + now.minute
    for window in conditions.time_windows:
        start, end = _minutes(window.start), _minutes(window.end)
        if end > start:
            if today in window.days and start <= minute < end:
                return True
        elif (today in window.days and minute >= start) or (
            yesterday in window.days and minute < end
        ):
            return True
    return False


def recent_count(request: EvaluationRequest, minutes: int) -> int | None:
    recent = request.context.recent_actions
    if recent is None or isinstance(recent, int):
        return recent
    cutoff = request.context.now - timedelta(minutes=minutes)
    return len([at for at in recent if at > cutoff])


def conditions_hold(conditions: Conditions, request: EvaluationRequest) -> Tri:
    ctx = request.context
    values: list[Tri] = []
    if conditions.min_confidence is not None:
        values.append(
            None if ctx.confidence is None else ctx.confidence >= conditions.min_confidence
        )
    if conditions.severities is not None:
        values.append(None if ctx.severity is None else ctx.severity in conditions.severities)
    if conditions.time_windows is not None:
        values.append(in_windows(conditions, request))
    if conditions.max_actions is not None:
        count = recent_count(request, conditions.max_actions.per_minutes)
        values.append(None if count is None else count < conditions.max_actions.count)
    if conditions.replicas is not None:
        bounds = conditions.replicas
        if request.action != "scale_deployment":
            values.append(True)
        elif ctx.replicas is None:
            values.append(None)
        else:
            values.append(
                bounds.min <= ctx.replicas and (bounds.max is None or ctx.replicas <= bounds.max)
            )
    return kleene_and(values)


def outcome(policy: Policy, request: EvaluationRequest) -> Tri:
    parts: list[Tri] = [conditions_hold(policy.conditions, request)]
    if policy.resources.labels is not None:
        parts.append(labels_match(policy.resources.labels, request.resource.labels))
    if policy.unless is not None:
        parts.append(kleene_not(conditions_hold(policy.unless, request)))
    return kleene_and(parts)


def decide(policies: list[Policy], request: EvaluationRequest) -> tuple[Effect, list[PolicyRef]]:
    """The decision rule of docs/policy.md, over a plain scan."""
    applicable: dict[tuple[Effect, Tri], list[PolicyRef]] = {}
    for policy in policies:
        if target_matches(policy, request):
            applicable.setdefault((policy.effect, outcome(policy, request)), []).append(policy.ref)

    def refs(*keys: tuple[Effect, Tri]) -> list[PolicyRef]:
        return sorted(ref for key in keys for ref in applicable.get(key, []))

    denies = refs((Effect.DENY, True), (Effect.DENY, None))
    if denies:
        return Effect.DENY, denies
    approvals = refs((Effect.REQUIRE_APPROVAL, True))
    if approvals:
        return Effect.REQUIRE_APPROVAL, approvals
    allows = refs((Effect.ALLOW, True))
    if allows:
        unknown = refs((Effect.REQUIRE_APPROVAL, None))
        if unknown:
            return Effect.REQUIRE_APPROVAL, unknown
        return Effect.ALLOW, allows
    return Effect.DENY, []
