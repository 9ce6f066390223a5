"""The executor's name check is the API server's: a deployment's or a pod's name is a DNS-1123
subdomain (apimachinery's IsDNS1123Subdomain), checked against every short string."""

from __future__ import annotations

import itertools
import re

import pytest
from pydantic import ValidationError

from aegis.executor.schemas import NAME_PATTERN, ExecutorLogsRequest

LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def is_dns1123_subdomain(value: str) -> bool:
    """IsDNS1123Subdomain, built another way: dot-separated DNS-1123 labels, 253 characters."""
    return len(value) <= 253 and all(LABEL.fullmatch(part) for part in value.split("."))


def accepted(name: str) -> bool:
    try:
        ExecutorLogsRequest(namespace="demo", pod=name, requested_by="ai-engine")
    except ValidationError:
        return False
    return True


SHORT = ["".join(chars) for n in range(1, 5) for chars in itertools.product("a0-.A_", repeat=n)]
LONG = ["a" * 253, "a" * 254, "a" * 70 + "." + "b" * 182, "a" * 70 + "." + "b" * 183]


@pytest.mark.parametrize("names", [SHORT, LONG], ids=["short", "long"])
def test_a_name_is_accepted_exactly_when_kubernetes_accepts_it(names: list[str]) -> None:
    wrong = [n for n in names if accepted(n) != is_dns1123_subdomain(n)]
    mismatched = [n for n in names if bool(re.match(NAME_PATTERN, n)) != is_dns1123_subdomain(n)]

    assert wrong == []
    assert mismatched == []  # the pattern others check a label value with
