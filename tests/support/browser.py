"""Debian's headless Chromium driven by Selenium, and a real backend process for it to talk to.

Selenium is given ``/usr/bin/chromedriver`` and ``/usr/bin/chromium`` explicitly, so Selenium
Manager never runs (it would try to download a driver). The browser gets a fresh profile and no
background networking: the tests touch nothing beyond loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WINDOW = (1280, 800)
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--password-store=basic",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).is_file() or not os.access(path, os.X_OK):
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    return None


@contextmanager
def chromium(profile_dir: Path) -> Iterator[Any]:
    """A headless Chromium WebDriver with a fresh profile in ``profile_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER, log_output=str(profile_dir / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        # The viewport itself is 1280x800 (the window would include headless's own frame).
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
        )
        yield driver
    finally:
        driver.quit()


def browser_errors(driver: Any) -> list[str]:
    """Console messages at SEVERE level since the last call (the log is drained)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@contextmanager
def backend(
    work_dir: Path, *, database_url: str, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``python -m aegis serve backend`` on a free port; yields its base URL, stops it after.

    The process runs in ``work_dir`` (so no stray ``.env`` is read) with its data directory
    under it and none of the caller's AEGIS_/DATABASE_/REDIS_ variables.
    """
    port = free_port()
    child_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AEGIS_", "DATABASE_", "REDIS_", "ALERT_", "JWT_", "API_KEY"))
    }
    child_env.update(
        {
            "AEGIS_DATA_DIR": str(work_dir / "data"),
            "DATABASE_URL": database_url,
            "AI_ENGINE_ENABLED": "false",
            "AEGIS_BACKGROUND_JOBS": "false",
            "EXECUTOR_ENABLED": "false",
            "LOG_JSON": "true",
            **(env or {}),
        }
    )
    log_path = work_dir / "backend.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aegis", "serve", "backend", "--port", str(port)],
            cwd=work_dir,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, f"{base}/api/v1/health/ping", log_path)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"backend exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"backend not healthy after 90s:\n{log_path.read_text()[-4000:]}")
