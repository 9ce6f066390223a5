"""Serve the web console: ``GET /`` (and ``/console``) and its static assets.

The console is plain HTML, CSS and JavaScript shipped inside the package: no build step, no
CDN, no external fonts, so it works on a machine without internet. Only the files named in
:data:`ASSETS` are served (no path is ever joined from the request), each with its content type
and a strict Content-Security-Policy: scripts and styles only from this origin, nothing inline,
no framing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from aegis.core.errors import NotFound

router = APIRouter(tags=["console"], include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX = "index.html"
# The only files served under /static/, with their content types.
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str, media_type: str) -> Response:
    body = (STATIC_DIR / name).read_bytes()
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/")
def console() -> Response:
    """The console page (the runbook's frontend check: ``GET /`` answers 200)."""
    return _file(INDEX, "text/html; charset=utf-8")


@router.get("/console")
def console_alias() -> Response:
    """The same page under a name that says what it is."""
    return _file(INDEX, "text/html; charset=utf-8")


@router.get("/static/{name}")
def static_asset(name: str) -> Response:
    """One of the console's own assets; anything else is a 404."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound("no such console asset")
    return _file(name, media_type)
