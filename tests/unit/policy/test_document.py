"""Policy documents: YAML and JSON forms, precise errors, the published JSON Schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.policy import Policy, parse_policies, parse_policy, policy_json_schema
from aegis.policy.document import policy_json_schema_text
from aegis.policy.errors import PolicyInvalid, PolicyParseError
from aegis.policy.globs import GLOB_PATTERN, check_glob
from tests.unit.policy.strategies import policy_lists

REPO = Path(__file__).resolve().parents[3]

EXAMPLE_YAML = """\
id: staging-restarts
description: AI may restart and scale in staging when confident
effect: allow            # allow | deny | require_approval
subjects: ["role:operator", "principal:ai-engine"]
actions: ["restart_deployment", "scale_deployment"]
resources: {namespaces: ["staging-*"], names: ["*"]}
conditions: {min_confidence: 0.8, max_actions: {count: 3, per_minutes: 60},
  replicas: {min: 1, max: 10}}
"""


def _doc(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "p",
        "effect": "allow",
        "subjects": ["role:operator"],
        "actions": ["restart_deployment"],
        "resources": {"namespaces": ["staging-*"]},
    }
    return base | changes


def _errors(document: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(document, **kwargs)
    return [str(e) for e in caught.value.errors]


def test_the_issue_example_parses_from_yaml_and_json_to_the_same_policy() -> None:
    from_yaml = parse_policy(EXAMPLE_YAML, source="staging.yaml")
    from_json = parse_policy(json.dumps(from_yaml.canonical_dict()), source="staging.json")

    assert from_yaml == from_json
    assert from_yaml.version == 1
    assert from_yaml.conditions.replicas is not None
    assert (from_yaml.conditions.replicas.min, from_yaml.conditions.replicas.max) == (1, 10)
    assert from_yaml.resources.names == ["*"]


def test_a_bad_field_is_reported_with_its_dotted_path_and_yaml_line() -> None:
    text = EXAMPLE_YAML.replace("min: 1,", "min: -1,")
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(text, source="staging.yaml")

    assert [str(e) for e in caught.value.errors] == ["conditions.replicas.min: must be >= 0"]
    assert caught.value.errors[0].line == 8
    assert str(caught.value) == "staging.yaml:8: conditions.replicas.min: must be >= 0"


def test_every_problem_in_a_document_is_reported_at_once() -> None:
    errors = _errors(
        _doc(
            effect="permit",
            subjects=["operator"],
            actions=["reboot_cluster"],
            conditions={"min_confidence": 1.5, "time_windows": [{"start": "25:00", "end": "x"}]},
        )
    )
    assert errors[0].startswith("effect: must be one of 'allow', 'deny' or 'require_approval'")
    assert errors[1].startswith("subjects[0]: 'operator' is not a subject")
    assert errors[2].startswith("actions[0]: must be one of 'restart_deployment'")
    assert errors[3] == "conditions.min_confidence: must be <= 1.0"
    assert errors[4].startswith("conditions.time_windows[0].start: '25:00' is not a time HH:MM")
    assert errors[5].startswith("conditions.time_windows[0].end: 'x' is not a time HH:MM")


def test_unknown_fields_are_rejected_with_a_suggestion() -> None:
    errors = _errors(_doc(resources={"namespaces": ["a"], "nmes": ["b"]}, priority=3))
    assert errors == [
        "resources.nmes: unknown field (did you mean 'names'?)",
        "priority: unknown field",
    ]


def test_missing_required_fields_are_named() -> None:
    assert _errors({"id": "p"}) == [
        "effect: is required",
        "subjects: is required",
        "actions: is required",
        "resources: is required",
    ]


@pytest.mark.parametrize(
    ("glob", "why"),
    [
        ("staging-[", "'[' at 8 is never closed"),
        ("a[]b", "empty [...] at 1"),
        ("a]", "']' at 1 closes nothing"),
        ("[z-a]*", "range z-a is reversed"),
        ("Staging-*", "character 'S' at 0 is not allowed"),
        ("staging *", "character ' ' at 7 is not allowed"),
        ("[a-]", "'-' in [...] must join a range"),
        ("", "must not be empty"),
    ],
)
def test_bad_glob_patterns_are_rejected(glob: str, why: str) -> None:
    errors = _errors(_doc(resources={"namespaces": ["ok-*"], "names": [glob]}))
    assert len(errors) == 1
    assert errors[0].startswith("resources.names[0]: ")
    assert why in errors[0]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("conditions", {"replicas": {"min": 5, "max": 2}}, "min (5) must be <= max (2)"),
        ("conditions", {"time_windows": [{"start": "09:00", "end": "09:00"}]}, "start equals end"),
        ("conditions", {"time_windows": [{"start": "24:00", "end": "01:00"}]}, "00:00 to 23:59"),
        ("conditions", {"max_actions": {"count": 0, "per_minutes": 60}}, "must be >= 1"),
        ("conditions", {"severities": []}, "must have at least 1 item"),
        ("unless", {}, "unless: set at least one condition"),
        ("subjects", ["principal:ai_engine"], "is not a subject"),
        ("subjects", [], "must have at least 1 item"),
        ("version", 0, "must be >= 1"),
        ("id", "Bad Id", "is not a policy id"),
    ],
)
def test_rules_the_schema_cannot_express_are_enforced(field: str, value: Any, message: str) -> None:
    errors = _errors(_doc(**{field: value}))
    assert any(message in e for e in errors), errors


def test_label_selectors_follow_kubernetes_rules() -> None:
    in_without_values = {"match_expressions": [{"key": "tier", "operator": "In"}]}
    exists_with_values = {
        "match_expressions": [{"key": "tier", "operator": "Exists", "values": ["x"]}]
    }
    bad_key = {"match_labels": {"bad key": "x"}}
    for selector, message in [
        (in_without_values, "operator In needs at least one value"),
        (exists_with_values, "operator Exists takes no values"),
        (bad_key, "is not a Kubernetes label key"),
        ({}, "set match_labels or match_expressions"),
    ]:
        errors = _errors(_doc(resources={"namespaces": ["a"], "labels": selector}))
        assert any(message in e for e in errors), errors


def test_strings_are_not_coerced_into_numbers_or_numbers_into_strings() -> None:
    assert _errors(_doc(conditions={"min_confidence": "0.8"})) == [
        "conditions.min_confidence: must be a number"
    ]
    assert _errors(_doc(description=5)) == ["description: must be a string"]
    assert _errors(_doc(version=True)) == ["version: must be an integer"]


def test_yaml_times_stay_strings_instead_of_yaml_1_1_sexagesimal_integers() -> None:
    text = (
        "id: night\neffect: deny\nsubjects: ['*']\nactions: ['*']\n"
        "resources: {namespaces: ['*']}\n"
        "conditions:\n  time_windows:\n    - {days: [mon, on], start: 17:00, end: 08:00}\n"
    )
    errors = _errors(text, source="night.yaml")
    # ``on`` stays the string "on" (a bad day), never the boolean True.
    assert errors == ["conditions.time_windows[0].days[1]: must be one of 'mon', 'tue', "
                      "'wed', 'thu', 'fri', 'sat' or 'sun'"]  # fmt: skip
    policy = parse_policy(text.replace(", on]", "]"), source="night.yaml")
    assert policy.conditions.time_windows is not None
    assert policy.conditions.time_windows[0].start == "17:00"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id: a\nid: b\n", "x.yaml:2: duplicate key 'id'"),
        ("base: &b {a: 1}\nother: *b\n", "anchors and aliases are not allowed"),
        ("id: !!python/object:os.system x\n", "explicit tag"),
        # standard tags too: `!!str 5` would otherwise be read as the integer 5
        ("id: a\nversion: !!str 5\n", "x.yaml:2: explicit tag tag:yaml.org,2002:str"),
        ("id: a\nactions: !!seq [restart_deployment]\n", "x.yaml:2: explicit tag"),
        ("id: a\nresources: !!map {namespaces: [x]}\n", "x.yaml:2: explicit tag"),
        ("!!str id: a\n", "keys must be plain strings"),
        ("id: [unclosed\n", "x.yaml:2: invalid YAML"),
        ("? [a, b]\n: c\n", "keys must be plain strings"),
        ("", "empty document"),
        ("a: 1\n---\nb: 2\n", "expected one policy document, found 2"),
        ("a: " + "[" * 50_000, "nested too deeply"),
        ("id: a\ndescription: \x1b[31mred\n", "x.yaml:2: invalid YAML: character #x001b"),
        ("id: a\x00\n", "x.yaml:1: invalid YAML: character #x0000 is not allowed"),
        ("id: a\nversion: " + "9" * 5000 + "\n", "x.yaml:2: invalid YAML: an integer with too"),
    ],
)
def test_dangerous_or_ambiguous_yaml_is_refused(text: str, message: str) -> None:
    with pytest.raises(PolicyParseError, match=re.escape(message)):
        parse_policy(text, source="x.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"id": "a", "id": "b"}', "duplicate key 'id'"),
        ('{"min_confidence": NaN}', "NaN is not allowed"),
        ('{"id": ', "invalid JSON"),
        ("[" * 50_000, "nested too deeply"),
        ('{"version": ' + "9" * 5000 + "}", "invalid JSON: an integer with too many digits"),
    ],
)
def test_ambiguous_json_is_refused(text: str, message: str) -> None:
    with pytest.raises(PolicyParseError, match=re.escape(message)):
        parse_policy(text, source="x.json")


def test_a_document_that_is_not_a_mapping_is_refused() -> None:
    assert _errors("- a\n- b\n", source="x.yaml") == ["a policy must be a mapping of fields"]


def test_several_policies_from_a_yaml_stream_prefix_errors_with_their_index() -> None:
    first = yaml.safe_dump(_doc(id="a"))
    second = yaml.safe_dump([_doc(id="b"), _doc(id="c", effect="nope")])
    with pytest.raises(PolicyInvalid) as caught:
        parse_policies(f"{first}---\n{second}", source="set.yaml")
    assert [str(e) for e in caught.value.errors] == [
        "[2].effect: must be one of 'allow', 'deny' or 'require_approval'"
    ]
    ids = [p.id for p in parse_policies(f"{first}---\n{second.replace('nope', 'deny')}")]
    assert ids == ["a", "b", "c"]


@settings(max_examples=40, deadline=None)
@given(policy_lists(max_size=3))
def test_canonical_documents_round_trip_through_json_and_yaml(policies: list[Policy]) -> None:
    for policy in policies:
        canonical = policy.canonical_dict()
        assert parse_policy(json.dumps(canonical), source="p.json") == policy
        assert parse_policy(yaml.safe_dump(canonical), source="p.yaml") == policy


# --- the published JSON Schema ----------------------------------------------------------------
def test_the_published_schema_is_the_generated_one() -> None:
    published = (REPO / "docs" / "policy-schema.json").read_text(encoding="utf-8")
    assert published == policy_json_schema_text(), (
        "docs/policy-schema.json is stale: run "
        "`.venv/bin/python -m aegis.policy > docs/policy-schema.json`"
    )


def test_the_schema_is_valid_draft_2020_12_and_accepts_the_example() -> None:
    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(EXAMPLE_YAML), schema)


@pytest.mark.parametrize(
    "document",
    [
        _doc(extra=1),
        _doc(effect="permit"),
        _doc(subjects=["operator"]),
        _doc(actions=["reboot"]),
        _doc(resources={"namespaces": ["Bad"]}),
        _doc(resources={"namespaces": ["a["]}),
        _doc(resources={"namespaces": []}),
        _doc(conditions={"replicas": {"min": -1}}),
        _doc(conditions={"min_confidence": 2}),
        _doc(conditions={"time_windows": [{"start": "9:00", "end": "10:00"}]}),
        _doc(conditions={"max_actions": {"count": 1}}),
        _doc(resources={"namespaces": ["a"], "labels": {"match_labels": {"bad key": "x"}}}),
        _doc(resources={"namespaces": ["a"], "labels": {"match_labels": {"tier": "bad value"}}}),
    ],
)
def test_schema_and_model_reject_the_same_bad_documents(document: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, policy_json_schema())
    with pytest.raises(PolicyInvalid):
        parse_policy(document)


@settings(max_examples=40, deadline=None)
@given(policy_lists(max_size=3))
def test_schema_accepts_every_valid_policy(policies: list[Policy]) -> None:
    for policy in policies:
        jsonschema.validate(policy.canonical_dict(), policy_json_schema())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab-.*?[]!z0A ", max_size=8))
def test_the_published_glob_grammar_agrees_with_the_checker(text: str) -> None:
    try:
        check_glob(text)
        accepted = True
    except ValueError as exc:
        accepted = False
        reversed_range = "reversed" in str(exc)
    in_grammar = re.fullmatch(GLOB_PATTERN, text) is not None
    if accepted or not reversed_range:
        assert accepted == in_grammar, text


def test_every_yaml_example_in_the_policy_docs_is_a_valid_policy() -> None:
    text = (REPO / "docs" / "policy.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        parse_policy(block, source="docs/policy.md")
