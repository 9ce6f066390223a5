"""The web console in a real headless Chromium against a real backend process.

One browser and one backend serve the whole module (starting a backend costs seconds); every
test seeds its own users and alerts, so the tests do not depend on each other's data or order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from aegis.actions import service as actions_service
from aegis.auth import service as auth_service
from aegis.auth import tokens
from aegis.auth.models import AuthSession
from aegis.database.core import Database
from tests.conftest import require
from tests.support import factories
from tests.support.alerts import alert, deliver
from tests.support.browser import backend, browser_errors, chromium, chromium_missing

pytestmark = pytest.mark.xdist_group("console")

WEBHOOK_TOKEN = "console-test-webhook-token-" + "f" * 24
JWT_SECRET = "console-test-jwt-secret-" + "a" * 32
WAIT_S = 30  # an upper bound for the page to settle, not a performance assertion
XSS = '<img src=x onerror="window.__aegisXss=1">'


@dataclass
class Console:
    url: str
    database: Database

    def user(self, *roles: str) -> str:
        return factories.user(self.database, *roles)

    def api(self, method: str, path: str, username: str, **kwargs: Any) -> Any:
        """Call the API as ``username`` (signing in first), expecting success."""
        tokens = httpx.post(
            f"{self.url}/api/v1/auth/login",
            json={"username": username, "password": factories.PASSWORD},
            timeout=30,
        ).json()
        response = httpx.request(
            method, f"{self.url}{path}", headers=factories.bearer(tokens), timeout=30, **kwargs
        )
        assert response.is_success, response.text
        return response.json()

    def alerts(self, *alerts: dict[str, Any]) -> None:
        response = deliver(self.url, WEBHOOK_TOKEN, *alerts)
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A backend on a free port with its own SQLite database, migrated by its own start-up."""
    work = tmp_path_factory.mktemp("console-backend")
    url = f"sqlite+pysqlite:///{work / 'aegis.db'}"
    env = {
        "ALERT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "JWT_SECRET": JWT_SECRET,
        "RATE_LIMIT_LOGIN_PER_MINUTE": "1000",
        "EXECUTOR_URL": "http://127.0.0.1:9",  # no executor: nothing runs a dry run or acts
    }
    with backend(work, database_url=url, env=env) as base:
        database = Database(url)
        try:
            yield Console(base, database)
        finally:
            database.dispose()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    missing = chromium_missing()
    require(missing is None, missing or "")
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


@pytest.fixture
def page(browser: Any, console: Console, tmp_path: Path) -> Iterator[Any]:
    """The browser on a freshly loaded console, signed out; a screenshot is taken at the end."""
    # Forget the previous test's session on a page of the same origin that runs no script.
    browser.get(f"{console.url}/api/v1/health/ping")
    browser.execute_script("window.sessionStorage.clear()")
    browser.get(f"{console.url}/")
    visible(browser, "login-form")
    browser_errors(browser)  # drain what loading the page logged
    yield browser
    browser.save_screenshot(str(tmp_path / "console.png"))


# ---- helpers ----------------------------------------------------------------------------------


def wait(driver: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S)


def visible(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    return wait(driver).until(ec.visibility_of_element_located((By.ID, element_id)))


def text_in(driver: Any, element_id: str, text: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait(driver).until(ec.text_to_be_present_in_element((By.ID, element_id), text))
    return driver.find_element(By.ID, element_id)


def sign_in(driver: Any, username: str, password: str = factories.PASSWORD) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "login-username").send_keys(username)
    driver.find_element(By.ID, "login-password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()


def signed_in(driver: Any) -> None:
    """Wait until the console shows the signed-in user and has loaded the incidents tab."""
    from selenium.webdriver.common.by import By

    visible(driver, "whoami")
    wait(driver).until(lambda d: "Loading" not in d.find_element(By.ID, "incidents-message").text)


def open_tab(driver: Any, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, f"tab-{name}").click()
    visible(driver, f"panel-{name}")


def csp_violations(driver: Any) -> list[str]:
    return [m for m in browser_errors(driver) if "Content Security Policy" in m]


# ---- tests ------------------------------------------------------------------------------------


def test_console_and_assets_are_served_with_strict_security_headers(console: Console) -> None:
    expected = {
        "/": "text/html",
        "/console": "text/html",
        "/static/app.js": "text/javascript",
        "/static/app.css": "text/css",
        "/static/favicon.svg": "image/svg+xml",
    }
    for path, content_type in expected.items():
        response = httpx.get(f"{console.url}{path}", timeout=30)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(content_type), path
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
    page = httpx.get(f"{console.url}/", timeout=30).text
    assert "<script>" not in page and " on" + "click=" not in page  # no inline script
    for path in ("/static/index.html", "/static/secrets.json", "/static/..%2Fviews.py"):
        response = httpx.get(f"{console.url}{path}", timeout=30)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_signed_in_user_sees_incidents_and_an_incidents_alerts(page: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By

    workload = f"shop-{uuid.uuid4().hex[:6]}"
    console.alerts(alert("HighErrorRate", deployment=workload, severity="critical"))
    sign_in(page, console.user("viewer"))
    row = visible(page, "incidents-body").find_element(
        By.XPATH, f"./tr[td[normalize-space()='staging/{workload}']]"
    )
    assert "HighErrorRate" in row.text and "open" in row.text and "critical" in row.text
    row.find_element(By.CSS_SELECTOR, "button.link").click()
    detail = text_in(page, "incident-detail", f"deployment={workload}")
    assert "HighErrorRate on staging/" in detail.text  # the alert's summary annotation
    fields = page.find_element(By.ID, "detail-fields").text
    assert "Prediction status\npending" in fields
    assert csp_violations(page) == []


def test_session_survives_a_reload_and_logout_ends_it(page: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By

    console.alerts(alert("DiskFull", deployment=f"db-{uuid.uuid4().hex[:6]}"))
    user = console.user("operator")
    sign_in(page, user)
    signed_in(page)
    assert page.find_elements(By.CSS_SELECTOR, "#incidents-body tr") != []
    # The access token lives only in the page; the refresh token in sessionStorage restores the
    # session after a reload (through POST /api/v1/auth/refresh).
    page.refresh()
    signed_in(page)
    assert page.find_element(By.ID, "whoami").text == f"{user} · operator"
    assert page.find_element(By.ID, "login-view").is_displayed() is False
    page.find_element(By.ID, "logout").click()
    visible(page, "login-form")
    assert page.execute_script("return window.sessionStorage.length") == 0
    # Nothing the user was shown stays in the page.
    assert page.execute_script("return document.getElementById('whoami').textContent") == ""
    assert page.find_elements(By.CSS_SELECTOR, "#incidents-body tr") == []
    page.refresh()
    visible(page, "login-form")


def _expired_access_token(refresh_token: str) -> str:
    """An access token of the same session, correctly signed, that expired a minute ago."""
    claims = jwt.decode(refresh_token, options={"verify_signature": False})
    past = int(time.time()) - 60
    expired = {
        "iss": tokens.ISSUER,
        "aud": tokens.AUDIENCE,
        "sub": claims["sub"],
        "sid": claims["sid"],
        "typ": "access",
        "jti": str(uuid.uuid4()),
        "iat": past - 900,
        "nbf": past - 900,
        "exp": past,
        "roles": ["viewer"],
    }
    return jwt.encode(expired, JWT_SECRET, algorithm=tokens.ALGORITHM)


def test_logout_after_the_access_token_expired_still_ends_the_session(
    page: Any, console: Console
) -> None:
    from selenium.webdriver.common.by import By

    sign_in(page, console.user("viewer"))
    signed_in(page)
    refresh_token = page.execute_script("return sessionStorage.getItem('aegis.refresh_token')")
    # The user was idle past the access token's lifetime: the page's token has expired.
    page.execute_script(
        """
        const expired = arguments[0];
        const original = window.fetch;
        let first = true;
        window.fetch = (path, init) => {
          if (first && String(path).endsWith("/api/v1/auth/logout")) {
            first = false;
            init.headers.Authorization = `Bearer ${expired}`;
          }
          return original(path, init);
        };
        """,
        _expired_access_token(refresh_token),
    )
    page.find_element(By.ID, "logout").click()
    visible(page, "login-form")
    # The session ended server-side, by the logout (not by a later reuse of a spent token).
    session_id = jwt.decode(refresh_token, options={"verify_signature": False})["sid"]
    with console.database.unit_of_work() as session:
        ended = session.get(AuthSession, session_id)
        assert ended is not None and ended.revoked_at is not None
        assert ended.revoked_reason == "logout"


def test_revoked_session_sends_the_user_back_to_sign_in(page: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By

    auditor = console.user("approver")

    def failed_refreshes() -> int:
        page_ = console.api(
            "GET", "/api/v1/audit", auditor, params={"type": "authentication.failed", "limit": 1000}
        )
        return sum(e["resource"] == "POST /api/v1/auth/refresh" for e in page_["items"])

    before = failed_refreshes()
    user = console.user("viewer")
    sign_in(page, user)
    signed_in(page)
    with console.database.unit_of_work() as session:  # an admin disables the user meanwhile
        auth_service.set_disabled(session=session, username=user, disabled=True, actor="test")
    page.find_element(By.ID, "incidents-reload").click()
    # 401, one refresh attempt (refused: the session was revoked), then the sign-in form.
    box = text_in(page, "login-error", "Your session has ended")
    assert "token_invalid" in box.text and "HTTP 401" in box.text
    assert page.execute_script("return window.sessionStorage.length") == 0
    assert page.find_element(By.ID, "app-view").is_displayed() is False
    assert failed_refreshes() == before + 1  # refreshed once, no retry loop


def test_wrong_password_shows_the_apis_error_message(page: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By

    sign_in(page, console.user("viewer"), password="not-the-password")
    box = text_in(page, "login-error", "invalid username or password")
    assert "authentication_failed" in box.text and "request id" in box.text
    assert page.find_element(By.ID, "app-view").is_displayed() is False


def test_viewer_is_refused_the_audit_log(page: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By

    sign_in(page, console.user("viewer"))
    signed_in(page)
    open_tab(page, "audit")
    message = text_in(page, "audit-message", "HTTP 403")
    assert "requires role" in message.text and "permission_denied" in message.text
    assert page.find_element(By.ID, "audit-table").is_displayed() is False
    assert page.find_elements(By.CSS_SELECTOR, "#audit-body tr") == []


def test_approver_sees_audit_entries_and_pages_through_them(page: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By

    # 60 alerts about distinct workloads: well over one page (50) of audit entries.
    console.alerts(
        *(alert("Flapping", deployment=f"w{i}-{uuid.uuid4().hex[:4]}") for i in range(60))
    )
    approver = console.user("approver")
    sign_in(page, approver)
    signed_in(page)
    open_tab(page, "audit")
    table = visible(page, "audit-table")
    assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == 50
    headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    assert headers[2:] == ["ACTOR", "EVENT", "RESOURCE", "OUTCOME"]
    visible(page, "audit-more").click()
    wait(page).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#audit-body tr")) > 50)
    rows = [r.text for r in page.find_elements(By.CSS_SELECTOR, "#audit-body tr")]
    seqs = [int(r.split()[0]) for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # pages continue, no repeats
    assert any("alertmanager" in r and "incident.opened" in r for r in rows)
    # Filtering by actor shows the approver's own sign-in.
    page.find_element(By.ID, "audit-actor").send_keys(approver)
    page.find_element(By.ID, "audit-reload").click()
    text_in(page, "audit-body", "login.succeeded")
    rows = [r.text for r in page.find_elements(By.CSS_SELECTOR, "#audit-body tr")]
    assert rows and all(approver in r for r in rows)
    assert csp_violations(page) == []


def test_markup_in_alert_labels_is_shown_as_text(page: Any, console: Console) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    workload = f"xss-{uuid.uuid4().hex[:6]}"
    console.alerts(alert(XSS, deployment=workload, note=XSS))
    sign_in(page, console.user("viewer"))
    row = visible(page, "incidents-body").find_element(
        By.XPATH, f"./tr[td[normalize-space()='staging/{workload}']]"
    )
    assert XSS in row.text
    row.click()
    detail = text_in(page, "detail-alerts", f"note={XSS}")
    assert XSS in page.find_element(By.ID, "detail-title").text
    assert f"alertname={XSS}" in detail.text
    assert page.find_elements(By.TAG_NAME, "img") == []
    assert page.execute_script("return window.__aegisXss === undefined") is True
    with pytest.raises(NoAlertPresentException):
        page.switch_to.alert.text  # noqa: B018 - reading it is what raises


def test_approver_approves_a_pending_action_and_sees_the_policy(
    page: Any, console: Console
) -> None:
    from selenium.webdriver.common.by import By

    admin, operator, approver = (
        console.user("admin"),
        console.user("operator"),
        console.user("approver"),
    )
    suffix = uuid.uuid4().hex[:6]
    policy = {
        "id": f"console-approvals-{suffix}",
        "name": "Restarts need a second person",
        "effect": "require_approval",
        "subjects": ["role:operator"],
        "actions": ["restart_deployment"],
        "resources": {"namespaces": [f"console-{suffix}"], "names": ["web", "api-*"]},
    }
    console.api("POST", "/api/v1/policy", admin, json=policy)
    labelled = {
        "id": f"console-labelled-{suffix}",
        "effect": "deny",
        "subjects": ["*"],
        "actions": ["delete_pod"],
        "resources": {
            "namespaces": [f"console-{suffix}"],
            "labels": {"match_labels": {"tier": "front"}},
        },
    }
    console.api("POST", "/api/v1/policy", admin, json=labelled)
    requested = console.api(
        "POST",
        "/api/v1/actions",
        operator,
        json={
            "action": "restart_deployment",
            "namespace": f"console-{suffix}",
            "name": "web",
            "idempotency_key": f"console-{suffix}",
            "reason": "error rate above SLO",
        },
    )
    assert requested["status"] == "pending_approval"
    # What the dispatcher records when the executor answers the dry run (no executor runs here).
    diff = [
        {"path": "/spec/template/metadata/annotations/restartedAt", "before": None, "after": "now"}
    ]
    with console.database.unit_of_work() as session:
        request = actions_service.get(session=session, action_id=requested["id"])
        actions_service.set_dry_run(session=session, request=request, diff=diff)

    sign_in(page, approver)
    signed_in(page)
    open_tab(page, "actions")
    row = visible(page, "actions-body").find_element(
        By.CSS_SELECTOR, f"tr[data-action-id='{requested['id']}']"
    )
    assert "restartedAt" in row.text and operator in row.text and "require_approval" in row.text
    row.find_element(By.CSS_SELECTOR, "input.reason").send_keys("diff reviewed")
    row.find_element(By.XPATH, ".//button[text()='Approve']").click()
    text_in(page, "actions-message", f"console-{suffix}/web: approved")
    stored = console.api("GET", f"/api/v1/actions/{requested['id']}", approver)
    assert (stored["status"], stored["approved_by"]) == ("approved", approver)
    audit = console.api("GET", "/api/v1/audit", approver, params={"type": "action.approved"})
    assert any(e["data"].get("comment") == "diff reviewed" for e in audit["items"])

    open_tab(page, "policies")
    policy_row = visible(page, "policies-body").find_element(
        By.XPATH, f"./tr[td[contains(., '{policy['id']}')]]"
    )
    assert "require_approval" in policy_row.text and "role:operator" in policy_row.text
    # what each covers: not the whole namespace, only these names, or pods with this label
    assert f"console-{suffix}" in policy_row.text and "names: web, api-*" in policy_row.text
    labelled_row = visible(page, "policies-body").find_element(
        By.XPATH, f"./tr[td[contains(., '{labelled['id']}')]]"
    )
    assert 'labels: {"tier":"front"}' in labelled_row.text
    assert "digest" in text_in(page, "policies-digest", "Active set").text
    assert csp_violations(page) == []


def test_approver_reviews_a_safety_flag_in_the_console(page: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By

    admin, approver = console.user("admin"), console.user("approver")
    note = f"drill {uuid.uuid4().hex[:6]} {XSS}"
    flag = console.api("POST", "/api/v1/safety/drill", admin, json={"note": note[:200]})

    sign_in(page, approver)
    signed_in(page)
    open_tab(page, "safety")
    row = visible(page, "safety-body").find_element(
        By.CSS_SELECTOR, f"tr[data-flag-id='{flag['id']}']"
    )
    assert "drill" in row.text and XSS in row.text  # markup in an excerpt is shown as text
    row.find_element(By.CSS_SELECTOR, "input.reason").send_keys("game day, expected")
    row.find_element(By.XPATH, ".//button[text()='Dismiss']").click()
    text_in(page, "safety-message", f"drill flag on drill {flag['subject_id']}: dismissed")
    queue = console.api("GET", "/api/v1/safety/flags", approver, params={"status": "dismissed"})
    closed = next(f for f in queue["items"] if f["id"] == flag["id"])
    assert (closed["reviewed_by"], closed["review_note"]) == (approver, "game day, expected")
    assert page.execute_script("return window.__aegisXss") is None
    assert csp_violations(page) == []


def test_the_safety_queue_pages_past_its_first_page(page: Any, console: Console) -> None:
    # During a spike the queue holds more than a page (it showed the newest 100, no more): the
    # oldest flags must still be reachable for review, not silently cut off.
    from aegis.safety import service as safety_service

    tag = uuid.uuid4().hex[:6]
    ids = []
    with console.database.unit_of_work() as session:
        for i in range(105):
            flag = safety_service.raise_flag(
                session=session,
                reason="drill",
                subject_kind="drill",
                subject_id=f"paging-{tag}-{i}",
                excerpt=f"paging {tag} {i}",
                actor="safety-screen",
            )
            assert flag is not None
            ids.append(flag.id)
    approver = console.user("approver")
    sign_in(page, approver)
    signed_in(page)
    open_tab(page, "safety")
    shown = _page_back_to(page, "safety", "data-flag-id", [str(i) for i in ids])
    assert str(ids[0]) in shown and len(shown) == len(set(shown))  # nothing twice
    assert csp_violations(page) == []


def _page_back_to(page: Any, tab: str, attribute: str, ids: list[str]) -> list[str]:
    """On ``tab``, whose first page shows the newest of ``ids`` and not the oldest, press Load
    more one page at a time until the oldest shows; every row's id, in order."""
    from selenium.webdriver.common.by import By

    body = visible(page, f"{tab}-body")
    rows = f"tr[{attribute}]"
    oldest = f"tr[{attribute}='{ids[0]}']"
    assert body.find_elements(By.CSS_SELECTOR, f"tr[{attribute}='{ids[-1]}']")
    assert body.find_elements(By.CSS_SELECTOR, oldest) == []
    for _ in range(len(ids)):
        if body.find_elements(By.CSS_SELECTOR, oldest):
            break
        before = len(body.find_elements(By.CSS_SELECTOR, rows))
        visible(page, f"{tab}-more").click()
        wait(page).until(
            lambda d, before=before: len(body.find_elements(By.CSS_SELECTOR, rows)) > before
        )
    return [r.get_attribute(attribute) for r in body.find_elements(By.CSS_SELECTOR, "tr")]


def test_the_actions_tab_pages_past_its_first_page(page: Any, console: Console) -> None:
    # It showed the newest 100: during a storm the older pending requests were out of reach.
    admin, operator = console.user("admin"), console.user("operator")
    suffix = uuid.uuid4().hex[:6]
    policy = {
        "id": f"console-paging-{suffix}",
        "effect": "require_approval",
        "subjects": ["role:operator"],
        "actions": ["restart_deployment"],
        "resources": {"namespaces": [f"paging-{suffix}"]},
    }
    console.api("POST", "/api/v1/policy", admin, json=policy)
    ids = []
    for i in range(105):
        made = console.api(
            "POST",
            "/api/v1/actions",
            operator,
            json={
                "action": "restart_deployment",
                "namespace": f"paging-{suffix}",
                "name": f"web-{i}",
                "idempotency_key": f"paging-{suffix}-{i}",
                "reason": "storm",
            },
        )
        ids.append(made["id"])
    sign_in(page, console.user("approver"))
    signed_in(page)
    open_tab(page, "actions")
    shown = _page_back_to(page, "actions", "data-action-id", ids)
    assert ids[0] in shown and len(shown) == len(set(shown))
    assert csp_violations(page) == []
