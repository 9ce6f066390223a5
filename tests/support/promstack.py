"""Real Prometheus and Alertmanager processes on loopback, for tests.

Each process gets a free 127.0.0.1 port, its own storage folder under the test's temporary
directory, and a bounded wait for ``/-/ready``; ``stop()`` (or leaving the context manager)
terminates it, then kills it if it does not exit. Nothing here talks to anything but loopback:
``render_alertmanager_config`` points every receiver (Slack, PagerDuty, the Aegis webhook) at a
loopback URL and refuses to write a config that still names another host.

Typical use (an end-to-end test)::

    sink = HttpSink.start()                       # or Aegis's own webhook URL
    am_cfg = render_alertmanager_config(tmp_path / "am", sink_url=sink.url,
                                        webhook_url=f"{aegis}/api/v1/alerts/alertmanager",
                                        webhook_token="...")
    with alertmanager(am_cfg, tmp_path / "am") as am:
        rules = render_rules(tmp_path / "rules.yaml", hold="0s")
        prom_cfg = render_prometheus_config(tmp_path / "prometheus.yml",
                                            targets={"aegis-backend": [f"127.0.0.1:{port}"]},
                                            alertmanager=am.address, rule_files=[rules])
        with prometheus(prom_cfg, tmp_path / "prom") as prom:
            ...
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.services import free_port

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "k8s" / "prometheus" / "alert-rules.yaml"
RULE_TESTS_DIR = REPO / "k8s" / "prometheus" / "tests"
PROMETHEUS_CONFIG = REPO / "observability" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO / "observability" / "alertmanager" / "alertmanager.yml"

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class StartError(RuntimeError):
    """A process did not become ready; the message carries the end of its log."""


def _which(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def prometheus_binary() -> str | None:
    return _which("prometheus")


def alertmanager_binary() -> str | None:
    # Debian's package installs the server as prometheus-alertmanager.
    return _which("alertmanager", "prometheus-alertmanager")


def promtool_binary() -> str | None:
    return _which("promtool")


def amtool_binary() -> str | None:
    return _which("amtool")


# --- processes ---------------------------------------------------------------------------------


@dataclass
class RunningProcess:
    """A started Prometheus or Alertmanager."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _start(
    name: str, argv_for_port: Callable[[int], list[str]], workdir: Path, ready_timeout: float
) -> RunningProcess:
    """Start a server on a free port and wait for /-/ready; retry on a lost port race."""
    workdir.mkdir(parents=True, exist_ok=True)
    last_log = ""
    for attempt in range(3):
        port = free_port()
        log_path = workdir / f"{name}-{attempt}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv_for_port(port), stdout=log, stderr=subprocess.STDOUT, cwd=workdir
            )
        running = RunningProcess(name=name, port=port, process=proc, log_path=log_path)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if _ready(running.url):
                return running
            time.sleep(0.1)
        running.stop()
        last_log = running.log_tail()
        if "address already in use" not in last_log:
            break
    raise StartError(f"{name} did not become ready within {ready_timeout:.0f}s:\n{last_log}")


def start_alertmanager(
    config_file: Path, workdir: Path, *, ready_timeout: float = READY_TIMEOUT_S
) -> RunningProcess:
    """A real Alertmanager on a free loopback port, clustering off, storage in ``workdir``."""
    binary = alertmanager_binary()
    if binary is None:
        raise StartError("alertmanager (Debian: prometheus-alertmanager) is not installed")
    storage = workdir / "alertmanager-data"
    storage.mkdir(parents=True, exist_ok=True)

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_file}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ]

    return _start("alertmanager", argv, workdir, ready_timeout)


def start_prometheus(
    config_file: Path,
    workdir: Path,
    *,
    ready_timeout: float = READY_TIMEOUT_S,
    retention: str = "1h",
) -> RunningProcess:
    """A real Prometheus on a free loopback port with its TSDB in ``workdir``.

    ``/-/reload`` is enabled (``--web.enable-lifecycle``) so a test can change the config.
    ``retention``: how long it keeps samples (longer for a TSDB a test has backfilled).
    """
    binary = prometheus_binary()
    if binary is None:
        raise StartError("prometheus is not installed")
    storage = workdir / "prometheus-data"
    storage.mkdir(parents=True, exist_ok=True)

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            f"--storage.tsdb.retention.time={retention}",
        ]

    return _start("prometheus", argv, workdir, ready_timeout)


@contextmanager
def alertmanager(config_file: Path, workdir: Path, **kwargs: Any) -> Iterator[RunningProcess]:
    running = start_alertmanager(config_file, workdir, **kwargs)
    try:
        yield running
    finally:
        running.stop()


@contextmanager
def prometheus(config_file: Path, workdir: Path, **kwargs: Any) -> Iterator[RunningProcess]:
    running = start_prometheus(config_file, workdir, **kwargs)
    try:
        yield running
    finally:
        running.stop()


def wait_for(
    probe: Callable[[], Any],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> Any:
    """Call ``probe`` until it returns something truthy; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met within {timeout:.0f}s")
        time.sleep(interval)


# --- configs -----------------------------------------------------------------------------------


def render_rules(dest: Path, *, hold: str | None = None, source: Path = RULES_FILE) -> Path:
    """Copy the alert rules, optionally with every ``for:`` replaced by ``hold`` (e.g. "0s").

    An end-to-end test cannot wait ten minutes for a ``for:``; the rules' own timing is proven
    by the promtool unit tests in k8s/prometheus/tests/.
    """
    doc = yaml.safe_load(source.read_text())
    if hold is not None:
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = hold
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def render_prometheus_config(
    dest: Path,
    *,
    targets: Mapping[str, Sequence[str]],
    alertmanager: str | None = None,
    rule_files: Sequence[Path] | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    source: Path = PROMETHEUS_CONFIG,
) -> Path:
    """observability/prometheus/prometheus.yml with test targets and short intervals.

    ``targets`` maps a job name of the source config to ``host:port`` addresses (jobs not named
    keep no target, so nothing is scraped by accident). ``rule_files`` defaults to the source's
    rule files, made absolute. ``alertmanager`` is a ``host:port`` or None for no alerting.
    """
    doc = yaml.safe_load(source.read_text())
    doc["global"]["scrape_interval"] = scrape_interval
    doc["global"]["scrape_timeout"] = scrape_interval
    doc["global"]["evaluation_interval"] = evaluation_interval
    if rule_files is None:
        doc["rule_files"] = [str((source.parent / p).resolve()) for p in doc.get("rule_files", [])]
    else:
        doc["rule_files"] = [str(Path(p).resolve()) for p in rule_files]
    known = {job["job_name"] for job in doc["scrape_configs"]}
    unknown = set(targets) - known
    if unknown:
        raise ValueError(f"jobs not in {source.name}: {sorted(unknown)}")
    for job in doc["scrape_configs"]:
        addresses = list(targets.get(job["job_name"], []))
        for address in addresses:
            _require_loopback(f"http://{address}")
        statics = job.get("static_configs") or [{}]
        labels = statics[0].get("labels")
        job["static_configs"] = [{"targets": addresses, **({"labels": labels} if labels else {})}]
    if alertmanager is None:
        doc.pop("alerting", None)
    else:
        _require_loopback(f"http://{alertmanager}")
        doc["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def render_alertmanager_config(
    workdir: Path,
    *,
    sink_url: str,
    webhook_url: str | None = None,
    webhook_token: str = "test-alert-webhook-token",
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
    source: Path = ALERTMANAGER_CONFIG,
) -> Path:
    """observability/alertmanager/alertmanager.yml with every secret and destination local.

    The routing tree is kept as is; only the root route's timers change (children inherit
    them). Each ``*_file`` secret becomes a file under ``workdir/secrets``: Slack webhook URLs
    point at ``{sink_url}/slack/<receiver>``, PagerDuty routing keys are the receiver's name and
    PagerDuty events go to ``{sink_url}/pagerduty``; the Aegis webhook goes to ``webhook_url``
    (default ``{sink_url}/webhook/aegis-webhook``) with ``webhook_token`` as its bearer token.
    """
    _require_loopback(sink_url)
    if webhook_url is not None:
        _require_loopback(webhook_url)
    doc = yaml.safe_load(source.read_text())
    secrets = workdir / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)

    def secret(name: str, value: str) -> str:
        path = secrets / name
        path.write_text(value)
        path.chmod(0o600)
        return str(path)

    doc.setdefault("global", {})["pagerduty_url"] = f"{sink_url}/pagerduty"
    route = doc["route"]
    route.update(
        group_wait=group_wait, group_interval=group_interval, repeat_interval=repeat_interval
    )
    for receiver in doc["receivers"]:
        name = receiver["name"]
        for cfg in receiver.get("slack_configs", []):
            cfg["api_url_file"] = secret(f"{name}.slack-url", f"{sink_url}/slack/{name}")
        for cfg in receiver.get("pagerduty_configs", []):
            cfg["routing_key_file"] = secret(f"{name}.routing-key", name)
        for cfg in receiver.get("webhook_configs", []):
            cfg["url"] = webhook_url or f"{sink_url}/webhook/{name}"
            auth = cfg.get("http_config", {}).get("authorization")
            if auth is not None:
                auth["credentials_file"] = secret(f"{name}.token", webhook_token)
    _check_no_remote_url(doc)
    dest = workdir / "alertmanager.yml"
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def _require_loopback(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"tests may only talk to loopback addresses, not {url!r}")


def _check_no_remote_url(node: Any) -> None:
    if isinstance(node, dict):
        for value in node.values():
            _check_no_remote_url(value)
    elif isinstance(node, list):
        for value in node:
            _check_no_remote_url(value)
    elif isinstance(node, str) and _URL.match(node):
        _require_loopback(node)


# --- a loopback HTTP sink standing in for Slack and PagerDuty ----------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class HttpSink:
    """Records every POST it receives (JSON bodies decoded) and answers 200."""

    server: http.server.ThreadingHTTPServer
    thread: threading.Thread
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @classmethod
    def start(cls) -> HttpSink:
        sink: HttpSink

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with sink.lock:
                    sink.received.append(Received(self.path, dict(self.headers.items()), body))
                payload = b'{"status":"success"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, name="http-sink", daemon=True)
        sink = cls(server=server, thread=thread)
        thread.start()
        return sink

    def requests_to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=STOP_TIMEOUT_S)
