"""Which workload an alert names: only names the executor (and Kubernetes) would take."""

from __future__ import annotations

import pytest

from aegis.incidents.telemetry import scope_of


def test_an_alert_naming_a_valid_workload_has_its_scope() -> None:
    scope = scope_of({"namespace": "demo", "deployment": "web", "pod": "web-7d9f-x2k"})
    assert scope is not None
    assert (scope.namespace, scope.deployment, scope.pod) == ("demo", "web", "web-7d9f-x2k")


@pytest.mark.parametrize(
    "labels",
    [
        {"namespace": "demo\n", "deployment": "web"},
        {"namespace": "demo", "deployment": "web\n"},
        {"namespace": "demo", "pod": "web-1\n"},
        {"namespace": "demo", "pod": "a..b"},
        {"namespace": "Demo", "deployment": "web"},
        {"namespace": "demo"},
    ],
)
def test_a_label_that_is_no_valid_name_names_no_workload(labels: dict[str, str]) -> None:
    # A trailing newline passed a '$'-anchored match, and the executor's request schema then
    # raised where the log fetch promises not to.
    assert scope_of(labels) is None
