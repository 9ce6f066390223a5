"""The runbook knowledge base: which symptoms call for which action, with what prior belief.

This module is the documented source (``docs/engine.md`` renders the same table). ``aegis engine
train`` writes :func:`default_knowledge_base` into a model directory as ``knowledge_base.json``;
the engine reads it back from there (a signed file), never from this module, so an operator can
ship a different runbook as a new signed model version.

Vocabulary:

* **symptoms** (:data:`SYMPTOMS`) are what the evidence says, each with a strength in [0, 1]:
  from the alert (its name and labels), the metric series (by family: memory, cpu, ...), the
  log templates (signatures such as "out of memory") and recent changes (a deploy);
* **rules** say: when *all* of these symptoms are present, the incident is of this *kind* and
  these actions have resolved it with this prior probability. A rule's match strength is the
  weakest of its symptoms' strengths;
* the **incident kind** is the kind of the first rule, in the order below (most specific
  first), whose match strength is at least ``kind_ratio`` of the strongest match; outcomes are
  counted per (incident kind, action) to learn from them.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

ActionName = Literal[
    "restart_deployment", "scale_deployment", "rollback_deployment", "delete_pod", "none"
]
ACTIONS: tuple[str, ...] = get_args(ActionName)
Family = Literal["memory", "cpu", "latency", "load", "errors", "restarts", "other"]
FAMILIES: tuple[str, ...] = get_args(Family)

SYMPTOMS: dict[str, str] = {
    "crash_loop": "containers restart over and over (CrashLoopBackOff, restart counter rising)",
    "oom": "containers are killed for exceeding their memory limit",
    "memory_leak": "memory grows steadily over the window",
    "cpu_high": "CPU use rose well above its baseline",
    "load_high": "request rate rose well above its baseline",
    "latency_high": "latency rose well above its baseline",
    "error_spike": "error rate (metrics or error logs) rose well above its baseline",
    "dependency_failure": "logs show a dependency failing (connection refused, timeouts)",
    "deploy_recent": "the workload was deployed (version change) shortly before the incident",
}
SymptomName = Literal[
    "crash_loop",
    "oom",
    "memory_leak",
    "cpu_high",
    "load_high",
    "latency_high",
    "error_spike",
    "dependency_failure",
    "deploy_recent",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleAction(_Strict):
    action: ActionName
    prior: float = Field(ge=0.0, le=1.0, description="P(action resolves this kind), before data")
    why: str = Field(min_length=1, max_length=300)


class Rule(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    when: tuple[SymptomName, ...] = Field(min_length=1)
    actions: tuple[RuleAction, ...] = Field(min_length=1)
    runbook: str = Field(min_length=1, max_length=500)


class Hint(_Strict):
    symptom: SymptomName
    strength: float = Field(ge=0.0, le=1.0)


class PatternHint(_Strict):
    """A regular expression (searched, case-insensitive) that suggests a symptom."""

    pattern: str = Field(min_length=1, max_length=500)
    symptom: SymptomName
    strength: float = Field(ge=0.0, le=1.0)
    name: str = Field(min_length=1, max_length=64)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class FamilyPattern(_Strict):
    family: Family
    pattern: str = Field(min_length=1, max_length=500)


class KnowledgeBase(_Strict):
    version: int = 1
    rules: tuple[Rule, ...] = Field(min_length=1)
    fallback_prior: float = Field(0.6, ge=0.0, le=1.0)
    prior_strength: float = Field(8.0, gt=0.0, le=1000.0)
    kind_ratio: float = Field(0.7, gt=0.0, le=1.0)
    alert_names: dict[str, tuple[Hint, ...]] = Field(default_factory=dict)
    alert_name_patterns: tuple[PatternHint, ...] = ()
    label_values: dict[str, dict[str, tuple[Hint, ...]]] = Field(default_factory=dict)
    metric_families: tuple[FamilyPattern, ...] = ()
    log_signatures: tuple[PatternHint, ...] = ()
    symptom_severity: dict[SymptomName, float] = Field(default_factory=dict)


def _hint(symptom: SymptomName, strength: float) -> Hint:
    return Hint(symptom=symptom, strength=strength)


def _rule(
    rule_id: str,
    kind: str,
    when: tuple[SymptomName, ...],
    actions: list[tuple[ActionName, float, str]],
    runbook: str,
) -> Rule:
    return Rule(
        id=rule_id,
        kind=kind,
        when=when,
        actions=tuple(RuleAction(action=a, prior=p, why=w) for a, p, w in actions),
        runbook=runbook,
    )


RULES: tuple[Rule, ...] = (
    _rule(
        "bad_deploy_errors",
        "bad_deploy",
        ("error_spike", "deploy_recent"),
        [
            ("rollback_deployment", 0.85, "errors began right after a deploy"),
            ("restart_deployment", 0.15, "a restart rarely fixes a bad release"),
        ],
        "Error spike right after a deploy: roll back to the previous revision, then investigate.",
    ),
    _rule(
        "bad_deploy_crash",
        "bad_deploy",
        ("crash_loop", "deploy_recent"),
        [
            ("rollback_deployment", 0.8, "the new revision crashes on start"),
            ("delete_pod", 0.15, "deleting a pod of a crashing release rarely helps"),
        ],
        "Crash loop right after a deploy: roll back to the previous revision.",
    ),
    _rule(
        "oom",
        "oom",
        ("oom",),
        [
            ("restart_deployment", 0.6, "a restart frees memory and clears a stuck rollout"),
            ("delete_pod", 0.5, "a fresh pod starts from a clean heap"),
        ],
        "OOM kills: restart the deployment (or delete the affected pod); raise the limit later.",
    ),
    _rule(
        "memory_leak",
        "memory_leak",
        ("memory_leak",),
        [
            ("restart_deployment", 0.75, "a restart resets the leaking processes"),
            ("delete_pod", 0.55, "a fresh pod resets the leaking process"),
        ],
        "Memory grows steadily: restart before it reaches the limit; file a leak bug.",
    ),
    _rule(
        "crash_loop",
        "crash_loop",
        ("crash_loop",),
        [
            ("delete_pod", 0.6, "a stuck pod is replaced by a fresh one"),
            ("restart_deployment", 0.55, "a rolling restart replaces every pod"),
        ],
        "Crash loop: delete the crashing pod (or restart the deployment) and read its logs.",
    ),
    _rule(
        "saturation_cpu",
        "saturation",
        ("latency_high", "cpu_high"),
        [("scale_deployment", 0.8, "latency rises with CPU: more replicas share the load")],
        "Latency up with high CPU: scale up.",
    ),
    _rule(
        "saturation_load",
        "saturation",
        ("latency_high", "load_high"),
        [("scale_deployment", 0.8, "latency rises with request rate: add replicas")],
        "Latency up with more requests: scale up.",
    ),
    _rule(
        "cpu_high",
        "saturation",
        ("cpu_high",),
        [("scale_deployment", 0.6, "CPU well above baseline: add replicas")],
        "High CPU: scale up.",
    ),
    _rule(
        "load_high",
        "saturation",
        ("load_high",),
        [("scale_deployment", 0.55, "request rate well above baseline: add replicas")],
        "More requests than usual: scale up.",
    ),
    _rule(
        "dependency_errors",
        "dependency_failure",
        ("error_spike", "dependency_failure"),
        [
            ("none", 0.7, "errors come from a failing dependency, not from this workload"),
            ("restart_deployment", 0.15, "a restart re-establishes connections"),
        ],
        "Errors with a dependency failing in the logs: page the dependency's owner; do not act.",
    ),
    _rule(
        "dependency_latency",
        "dependency_failure",
        ("latency_high", "dependency_failure"),
        [
            ("none", 0.7, "latency comes from a slow dependency; more replicas will not help"),
            ("scale_deployment", 0.15, "more replicas rarely help a slow dependency"),
        ],
        "Latency with a dependency failing in the logs: page the dependency's owner.",
    ),
    _rule(
        "dependency_failure",
        "dependency_failure",
        ("dependency_failure",),
        [
            ("none", 0.6, "the fault is downstream; acting on this workload will not fix it"),
            ("restart_deployment", 0.2, "a restart re-establishes connections"),
        ],
        "A dependency fails: do not act on this workload; page the dependency's owner.",
    ),
    _rule(
        "error_spike",
        "error_spike",
        ("error_spike",),
        [
            ("restart_deployment", 0.35, "a restart clears bad in-process state"),
            ("rollback_deployment", 0.3, "a recent change may be the cause"),
        ],
        "Error spike with no deploy: restart; roll back if a change is suspected.",
    ),
    _rule(
        "latency_high",
        "saturation",
        ("latency_high",),
        [
            ("scale_deployment", 0.45, "latency above baseline: more replicas may help"),
            ("restart_deployment", 0.25, "a restart clears degraded pods"),
        ],
        "Latency up, cause unclear: scale up cautiously.",
    ),
)

ALERT_NAMES: dict[str, tuple[Hint, ...]] = {
    "kubepodcrashlooping": (_hint("crash_loop", 1.0),),
    "kubepodnotready": (_hint("crash_loop", 0.4),),
    "kubecontaineroomkilled": (_hint("oom", 1.0),),
    "containeroomkilled": (_hint("oom", 1.0),),
    "kubepodoomkilled": (_hint("oom", 1.0),),
    "containermemoryhigh": (_hint("memory_leak", 0.6),),
    "highmemoryusage": (_hint("memory_leak", 0.6),),
    "memoryleak": (_hint("memory_leak", 0.9),),
    "cputhrottlinghigh": (_hint("cpu_high", 0.8),),
    "highcpuusage": (_hint("cpu_high", 0.8),),
    "kubehpamaxedout": (_hint("load_high", 0.8),),
    "highlatency": (_hint("latency_high", 0.8),),
    "highrequestlatency": (_hint("latency_high", 0.8),),
    "higherrorrate": (_hint("error_spike", 0.8),),
    "http5xxhigh": (_hint("error_spike", 0.8),),
}

ALERT_NAME_PATTERNS: tuple[PatternHint, ...] = (
    PatternHint(name="crashloop", pattern=r"crash ?loop", symptom="crash_loop", strength=0.8),
    PatternHint(name="oom", pattern=r"oom|outofmemory", symptom="oom", strength=0.8),
    PatternHint(name="memory", pattern=r"mem", symptom="memory_leak", strength=0.4),
    PatternHint(name="cpu", pattern=r"cpu", symptom="cpu_high", strength=0.5),
    PatternHint(name="latency", pattern=r"latency|slow", symptom="latency_high", strength=0.5),
    PatternHint(name="errors", pattern=r"error|5xx|failure", symptom="error_spike", strength=0.5),
)

LABEL_VALUES: dict[str, dict[str, tuple[Hint, ...]]] = {
    "reason": {
        "oomkilled": (_hint("oom", 1.0),),
        "crashloopbackoff": (_hint("crash_loop", 1.0),),
        "error": (_hint("crash_loop", 0.5),),
    },
}

METRIC_FAMILIES: tuple[FamilyPattern, ...] = (
    FamilyPattern(family="restarts", pattern=r"restart"),
    FamilyPattern(family="errors", pattern=r"error|5xx|fail|exception"),
    FamilyPattern(family="latency", pattern=r"latency|duration|response_time|p9\d|p50"),
    FamilyPattern(family="memory", pattern=r"mem|rss|heap|working_set"),
    FamilyPattern(family="cpu", pattern=r"cpu"),
    FamilyPattern(family="load", pattern=r"request|rps|qps|throughput|traffic"),
)

LOG_SIGNATURES: tuple[PatternHint, ...] = (
    PatternHint(
        name="out_of_memory",
        pattern=r"out ?of ?memory|oom ?kill|cannot allocate memory|memoryerror|heap space",
        symptom="oom",
        strength=0.9,
    ),
    PatternHint(
        name="crash",
        pattern=r"panic:|segmentation fault|sigsegv|fatal error|core dumped|"
        r"traceback \(most recent call last\)|exited with code [1-9]",
        symptom="crash_loop",
        strength=0.6,
    ),
    PatternHint(
        name="dependency",
        pattern=r"connection refused|connection reset|timed? ?out|deadline exceeded|"
        r"no route to host|name or service not known|upstream connect error",
        symptom="dependency_failure",
        strength=0.7,
    ),
    PatternHint(
        name="error",
        pattern=r"\berror\b|\bexception\b|\bfailed\b|\bstatus[=: ]+5\d\d\b",
        symptom="error_spike",
        strength=0.5,
    ),
)

SYMPTOM_SEVERITY: dict[SymptomName, float] = {
    "crash_loop": 0.85,
    "oom": 0.85,
    "memory_leak": 0.55,
    "cpu_high": 0.5,
    "load_high": 0.4,
    "latency_high": 0.65,
    "error_spike": 0.75,
    "dependency_failure": 0.6,
    "deploy_recent": 0.0,
}


def default_knowledge_base() -> KnowledgeBase:
    """The runbook knowledge base documented in ``docs/engine.md``."""
    return KnowledgeBase(
        rules=RULES,
        alert_names=ALERT_NAMES,
        alert_name_patterns=ALERT_NAME_PATTERNS,
        label_values=LABEL_VALUES,
        metric_families=METRIC_FAMILIES,
        log_signatures=LOG_SIGNATURES,
        symptom_severity=SYMPTOM_SEVERITY,
    )


def runbook_table(kb: KnowledgeBase) -> str:
    """The rules as a Markdown table (``docs/engine.md`` embeds this output)."""
    lines = ["| rule | when | kind | actions (prior) |", "|---|---|---|---|"]
    for rule in kb.rules:
        actions = ", ".join(f"`{a.action}` ({a.prior:.2f})" for a in rule.actions)
        lines.append(f"| `{rule.id}` | {' + '.join(rule.when)} | {rule.kind} | {actions} |")
    return "\n".join(lines)
