"""The decision rule on hand-written cases: precedence, conditions, unknown inputs, reasons."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis.policy import Decision, EvaluationRequest, Policy, PolicySet, parse_policy
from aegis.policy.document import Effect, PolicyRef
from aegis.policy.errors import DuplicatePolicy, InvalidEvaluationRequest
from aegis.policy.globs import Glob

FRIDAY = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def policy(policy_id: str, effect: str = "allow", **fields: Any) -> Policy:
    doc: dict[str, Any] = {
        "id": policy_id,
        "effect": effect,
        "subjects": ["*"],
        "actions": ["*"],
        "resources": {"namespaces": ["*"]},
    }
    return parse_policy(doc | fields)


def request(
    subject: str | list[str] = "role:operator",
    action: str = "restart_deployment",
    namespace: str = "staging-a",
    name: str = "web",
    labels: dict[str, str] | None = None,
    **context: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {"namespace": namespace, "name": name}
    if labels is not None:
        resource["labels"] = labels
    return {
        "subject": subject,
        "action": action,
        "resource": resource,
        "context": {"now": FRIDAY.isoformat()} | context,
    }


def decide(policies: list[Policy], req: dict[str, Any]) -> Decision:
    return PolicySet(policies).evaluate(req)


STAGING = policy(
    "staging-restarts",
    subjects=["role:operator", "principal:ai-engine"],
    actions=["restart_deployment", "scale_deployment"],
    resources={"namespaces": ["staging-*"], "names": ["*"]},
    conditions={
        "min_confidence": 0.8,
        "max_actions": {"count": 3, "per_minutes": 60},
        "replicas": {"min": 1, "max": 10},
    },
)
FREEZE = policy("kube-system-freeze", "deny", version=3, resources={"namespaces": ["kube-*"]})


# --- precedence and reasons -------------------------------------------------------------------
def test_a_deny_names_its_policy_version_and_the_matching_pattern() -> None:
    decision = decide([STAGING, FREEZE], request(namespace="kube-system", name="coredns"))
    assert decision.as_dict() == {
        "decision": "deny",
        "policies": [{"id": "kube-system-freeze", "version": 3}],
        "reason": "denied by policy kube-system-freeze v3: namespace kube-system matches kube-*",
    }


def test_default_deny_says_nothing_allows_the_action() -> None:
    decision = decide([], request())
    assert decision.effect is Effect.DENY
    assert decision.policies == ()
    assert (
        decision.reason == "no policy allows restart_deployment on staging-a/web for role:operator"
    )


def test_an_allow_applies_when_every_condition_holds() -> None:
    decision = decide([STAGING], request(confidence=0.9, recent_actions=2))
    assert decision.effect is Effect.ALLOW
    assert decision.allowed
    assert decision.policies == (PolicyRef("staging-restarts", 1),)
    assert decision.reason.startswith(
        "allowed by policy staging-restarts v1: namespace staging-a matches staging-*, "
        "subject role:operator, confidence 0.9 >= 0.8, 2 recent actions"
    )


def test_an_allow_whose_min_confidence_is_not_met_does_not_apply() -> None:
    decision = decide([STAGING], request(confidence=0.5, recent_actions=0))
    assert decision.effect is Effect.DENY
    assert decision.policies == ()
    assert decision.reason.endswith("; policy staging-restarts v1 matched but confidence 0.5 < 0.8")


def test_deny_beats_require_approval_beats_allow() -> None:
    allow = policy("a-allow")
    approve = policy("b-approve", "require_approval")
    deny = policy("c-deny", "deny")
    assert decide([allow, approve, deny], request()).effect is Effect.DENY
    approval = decide([allow, approve], request())
    assert approval.effect is Effect.REQUIRE_APPROVAL
    assert not approval.allowed
    assert approval.policies == (PolicyRef("b-approve", 1),)
    assert approval.reason.startswith("approval required by policy b-approve v1")
    assert decide([allow], request()).effect is Effect.ALLOW


def test_require_approval_applies_on_its_own_without_an_allow() -> None:
    assert (
        decide([policy("approve", "require_approval")], request()).effect is Effect.REQUIRE_APPROVAL
    )


def test_every_deciding_policy_is_listed_sorted_and_the_reason_counts_the_rest() -> None:
    decision = decide([policy("z", "deny"), policy("m", "deny"), policy("a")], request())
    assert decision.policies == (PolicyRef("m", 1), PolicyRef("z", 1))
    assert decision.reason.endswith("(and 1 more)")


def test_a_deny_with_conditions_applies_only_when_they_hold() -> None:
    quiet = policy("no-info-restarts", "deny", conditions={"severities": ["info"]})
    allow = policy("allow-all")
    assert decide([quiet, allow], request(severity="info")).effect is Effect.DENY
    assert decide([quiet, allow], request(severity="critical")).effect is Effect.ALLOW


# --- blast radius (unless) --------------------------------------------------------------------
RATE_LIMIT = policy(
    "ai-rate-limit",
    "deny",
    subjects=["principal:ai-engine"],
    unless={"max_actions": {"count": 3, "per_minutes": 60}},
)
ALLOW_AI = policy("allow-ai", subjects=["principal:ai-engine"])


def test_a_blast_radius_deny_applies_once_the_limit_is_reached() -> None:
    ai = "principal:ai-engine"
    assert decide([RATE_LIMIT, ALLOW_AI], request(ai, recent_actions=2)).effect is Effect.ALLOW
    denied = decide([RATE_LIMIT, ALLOW_AI], request(ai, recent_actions=3))
    assert denied.effect is Effect.DENY
    assert denied.reason == (
        "denied by policy ai-rate-limit v1: namespace staging-a matches *, subject "
        "principal:ai-engine, 3 recent actions on the target reach the limit of 3 per 60 min"
    )


def test_recent_action_timestamps_count_only_inside_the_window() -> None:
    ai = "principal:ai-engine"
    inside = [FRIDAY - timedelta(minutes=m) for m in (1, 30)]
    boundary = FRIDAY - timedelta(minutes=60)  # exactly 60 min ago: outside (now - 60 min, now]
    stamps = [t.isoformat() for t in [*inside, boundary]]
    assert decide([RATE_LIMIT, ALLOW_AI], request(ai, recent_actions=stamps)).effect is Effect.ALLOW
    stamps.append((FRIDAY - timedelta(minutes=59, seconds=59)).isoformat())
    assert decide([RATE_LIMIT, ALLOW_AI], request(ai, recent_actions=stamps)).effect is Effect.DENY


def test_a_window_reaching_back_before_year_1_counts_every_timestamp() -> None:
    ai = "principal:ai-engine"
    stamps = ["0001-01-01T00:10:00+00:00", "0001-01-01T00:20:00+00:00", "0001-01-01T00:25:00Z"]
    at_dawn = request(ai, now="0001-01-01T00:30:00Z", recent_actions=stamps)
    denied = decide([RATE_LIMIT, ALLOW_AI], at_dawn)
    assert denied.effect is Effect.DENY
    assert "3 recent actions on the target reach the limit" in denied.reason


def test_max_window_minutes_tells_the_caller_how_much_history_to_pass() -> None:
    assert PolicySet([RATE_LIMIT, STAGING, FREEZE]).max_window_minutes == 60
    assert PolicySet([FREEZE]).max_window_minutes == 0


# --- time windows -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("when", "inside"),
    [
        (datetime(2026, 11, 27, 21, 59), False),  # Friday before the window
        (datetime(2026, 11, 27, 22, 0), True),  # Friday at start
        (datetime(2026, 11, 28, 1, 59), True),  # Saturday, the part after midnight
        (datetime(2026, 11, 28, 2, 0), False),  # Saturday at end (exclusive)
        (datetime(2026, 11, 28, 22, 30), False),  # Saturday night is not listed
        (datetime(2026, 11, 30, 0, 30), True),  # Monday 00:30 belongs to Sunday's window
    ],
)
def test_time_windows_are_utc_half_open_and_may_wrap_midnight(when: datetime, inside: bool) -> None:
    night = policy(
        "night-freeze",
        "deny",
        conditions={"time_windows": [{"days": ["fri", "sun"], "start": "22:00", "end": "02:00"}]},
    )
    req = request(now=when.replace(tzinfo=UTC).isoformat())
    expected = Effect.DENY if inside else Effect.ALLOW
    assert decide([night, policy("allow")], req).effect is expected


def test_a_window_ending_at_24_00_covers_the_rest_of_the_day() -> None:
    late = policy("late", conditions={"time_windows": [{"start": "18:00", "end": "24:00"}]})
    at = datetime(2026, 11, 27, 23, 59, 59, tzinfo=UTC).isoformat()
    assert decide([late], request(now=at)).effect is Effect.ALLOW


def test_now_is_compared_in_utc_whatever_offset_it_carries() -> None:
    business = policy(
        "business",
        conditions={"time_windows": [{"days": ["fri"], "start": "09:00", "end": "17:00"}]},
    )
    # 18:00 in UTC+02:00 is 16:00 UTC: inside.
    assert decide([business], request(now="2026-11-27T18:00:00+02:00")).effect is Effect.ALLOW


# --- replicas and labels ----------------------------------------------------------------------
def test_replica_bounds_limit_scaling_and_leave_other_actions_alone() -> None:
    scale = "scale_deployment"
    ok = request(action=scale, replicas=10, confidence=0.9, recent_actions=0)
    assert decide([STAGING], ok).effect is Effect.ALLOW
    too_many = request(action=scale, replicas=11, confidence=0.9, recent_actions=0)
    denied = decide([STAGING], too_many)
    assert denied.effect is Effect.DENY
    assert denied.reason.endswith("matched but replicas 11 outside 1..10")
    restart = request(replicas=50, confidence=0.9, recent_actions=0)
    assert decide([STAGING], restart).effect is Effect.ALLOW


def test_a_scale_request_must_say_how_many_replicas() -> None:
    with pytest.raises(InvalidEvaluationRequest, match="scale_deployment needs the replica"):
        decide([STAGING], request(action="scale_deployment"))


def test_label_selectors_use_kubernetes_semantics() -> None:
    selector = {
        "match_labels": {"app": "web"},
        "match_expressions": [
            {"key": "tier", "operator": "NotIn", "values": ["critical"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ],
    }
    allow = policy("web", resources={"namespaces": ["*"], "labels": selector})
    assert decide([allow], request(labels={"app": "web"})).effect is Effect.ALLOW
    assert decide([allow], request(labels={"app": "web", "tier": "front"})).effect is Effect.ALLOW
    for labels in (
        {"app": "api"},
        {"app": "web", "tier": "critical"},
        {"app": "web", "canary": ""},
    ):
        assert decide([allow], request(labels=labels)).effect is Effect.DENY


# --- unknown inputs fail closed ---------------------------------------------------------------
def test_an_allow_needing_a_missing_input_does_not_apply() -> None:
    decision = decide([STAGING], request(recent_actions=0))
    assert decision.effect is Effect.DENY
    assert "confidence not supplied" in decision.reason


def test_a_deny_needing_a_missing_input_applies() -> None:
    quiet = policy("no-info", "deny", conditions={"severities": ["info"]})
    decision = decide([quiet, policy("allow")], request())
    assert decision.effect is Effect.DENY
    assert decision.reason == (
        "denied by policy no-info v1: namespace staging-a matches *, "
        "severity not supplied (severities [info])"
    )


def test_a_deny_scoped_by_labels_applies_when_labels_are_not_supplied() -> None:
    critical = policy(
        "no-critical",
        "deny",
        resources={"namespaces": ["*"], "labels": {"match_labels": {"tier": "critical"}}},
    )
    assert decide([critical, policy("allow")], request()).effect is Effect.DENY
    assert decide([critical, policy("allow")], request(labels={})).effect is Effect.ALLOW


def test_a_blast_radius_deny_applies_when_recent_actions_are_not_supplied() -> None:
    decision = decide([RATE_LIMIT, ALLOW_AI], request("principal:ai-engine"))
    assert decision.effect is Effect.DENY
    assert "recent actions not supplied" in decision.reason


def test_an_approval_with_an_unknown_outcome_downgrades_an_allow_but_never_opens_a_deny() -> None:
    approve = policy(
        "approve-critical", "require_approval", conditions={"severities": ["critical"]}
    )
    with_allow = decide([approve, policy("allow")], request())
    assert with_allow.effect is Effect.REQUIRE_APPROVAL
    assert with_allow.policies == (PolicyRef("approve-critical", 1),)
    alone = decide([approve], request())
    assert alone.effect is Effect.DENY
    assert alone.policies == ()


# --- subjects ---------------------------------------------------------------------------------
def test_a_user_is_evaluated_with_all_of_their_roles() -> None:
    operators = policy("operators", subjects=["role:operator"])
    no_alice = policy("no-alice", "deny", subjects=["user:alice"])
    assert decide([operators], request(["user:alice", "role:operator"])).effect is Effect.ALLOW
    assert decide([operators], request(["user:alice", "role:viewer"])).effect is Effect.DENY
    both = decide([operators, no_alice], request(["user:alice", "role:operator"]))
    assert both.effect is Effect.DENY
    assert "subject user:alice" in both.reason


def test_kind_wildcards_match_only_their_kind() -> None:
    any_role = policy("any-role", subjects=["role:*"])
    assert decide([any_role], request("role:whatever")).effect is Effect.ALLOW
    assert decide([any_role], request("user:role")).effect is Effect.DENY
    assert decide([any_role], request("principal:ai-engine")).effect is Effect.DENY


def test_action_lists_and_the_star_action() -> None:
    restarts = policy("restarts", actions=["restart_deployment"])
    assert decide([restarts], request(action="delete_pod")).effect is Effect.DENY
    assert decide([policy("all")], request(action="delete_pod")).effect is Effect.ALLOW


@pytest.mark.parametrize(
    ("pattern", "namespace", "matches"),
    [
        ("staging-*", "staging-a", True),
        ("staging-*", "staging", False),
        ("*-prod", "team1-prod", True),
        ("*-prod", "team1-prod-2", False),
        ("team0*-prod", "team07-prod", True),
        ("team0*-prod", "team0-prod", True),
        ("team0*-prod", "team1-prod", False),
        ("?????", "kube1", True),
        ("?????", "kube12", False),
        ("[sk]*", "sa", True),
        ("[!sk]*", "sa", False),
        ("prod-[0-9]", "prod-7", True),
        ("*a*", "kube-system", False),
        ("*a*", "staging-a", True),
        ("a*a", "a", False),
    ],
)
def test_namespace_globs_through_the_index(pattern: str, namespace: str, matches: bool) -> None:
    policy_set = PolicySet([policy("p", resources={"namespaces": [pattern]})])
    req = request(namespace=namespace)
    assert policy_set.evaluate(req).allowed is matches
    assert policy_set.evaluate_by_scan(req).allowed is matches


@pytest.mark.parametrize(("field", "stars"), [("namespaces", 7), ("names", 4)])
def test_a_glob_of_many_wildcards_is_matched_without_backtracking(field: str, stars: int) -> None:
    # Compiled to a regex, '*a*a*a*a*a*a*a*b' took 13 s against a namespace of 63 'a's, and
    # '*a*a*a*a*b' 10 s against a name of 253 (each '.*' tried at every split: polynomial in the
    # length, exponential in the stars), on a decision path that holds the target's lock.
    pattern = "*a" * stars + "*b"
    resources = {"namespaces": ["*"], "names": ["*"]} | {field: [pattern]}
    policy_set = PolicySet([policy("p", resources=resources)])
    req = request(namespace="a" * 63, name="a" * 253)

    started = time.perf_counter()
    assert policy_set.evaluate(req).allowed is False
    assert policy_set.evaluate_by_scan(req).allowed is False
    assert policy_set.evaluate(request(namespace="a" * 62 + "b", name="a" * 252 + "b")).allowed
    assert time.perf_counter() - started < 1.0


_GLOB_ITEMS = st.sampled_from(["a", "b", "-", ".", "*", "*", "?", "[ab]", "[!a]", "[a-b]"])


@given(
    st.lists(_GLOB_ITEMS, min_size=1, max_size=10).map("".join),
    st.text(alphabet="ab-.", max_size=12),
)
def test_a_compiled_glob_matches_exactly_what_fnmatch_does(pattern: str, value: str) -> None:
    assert Glob.compile(pattern).matches(value) is fnmatchcase(value, pattern)


# --- malformed input --------------------------------------------------------------------------
def test_duplicate_ids_in_one_set_are_refused() -> None:
    with pytest.raises(DuplicatePolicy, match="'p' appears twice"):
        PolicySet([policy("p"), policy("p", version=2)])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"subject": "role:*"}, "subject: 'role:*' is not a subject"),
        ({"subject": []}, "subject: must be a subject or a non-empty list"),
        ({"action": "reboot"}, "action: must be one of"),
        ({"resource": {"namespace": "Kube", "name": "x"}}, "resource.namespace: 'Kube' is not"),
        ({"context": {"now": "2026-11-27T12:00:00"}}, "context.now: must carry a time zone"),
        ({"context": {"now": 1764244800}}, "context.now: must be an ISO 8601 timestamp"),
        ({"context": {"now": "0001-01-01T00:00:00+14:00"}}, "context.now: is out of range in UTC"),
        (
            {"context": {"recent_actions": ["9999-12-31T23:59:00-01:00"]}},
            "context.recent_actions: item 0 is out of range in UTC",
        ),
        ({"context": {"confidence": "high"}}, "context.confidence: must be a number"),
        ({"context": {"recent_actions": -1}}, "context.recent_actions: must be >= 0"),
        ({"context": {"recent_actions": True}}, "context.recent_actions: must be a count"),
        ({"context": {"severity": "sev1"}}, "context.severity: must be one of 'info'"),
        ({"context": {"mood": "good"}}, "context.mood: unknown field"),
    ],
)
def test_malformed_requests_are_refused_with_the_path_of_the_bad_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidEvaluationRequest) as caught:
        decide([], request() | changes)
    assert message in str(caught.value)


def test_an_evaluation_request_defaults_now_to_the_current_time() -> None:
    before = datetime.now(UTC)
    req = EvaluationRequest.model_validate(request() | {"context": {}})
    assert before <= req.context.now <= datetime.now(UTC)


def test_a_copied_request_is_decided_on_its_own_fields() -> None:
    policy_set = PolicySet([policy("operators", subjects=["role:operator"])])
    original = EvaluationRequest.model_validate(request())
    assert policy_set.evaluate(original).effect is Effect.ALLOW
    copied = original.model_copy(update={"subject": ("role:viewer",)})
    assert policy_set.evaluate(copied).effect is Effect.DENY
