"""`aegis up` with nothing set: three healthy services, a graceful stop, and a failed start."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from aegis.auth import passwords
from aegis.auth.models import User
from aegis.database.core import Database
from tests.support.processes import clean_env
from tests.support.services import free_port


def test_up_serves_all_three_health_endpoints_and_stops_gracefully(tmp_path: Path) -> None:
    ports = {"BACKEND_PORT": free_port(), "ENGINE_PORT": free_port(), "EXECUTOR_PORT": free_port()}
    env = clean_env()
    env.update({k: str(v) for k, v in ports.items()})
    proc = subprocess.Popen(
        [sys.executable, "-m", "aegis", "up"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    urls = [
        f"http://127.0.0.1:{ports['BACKEND_PORT']}/api/v1/health",
        f"http://127.0.0.1:{ports['ENGINE_PORT']}/health",
        f"http://127.0.0.1:{ports['EXECUTOR_PORT']}/health",
    ]
    try:
        deadline = time.monotonic() + 60
        healthy: set[str] = set()
        while len(healthy) < 3 and time.monotonic() < deadline and proc.poll() is None:
            for url in urls:
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        healthy.add(url)
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        assert healthy == set(urls)
        # the engine serves the bootstrapped model only after its signature verified
        deadline = time.monotonic() + 30
        engine: dict[str, object] = {}
        while time.monotonic() < deadline and not engine.get("model_loaded"):
            engine = httpx.get(urls[1], timeout=2).json()
            time.sleep(0.3)
        assert engine["model_loaded"] is True
        assert engine["model"]["signer"]  # type: ignore[index]
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "Aegis is up" in output and "Aegis stopped." in output
    assert (tmp_path / ".aegis" / "aegis.db").exists()


def test_a_start_that_fails_still_shows_the_first_admins_password(tmp_path: Path) -> None:
    # The executor cannot start (a Kubernetes backend and no cluster); the admin was created
    # before that, and its password exists nowhere but in this output.
    env = clean_env()
    env.update(
        {name: str(free_port()) for name in ("BACKEND_PORT", "ENGINE_PORT", "EXECUTOR_PORT")}
    )
    env.update({"EXECUTOR_BACKEND": "kubernetes", "KUBECONFIG": str(tmp_path / "none")})
    result = subprocess.run(
        [sys.executable, "-m", "aegis", "up"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    assert "Aegis is up" not in result.stdout
    found = re.search(r"first admin\s+user (\S+) password (\S+)", result.stdout)
    assert found, result.stdout + result.stderr
    database = Database(f"sqlite+pysqlite:///{tmp_path / '.aegis' / 'aegis.db'}")
    try:
        with database.unit_of_work() as session:
            user = session.scalar(select(User).where(User.username == found.group(1)))
            assert user is not None
            assert passwords.verify_password(user.password_hash, found.group(2))
    finally:
        database.dispose()
