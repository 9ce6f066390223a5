"""Engine processes sharing DATA_DIR prepare one model version at the same moment, the cache
damaged under them: every one of them loads it, none is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.registry import catalog
from aegis.registry import service as registry_service
from aegis.registry.cosign_keys import generate_private_key, public_key_pem
from aegis.registry.keyset import load_keyset
from tests.support.processes import clean_env

NAME = "example_multimodal"
FILES, ROUNDS, PREPARERS = 200, 8, 2

# One engine process: prepares the production model each time it reads a line, then reads
# every file of what it was given, as loading the model would.
PREPARER = """
import sys
from pathlib import Path
from aegis.core.config import Settings
from aegis.core.errors import AegisError
from aegis.database.core import Database
from aegis.registry.loader import fetch_and_prepare_model_for_load
data, url, keys = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
settings = Settings(_env_file=None, data_dir=data, database_url=url, trusted_keys=keys)
database = Database(url)
print("ready", flush=True)
for _ in sys.stdin:
    try:
        prepared = fetch_and_prepare_model_for_load(
            "example_multimodal", settings=settings, database=database
        )
        files = sorted(p for p in prepared.path.rglob("*") if p.is_file())
        contents = [f.read_bytes() for f in files]
        print("loaded", len(files), flush=True)
    except AegisError as exc:
        print("refused", exc.code, flush=True)
    except OSError as exc:
        print("vanished", type(exc).__name__, flush=True)
"""


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str, tmp_path: Path) -> Settings:
    key = generate_private_key()
    pub = tmp_path / "cosign.pub"
    pub.write_bytes(public_key_pem(key.public_key()))
    source = tmp_path / "model"
    for i in range(FILES):  # part-0/w0.json ... part-3/w99.json, the last in the manifest
        (source / f"part-{i % 4}").mkdir(parents=True, exist_ok=True)
        (source / f"part-{i % 4}" / f"w{i}.json").write_text(json.dumps([i] * 2000))
    (source / "params.json").write_text('{"threshold": 1}')
    archive = tmp_path / "model.tar.gz"
    registry_service.build_archive(source, archive, name=NAME, version="0.1")
    signature = registry_service.sign_archive(archive, key)
    database = Database(db_url)
    with database.unit_of_work() as session:
        catalog.push(
            session=session,
            archive=archive,
            signature=signature,
            to=(tmp_path / "store").as_uri() + "/model-archives/example/0.1/",
            keyset=load_keyset(str(pub)),
            actor="alice",
        )
        promotion_id = catalog.request_promotion(
            session=session, name=NAME, version="0.1", to="production", actor="alice"
        ).id
    with database.unit_of_work() as session:
        catalog.approve(session=session, promotion_id=promotion_id, actor="bob")
    database.dispose()
    return make_settings(database_url=db_url, trusted_keys=str(pub))


@pytest.fixture
def preparers(settings: Settings, db_url: str) -> Iterator[list[subprocess.Popen[str]]]:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                PREPARER,
                str(settings.data_dir),
                db_url,
                str(settings.trusted_keys),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        for _ in range(PREPARERS)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        yield procs
    finally:
        for proc in procs:
            with proc:  # closes its pipes (stdin first: the preparer ends) and waits
                pass


def _prepare_at_once(procs: list[subprocess.Popen[str]]) -> list[str]:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    answers = []
    for proc in procs:
        assert proc.stdout is not None
        answers.append(proc.stdout.readline().strip())
    return answers


def test_processes_preparing_a_damaged_cache_at_once_all_load_it(
    settings: Settings, preparers: list[subprocess.Popen[str]]
) -> None:
    model = settings.data_dir / "model-cache" / NAME / "0.1" / "model"
    assert _prepare_at_once(preparers[:1]) == [f"loaded {FILES + 1}"]  # the cache, filled
    # the file checked last (the manifest's order), so each preparer reads the whole folder
    # before it finds the damage
    last = model / "part-3" / "w99.json"
    for round_ in range(ROUNDS):
        last.write_text(f"damaged {round_}")
        assert _prepare_at_once(preparers) == [f"loaded {FILES + 1}"] * PREPARERS
        assert json.loads(last.read_text()) == [99] * 2000
