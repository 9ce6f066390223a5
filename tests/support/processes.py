"""Private server processes a test owns (never the machine's shared services)."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.services import free_port


def wait_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


def wait_until(what: str, probe: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll ``probe`` until it holds (a guard against hangs, not a measured expectation)."""
    deadline = time.monotonic() + timeout_s
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without Aegis settings, plus ``values``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AEGIS_", "DATABASE_", "REDIS_"))
    }
    env.update(values)
    return env


def run_on_a_full_disk(
    argv: list[str], *, limit: int, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as a full disk part way through a write would leave it: no file it writes can
    grow past ``limit`` bytes, and such a write fails with EFBIG (SIGXFSZ ignored)."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=limit_file_size,
    )


@contextmanager
def aegis_serve(service: str, workdir: Path, port: int, **env: str) -> Iterator[str]:
    """``aegis serve <service>`` on ``port`` (settings from ``env`` only), its URL; stopped with
    SIGTERM at the end, which it must survive cleanly (uvicorn's graceful shutdown)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{service}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aegis", "serve", service, "--port", str(port)],
        cwd=workdir,
        env=clean_env(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    output = log_path.read_text(errors="replace")
    # uvicorn stops gracefully, then ends by the signal it caught (as a container runtime expects)
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output, output


def _redis_server(
    port: int, workdir: Path, extra_args: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """A redis-server on ``port`` that keeps nothing on disk, answering when this returns."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            *extra_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


@contextmanager
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server on a free port, killed at the end (the test may kill it earlier)."""
    with restartable_redis(tmp_path) as server:
        yield server.url, server.proc


@dataclass
class PrivateRedis:
    """A private redis-server (:func:`restartable_redis`) that a test may restart."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]
    extra_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restart(self) -> None:
        """Kill it and start a new one on the same port: everything it held is forgotten, as
        when a Redis without persistence restarts (or a replica missing the latest writes
        takes over)."""
        self.proc.kill()
        self.proc.wait()
        self.proc = _redis_server(self.port, self.workdir, self.extra_args)


@contextmanager
def restartable_redis(tmp_path: Path, *extra_args: str) -> Iterator[PrivateRedis]:
    """A redis-server on a free port, keeping nothing on disk (``extra_args`` appended to its
    command line); killed at the end."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = _redis_server(port, tmp_path, extra_args)
    server = PrivateRedis(port, tmp_path, proc, extra_args)
    try:
        yield server
    finally:
        server.proc.kill()
        server.proc.wait()


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None
