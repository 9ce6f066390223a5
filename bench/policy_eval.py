"""Policy evaluation: Aegis's indexed evaluator against Cedar (cedarpy) on the same requests.

Generates a 1,000-policy set (seeded), translates it to the equivalent Cedar policy set, builds
one request stream, and times each decision of both engines in one run. Every decision is
checked for agreement (effect and deciding policy ids) before any figure is printed.

    .venv/bin/python -m bench.policy_eval [--policies 1000] [--requests 5000] [--seed 7]

Fairness notes: both engines get their inputs pre-parsed (an ``EvaluationRequest`` for Aegis;
a parsed ``cedarpy.PolicySet`` and empty ``Entities`` handle, with the request's facts in the
Cedar context, for Cedar). Cedar has no floats, so confidence travels as an integer in
thousandths, and no clock, so the time of day travels as ``dow``/``minute``; thresholds and
inputs are generated at those precisions so both engines see the same facts. The generated set
uses only ``*`` globs (Cedar's ``like`` has no ``?`` or ``[...]``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aegis.policy import Decision, EvaluationRequest, Policy, PolicySet
from aegis.policy.document import ACTIONS, DAYS, SEVERITIES, Conditions

TEAMS = [f"team{i:02d}" for i in range(40)]
ENVS = ["dev", "staging", "prod"]
NAMES = ["web", "api", "worker", "db", "cache", "gateway", "batch", "search"]
ROLES = [f"role:r{i}" for i in range(20)]
USERS = [f"user:u{i}" for i in range(100)]
AI = "principal:ai-engine"
LABELS = {"tier": ["frontend", "backend", "data"], "critical": ["true", "false"]}
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)


def namespaces() -> list[str]:
    return [f"{t}-{e}" for t in TEAMS for e in ENVS] + [
        f"{t}-{e}-2" for t in TEAMS[:10] for e in ENVS
    ]


# --- the policy set ---------------------------------------------------------------------------
def _namespace_patterns(rng: random.Random) -> list[str]:
    team, env = rng.choice(TEAMS), rng.choice(ENVS)
    roll = rng.random()
    if roll < 0.60:
        return [f"{team}-{env}"] + ([f"{team}-{env}-2"] if rng.random() < 0.2 else [])
    if roll < 0.85:
        return [rng.choice([f"{team}-*", f"{team}-{env}*"])]
    if roll < 0.97:
        return [rng.choice([f"{team}-*-2", f"*-{env}", f"team0*-{env}"])]
    return ["*"]


def _conditions(rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rng.random() < 0.5:
        out["min_confidence"] = rng.choice([0.5, 0.7, 0.8, 0.9, 0.95])
    if rng.random() < 0.2:
        out["severities"] = rng.sample(list(SEVERITIES), rng.randint(1, 3))
    if rng.random() < 0.2:
        start = rng.randrange(0, 24) * 60
        end = rng.choice([(start + rng.randrange(1, 12) * 60) % 1440, 1440])
        end = 1440 if end == start else end
        out["time_windows"] = [
            {
                "days": sorted(rng.sample(list(DAYS), rng.randint(1, 7)), key=DAYS.index),
                "start": f"{start // 60:02d}:{start % 60:02d}",
                "end": "24:00" if end == 1440 else f"{end // 60:02d}:{end % 60:02d}",
            }
        ]
    if rng.random() < 0.3:
        out["max_actions"] = {"count": rng.randint(1, 5), "per_minutes": rng.choice([30, 60])}
    if rng.random() < 0.3:
        low = rng.randint(0, 2)
        out["replicas"] = {"min": low, "max": low + rng.randint(1, 20)}
    return out


def generate_policies(count: int, seed: int) -> list[Policy]:
    rng = random.Random(seed)
    policies = []
    for i in range(count):
        effect = rng.choices(["allow", "deny", "require_approval"], [70, 15, 15])[0]
        roll = rng.random()
        if roll < 0.05:
            subjects = ["*"]
        elif roll < 0.1:
            subjects = ["role:*"]
        else:
            subjects = rng.sample([*ROLES, *USERS[:20], AI], rng.randint(1, 3))
        actions = ["*"] if rng.random() < 0.05 else rng.sample(list(ACTIONS), rng.randint(1, 2))
        names = ["*"] if rng.random() < 0.7 else [rng.choice([*NAMES, "web-*", "w*"])]
        resources: dict[str, Any] = {"namespaces": _namespace_patterns(rng), "names": names}
        if rng.random() < 0.1:
            key = rng.choice(list(LABELS))
            resources["labels"] = {"match_labels": {key: rng.choice(LABELS[key])}}
        doc: dict[str, Any] = {
            "id": f"p{i:04d}",
            "version": rng.randint(1, 5),
            "effect": effect,
            "subjects": subjects,
            "actions": actions,
            "resources": resources,
            "conditions": _conditions(rng),
        }
        if effect == "deny" and rng.random() < 0.4:
            doc["unless"] = rng.choice(
                [{"max_actions": {"count": 3, "per_minutes": 60}}, {"min_confidence": 0.6}]
            )
        policies.append(Policy.model_validate(doc))
    return policies


def generate_requests(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed + 1)
    spaces = namespaces()
    out = []
    for _ in range(count):
        subject = rng.sample([*ROLES, *USERS[:30], AI], rng.randint(1, 3))
        action = rng.choice(ACTIONS)
        labels = {k: rng.choice(v) for k, v in LABELS.items() if rng.random() < 0.7}
        context: dict[str, Any] = {
            "confidence": rng.randint(0, 1000) / 1000,
            "severity": rng.choice(SEVERITIES),
            "recent_actions": rng.randint(0, 6),
            "now": (MONDAY + timedelta(minutes=rng.randrange(7 * 1440))).isoformat(),
        }
        if action == "scale_deployment":
            context["replicas"] = rng.randint(0, 25)
        out.append(
            {
                "subject": subject,
                "action": action,
                "resource": {
                    "namespace": rng.choice(spaces),
                    "name": rng.choice(NAMES),
                    "labels": labels,
                },
                "context": context,
            }
        )
    return out


# --- the same set in Cedar --------------------------------------------------------------------
def _any(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + " || ".join(parts) + ")"


def _cedar_conditions(c: Conditions) -> list[str]:
    out = []
    if c.min_confidence is not None:
        out.append(f"context.confidence_milli >= {round(c.min_confidence * 1000)}")
    if c.severities is not None:
        out.append(f"{json.dumps(c.severities)}.contains(context.severity)")
    if c.time_windows is not None:
        windows = []
        for w in c.time_windows:
            start = int(w.start[:2]) * 60 + int(w.start[3:])
            end = int(w.end[:2]) * 60 + int(w.end[3:])
            days = [DAYS.index(d) for d in w.days]
            if end > start:
                windows.append(
                    f"({days}.contains(context.dow) && context.minute >= {start}"
                    f" && context.minute < {end})"
                )
            else:
                after = sorted({(d + 1) % 7 for d in days})
                windows.append(
                    f"(({days}.contains(context.dow) && context.minute >= {start}) || "
                    f"({after}.contains(context.dow) && context.minute < {end}))"
                )
        out.append(_any(windows))
    if c.max_actions is not None:
        out.append(f"context.recent_actions < {c.max_actions.count}")
    if c.replicas is not None:
        high = "" if c.replicas.max is None else f" && context.replicas <= {c.replicas.max}"
        out.append(
            f'(action != Action::"scale_deployment" || '
            f"(context.replicas >= {c.replicas.min}{high}))"
        )
    return out


def to_cedar(policy: Policy) -> str:
    kind = "forbid" if policy.effect == "deny" else "permit"
    actions = (
        "action"
        if "*" in policy.actions
        else "action in [" + ", ".join(f'Action::"{a}"' for a in policy.actions) + "]"
    )
    when: list[str] = []
    if "*" not in policy.subjects:
        exact = [s for s in policy.subjects if not s.endswith(":*")]
        kinds = [s[:-2] for s in policy.subjects if s.endswith(":*")]
        parts = [f"context.subjects.containsAny({json.dumps(exact)})"] if exact else []
        parts += [f"context.kinds.contains({json.dumps(k)})" for k in kinds]
        when.append(_any(parts))
    when.append(_any([f'context.namespace like "{p}"' for p in policy.resources.namespaces]))
    if "*" not in policy.resources.names:
        when.append(_any([f'context.name like "{p}"' for p in policy.resources.names]))
    if policy.resources.labels is not None:
        for key, value in policy.resources.labels.match_labels.items():
            when.append(f'(context.labels has {key} && context.labels.{key} == "{value}")')
    when += _cedar_conditions(policy.conditions)
    text = f'@id("{policy.id}")\n@effect("{policy.effect}")\n{kind}(principal, {actions}, resource)'
    text += "\nwhen { " + " && ".join(when) + " }"
    if policy.unless is not None:
        text += "\nunless { " + " && ".join(_cedar_conditions(policy.unless)) + " }"
    return text + ";"


def cedar_request(request: dict[str, Any]) -> dict[str, Any]:
    ctx = request["context"]
    now = datetime.fromisoformat(ctx["now"]).astimezone(UTC)
    subjects = request["subject"]
    context = {
        "subjects": subjects,
        "kinds": sorted({s.split(":", 1)[0] for s in subjects}),
        "namespace": request["resource"]["namespace"],
        "name": request["resource"]["name"],
        "labels": request["resource"]["labels"],
        "confidence_milli": round(ctx["confidence"] * 1000),
        "severity": ctx["severity"],
        "recent_actions": ctx["recent_actions"],
        "replicas": ctx.get("replicas", 0),
        "dow": now.weekday(),
        "minute": now.hour * 60 + now.minute,
    }
    return {
        "principal": 'Principal::"caller"',
        "action": f'Action::"{request["action"]}"',
        "resource": 'Resource::"target"',
        "context": context,
    }


def cedar_effect(result: Any, effects: dict[str, str]) -> tuple[str, list[str]]:
    """Our three effects from Cedar's two: forbid wins; a satisfied require_approval permit
    outranks an allow permit; no satisfied policy is the default deny."""
    ids = sorted(result.diagnostics.id_annotations_by_reason.values())
    if result.diagnostics.errors:
        raise RuntimeError(f"cedar evaluation error: {result.diagnostics.errors}")
    by_effect: dict[str, list[str]] = {}
    for pid in ids:
        by_effect.setdefault(effects[pid], []).append(pid)
    for effect in ("deny", "require_approval", "allow"):
        if effect in by_effect:
            return effect, by_effect[effect]
    return "deny", []


# --- timing -----------------------------------------------------------------------------------
@dataclass
class Timing:
    median_us: float
    p99_us: float
    samples: int


def _time(call: Callable[[Any], Any], rounds: list[list[Any]]) -> Timing:
    """Time ``call`` on every input of every round, one sample per call."""
    for item in rounds[0][:200]:  # warm up
        call(item)
    samples: list[int] = []
    clock = time.perf_counter_ns
    gc.collect()
    gc.freeze()
    for inputs in rounds:
        for item in inputs:
            start = clock()
            call(item)
            samples.append(clock() - start)
    gc.unfreeze()
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return Timing(statistics.median(samples) / 1000, p99 / 1000, len(samples))


def _fresh(raw: list[dict[str, Any]], rounds: int) -> list[list[EvaluationRequest]]:
    """New request objects per round, so nothing a request caches (its subject keys) is
    reused from an earlier evaluation of it."""
    return [[EvaluationRequest.model_validate(r) for r in raw] for _ in range(rounds)]


def main(argv: list[str] | None = None) -> int:
    import cedarpy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    load_at_start = os.getloadavg()[0]
    policies = generate_policies(args.policies, args.seed)
    raw = generate_requests(args.requests, args.seed)
    aegis_set = PolicySet(policies)
    requests = [EvaluationRequest.model_validate(r) for r in raw]
    cedar_set = cedarpy.PolicySet.from_str("\n".join(to_cedar(p) for p in policies))
    entities = cedarpy.Entities.from_json_str("[]")
    cedar_requests = [cedar_request(r) for r in raw]
    effects = {p.id: p.effect.value for p in policies}

    # Agreement first: the figures mean nothing unless both engines decide the same.
    counts: dict[str, int] = {}
    for req, creq in zip(requests, cedar_requests, strict=True):
        ours: Decision = aegis_set.evaluate(req)
        theirs = cedar_effect(cedarpy.is_authorized(creq, cedar_set, entities), effects)
        mine = (ours.effect.value, sorted(ref.id for ref in ours.policies))
        if mine != theirs:
            print(f"DISAGREE on {req.model_dump_json()}: aegis {mine} cedar {theirs}")
            return 1
        if ours != aegis_set.evaluate_by_scan(req):
            print(f"index and scan disagree on {req.model_dump_json()}")
            return 1
        counts[mine[0]] = counts.get(mine[0], 0) + 1

    aegis = _time(aegis_set.evaluate, _fresh(raw, 5))
    aegis_parse = _time(aegis_set.evaluate, [raw, raw])
    aegis_scan = _time(aegis_set.evaluate_by_scan, _fresh(raw, 1))
    cedar = _time(lambda r: cedarpy.is_authorized(r, cedar_set, entities), [cedar_requests])
    batch_start = time.perf_counter_ns()
    cedarpy.is_authorized_batch(cedar_requests, cedar_set, entities)
    cedar_batch_us = (time.perf_counter_ns() - batch_start) / 1000 / len(cedar_requests)

    print(
        f"python {platform.python_version()} on {platform.machine()}, cedarpy {cedarpy_version()}"
    )
    print(f"load average (1 min) at start {load_at_start:.2f}, at end {os.getloadavg()[0]:.2f}")
    print(f"{len(policies)} policies, {len(requests)} requests; decisions: {counts}")
    print("all decisions agree (Aegis index = Aegis scan = Cedar)")
    rows = [
        ("aegis evaluate (indexed)", aegis),
        ("aegis evaluate from dict (validate + evaluate)", aegis_parse),
        ("aegis evaluate_by_scan (no index)", aegis_scan),
        ("cedarpy is_authorized", cedar),
    ]
    for label, t in rows:
        print(f"{label:48s} median {t.median_us:8.2f} us   p99 {t.p99_us:8.2f} us   n={t.samples}")
    print(f"{'cedarpy is_authorized_batch (amortised)':48s} mean   {cedar_batch_us:8.2f} us")
    print(
        f"ratio cedarpy/aegis: median {cedar.median_us / aegis.median_us:.1f}x, "
        f"p99 {cedar.p99_us / aegis.p99_us:.1f}x"
    )
    return 0


def cedarpy_version() -> str:
    from importlib.metadata import version

    return version("cedarpy")


if __name__ == "__main__":
    sys.exit(main())
