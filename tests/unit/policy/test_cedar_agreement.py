"""The benchmark's Cedar translation decides exactly as Aegis does (so its figures compare like
with like), which also cross-checks Aegis's semantics against an independent engine."""

from __future__ import annotations

import importlib.util

from bench import policy_eval

from aegis.policy import EvaluationRequest, PolicySet
from tests.conftest import require


def test_cedar_and_aegis_agree_on_a_generated_set_and_request_stream() -> None:
    require(importlib.util.find_spec("cedarpy") is not None, "cedarpy is not installed")
    import cedarpy

    policies = policy_eval.generate_policies(300, seed=11)
    raw = policy_eval.generate_requests(600, seed=11)
    aegis = PolicySet(policies)
    cedar = cedarpy.PolicySet.from_str("\n".join(policy_eval.to_cedar(p) for p in policies))
    entities = cedarpy.Entities.from_json_str("[]")
    effects = {p.id: p.effect.value for p in policies}
    seen = set()
    for request in raw:
        ours = aegis.evaluate(EvaluationRequest.model_validate(request))
        result = cedarpy.is_authorized(policy_eval.cedar_request(request), cedar, entities)
        theirs = policy_eval.cedar_effect(result, effects)
        assert (ours.effect.value, sorted(ref.id for ref in ours.policies)) == theirs, request
        seen.add(ours.effect.value + ("" if ours.policies else " (default)"))
    assert seen == {"allow", "deny", "deny (default)", "require_approval"}
