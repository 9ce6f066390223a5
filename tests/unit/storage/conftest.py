from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import require
from tests.unit.storage.moto_s3 import MotoS3


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        require(False, "moto[server] is not installed")
    server = MotoS3().start()
    yield server
    server.stop()
