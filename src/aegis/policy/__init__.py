"""The policy engine: documents, the indexed evaluator and signed bundles (pure, in-process).

Public API::

    policy = parse_policy(yaml_or_json_text_or_mapping, source="staging.yaml")
    policies = PolicySet([policy, ...])
    decision = policies.evaluate({"subject": "role:operator", "action": "restart_deployment",
                                  "resource": {"namespace": "staging-a", "name": "web"},
                                  "context": {"confidence": 0.9}})
    decision.effect, decision.policies, decision.reason, decision.as_dict()

Semantics: ``docs/policy.md``. JSON Schema: ``docs/policy-schema.json``.
"""

from __future__ import annotations

from aegis.policy.bundle import (
    VerifiedBundle,
    export_bundle,
    policy_set_digest,
    read_bundle,
    verify_bundle,
)
from aegis.policy.document import Effect, Policy, PolicyRef, policy_json_schema
from aegis.policy.engine import PolicySet
from aegis.policy.loader import parse_policies, parse_policy
from aegis.policy.request import Decision, EvaluationRequest

__all__ = [
    "Decision",
    "Effect",
    "EvaluationRequest",
    "Policy",
    "PolicyRef",
    "PolicySet",
    "VerifiedBundle",
    "export_bundle",
    "parse_policies",
    "parse_policy",
    "policy_json_schema",
    "policy_set_digest",
    "read_bundle",
    "verify_bundle",
]
