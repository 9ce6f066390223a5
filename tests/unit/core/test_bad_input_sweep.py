"""Every backend route, called by an admin with malformed path values, query values and bodies,
answers a 4xx with one clear line: never a 500, never a stack trace, never a secret.

The routes come from the app itself, so a route added later is swept too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from aegis.backend_app import create_app
from aegis.core.config import Settings
from aegis.database.core import Database
from tests.support import factories
from tests.support.hostile import hostile
from tests.support.routes import api_routes

PATH_VALUES = [
    "0",
    "-1",
    "99999999999999999999999",
    "1e309",
    "x" * 400,
    "%FF%FE",
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
]
QUERY_VALUES = [
    "",
    "-1",
    "99999999999999999999999",
    "x" * 3000,
    "not-a-date",
    "9999-12-31T23:59:59-23:59",  # beyond year 9999 once in UTC
    "0001-01-01T00:00:00+23:59",  # before year 1 once in UTC
    "%FF",
    "\x00",
]
BODIES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not json", b"not json"),
    ("not utf-8", b'{"a": "\xff\xfe"}'),
    ("truncated", b'{"a": '),
    ("array", b"[]"),
    ("string", b'"text"'),
    ("empty object", b"{}"),
    ("unknown field", b'{"unknown_field": 1}'),
    ("NaN", b'{"value": NaN}'),
    ("huge number", b'{"value": 1e999, "id": 99999999999999999999999}'),
    ("deep nesting", b"[" * 5000 + b"]" * 5000),
    ("wrong types", b'{"name": 1, "roles": "admin", "to": [], "comment": {}, "limit": "x"}'),
]
JSON_HEADERS = {"Content-Type": "application/json"}
TRACE = re.compile(r"Traceback|File \"|sqlalchemy\.|psycopg|pydantic_core")


@pytest.fixture
def sweep(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> Iterator[Callable[[str, str, dict[str, Any]], httpx.Response]]:
    settings = make_settings(
        database_url=db_url, rate_limit_api_per_minute=100_000, rate_limit_login_per_minute=1_000
    )
    admin = factories.user(database, "admin")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        headers = factories.bearer(factories.login(client, admin))

        webhook = {"Authorization": f"Bearer {settings.secret('alert_webhook_token')}"}

        def call(method: str, url: str, kwargs: dict[str, Any]) -> httpx.Response:
            nonlocal headers
            extra = kwargs.pop("headers", {})
            webhook_call = url.startswith("/api/v1/alerts/")

            def send() -> httpx.Response:
                who = webhook if webhook_call else headers
                answer: httpx.Response = client.request(
                    method, url, headers={**who, **extra}, **kwargs
                )
                return answer

            response = send()
            if response.status_code == 401 and not webhook_call:  # the sweep logged itself out
                headers = factories.bearer(factories.login(client, admin))
                response = send()
            return response

        yield call


def _calls(path: str, method: str, query: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    params = re.findall(r"{(\w+)(?::\w+)?}", path)
    good = re.sub(r"{\w+(?::\w+)?}", "1", path)
    for value in PATH_VALUES if params else []:
        yield re.sub(r"{\w+(?::\w+)?}", value, path), {}
    for name in query:
        for value in QUERY_VALUES:
            yield good, {"params": {name: value}}
    if method in {"POST", "PUT", "PATCH"}:
        for _, body in BODIES:
            yield good, {"content": body, "headers": JSON_HEADERS}


def _problem(response: httpx.Response, secrets: list[str]) -> str | None:
    text = response.text
    if response.status_code >= 500:
        return f"{response.status_code}: {text[:200]}"
    if TRACE.search(text):
        return f"trace in the answer: {text[:200]}"
    if any(secret in text for secret in secrets):
        return "a secret in the answer"
    if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
        error = response.json().get("error") or {}
        message = error.get("message")
        if not error.get("code") or not isinstance(message, str) or "\n" in message:
            return f"not a one-line error: {text[:200]}"
    return None


def test_no_route_fails_on_malformed_input(
    sweep: Callable[[str, str, dict[str, Any]], httpx.Response],
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    secrets = [
        settings.secret(name)
        for name in ("jwt_secret", "jwt_refresh_secret", "executor_hmac_secret", "api_key")
    ]
    problems, statuses = [], []
    app = create_app(settings)
    openapi = app.openapi()
    defs = openapi.get("components", {}).get("schemas", {})
    # routes that end the admin's session run last, so the rest are swept logged in
    routes = sorted(api_routes(app), key=lambda rp: ("logout" in rp[1], rp[1]))
    for route, path in routes:
        query = [p.alias for p in route.dependant.query_params]
        for method in sorted(route.methods or ()):
            calls_here = list(_calls(path, method, query))
            body = openapi["paths"].get(path, {}).get(method.lower(), {}).get("requestBody")
            if body:
                schema = body["content"].get("application/json", {}).get("schema", {})
                good = re.sub(r"{\w+(?::\w+)?}", "1", path)
                variants = [
                    ("nul\x00byte", 1, "2026-01-01T00:00:00Z"),
                    ("x" * 100_000, 2**70, "9999-12-31T23:59:59-23:59"),
                    ("", -1, "0001-01-01T00:00:00+23:59"),
                ]
                for text, number, when in variants:
                    value = hostile(schema, defs, text=text, number=number, when=when)
                    content = json.dumps(value).encode()
                    calls_here.append((good, {"content": content, "headers": JSON_HEADERS}))
            for url, kwargs in calls_here:
                response = sweep(method, url, kwargs)
                statuses.append(response.status_code)
                problem = _problem(response, secrets)
                if problem:
                    sent = kwargs.get("params") or kwargs.get("content", b"")[:40].decode(
                        "utf-8", "replace"
                    )
                    shown = json.dumps(sent)
                    problems.append(f"{method} {url[:80]} {shown}: {problem}")
    # the sweep reached the handlers: most answers are the routes' own refusals, not 401s
    assert len(statuses) > 400
    assert sum(status in (400, 404, 409, 413, 422) for status in statuses) > 0.8 * len(statuses)
    assert not problems, "\n".join(problems[:40])
