"""Bad start-up input is one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aegis.cli.main import run
from tests.support.processes import clean_env
from tests.support.services import free_port


def _aegis(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aegis", *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,  # no terminal: nothing may wait on one
        text=True,
        env=clean_env(**{"AEGIS_DATA_DIR": str(tmp_path / "data"), **env}),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_malformed_database_url(tmp_path: Path) -> None:
    line = _one_error_line(_aegis(["db", "upgrade"], tmp_path, DATABASE_URL="postgres//x"))
    assert "DATABASE_URL is malformed" in line


def test_unreachable_database_names_it_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://aegis:hunter2@127.0.0.1:{free_port()}/aegis"
    result = _aegis(["db", "upgrade"], tmp_path, DATABASE_URL=url, DATABASE_CONNECT_TIMEOUT_S="1")
    line = _one_error_line(result)
    assert "cannot reach the database" in line
    assert "hunter2" not in result.stderr + result.stdout


def test_unreachable_database_hides_a_password_given_as_a_query_parameter(
    tmp_path: Path,
) -> None:
    url = f"postgresql+psycopg://aegis@127.0.0.1:{free_port()}/aegis?password=hunter2"
    result = _aegis(["user", "list"], tmp_path, DATABASE_URL=url, DATABASE_CONNECT_TIMEOUT_S="1")
    line = _one_error_line(result)
    assert "cannot reach the database" in line and "password=***" in line
    assert "hunter2" not in result.stderr + result.stdout


def test_db_upgrade_names_the_database_without_a_query_password(
    tmp_path: Path, db_url: str
) -> None:
    url = f"{db_url}{'&' if '?' in db_url else '?'}password=hunter2"
    result = _aegis(["db", "upgrade"], tmp_path, DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert "password=***" in result.stdout
    assert "hunter2" not in result.stderr + result.stdout


def test_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = _one_error_line(_aegis(["db", "upgrade"], tmp_path, AEGIS_DATA_DIR=str(blocker / "d")))
    assert "is not writable" in line


def test_port_already_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_error_line(_aegis(["serve", "engine", "--port", str(port)], tmp_path))
    assert f"port {port}" in line and "already in use" in line


def test_up_with_a_port_in_use_names_the_setting_to_change(tmp_path: Path) -> None:
    # `aegis up` has no --port: the line must name the variable that moves the service
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _aegis(
            ["up"],
            tmp_path,
            ENGINE_PORT=str(port),
            EXECUTOR_PORT=str(free_port()),
            BACKEND_PORT=str(free_port()),
        )
    line = _one_error_line(result)
    assert f"port {port}" in line and "already in use" in line
    assert "ENGINE_PORT" in line and "--port" not in line


def test_debug_flag_shows_the_traceback(tmp_path: Path) -> None:
    result = _aegis(["--debug", "db", "upgrade"], tmp_path, DATABASE_URL="postgres//x")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_db_upgrade_migrates_a_fresh_sqlite_database(tmp_path: Path) -> None:
    result = _aegis(["db", "upgrade"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "aegis.db").exists()


def test_production_mode_migrates_with_no_platform_secret(tmp_path: Path) -> None:
    # the migration job holds the database URL and nothing else
    result = _aegis(["db", "upgrade"], tmp_path, AEGIS_MODE="production")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "aegis.db").exists()


def test_production_engine_without_its_api_key_names_it(tmp_path: Path) -> None:
    line = _one_error_line(
        _aegis(["serve", "engine", "--port", str(free_port())], tmp_path, AEGIS_MODE="production")
    )
    assert "API_KEY must be set in production mode" in line


def test_a_database_error_is_one_line_without_the_sql(tmp_path: Path) -> None:
    # a current schema whose audit table someone dropped by hand
    import sqlite3

    assert _aegis(["db", "upgrade"], tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "data" / "aegis.db") as conn:
        conn.execute("DROP TABLE audit_log")
    target = (tmp_path / "audit.jsonl").as_uri()
    result = _aegis(["audit", "export", "--to", target], tmp_path)
    line = _one_error_line(result)
    assert "no such table" in line and "aegis db upgrade" in line
    assert "SQL" not in result.stderr and "SELECT" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["model", "verify"], "Missing argument 'target'"),
        (["model", "build", ".", "--bogus"], "No such option: --bogus"),
        (["nosuch"], "No such command 'nosuch'"),
        (["serve", "engine", "--port", "many"], "Invalid value for '--port'"),
    ],
)
def test_a_usage_error_is_typers_message_and_exit_code_2(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(args) == 2
    err = capsys.readouterr().err
    assert says in err and "Usage: aegis" in err
    assert "unexpected" not in err and "Traceback" not in err


def test_a_path_or_revision_that_cannot_be_used_is_named_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = _one_error_line(_aegis(["engine", "train", "--out", str(blocker / "model")], tmp_path))
    assert line == f"error: Not a directory: {blocker / 'model'}"
    line = _one_error_line(_aegis(["db", "upgrade", "nope"], tmp_path))
    assert "cannot migrate to 'nope'" in line


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOG_LEVEL", "NOPE"),
        ("ENGINE_PORT", "99999"),
        ("BACKEND_PORT", "-1"),
        ("DATABASE_CONNECT_TIMEOUT_S", "-5"),
        ("RETENTION_DAYS", "99999999"),
    ],
)
def test_an_out_of_range_setting_is_named(tmp_path: Path, name: str, value: str) -> None:
    line = _one_error_line(_aegis(["db", "upgrade"], tmp_path, **{name: value}))
    assert line.startswith(f"error: {name} is invalid"), line


def test_a_port_out_of_range_on_the_command_line_is_a_usage_error(tmp_path: Path) -> None:
    result = _aegis(["serve", "engine", "--port", "70000"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Invalid value for '--port'" in result.stderr


def test_user_create_without_a_terminal_asks_for_password_stdin(tmp_path: Path) -> None:
    args = ["user", "create", "bob", "--role", "viewer"]
    result = _aegis(args, tmp_path)
    line = _one_error_line(result)
    assert "--password-stdin" in line and "Warning" not in result.stderr


@pytest.mark.parametrize("locale", ["C.UTF-8", "C"])
def test_a_password_on_stdin_that_is_not_utf8_is_named(tmp_path: Path, locale: str) -> None:
    args = ["user", "create", "bob", "--role", "viewer", "--password-stdin"]
    result = subprocess.run(
        [sys.executable, "-m", "aegis", *args],
        capture_output=True,
        input=b"\xff\xfe-not-utf8-password\n",
        env=clean_env(AEGIS_DATA_DIR=str(tmp_path / "data"), LC_ALL=locale),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.decode() == "error: the password is not UTF-8 text\n"


def test_a_dotenv_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"JWT_SECRET=\xff\xfe\n")
    assert _one_error_line(_aegis(["user", "list"], tmp_path)) == (
        "error: the .env file is not UTF-8 text"
    )


def test_commands_that_only_read_keys_name_a_bad_setting(tmp_path: Path) -> None:
    line = _one_error_line(_aegis(["keys", "list"], tmp_path, AEGIS_MODE="bogus"))
    assert line.startswith("error: AEGIS_MODE is invalid"), line


def test_a_replay_window_past_any_date_is_refused_in_one_line(tmp_path: Path) -> None:
    line = _one_error_line(_aegis(["policy", "replay", "--since", "99999999999d"], tmp_path))
    assert "use e.g. 30d" in line


def test_an_sdk_scan_of_a_file_with_a_nul_byte_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "g.py").write_bytes(b"import os\x00\n")
    line = _one_error_line(_aegis(["scan", "sdk", "src"], tmp_path))
    assert line.startswith("error: src/g.py: cannot parse") and "None" not in line


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+psycopg://u:hunter2@[::1/x", "DATABASE_URL is malformed"),
        ("postgresql://u:hunter2@db:abc/x", "DATABASE_URL is malformed"),
        ("postgresql+asyncpg://u:hunter2@db/x", "names driver 'asyncpg', which is not installed"),
    ],
)
def test_a_database_url_that_cannot_work_is_named_without_its_password(
    tmp_path: Path, url: str, says: str
) -> None:
    result = _aegis(["user", "list"], tmp_path, DATABASE_URL=url)
    assert says in _one_error_line(result) and "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("garbage", "--to is malformed"),
        ("mysql://u:hunter2@db/x", "--to uses unsupported backend 'mysql'"),
        ("postgresql://u:hunter2@db:abc/x", "--to is malformed"),
    ],
)
def test_a_restore_target_that_cannot_work_is_refused_first(
    tmp_path: Path, target: str, says: str
) -> None:
    result = _aegis(["backup", "restore", "-y", "--to", target, "missing.tar.gz"], tmp_path)
    assert says in _one_error_line(result) and "hunter2" not in result.stderr


def test_waiting_for_the_database_says_so_once_on_a_terminal(tmp_path: Path) -> None:
    import pty

    url = f"postgresql+psycopg://aegis:hunter2@127.0.0.1:{free_port()}/aegis"
    env = clean_env(
        AEGIS_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=url, DATABASE_CONNECT_TIMEOUT_S="1"
    )
    main, terminal = pty.openpty()
    try:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "aegis", "user", "list"],
                stderr=terminal,
                stdout=subprocess.DEVNULL,
                env=env,
                cwd=tmp_path,
                timeout=60,
                check=False,
            )
        finally:
            os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the terminal's other end closed: everything was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main)
    text = shown.decode()
    assert proc.returncode == 1
    assert text.count("waiting up to 1 s for the database at") == 1, text
    assert "cannot reach the database" in text and "hunter2" not in text
