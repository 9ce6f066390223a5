"""The actions world (``tests/support/actions.py``) on each test's own database."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from aegis.core.config import Settings
from aegis.database.core import Database
from tests.support.actions import World, world_of


@pytest.fixture
def world(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> Iterator[World]:
    with world_of(make_settings(database_url=db_url, executor_backend="local"), database) as made:
        yield made
