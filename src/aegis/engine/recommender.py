"""Ranked actions from the runbook knowledge base, learning from outcomes (Beta-Bernoulli).

For an incident's symptoms, each knowledge-base rule whose symptoms are all present *matches*
with strength = its weakest symptom; the incident kind is that of the first matching rule whose
strength is within ``kind_ratio`` of the strongest (rules are listed most specific first). Each
action named by a matching rule is a candidate, taken from the rule where ``strength * prior``
is highest. ``none`` is always a candidate: from a
rule that names it, else with strength ``1 - (strongest match)`` (nothing matched: 1).

Confidence of candidate ``a`` from rule ``rule`` (of incident kind ``k``; the fallback row and the
incident's kind for the default ``none``)::

    alpha0, beta0 = priors[rule, a]         # the model's prior pseudo-counts (priors.npy)
    s, f = outcome_stats[(k, a)]            # resolved / not resolved or rejected, from the DB
    confidence = strength * (alpha0 + s) / (alpha0 + beta0 + s + f)

so every success raises it, every rejection or failure lowers it, the knowledge base's prior
dominates while there are few outcomes, and it stays in [0, 1]. Ranking: confidence, then the
fixed action order; no randomness, so the same input always gives the same list.

``outcome_stats`` is a plain mapping ``{(incident_kind, action): {"successes": n, "failures":
m}}``; the backend keeps it in its database, updates it with :func:`update_stats` and passes it
in. Record an outcome under the recommendation's ``incident_kind``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from aegis.engine.knowledge import ACTIONS, Rule
from aegis.engine.model import UNKNOWN_KIND, EngineModel
from aegis.engine.schemas import Recommendation, Target

Outcome = Literal["resolved", "not_resolved", "rejected"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
SUCCESS_OUTCOMES = frozenset({"resolved"})
OutcomeStats = Mapping[tuple[str, str], Mapping[str, int]]


def update_stats(
    stats: OutcomeStats, *, incident_kind: str, action: str, outcome: Outcome
) -> dict[tuple[str, str], dict[str, int]]:
    """A new statistics mapping with one more outcome counted (``stats`` is not modified).

    ``resolved`` counts as a success; ``not_resolved`` (executed, the incident went on) and
    ``rejected`` (an approver refused it) count as failures.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r} (expected one of {', '.join(OUTCOMES)})")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    out = {
        key: {"successes": int(v.get("successes", 0)), "failures": int(v.get("failures", 0))}
        for key, v in stats.items()
    }
    entry = out.setdefault((incident_kind, action), {"successes": 0, "failures": 0})
    entry["successes" if outcome in SUCCESS_OUTCOMES else "failures"] += 1
    return out


@dataclass(frozen=True)
class Features:
    """What the recommender needs to know about one incident."""

    symptoms: Mapping[str, float]
    evidence: Mapping[str, list[str]] = field(default_factory=dict)
    namespace: str | None = None
    deployment: str | None = None
    pod: str | None = None
    replicas: int | None = None
    load_factor: float | None = None  # recent over baseline load/CPU, when it rose
    rollback_revision: int | None = None


@dataclass(frozen=True)
class _Candidate:
    action: str
    rule: Rule | None
    kind: str
    strength: float
    why: str


def match(rules: tuple[Rule, ...], symptoms: Mapping[str, float]) -> list[tuple[Rule, float]]:
    """Matching rules with their strengths, in knowledge-base order."""
    out = []
    for rule in rules:
        strength = min(symptoms.get(s, 0.0) for s in rule.when)
        if strength > 0.0:
            out.append((rule, strength))
    return out


def incident_kind(matched: list[tuple[Rule, float]], ratio: float) -> str:
    """The kind of the first rule (most specific first) within ``ratio`` of the strongest."""
    strongest = max((strength for _, strength in matched), default=0.0)
    for rule, strength in matched:
        if strength >= ratio * strongest:
            return rule.kind
    return UNKNOWN_KIND


def _candidates(matched: list[tuple[Rule, float]], kind: str) -> list[_Candidate]:
    best: dict[str, tuple[float, _Candidate]] = {}
    for rule, strength in matched:
        for ra in rule.actions:
            score = strength * ra.prior
            if ra.action not in best or score > best[ra.action][0]:
                best[ra.action] = (score, _Candidate(ra.action, rule, rule.kind, strength, ra.why))
    if "none" not in best:
        strongest = max((s for _, s in matched), default=0.0)
        why = (
            "no runbook rule matches; the default is to do nothing"
            if not matched
            else f"doing nothing is the default only as far as no rule matches "
            f"(strongest match {strongest:.2f})"
        )
        best["none"] = (0.0, _Candidate("none", None, kind, round(1.0 - strongest, 6), why))
    return [candidate for _, candidate in best.values()]


def recommend(
    features: Features, outcome_stats: OutcomeStats, *, model: EngineModel
) -> tuple[str, list[Recommendation]]:
    """The incident kind and the ranked recommendations for ``features``."""
    rows = model.spec.recommender.rows
    matched = match(model.kb.rules, features.symptoms)
    kind = incident_kind(matched, model.kb.kind_ratio)
    out = []
    for c in _candidates(matched, kind):
        row = rows.index(c.rule.id) if c.rule else len(rows) - 1
        alpha0, beta0 = (float(v) for v in model.priors[row, ACTIONS.index(c.action)])
        counts = outcome_stats.get((c.kind, c.action), {})
        s, f = max(int(counts.get("successes", 0)), 0), max(int(counts.get("failures", 0)), 0)
        mean = (alpha0 + s) / (alpha0 + beta0 + s + f)
        params, note, usable = _params(c.action, features, model)
        confidence = round(min(max(c.strength * mean * usable, 0.0), 1.0), 6)
        out.append(
            Recommendation(
                action=c.action,
                params=params,
                target=_target(c.action, features),
                confidence=confidence,
                explanation=_explain(
                    c,
                    features=features,
                    alpha0=alpha0,
                    beta0=beta0,
                    s=s,
                    f=f,
                    confidence=confidence,
                    note=note,
                ),
                incident_kind=c.kind,
                rule=c.rule.id if c.rule else None,
                prior=round(alpha0 / (alpha0 + beta0), 6),
                successes=s,
                failures=f,
            )
        )
    out.sort(key=lambda r: (-r.confidence, ACTIONS.index(r.action)))
    return kind, out


def _params(
    action: str, features: Features, model: EngineModel
) -> tuple[dict[str, int], str, float]:
    """Executor parameters, a note for the explanation, and 1.0 (or 0.0 when pointless)."""
    if action == "scale_deployment":
        scaling = model.spec.scaling
        current = features.replicas if features.replicas else scaling.assumed_current
        known = "" if features.replicas else " (current count unknown, assumed)"
        factor = min(
            max(features.load_factor or scaling.min_factor, scaling.min_factor), scaling.max_factor
        )
        target = min(max(math.ceil(current * factor), current + 1), scaling.max_replicas)
        if target <= current:
            return {"replicas": current}, f"already at the {scaling.max_replicas}-replica cap", 0.0
        return {"replicas": target}, f"scale from {current}{known} to {target} replicas", 1.0
    if action == "rollback_deployment" and features.rollback_revision is not None:
        rev = features.rollback_revision
        return {"revision": rev}, f"roll back to revision {rev}", 1.0
    return {}, "", 1.0


def _target(action: str, features: Features) -> Target:
    if action == "delete_pod":
        return Target(namespace=features.namespace, name=features.pod)
    if action == "none":
        return Target(namespace=None, name=None)
    return Target(namespace=features.namespace, name=features.deployment)


def _explain(
    c: _Candidate,
    *,
    features: Features,
    alpha0: float,
    beta0: float,
    s: int,
    f: int,
    confidence: float,
    note: str,
) -> str:
    parts = [c.why[0].upper() + c.why[1:] + "."]
    if note:
        parts.append(note[0].upper() + note[1:] + ".")
    if c.rule is not None:
        evidence = [e for name in c.rule.when for e in features.evidence.get(name, [])[:2]]
        if evidence:
            parts.append("Evidence: " + "; ".join(evidence) + ".")
        parts.append(f"Runbook rule '{c.rule.id}' matches with strength {c.strength:.2f}.")
    prior = alpha0 / (alpha0 + beta0)
    parts.append(
        f"Prior {prior:.2f} for {c.kind}; outcomes so far {s} resolved, {f} not "
        f"(rejected or unresolved); confidence {confidence:.2f}."
    )
    return " ".join(parts)
