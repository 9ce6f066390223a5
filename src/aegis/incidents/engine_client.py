"""What the backend sends the AI engine about an incident, and how it reads the answer.

The request carries the alert, the workload's context (:mod:`aegis.incidents.telemetry`) and the
outcome counts the engine ranks actions with; the answer is read with a bound
(:data:`MAX_ANSWER_BYTES`, :mod:`aegis.core.upstream`) and kept only when it is a prediction the
API can show. Anything else raises :class:`~aegis.core.errors.AegisError` saying why, which
:mod:`aegis.incidents.jobs` stores as the incident's fallback note.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import httpx
from pydantic import ValidationError

from aegis.actions import service as actions_service
from aegis.core import upstream
from aegis.core.config import Settings
from aegis.core.errors import AegisError
from aegis.core.logging import REQUEST_ID_HEADER, get_logger, request_id_var
from aegis.incidents import telemetry
from aegis.incidents.models import Alert, Incident
from aegis.incidents.schemas import EnginePrediction

log = get_logger(__name__)
ACTIONS = set(actions_service.ACTIONS)
MAX_STATS_SENT = 1_000  # outcome counts sent with each incident (the engine takes 10,000)
# The most of the engine's /predict answer that is read (aegis.core.upstream): more is a bad
# answer, the fallback. A real answer is a few KiB; the largest the default model can give is
# about 5 MiB (its 10 pieces of log evidence, each quoting a log line of up to 64 Ki characters
# twice, as example and template, at up to 4 bytes a character), so 16 MiB keeps a wide margin
# while one answer still costs the backend tens of MiB at most once parsed.
MAX_ANSWER_BYTES = 16 * upstream.MiB
# A prediction is about 5 levels deep; the API's JSON encoder stops at 255 (with the incident
# page around it), so a deeper answer is refused, as is one Python cannot read (RecursionError).
MAX_ANSWER_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


def labels(incident: Incident, alerts: list[Alert]) -> dict[str, str]:
    return dict(alerts[0].labels) if alerts else {"alertname": incident.title}


def engine_request(
    incident: Incident, alerts: list[Alert], stats: dict[Any, Any], context: telemetry.Context
) -> dict[str, Any]:
    first = alerts[0] if alerts else None
    alert: dict[str, Any] = {
        "labels": labels(incident, alerts),
        "annotations": first.annotations if first else {},
        "status": "firing",
    }
    if first is not None and first.starts_at is not None:
        alert["startsAt"] = first.starts_at.isoformat()
    return {
        "incident": {
            "id": str(incident.id),
            "alert": alert,
            "series": context.series,
            "logs": context.logs,
            "changes": context.changes,
            **({"replicas": context.replicas} if context.replicas is not None else {}),
        },
        "outcome_stats": _stats_sent(stats),
    }


def _stats_sent(stats: dict[Any, Any]) -> list[dict[str, Any]]:
    """The outcome counts the engine can use, at most :data:`MAX_STATS_SENT`: the ones with the
    most outcomes behind them first, so that a table grown large (a kind per alert name, per
    action) never makes the request too big for the engine to take."""
    usable = [
        {"incident_kind": kind, "action": action, **counts}
        for (kind, action), counts in stats.items()
        if action in ACTIONS and 0 < len(kind) <= 64
    ]
    if len(usable) <= MAX_STATS_SENT:
        return usable
    usable.sort(key=lambda s: (-(s["successes"] + s["failures"]), s["incident_kind"], s["action"]))
    log.warning("outcome_stats_truncated", kept=MAX_STATS_SENT, known=len(usable))
    return usable[:MAX_STATS_SENT]


def _not_json(name: str) -> float:
    """NaN and Infinity: Python reads them, JSON has no such numbers (PostgreSQL refuses to
    store them, which held the incident claimed to be asked again and again)."""
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)  # 1e999 reads as infinity
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _unshowable(answer: Any) -> str | None:
    """Why the API could not show ``answer`` once stored, if it could not: nested deeper than
    :data:`MAX_ANSWER_DEPTH`, or a lone surrogate (``"\\ud800"``) in a string. Stored, either
    made the incident list answer 500 to everyone."""
    stack = [(answer, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_ANSWER_DEPTH:
            return f"nested deeper than {MAX_ANSWER_DEPTH}"
        if isinstance(value, dict):
            stack.extend((part, depth + 1) for item in value.items() for part in item)
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and _SURROGATE.search(value):
            return "a lone surrogate in a string"
    return None


def ask_engine(settings: Settings, body: dict[str, Any], http: httpx.Client) -> dict[str, Any]:
    headers = {"X-API-Key": settings.secret("api_key")}
    rid = request_id_var.get()
    if rid:
        headers[REQUEST_ID_HEADER] = rid
    url = settings.effective_ai_engine_url.rstrip("/") + "/predict"
    with http.stream("POST", url, json=body, headers=headers | upstream.IDENTITY) as answer:
        status = answer.status_code
        content = upstream.read(
            answer, limit=MAX_ANSWER_BYTES, within_s=settings.ai_engine_timeout_s
        )
    if status != 200:
        try:
            message = json.loads(content)["error"]["message"]
        except (ValueError, KeyError, TypeError, RecursionError):
            message = f"HTTP {status}"
        raise AegisError(f"answered {status}: {str(message)[:200]}")
    try:
        result = json.loads(content, parse_constant=_not_json, parse_float=_finite)
        EnginePrediction.model_validate(result)
    except RecursionError:
        raise AegisError(
            f"answered 200 without a prediction (nested deeper than {MAX_ANSWER_DEPTH})"
        ) from None
    except ValueError as exc:  # not JSON, or not a prediction (ValidationError)
        why = "not JSON"
        if isinstance(exc, ValidationError):
            error = exc.errors()[0]
            why = ".".join(str(p) for p in ("answer", *error["loc"])) + ": " + error["msg"]
        raise AegisError(f"answered 200 without a prediction ({why})") from None
    if unshowable := _unshowable(result):
        raise AegisError(f"answered 200 without a prediction ({unshowable})")
    prediction: dict[str, Any] = result
    return prediction
