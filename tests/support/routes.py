"""The backend's API routes as the app serves them (included routers flattened)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts


def api_routes(app: FastAPI) -> list[tuple[APIRoute, str]]:
    """Every API route with its effective path."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            found.append((route, context.path or route.path))
    return found
