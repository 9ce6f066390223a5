"""The shared HTTP plumbing: request ids, the error body, body limits, no leaked internals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import pytest
from fastapi import FastAPI, Header, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel, StringConstraints
from sqlalchemy import text

from aegis.backend_app import create_app as create_backend
from aegis.core.app import base_app
from aegis.core.config import Settings
from aegis.core.context import AppContext
from aegis.core.errors import NotFound
from aegis.database.core import Database
from tests.support import factories


class _Point(BaseModel):
    x: int
    y: int


class _Mark(BaseModel):
    at: Annotated[str, StringConstraints(max_length=3)] | _Point
    weights: dict[str, int] = {}


def _app(settings: Settings) -> FastAPI:
    app = base_app(AppContext.build(settings, service="test"), title="t")

    @app.get("/missing")
    async def missing() -> None:
        raise NotFound("policy p1 not found")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret-internal-detail")

    @app.post("/echo")
    async def echo(body: dict[str, str]) -> dict[str, str]:
        return body

    @app.post("/mark")
    async def mark(body: _Mark) -> None:
        return None

    @app.get("/headed")
    async def headed(x_first: str = Header(), x_second: str = Header()) -> None:
        return None

    @app.get("/cacheable")
    async def cacheable() -> Response:
        return Response(
            "{}", media_type="application/json", headers={"Cache-Control": "max-age=60"}
        )

    return app


def test_every_answer_is_uncacheable_and_unsniffable_unless_it_says_otherwise(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(_app(make_settings(max_body_bytes=2048)), raise_server_exceptions=False) as c:
        answers = [
            c.post("/echo", json={"a": "x"}),
            c.get("/missing"),
            c.get("/boom"),
            c.post("/echo", json={"a": "x" * 5000}),
            c.get("/missing%00"),
            c.get("/metrics"),
        ]
        own = c.get("/cacheable")
    assert [a.status_code for a in answers] == [200, 404, 500, 413, 400, 200]
    for answer in answers:
        assert answer.headers.get("cache-control") == "no-store", answer.request.url
        assert answer.headers["x-content-type-options"] == "nosniff", answer.request.url
    assert own.headers["cache-control"] == "max-age=60"


def test_no_api_explorer_is_served_only_the_schema(make_settings: Callable[..., Settings]) -> None:
    # Swagger UI and ReDoc would load scripts from a CDN on the console's origin.
    with TestClient(_app(make_settings())) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/redoc").status_code == 404
        assert client.get("/openapi.json").json()["info"]["title"] == "t"


def test_domain_error_becomes_the_documented_error_body(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(_app(make_settings())) as client:
        response = client.get("/missing", headers={"X-Request-ID": "abc123"})
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "policy p1 not found", "request_id": "abc123"}
    }
    assert response.headers["X-Request-ID"] == "abc123"


def test_unexpected_error_is_500_without_internals(make_settings: Callable[..., Settings]) -> None:
    with TestClient(_app(make_settings()), raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert "secret-internal-detail" not in response.text
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers["X-Request-ID"] == response.json()["error"]["request_id"]


def test_oversized_body_is_413(make_settings: Callable[..., Settings]) -> None:
    with TestClient(_app(make_settings(max_body_bytes=2048))) as client:
        response = client.post("/echo", json={"a": "x" * 5000})
        small = client.post("/echo", json={"a": "x"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert small.status_code == 200


def test_validation_errors_name_the_field(make_settings: Callable[..., Settings]) -> None:
    with TestClient(_app(make_settings())) as client:
        response = client.post(
            "/echo", content=b"[1,2]", headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # A union (a short string or a point): the form the value has is the one reported, and
        # pydantic's names for the forms ("constrained-str", "_Point") stay out of the path.
        ({"at": {"x": 1, "y": "far"}}, "at.y: Input should be a valid integer"),
        ({"at": {"x": 1}}, "at.y: Field required"),
        ({"at": "long"}, "at: String should have at most 3 characters"),
        ({"at": 5}, "at: Input should be a valid string"),
        # Not a union, though its keys look like pydantic's names for forms: the first bad
        # value's key is named.
        ({"at": "a", "weights": {"Cpu": "x", "Mem": "y"}}, "weights.Cpu: Input should be a"),
    ],
)
def test_a_validation_error_is_reported_for_the_form_the_value_has(
    make_settings: Callable[..., Settings], body: dict[str, object], message: str
) -> None:
    with TestClient(_app(make_settings())) as client:
        response = client.post("/mark", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith(message)


def test_missing_parameters_whose_names_look_like_a_unions_forms_are_named(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(_app(make_settings())) as client:
        response = client.get("/headed")
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "header.x-first: Field required"


def _canary_counts() -> dict[str, float]:
    from aegis.core import metrics

    outcomes = ("ok", "client_error", "error")
    return {o: metrics.CANARY_REQUESTS.labels("canary", o)._value.get() for o in outcomes}


def _counted_since(before: dict[str, float]) -> dict[str, float]:
    return {outcome: value - before[outcome] for outcome, value in _canary_counts().items()}


def test_a_canary_pod_counts_only_server_faults_as_errors(
    make_settings: Callable[..., Settings],
) -> None:
    app = _app(make_settings(rollout_track="canary"))
    before = _canary_counts()
    with TestClient(app, raise_server_exceptions=False) as client:
        statuses = [
            client.post("/echo", json={"a": "b"}).status_code,
            client.get("/missing").status_code,
            client.post(
                "/echo", content=b"[1]", headers={"content-type": "application/json"}
            ).status_code,
            client.get("/boom").status_code,
        ]
        client.get("/metrics")  # not counted
    assert statuses == [200, 404, 422, 500]
    assert _counted_since(before) == {"ok": 1, "client_error": 2, "error": 1}


def test_clients_refused_by_the_backend_cannot_fail_its_canary(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    # Bad tokens, forbidden calls, unknown ids, invalid bodies and a caller past its login
    # limit: none of them is the release's fault, so none counts as an error.
    settings = make_settings(
        database_url=db_url, rollout_track="canary", rate_limit_login_per_minute=1
    )
    database = Database(db_url)
    viewer = factories.user(database, "viewer")
    database.dispose()
    before = _canary_counts()
    with TestClient(create_backend(settings)) as client:
        headers = factories.bearer(factories.login(client, viewer))
        statuses = [
            client.get("/api/v1/incidents", headers={"Authorization": "Bearer nope"}).status_code,
            client.get("/api/v1/users", headers=headers).status_code,
            client.get("/api/v1/incidents/999999", headers=headers).status_code,
            client.post("/api/v1/auth/password", json={}, headers=headers).status_code,
            client.post(
                "/api/v1/auth/login", json={"username": viewer, "password": "x"}
            ).status_code,
        ]
    assert statuses == [401, 403, 404, 422, 429]
    assert _counted_since(before) == {"ok": 1, "client_error": 5, "error": 0}  # ok: the login


def test_a_control_character_in_the_url_is_400(make_settings: Callable[..., Settings]) -> None:
    with TestClient(_app(make_settings())) as client:
        refused = [client.get(url) for url in ("/missing%00", "/missing?x=a%00b", "/missing?x=%1b")]
        unicode = client.get("/missing?x=%E2%82%AC%20ok")
    for response in refused:
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_url"
    assert unicode.status_code == 404  # reached the route


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_a_value_the_database_refuses_is_422_not_500(
    make_settings: Callable[..., Settings], database: Database
) -> None:
    app = _app(make_settings())

    @app.post("/lookup")
    def lookup(body: dict[str, str]) -> dict[str, int]:
        with database.unit_of_work() as session:
            found = session.execute(text("SELECT count(*) FROM users WHERE username = :u"), body)
            return {"found": int(found.scalar_one())}

    with TestClient(app, raise_server_exceptions=False) as client:
        nul = client.post("/lookup", json={"u": "a\u0000b"})
        fine = client.post("/lookup", json={"u": "ab"})
    assert nul.status_code == 422, nul.text
    assert nul.json()["error"]["code"] == "invalid_value"
    assert "\\u0000" not in nul.text and "SELECT" not in nul.text
    assert fine.json() == {"found": 0}


def test_a_caller_cannot_add_http_metric_series_by_inventing_methods(
    make_settings: Callable[..., Settings],
) -> None:
    from aegis.core import metrics

    def methods() -> set[str]:
        return {
            sample.labels["method"]
            for family in metrics.HTTP_REQUESTS.collect()
            for sample in family.samples
            if sample.labels.get("service") == "test"
        }

    with TestClient(_app(make_settings())) as client:
        statuses = {client.request(f"X{n}", "/missing").status_code for n in range(50)}
        statuses |= {client.request(f"Y{n}", "/nowhere").status_code for n in range(50)}
    assert statuses == {404, 405}
    assert methods() <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert "other" in methods()
