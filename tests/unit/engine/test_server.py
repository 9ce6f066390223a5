"""The engine app end to end (TestClient): auth, health, predictions, bad input, back-pressure,
hot swap and metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.engine import model, scoring, synthetic
from aegis.engine.app import create_app
from aegis.engine.errors import ModelFormatError
from aegis.engine.state import ModelHolder, ModelMeta
from tests.support.factories import audit_events
from tests.support.hostile import HOSTILE_VALUES, leaves, replaced

KEY = "test-api-key-" + "d" * 32  # what make_settings configures
PREVIOUS = "previous-api-key-" + "p" * 32
WAIT = 30.0  # a guard against hangs, not a measured expectation


@pytest.fixture(scope="module")
def prepared() -> scoring.PreparedModel:
    return scoring.prepare(model.train())


@pytest.fixture
def holder(prepared: scoring.PreparedModel) -> ModelHolder:
    h = ModelHolder()
    h.swap(prepared, ModelMeta("example_multimodal", "0.1", prepared.model.digest, signer="test"))
    return h


@pytest.fixture
def client(make_settings: Callable[..., Settings], holder: ModelHolder) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(), holder=holder)) as c:
        yield c


def _auth(key: str = KEY) -> dict[str, str]:
    return {"x-api-key": key}


def _predict_body(scenario: str = "crash_loop", seed: int = 0) -> dict[str, Any]:
    return {"incident": synthetic.incident(scenario, seed)}


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
    return dict(body["error"])


# --- health and auth -------------------------------------------------------------------------


def test_health_is_public_and_says_no_model_is_loaded(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(create_app(make_settings())) as c:
        health = c.get("/health")
        refused = c.post("/predict", json=_predict_body(), headers=_auth())

    assert health.status_code == 200
    assert health.json()["model_loaded"] is False
    assert health.json()["reason"] == "no model has been loaded yet"
    assert refused.status_code == 503
    assert _error(refused)["code"] == "model_not_loaded"
    assert "Retry-After" in refused.headers


def test_health_describes_the_model_and_the_queue(client: TestClient) -> None:
    health = client.get("/health").json()

    assert health["model_loaded"] is True
    assert health["model"]["name"] == "example_multimodal"
    assert health["model"]["signer"] == "test"
    assert health["model"]["digest"].startswith("sha256:")
    assert health["batch"]["queue_depth"] == 0
    assert health["last_error"] is None


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"x-api-key": ""}])
def test_a_missing_or_wrong_api_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    for path in ("/predict", "/infer"):
        response = client.post(path, json=_predict_body(), headers=headers)

        assert response.status_code == 401
        assert _error(response)["code"] == "invalid_api_key"


def test_a_refused_key_is_audited_once_and_its_repeats_by_shutdown(
    make_settings: Callable[..., Settings], holder: ModelHolder, db_url: str
) -> None:
    settings = make_settings(database_url=db_url)
    with TestClient(create_app(settings, holder=holder)) as c:
        for path in ("/predict", "/predict", "/predict", "/infer"):
            assert c.post(path, json=_predict_body(), headers=_auth("wrong")).status_code == 401
        database = Database(db_url)
        [first, infer] = audit_events(database, "authentication.failed")
    [*_, flushed] = audit_events(database, "authentication.failed")
    database.dispose()

    assert (first.actor, first.resource, first.outcome) == ("anonymous", "POST /predict", "denied")
    data = json.loads(first.data)
    assert (data["service"], data["code"], data["repeats"]) == ("engine", "invalid_api_key", 0)
    assert infer.resource == "POST /infer"
    assert (flushed.resource, json.loads(flushed.data)["repeats"]) == ("POST /predict", 2)
    assert KEY not in first.data + flushed.data and "wrong" not in first.data


def test_the_previous_key_is_accepted_during_a_rotation(
    make_settings: Callable[..., Settings], holder: ModelHolder
) -> None:
    settings = make_settings(api_key_previous=SecretStr(PREVIOUS))
    with TestClient(create_app(settings, holder=holder)) as c:
        current = c.post("/predict", json=_predict_body(), headers=_auth(KEY))
        previous = c.post("/predict", json=_predict_body(), headers=_auth(PREVIOUS))
        neither = c.post("/predict", json=_predict_body(), headers=_auth(PREVIOUS + "x"))

    assert (current.status_code, previous.status_code, neither.status_code) == (200, 200, 401)


def test_after_the_rotation_the_old_key_is_refused(
    make_settings: Callable[..., Settings], holder: ModelHolder
) -> None:
    settings = make_settings(api_key=SecretStr(PREVIOUS))  # rotated, no previous key any more
    with TestClient(create_app(settings, holder=holder)) as c:
        assert c.post("/predict", json=_predict_body(), headers=_auth(KEY)).status_code == 401
        assert c.post("/predict", json=_predict_body(), headers=_auth(PREVIOUS)).status_code == 200


def test_with_no_key_configured_every_call_is_refused(
    make_settings: Callable[..., Settings], holder: ModelHolder
) -> None:
    with TestClient(create_app(make_settings(api_key=None), holder=holder)) as c:
        assert c.post("/predict", json=_predict_body(), headers=_auth("")).status_code == 401
        assert c.post("/predict", json=_predict_body(), headers=_auth("None")).status_code == 401


# --- predictions -----------------------------------------------------------------------------


def test_predict_returns_the_prediction(client: TestClient) -> None:
    response = client.post("/predict", json=_predict_body("bad_deploy", 1), headers=_auth())

    assert response.status_code == 200
    body = response.json()
    assert body["incident_id"] == "bad_deploy-1"
    assert body["severity"]["level"] == "critical"
    assert body["recommendations"][0]["action"] == "rollback_deployment"
    assert body["model"]["name"] == "example_multimodal"
    assert {s["name"] for s in body["series"]} >= {"http_errors_per_second"}


def test_infer_takes_a_list_or_one_incident(client: TestClient) -> None:
    many = client.post(
        "/infer", json={"incidents": synthetic.incidents(5, seed=2)}, headers=_auth()
    ).json()
    one = client.post("/infer", json={"incident": synthetic.incident("quiet", 1)}, headers=_auth())

    assert [p["ok"] for p in many["predictions"]] == [True] * 5
    assert [p["prediction"]["incident_id"] for p in many["predictions"]] == [
        d["id"] for d in synthetic.incidents(5, seed=2)
    ]
    assert one.status_code == 200 and len(one.json()["predictions"]) == 1


def test_infer_and_predict_agree_and_repeat_themselves(client: TestClient) -> None:
    doc = synthetic.incident("memory_leak", 3)

    a = client.post("/predict", json={"incident": doc}, headers=_auth()).json()
    b = client.post("/infer", json={"incident": doc}, headers=_auth()).json()["predictions"][0]
    c = client.post("/predict", json={"incident": doc}, headers=_auth()).json()

    assert a == b["prediction"] == c


def test_outcome_statistics_sent_with_the_request_change_the_confidence(client: TestClient) -> None:
    body = _predict_body("saturation", 4)
    before = client.post("/predict", json=body, headers=_auth()).json()["recommendations"][0]
    body["outcome_stats"] = [
        {"incident_kind": "saturation", "action": "scale_deployment", "successes": 0, "failures": 9}
    ]

    after = client.post("/predict", json=body, headers=_auth()).json()["recommendations"]

    scale = next(r for r in after if r["action"] == "scale_deployment")
    assert scale["confidence"] < before["confidence"] and scale["failures"] == 9


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({}, "incident"),
        (
            {"incident": {"series": [{"name": "cpu", "points": [[1, "high"]]}]}},
            "incident.series.0.points.0.1",
        ),
        ({"incident": {"series": [{"name": "", "points": []}]}}, "incident.series.0.name"),
        ({"incident": {"replicas": -1}}, "incident.replicas"),
        (
            {"incident": {"logs": [{"message_b64": "%%"}]}},
            "incident.logs.0.message_b64: Value error, not standard base64",
        ),
        ({"incident": {"logs": [{"message": 5}]}}, "incident.logs.0.message: Input should be a"),
        ({"incident": {"logs": ["x" * 65_537]}}, "incident.logs.0: String should have at most"),
        (
            {"incident": {"logs": [{"message_b64": "AA==", "timestamp": "soon"}]}},
            "incident.logs.0.timestamp: Input should be a valid number",
        ),
        ({"incident": {"bogus": 1}}, "incident.bogus"),
        (
            {"incident": {"series": [{"name": "cpu", "timestamps": [1], "values": ["high"]}]}},
            "incident.series.0.values.0",
        ),
        (
            {"incident": {"series": [{"name": "cpu", "timestamps": [1, 2], "values": [1.0]}]}},
            "incident.series.0: Value error, timestamps and values differ in length (2 and 1)",
        ),
        (
            {"incident": {"series": [{"name": "cpu", "values": [1.0]}]}},
            "incident.series.0: Value error, timestamps and values differ in length (0 and 1)",
        ),
        (
            {
                "incident": {
                    "series": [
                        {"name": "cpu", "points": [[1, 1.0]], "timestamps": [1], "values": [1.0]}
                    ]
                }
            },
            "incident.series.0: Value error, send points, or timestamps and values, not both",
        ),
    ],
)
def test_invalid_input_is_422_naming_the_field(
    client: TestClient, body: dict[str, Any], where: str
) -> None:
    response = client.post("/predict", json=body, headers=_auth())

    assert response.status_code == 422
    error = _error(response)
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(where)


def test_infer_needs_exactly_one_of_incident_and_incidents(client: TestClient) -> None:
    bodies: list[dict[str, Any]] = [{"incident": {}, "incidents": [{}]}, {}, {"incidents": []}]
    for body in bodies:
        assert client.post("/infer", json=body, headers=_auth()).status_code == 422


@pytest.mark.parametrize(
    "raw",
    [
        b'{"incident": {"logs": ["caf\xe9 \xff"]}}',  # not UTF-8
        b'{"incident": {"logs": ["\\ud800"]}}',  # a lone surrogate
        b'{"incident": ',  # truncated
        b"\x00\x01",
    ],
)
def test_bodies_that_are_not_utf8_json_are_422(client: TestClient, raw: bytes) -> None:
    response = client.post(
        "/predict", content=raw, headers=_auth() | {"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert "JSON" in _error(response)["message"]


@pytest.mark.parametrize("form", ["points", "columnar"])
def test_a_hostile_value_anywhere_in_an_incident_is_422_or_scored(
    client: TestClient, form: str
) -> None:
    incident = synthetic.incident("bad_deploy", 1)  # alert, series, timed logs, a rollout
    if form == "columnar":
        incident = synthetic.columnar(incident)
    answered = set()
    for path in leaves(incident):
        for value in HOSTILE_VALUES:
            body = {"incident": replaced(incident, path, value)}
            response = client.post("/predict", json=body, headers=_auth())
            answered.add(response.status_code)
            where = f"{'.'.join(map(str, path))} = {str(value)[:20]!r}"
            assert response.status_code in (200, 413, 422), f"{where}: {response.text[:300]}"
            if response.status_code == 200:
                assert response.json()["severity"]["level"] in {"critical", "warning", "info"}
            else:
                assert "\n" not in _error(response)["message"], where
    assert answered >= {200, 422}  # both accepted and refused values were met


def test_nan_infinity_and_null_points_are_missing_values(client: TestClient) -> None:
    raw = (
        b'{"incident": {"series": [{"name": "cpu", "points": '
        b"[[1800000000, NaN], [1800000015, Infinity], [null, 1.5], [1800000030, null], "
        b'[1800000045, "2.5"], [1800000060, -Infinity]]}]}}'
    )

    response = client.post(
        "/predict", content=raw, headers=_auth() | {"content-type": "application/json"}
    )

    assert response.status_code == 200
    series = response.json()["series"][0]
    assert series["missing_points"] == 4 and series["points"] == 6


def test_columnar_series_take_the_same_missing_values_and_give_the_same_answer(
    client: TestClient,
) -> None:
    columns = (
        b'{"incident": {"series": [{"name": "cpu", '
        b'"timestamps": [1800000000, 1800000015, null, 1800000030, 1800000045, 1800000060], '
        b'"values": [NaN, Infinity, 1.5, null, "2.5", -Infinity]}]}}'
    )
    pairs = (
        b'{"incident": {"series": [{"name": "cpu", "points": '
        b"[[1800000000, NaN], [1800000015, Infinity], [null, 1.5], [1800000030, null], "
        b'[1800000045, "2.5"], [1800000060, -Infinity]]}]}}'
    )
    headers = _auth() | {"content-type": "application/json"}

    by_columns = client.post("/predict", content=columns, headers=headers)
    by_pairs = client.post("/predict", content=pairs, headers=headers)

    assert by_columns.status_code == 200
    series = by_columns.json()["series"][0]
    assert series["missing_points"] == 4 and series["points"] == 6
    assert by_columns.json() == by_pairs.json()


def test_log_times_at_the_ends_of_the_float_range_are_scored_not_a_500(client: TestClient) -> None:
    # Finite, so accepted; but the baseline then spans more seconds than a float can hold, and a
    # template seen in both parts had its rate divided by a zero baseline rate.
    line = "GET /api/items 200"
    lines = [{"message": line, "timestamp": -1e308}]
    lines += [{"message": line, "timestamp": 1.8e9 + 60 * i} for i in range(20)]
    lines += [{"message": line, "timestamp": 1.5e308}] * 10
    incident = {"alert": {"startsAt": 1e308}, "logs": lines}

    alone = client.post("/predict", json={"incident": incident}, headers=_auth())
    batch = client.post("/infer", json={"incidents": [incident, {}]}, headers=_auth())

    assert alone.status_code == 200
    [surge] = alone.json()["logs"]["evidence"]
    assert surge["kind"] == "surging" and surge["ratio"] == 1e6  # at most 1e6, like change
    assert [p["ok"] for p in batch.json()["predictions"]] == [True, True]


def test_a_body_over_the_limit_is_413(client: TestClient) -> None:
    huge = b'{"incident": {"logs": ["' + b"x" * 1_100_000 + b'"]}}'

    response = client.post(
        "/predict", content=huge, headers=_auth() | {"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert _error(response)["code"] == "body_too_large"


def test_a_chunked_body_over_the_limit_is_413_and_counted_as_one(client: TestClient) -> None:
    """Without Content-Length the limit is found while reading: still a 413 to the client, and
    counted as one in the engine's request counts (a 500 there would page and fail canaries)."""
    before = client.get("/metrics").text

    def pieces() -> Iterator[bytes]:
        yield b'{"incident": {"logs": ["'
        for _ in range(20):
            yield b"x" * 64_000
        yield b'"]}}'

    response = client.post(
        "/predict", content=pieces(), headers=_auth() | {"content-type": "application/json"}
    )
    after = client.get("/metrics").text

    assert response.status_code == 413
    assert _error(response)["code"] == "body_too_large"
    metric = "aegis_inference_requests_total"
    for status, count in (("413", 1), ("500", 0)):
        now = _sample(after, metric, endpoint="predict", status=status)
        assert now - _sample(before, metric, endpoint="predict", status=status) == count, status


def test_a_million_point_series_is_refused(
    client: TestClient, make_settings: Callable[..., Settings], holder: ModelHolder
) -> None:
    points = b"[" + b",".join([b"[1800000000,1.0]"] * 1_000_000) + b"]"
    raw = b'{"incident": {"series": [{"name": "cpu", "points": ' + points + b"}]}}"
    headers = _auth() | {"content-type": "application/json"}

    default_limit = client.post("/predict", content=raw, headers=headers)
    with TestClient(create_app(make_settings(max_body_bytes=64 << 20), holder=holder)) as big:
        raised_limit = big.post("/predict", content=raw, headers=headers)
        still_serving = big.post("/predict", json=_predict_body(), headers=_auth())

    assert default_limit.status_code == 413
    assert raised_limit.status_code == 422
    assert "at most 20000" in _error(raised_limit)["message"]
    assert still_serving.status_code == 200


def test_a_million_point_columnar_series_is_refused(
    make_settings: Callable[..., Settings], holder: ModelHolder
) -> None:
    column = b"[" + b",".join([b"1.0"] * 1_000_000) + b"]"
    raw = b'{"incident": {"series": [{"name": "cpu", "timestamps": ' + column
    raw += b', "values": ' + column + b"}]}}"
    headers = _auth() | {"content-type": "application/json"}

    with TestClient(create_app(make_settings(max_body_bytes=64 << 20), holder=holder)) as big:
        refused = big.post("/predict", content=raw, headers=headers)
        still_serving = big.post("/predict", json=_predict_body(), headers=_auth())

    assert refused.status_code == 422
    assert _error(refused)["message"].startswith("incident.series.0.timestamps")
    assert "at most 20000" in _error(refused)["message"]
    assert still_serving.status_code == 200


def test_more_incidents_than_the_queue_can_hold_is_422(
    make_settings: Callable[..., Settings], holder: ModelHolder
) -> None:
    with TestClient(create_app(make_settings(batch_queue_limit=3), holder=holder)) as c:
        response = c.post("/infer", json={"incidents": [{}] * 4}, headers=_auth())

    assert response.status_code == 422
    assert "BATCH_QUEUE_LIMIT" in _error(response)["message"]


# --- back-pressure ---------------------------------------------------------------------------


def _longer_than(items: list[Any], length: int) -> Callable[[], bool]:
    return lambda: len(items) > length


def _wait_for(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def test_a_full_queue_answers_503_with_retry_after_and_queued_requests_still_complete(
    make_settings: Callable[..., Settings], holder: ModelHolder
) -> None:
    # Batches wait up to 1.5 s to fill and the queue holds two: two requests sit in it.
    settings = make_settings(batch_queue_limit=2, batch_max_size=64, batch_max_latency_ms=1500)
    with TestClient(create_app(settings, holder=holder)) as c:
        statuses: list[int] = []

        def send() -> None:
            statuses.append(c.post("/predict", json=_predict_body(), headers=_auth()).status_code)

        waiting = [threading.Thread(target=send) for _ in range(2)]
        for t in waiting:
            t.start()
        _wait_for(lambda: c.get("/health").json()["batch"]["queue_depth"] == 2)

        refused = c.post("/predict", json=_predict_body(), headers=_auth())
        for t in waiting:
            t.join(WAIT)

    assert refused.status_code == 503
    assert _error(refused)["code"] == "queue_full"
    assert refused.headers["Retry-After"] == "1"
    assert statuses == [200, 200]


# --- hot swap --------------------------------------------------------------------------------


def test_a_hot_swap_keeps_serving_and_a_failed_load_keeps_the_old_model(
    make_settings: Callable[..., Settings], prepared: scoring.PreparedModel
) -> None:
    holder = ModelHolder()
    holder.swap(prepared, ModelMeta("example_multimodal", "0.1"))
    newer = scoring.prepare(model.train(version="0.2"), use_kernel=prepared.use_kernel)
    seen: set[str] = set()
    statuses: list[int] = []
    stop = threading.Event()

    with TestClient(create_app(make_settings(batch_max_latency_ms=2), holder=holder)) as c:

        def traffic() -> None:
            while not stop.is_set():
                r = c.post("/infer", json={"incidents": synthetic.incidents(2)}, headers=_auth())
                statuses.append(r.status_code)
                if r.status_code == 200:
                    seen.update(
                        p["prediction"]["model"]["version"] for p in r.json()["predictions"]
                    )

        workers = [threading.Thread(target=traffic) for _ in range(3)]
        for w in workers:
            w.start()
        for i in range(6):
            # 4 more answers: at most 3 (one per client) were in flight at the last swap, so one
            # of them was batched after it, with the model it put in place
            _wait_for(_longer_than(statuses, len(statuses) + 3))
            holder.swap(
                *(
                    (newer, ModelMeta("example_multimodal", "0.2"))
                    if i % 2 == 0
                    else (prepared, ModelMeta("example_multimodal", "0.1"))
                )
            )

        def broken() -> tuple[model.EngineModel, ModelMeta]:
            raise ModelFormatError("model.json: detector: bad parameters")

        assert holder.load(broken) is False
        _wait_for(_longer_than(statuses, len(statuses) + 2))
        stop.set()
        for w in workers:
            w.join(WAIT)
        health = c.get("/health").json()

    assert statuses and set(statuses) == {200}
    assert seen == {"0.1", "0.2"}
    assert health["model_loaded"] is True and health["model"]["version"] == "0.1"
    assert health["last_error"] == "model.json: detector: bad parameters"


def test_a_loader_runs_at_start_up_and_its_failure_is_the_reason(
    make_settings: Callable[..., Settings], tmp_path: Any
) -> None:
    model_dir = tmp_path / "m"
    model.export_model_dir(model.train(), model_dir)

    def good() -> tuple[model.EngineModel, ModelMeta]:
        loaded = model.load_model_dir(model_dir)
        return loaded, ModelMeta(
            loaded.name, loaded.version, loaded.digest, "signer@test", str(model_dir)
        )

    def bad() -> tuple[model.EngineModel, ModelMeta]:
        return model.load_model_dir(tmp_path / "missing"), ModelMeta("x", "0")

    with TestClient(create_app(make_settings(), loader=good)) as c:
        _wait_for(lambda: c.get("/health").json()["model_loaded"])
        ok = c.post("/predict", json=_predict_body(), headers=_auth())
    with TestClient(create_app(make_settings(), loader=bad)) as c:
        _wait_for(lambda: c.get("/health").json()["last_error"] is not None)
        health = c.get("/health").json()

    assert ok.status_code == 200 and ok.json()["model"]["digest"].startswith("sha256:")
    assert health["model_loaded"] is False
    assert "is not a model directory" in health["reason"]


# --- metrics ---------------------------------------------------------------------------------


def _sample(text: str, metric: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(metric + "{") and not line.startswith(metric + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_batches_and_the_loaded_model(client: TestClient) -> None:
    before = client.get("/metrics").text
    client.post("/predict", json=_predict_body(), headers=_auth())
    client.post("/predict", json=_predict_body(), headers=_auth("bad"))
    after = client.get("/metrics").text

    def delta(metric: str, **labels: str) -> float:
        return _sample(after, metric, **labels) - _sample(before, metric, **labels)

    assert delta("aegis_inference_requests_total", endpoint="predict", status="200") == 1
    assert delta("aegis_inference_requests_total", endpoint="predict", status="401") == 1
    assert delta("aegis_inference_batch_size_count") == 1
    assert delta("aegis_inference_latency_seconds_count", endpoint="predict") == 1
    assert _sample(after, "aegis_model_loaded", name="example_multimodal", version="0.1") == 1.0
    assert "aegis_inference_batch_queue_depth" in after


def test_a_canary_engine_counts_its_faults_and_broken_contracts_as_errors_not_strangers(
    make_settings: Callable[..., Settings], holder: ModelHolder
) -> None:
    # What the rollout's analysis reads: a wrong key is anyone's mistake and must not roll the
    # release back; a body refused from a caller holding the key (the backend, or the canary
    # drill) is a release that broke its contract, and a canary that cannot serve (503) failed.
    settings = make_settings(rollout_track="canary")
    with TestClient(create_app(settings, holder=holder)) as serving:
        before = serving.get("/metrics").text
        statuses = [
            serving.post("/predict", json=_predict_body(), headers=_auth()).status_code,
            serving.post("/predict", json=_predict_body(), headers=_auth("wrong")).status_code,
            serving.post("/predict", json={}, headers=_auth("wrong")).status_code,
            serving.post("/predict", json={}, headers=_auth()).status_code,
        ]
    with TestClient(create_app(settings)) as without_model:
        statuses.append(
            without_model.post("/predict", json=_predict_body(), headers=_auth()).status_code
        )
        after = without_model.get("/metrics").text

    def counted(outcome: str) -> float:
        metric = "aegis_canary_requests_total"
        return _sample(after, metric, track="canary", outcome=outcome) - _sample(
            before, metric, track="canary", outcome=outcome
        )

    assert statuses == [200, 401, 401, 422, 503]
    assert (counted("ok"), counted("client_error"), counted("error")) == (1, 2, 2)
