"""Fixtures for the observability tests: the real Prometheus/Alertmanager tools.

A missing binary skips the test outside CI and fails it under ``CI=true``
(``make prereqs`` installs the Debian packages ``prometheus`` and ``prometheus-alertmanager``).
"""

from __future__ import annotations

import pytest

from tests.conftest import require
from tests.support import promstack


@pytest.fixture(scope="session")
def promtool() -> str:
    binary = promstack.promtool_binary()
    require(binary is not None, "promtool is not installed (Debian package: prometheus)")
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def amtool() -> str:
    binary = promstack.amtool_binary()
    require(binary is not None, "amtool is not installed (Debian package: prometheus-alertmanager)")
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def alertmanager_bin() -> str:
    binary = promstack.alertmanager_binary()
    require(binary is not None, "alertmanager is not installed (Debian: prometheus-alertmanager)")
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    binary = promstack.prometheus_binary()
    require(binary is not None, "prometheus is not installed (Debian package: prometheus)")
    assert binary is not None
    return binary
