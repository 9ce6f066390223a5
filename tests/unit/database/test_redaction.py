"""Database URLs in messages hide every secret they can carry, wherever it is written."""

from __future__ import annotations

from aegis.database.core import redacted


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
