"""A policy document compiled for evaluation, and the explanation of each of its checks.

Every check answers ``True``, ``False`` or ``None`` (unknown: an input it needs was not
supplied). A policy's outcome combines its checks with three-valued (Kleene) logic::

    outcome = labels AND every condition AND NOT (all unless-conditions)

so a known ``False`` anywhere decides ``False`` even when something else is unknown. The engine
(:mod:`aegis.policy.engine`) resolves an unknown outcome towards the restrictive side.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from aegis.policy.document import (
    ACTIONS,
    ACTIONS_SETTING_REPLICAS,
    DAYS,
    Conditions,
    LabelSelector,
    Policy,
    PolicyRef,
    TimeWindow,
)
from aegis.policy.globs import Glob
from aegis.policy.request import EvaluationRequest

Tri = bool | None
MINUTES_PER_DAY = 1440
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _hhmm(minute_of_week: int) -> str:
    day, rest = divmod(minute_of_week, MINUTES_PER_DAY)
    return f"{DAYS[day]} {rest // 60:02d}:{rest % 60:02d}"


def _span(first: int, end: int) -> int:
    """Bits ``first`` to ``end - 1`` set."""
    return ((1 << (end - first)) - 1) << first


class Check:
    """One condition: ``test`` decides, ``explain`` says why in a few words."""

    __slots__ = ()

    def test(self, request: EvaluationRequest) -> Tri:
        raise NotImplementedError

    def explain(self, request: EvaluationRequest) -> str:
        raise NotImplementedError


class MinConfidence(Check):
    __slots__ = ("shown", "threshold")

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.shown = f"{threshold:g}"

    def test(self, request: EvaluationRequest) -> Tri:
        confidence = request.context.confidence
        return None if confidence is None else confidence >= self.threshold

    def explain(self, request: EvaluationRequest) -> str:
        confidence = request.context.confidence
        if confidence is None:
            return f"confidence not supplied (min_confidence {self.shown})"
        relation = ">=" if confidence >= self.threshold else "<"
        return f"confidence {confidence} {relation} {self.shown}"


class SeverityIn(Check):
    __slots__ = ("listed", "values")

    def __init__(self, values: Sequence[str]) -> None:
        self.values = frozenset(values)
        self.listed = ", ".join(values)

    def test(self, request: EvaluationRequest) -> Tri:
        severity = request.context.severity
        return None if severity is None else severity in self.values

    def explain(self, request: EvaluationRequest) -> str:
        severity = request.context.severity
        if severity is None:
            return f"severity not supplied (severities [{self.listed}])"
        relation = "in" if severity in self.values else "not in"
        return f"severity {severity} {relation} [{self.listed}]"


class InTimeWindows(Check):
    """The windows as a bit mask over the 10,080 minutes of a UTC week."""

    __slots__ = ("listed", "mask")

    def __init__(self, windows: list[TimeWindow]) -> None:
        mask = 0
        for window in windows:
            start, end = _minutes(window.start), _minutes(window.end)
            length = end - start if end > start else end + MINUTES_PER_DAY - start
            for day in window.days:
                first = DAYS.index(day) * MINUTES_PER_DAY + start
                last = first + length  # exclusive; past the week's end it wraps to Monday
                mask |= _span(first, min(last, MINUTES_PER_WEEK))
                if last > MINUTES_PER_WEEK:
                    mask |= _span(0, last - MINUTES_PER_WEEK)
        self.mask = mask
        self.listed = "; ".join(
            f"{','.join(w.days)} {w.start}-{w.end}" if len(w.days) < 7 else f"{w.start}-{w.end}"
            for w in windows
        )

    def test(self, request: EvaluationRequest) -> Tri:
        return bool((self.mask >> request.minute_of_week) & 1)

    def explain(self, request: EvaluationRequest) -> str:
        relation = "inside" if self.test(request) else "outside"
        return f"{_hhmm(request.minute_of_week)} UTC {relation} [{self.listed}]"


class WithinMaxActions(Check):
    __slots__ = ("count", "minutes")

    def __init__(self, count: int, minutes: int) -> None:
        self.count = count
        self.minutes = minutes

    def recent(self, request: EvaluationRequest) -> int | None:
        recent = request.context.recent_actions
        if recent is None or isinstance(recent, int):
            return recent
        try:
            since = request.context.now - timedelta(minutes=self.minutes)
        except OverflowError:  # the window starts before year 1: every timestamp is in it
            return len(recent)
        return sum(1 for at in recent if at > since)

    def test(self, request: EvaluationRequest) -> Tri:
        recent = self.recent(request)
        return None if recent is None else recent < self.count

    def explain(self, request: EvaluationRequest) -> str:
        recent = self.recent(request)
        limit = f"{self.count} per {self.minutes} min"
        if recent is None:
            return f"recent actions not supplied (max_actions {limit})"
        noun, verb = ("action", "reaches") if recent == 1 else ("actions", "reach")
        relation = "within" if recent < self.count else verb
        return f"{recent} recent {noun} on the target {relation} the limit of {limit}"


class ReplicasWithin(Check):
    __slots__ = ("high", "low")

    def __init__(self, low: int, high: int | None) -> None:
        self.low = low
        self.high = high

    def test(self, request: EvaluationRequest) -> Tri:
        if request.action not in ACTIONS_SETTING_REPLICAS:
            return True
        replicas = request.context.replicas
        if replicas is None:
            return None
        return replicas >= self.low and (self.high is None or replicas <= self.high)

    def explain(self, request: EvaluationRequest) -> str:
        bounds = f"{self.low}..{'' if self.high is None else self.high}"
        if request.action not in ACTIONS_SETTING_REPLICAS:
            return ""  # says nothing about this action; left out of reasons
        replicas = request.context.replicas
        if replicas is None:
            return f"replicas not supplied (bounds {bounds})"
        relation = "within" if self.test(request) else "outside"
        return f"replicas {replicas} {relation} {bounds}"


def compile_conditions(conditions: Conditions) -> tuple[Check, ...]:
    checks: list[Check] = []
    if conditions.min_confidence is not None:
        checks.append(MinConfidence(conditions.min_confidence))
    if conditions.severities is not None:
        checks.append(SeverityIn(conditions.severities))
    if conditions.time_windows is not None:
        checks.append(InTimeWindows(conditions.time_windows))
    if conditions.max_actions is not None:
        limit = conditions.max_actions
        checks.append(WithinMaxActions(limit.count, limit.per_minutes))
    if conditions.replicas is not None:
        checks.append(ReplicasWithin(conditions.replicas.min, conditions.replicas.max))
    return tuple(checks)


class Selector:
    """A Kubernetes label selector; unknown when the request carries no labels."""

    __slots__ = ("expressions", "listed", "match")

    def __init__(self, selector: LabelSelector) -> None:
        self.match = tuple(selector.match_labels.items())
        self.expressions = tuple(
            (e.key, e.operator, frozenset(e.values)) for e in selector.match_expressions
        )
        parts = [f"{k}={v}" for k, v in self.match]
        for e in selector.match_expressions:
            values = f" ({', '.join(e.values)})" if e.values else ""
            parts.append(f"{e.key} {e.operator}{values}")
        self.listed = ", ".join(parts)

    def test(self, labels: dict[str, str] | None) -> Tri:
        if labels is None:
            return None
        for key, value in self.match:
            if labels.get(key) != value:
                return False
        for key, operator, values in self.expressions:
            present = key in labels
            if operator == "In":
                ok = present and labels[key] in values
            elif operator == "NotIn":
                ok = not present or labels[key] not in values
            else:
                ok = present == (operator == "Exists")
            if not ok:
                return False
        return True

    def explain(self, labels: dict[str, str] | None) -> str:
        if labels is None:
            return f"labels not supplied (selector {self.listed})"
        relation = "match" if self.test(labels) else "do not match"
        return f"labels {relation} {self.listed}"


class CompiledPolicy:
    """A :class:`Policy` with its sets and globs precompiled; identity is the document's."""

    __slots__ = (
        "actions",
        "any_name",
        "checks",
        "effect",
        "exact_names",
        "label",
        "multi_entry",
        "name_globs",
        "namespaces",
        "policy",
        "ref",
        "selector",
        "subjects",
        "unconditional",
        "unless",
    )

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.ref: PolicyRef = policy.ref
        self.label = f"policy {policy.id} v{policy.version}"  # as reasons name it
        self.effect = policy.effect
        # Matched against EvaluationRequest.subject_keys (subjects, KIND:* and *).
        self.subjects = frozenset(policy.subjects)
        self.actions: frozenset[str] = frozenset(
            ACTIONS if "*" in policy.actions else policy.actions
        )
        self.namespaces = tuple(Glob.compile(p) for p in dict.fromkeys(policy.resources.namespaces))
        # Indexed under several (subject, namespace pattern) entries: may be found twice.
        self.multi_entry = len(self.namespaces) > 1 or len(self.subjects) > 1
        names = [Glob.compile(p) for p in dict.fromkeys(policy.resources.names)]
        self.any_name = any(g.text == "*" for g in names)
        self.exact_names = frozenset(g.text for g in names if g.literal)
        self.name_globs = tuple(g for g in names if not g.literal)
        labels = policy.resources.labels
        self.selector = Selector(labels) if labels is not None else None
        self.checks = compile_conditions(policy.conditions)
        self.unless = compile_conditions(policy.unless) if policy.unless is not None else None
        # No selector, condition or unless: applies whenever it matches (skips outcome()).
        self.unconditional = self.selector is None and not self.checks and self.unless is None

    # --- target ---------------------------------------------------------------------------
    def subject_matches(self, request: EvaluationRequest) -> bool:
        return not self.subjects.isdisjoint(request.subject_keys)

    def name_matches(self, name: str) -> bool:
        if self.any_name or name in self.exact_names:
            return True
        for glob in self.name_globs:  # noqa: SIM110 - a plain loop is faster than any(genexpr)
            if glob.matches(name):
                return True
        return False

    def namespace_glob(self, namespace: str) -> Glob | None:
        for glob in self.namespaces:
            if glob.matches(namespace):
                return glob
        return None

    # --- labels and conditions --------------------------------------------------------------
    def outcome(self, request: EvaluationRequest) -> Tri:
        """Kleene AND of labels, conditions and NOT unless; call once the target matched."""
        result: Tri = True
        if self.selector is not None:
            verdict = self.selector.test(request.resource.labels)
            if verdict is False:
                return False
            if verdict is None:
                result = None
        for check in self.checks:
            verdict = check.test(request)
            if verdict is False:
                return False
            if verdict is None:
                result = None
        if self.unless is not None:
            held = _all(self.unless, request)
            if held is True:
                return False
            if held is None:
                result = None
        return result

    def explain_applies(self, request: EvaluationRequest) -> str:
        """Why this policy applies (or, for an unknown outcome, what was not supplied)."""
        resource = request.resource
        glob = self.namespace_glob(resource.namespace)
        clauses = [f"namespace {resource.namespace} matches {glob.text if glob else '?'}"]
        if not self.any_name:
            name_glob = next(
                (g.text for g in self.name_globs if g.matches(resource.name)), resource.name
            )
            clauses.append(f"name {resource.name} matches {name_glob}")
        if "*" not in self.subjects:
            clauses.append(f"subject {self._matched_subject(request)}")
        if self.selector is not None:
            clauses.append(self.selector.explain(resource.labels))
        for check in self.checks:
            text = check.explain(request)
            if text:
                clauses.append(text)
        if self.unless is not None:
            clauses.extend(c.explain(request) for c in self.unless if c.test(request) is not True)
        return ", ".join(clauses)

    def explain_miss(self, request: EvaluationRequest) -> str:
        """Why a target-matched policy does not apply (its first failing or unknown check)."""
        if self.selector is not None and self.selector.test(request.resource.labels) is not True:
            return self.selector.explain(request.resource.labels)
        for check in self.checks:
            if check.test(request) is not True:
                return check.explain(request)
        if self.unless is not None:
            held = _all(self.unless, request)
            reasons = ", ".join(
                c.explain(request) for c in self.unless if held is True or c.test(request) is None
            )
            return f"its unless-conditions hold ({reasons})" if held else reasons
        return "it does not apply"

    def _matched_subject(self, request: EvaluationRequest) -> str:
        for subject in request.subject:
            if subject in self.subjects or f"{subject.split(':', 1)[0]}:*" in self.subjects:
                return subject
        return request.subject[0]


def _all(checks: tuple[Check, ...], request: EvaluationRequest) -> Tri:
    result: Tri = True
    for check in checks:
        verdict = check.test(request)
        if verdict is False:
            return False
        if verdict is None:
            result = None
    return result
