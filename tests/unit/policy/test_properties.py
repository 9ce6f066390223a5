"""Properties of the decision rule, checked on random policy sets and requests (hypothesis).

Ranks order decisions by permissiveness: DENY < REQUIRE_APPROVAL < ALLOW. What holds:

* the indexed evaluator equals a full scan (same Decision, reason included) and the
  independent reference evaluator in ``reference.py`` (same effect and deciding policies);
* the order of policies never matters; an empty set denies everything;
* adding a deny never raises the rank; adding an allow never lowers it;
* adding a require_approval never produces ALLOW where there was none and never turns ALLOW
  into DENY (it can turn a default deny into REQUIRE_APPROVAL, or ALLOW into it);
* a decision made by explicit denies survives adding any policy and adding subjects;
* withholding a context input never raises the rank (missing inputs fail closed).

Not true, so not claimed: "adding a require_approval never raises the rank" (a default deny
can become REQUIRE_APPROVAL), and "raising confidence never lowers the rank" (a policy may be
written to apply only at high confidence, e.g. a deny with min_confidence).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.policy import Decision, EvaluationRequest, Policy, PolicySet
from aegis.policy.document import Effect
from tests.unit.policy import reference
from tests.unit.policy.strategies import (
    SUBJECTS,
    policy_lists,
    request_dicts,
    requests,
    single_policy,
)

RANK = {Effect.DENY: 0, Effect.REQUIRE_APPROVAL: 1, Effect.ALLOW: 2}
PROPERTY = settings(max_examples=100, deadline=None)


def _explicit_deny(decision: Decision) -> bool:
    return decision.effect is Effect.DENY and bool(decision.policies)


@PROPERTY
@given(policy_lists(), st.lists(requests, min_size=1, max_size=5))
def test_index_agrees_with_a_scan_and_with_the_reference_evaluator(
    policies: list[Policy], reqs: list[EvaluationRequest]
) -> None:
    policy_set = PolicySet(policies)
    for req in reqs:
        decision = policy_set.evaluate(req)
        assert decision == policy_set.evaluate_by_scan(req)
        effect, refs = reference.decide(policies, req)
        assert (decision.effect, list(decision.policies)) == (effect, refs)


@PROPERTY
@given(policy_lists(), requests, st.randoms(use_true_random=False))
def test_policy_order_never_matters(
    policies: list[Policy], req: EvaluationRequest, rng: Any
) -> None:
    shuffled = list(policies)
    rng.shuffle(shuffled)
    assert PolicySet(policies).evaluate(req) == PolicySet(shuffled).evaluate(req)


@PROPERTY
@given(requests)
def test_an_empty_set_denies_everything(req: EvaluationRequest) -> None:
    decision = PolicySet([]).evaluate(req)
    assert decision.effect is Effect.DENY
    assert decision.policies == ()
    assert decision.reason.startswith(f"no policy allows {req.action} on ")


@PROPERTY
@given(policy_lists(), single_policy("deny"), requests)
def test_adding_a_deny_never_makes_a_decision_more_permissive(
    policies: list[Policy], deny: Policy, req: EvaluationRequest
) -> None:
    before = PolicySet(policies).evaluate(req)
    after = PolicySet([*policies, deny]).evaluate(req)
    assert after.effect in (before.effect, Effect.DENY)
    if before.effect is Effect.DENY:
        assert after.effect is Effect.DENY


@PROPERTY
@given(policy_lists(), single_policy("allow"), requests)
def test_adding_an_allow_never_makes_a_decision_less_permissive(
    policies: list[Policy], allow: Policy, req: EvaluationRequest
) -> None:
    before = PolicySet(policies).evaluate(req)
    after = PolicySet([*policies, allow]).evaluate(req)
    assert RANK[after.effect] >= RANK[before.effect]
    if _explicit_deny(before) or before.effect is Effect.REQUIRE_APPROVAL:
        assert after == before


@PROPERTY
@given(policy_lists(), single_policy("require_approval"), requests)
def test_adding_a_require_approval_never_creates_an_allow_nor_a_deny(
    policies: list[Policy], approval: Policy, req: EvaluationRequest
) -> None:
    before = PolicySet(policies).evaluate(req)
    after = PolicySet([*policies, approval]).evaluate(req)
    if after.effect is Effect.ALLOW:
        assert before.effect is Effect.ALLOW
    if before.effect is Effect.ALLOW:
        assert after.effect in (Effect.ALLOW, Effect.REQUIRE_APPROVAL)
    if _explicit_deny(before):
        assert after == before


@PROPERTY
@given(policy_lists(), request_dicts(), st.lists(st.sampled_from(SUBJECTS), max_size=3))
def test_an_explicit_deny_holds_for_every_superset_of_subjects(
    policies: list[Policy], raw: dict[str, Any], extra: list[str]
) -> None:
    policy_set = PolicySet(policies)
    before = policy_set.evaluate(raw)
    after = policy_set.evaluate(raw | {"subject": [*raw["subject"], *extra]})
    if _explicit_deny(before):
        assert after.effect is Effect.DENY
        assert set(before.policies) <= set(after.policies)


@PROPERTY
@given(
    policy_lists(),
    request_dicts(),
    st.sampled_from(["confidence", "severity", "recent_actions", "labels"]),
)
def test_withholding_an_input_never_makes_a_decision_more_permissive(
    policies: list[Policy], raw: dict[str, Any], withheld: str
) -> None:
    policy_set = PolicySet(policies)
    before = policy_set.evaluate(raw)
    if withheld == "labels":
        partial = raw | {"resource": {k: v for k, v in raw["resource"].items() if k != "labels"}}
    else:
        partial = raw | {"context": {k: v for k, v in raw["context"].items() if k != withheld}}
    after = policy_set.evaluate(partial)
    assert RANK[after.effect] <= RANK[before.effect]


@PROPERTY
@given(policy_lists(), requests)
def test_a_decision_names_only_policies_with_its_effect_sorted_by_id(
    policies: list[Policy], req: EvaluationRequest
) -> None:
    decision = PolicySet(policies).evaluate(req)
    effects = {p.ref: p.effect for p in policies}
    assert list(decision.policies) == sorted(decision.policies)
    assert all(effects[ref] is decision.effect for ref in decision.policies)
    if not decision.policies:
        assert decision.effect is Effect.DENY
        assert decision.reason.startswith("no policy allows")
