"""Every non-public route declares its roles, and docs/rbac.md is the truth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.dependencies.models import Dependant

from aegis.auth.dependencies import rbac_of
from aegis.backend_app import PUBLIC_ROUTES, create_app
from aegis.core.config import Settings
from tests.support.routes import api_routes

DOC = Path(__file__).resolve().parents[3] / "docs" / "rbac.md"


def _rbac(dependant: Dependant) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    for dep in dependant.dependencies:
        found = rbac_of(dep.call) or _rbac(dep)
        if found:
            return found
    return None


def route_table(settings: Settings) -> list[tuple[str, str, str]]:
    rows = []
    for route, path in api_routes(create_app(settings)):
        for method in sorted(route.methods or ()):
            if (method, path) in PUBLIC_ROUTES:
                who = "public"
            else:
                found = _rbac(route.dependant)
                assert found, f"{method} {path} has no role requirement"
                roles, principals = found
                who = ", ".join([*roles, "admin", *(f"principal:{p}" for p in principals)])
                who = ", ".join(dict.fromkeys(who.split(", ")))
            rows.append((path, method, who))
    return sorted(rows)


def render(rows: list[tuple[str, str, str]]) -> str:
    lines = [
        "# Who may call what",
        "",
        "Generated from the backend's routes (`tests/unit/auth/test_rbac.py` fails when this",
        "table and the code disagree). `admin` may call everything; `public` needs no token.",
        "",
        "| route | method | roles |",
        "|---|---|---|",
    ]
    lines += [f"| `{path}` | {method} | {who} |" for path, method, who in rows]
    return "\n".join(lines) + "\n"


def test_every_route_declares_roles_and_the_doc_matches(
    make_settings: Callable[..., Settings],
) -> None:
    expected = render(route_table(make_settings()))
    assert DOC.read_text() == expected, (
        "regenerate docs/rbac.md: python -m tests.unit.auth.test_rbac"
    )


def test_public_routes_really_exist(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    present = {(m, path) for route, path in api_routes(app) for m in route.methods or ()}
    assert present >= PUBLIC_ROUTES


if __name__ == "__main__":  # regenerate the doc
    import tempfile

    from pydantic import SecretStr

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            _env_file=None,
            data_dir=Path(tmp),
            jwt_secret=SecretStr("x" * 32),
            jwt_refresh_secret=SecretStr("y" * 32),
        )
        DOC.write_text(render(route_table(settings)))
