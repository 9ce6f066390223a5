"""Database URLs in messages hide every secret they can carry, wherever it is written."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from aegis.database.core import Database, redacted


def test_a_password_given_as_a_query_parameter_is_masked() -> None:
    shown = redacted("postgresql+psycopg://aegis@db/aegis?password=hunter2&sslpassword=k3y")
    assert shown == "postgresql+psycopg://aegis@db/aegis?password=***&sslpassword=***"


def test_an_unknown_query_parameter_is_masked_and_harmless_ones_stay_readable() -> None:
    shown = redacted(
        "postgresql+psycopg://aegis@db/aegis?sslmode=require&dbname=password%3Dhunter2"
        "&host=/run/postgresql&connect_timeout=5"
    )
    assert "hunter2" not in shown
    assert shown == (
        "postgresql+psycopg://aegis@db/aegis"
        "?sslmode=require&dbname=***&host=/run/postgresql&connect_timeout=5"
    )


def test_a_failing_statement_does_not_carry_its_values_into_the_log(database: Database) -> None:
    # An unexpected database error is logged with its traceback, whose message would otherwise
    # end with the statement's parameters: password hashes, idempotency keys, nonces.
    with pytest.raises(DBAPIError) as failed, database.unit_of_work() as session:
        session.execute(text("INSERT INTO no_such_table VALUES (:v)"), {"v": "hash-0f9e8d7c"})
    assert "hash-0f9e8d7c" not in str(failed.value)
    assert "no_such_table" in str(failed.value)  # the statement itself stays, to find the fault
