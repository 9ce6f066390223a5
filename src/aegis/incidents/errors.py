from __future__ import annotations

from aegis.core.errors import NotFound, Unauthorized


class IncidentNotFound(NotFound):
    code = "incident_not_found"


class WebhookUnauthorized(Unauthorized):
    code = "webhook_unauthorized"
