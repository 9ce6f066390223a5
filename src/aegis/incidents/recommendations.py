"""Turn the AI engine's top recommendation for an incident into an action request.

A recommendation becomes an ordinary action request from ``principal:ai-engine`` — policy decides
it like any other — carrying the confidence, the severity the incident shows (the engine's, else
the alert's), the engine's incident kind (what outcomes are learnt under) and the model digest.
Its target is the one the engine names from the alert's ``namespace`` and ``deployment`` or
``pod`` labels; a recommendation without one (an alert about a statefulset, a service, a scrape
job) is not requested. :mod:`aegis.incidents.jobs` calls :func:`recommend` once the prediction is
stored.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from aegis.actions import service as actions_service
from aegis.actions.schemas import ActionCreate
from aegis.auth.schemas import Actor
from aegis.core.config import Settings
from aegis.core.errors import AegisError
from aegis.core.logging import get_logger
from aegis.database.core import Database
from aegis.incidents import engine_client
from aegis.incidents.models import Incident
from aegis.safety import service as safety

log = get_logger(__name__)
ENGINE_ACTOR = Actor(name="ai-engine", roles=frozenset(), kind="service")
SAFETY_SCREEN = "safety-screen"  # the audit actor of the flags the backend raises


def level(prediction: dict[str, Any]) -> str | None:
    """The severity the engine gives the incident (which the incident then shows), if any."""
    level = (prediction.get("severity") or {}).get("level")  # null: none given
    return level if level in {"critical", "warning", "info"} else None


def recommend(
    database: Database, settings: Settings, incident: Incident, prediction: dict[str, Any]
) -> None:
    ranked = prediction.get("recommendations") or []
    if not ranked or ranked[0].get("action") not in engine_client.ACTIONS:
        return  # the engine's best advice is to do nothing
    top = ranked[0]
    target = top.get("target") or {}
    if not target.get("namespace") or not target.get("name"):
        # The alert's own labels name the target; the incident's workload may be another kind
        # of object (a statefulset, a service, a scrape job) and must not stand in for it.
        log.warning("recommendation_without_target", incident_id=incident.id, action=top["action"])
        return
    model = prediction.get("model") or {}
    if target["namespace"] != incident.namespace:
        # The engine names a namespace the incident is not in: never act on it, ask a human.
        with database.unit_of_work() as session:
            safety.raise_flag(
                session=session,
                reason="target_mismatch",
                subject_kind="incident",
                subject_id=str(incident.id),
                excerpt=(
                    f"the AI engine recommended {top['action']} in namespace "
                    f"{target['namespace']!r}; the incident is in {incident.namespace!r}"
                ),
                actor=SAFETY_SCREEN,
            )
        log.warning("recommendation_target_mismatch", incident_id=incident.id)
        return
    digest = str(model.get("digest", ""))
    try:
        body = ActionCreate(
            action=top["action"],
            namespace=target["namespace"],
            name=target["name"],
            params=top.get("params") or {},
            idempotency_key=f"incident-{incident.id}-{top['action']}-{digest[:16]}",
            reason=str(top.get("explanation", ""))[:2000],
            incident_id=incident.id,
            incident_kind=str(top.get("incident_kind") or prediction.get("incident_kind"))[:64],
            confidence=float(top.get("confidence", 0.0)),
            severity=level(prediction) or incident.severity,  # what the incident now shows
            model_digest=digest[:128] or None,
        )
        with database.unit_of_work() as session:
            actions_service.request_action(
                session=session, settings=settings, body=body, actor=ENGINE_ACTOR
            )
    except ValidationError as exc:  # e.g. a namespace label longer than Kubernetes allows
        error = exc.errors()[0]
        why = ".".join(str(p) for p in error["loc"]) + ": " + error["msg"]
        log.warning("recommendation_not_requested", incident_id=incident.id, error=why)
    except AegisError as exc:
        log.warning("recommendation_not_requested", incident_id=incident.id, error=exc.message)
