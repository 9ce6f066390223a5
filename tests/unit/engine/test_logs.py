"""Log evidence: Drain3 templates that are new or surging in the recent part of an incident."""

from __future__ import annotations

import random

import pytest

from aegis.engine import logs, model
from aegis.engine.model_spec import LogSettings
from aegis.engine.schemas import LogLine

T0 = 1.8e9


@pytest.fixture(scope="module")
def miner() -> logs.LogMiner:
    trained = model.train()
    return logs.LogMiner.build(trained.spec.logs, trained.kb)


def _mine(
    miner: logs.LogMiner,
    lines: list[str | LogLine],
    boundary: float | None = None,
    settings: LogSettings | None = None,
) -> logs.LogResult:
    if settings is not None:
        miner = logs.LogMiner(settings, miner.masks, miner.signatures)
    prepared = logs.prepare(lines, miner.settings)
    masked = logs.mask_batch([prepared], miner)[0]
    return logs.mine(masked, miner, boundary, fraction=0.25)


def _stream(seed: int = 0) -> list[str | LogLine]:
    """An hour of ordinary request logs, then a new error template in the last ten minutes."""
    rnd = random.Random(seed)
    out: list[str | LogLine] = []
    for i in range(360):
        t = T0 + i * 10
        path = rnd.choice(["/api/items", "/api/orders", "/healthz"])
        out.append(
            LogLine(
                message=f"INFO GET {path}/{rnd.randint(1, 9999)} 200 {rnd.randint(1, 90)}ms",
                timestamp=t,
            )
        )
        if i >= 300 and i % 2 == 0:
            ip = f"10.0.{rnd.randint(0, 9)}.{rnd.randint(1, 250)}:5432"
            out.append(
                LogLine(
                    message=f"ERROR connection refused to {ip} (attempt {i % 7})", timestamp=t + 1
                )
            )
    return out


def test_a_new_error_template_in_the_recent_part_is_evidence(miner: logs.LogMiner) -> None:
    result = _mine(miner, _stream(), boundary=T0 + 3000)

    top = result.summary.evidence[0]
    assert top.kind == "new"
    assert top.template == "ERROR connection refused to <IP> (attempt <NUM>)"
    assert top.recent_count == 30 and top.baseline_count == 0
    assert "dependency" in top.signatures
    assert result.hints["dependency_failure"][0] > 0.5
    assert result.summary.templates >= 2


def test_ordinary_templates_seen_throughout_are_not_evidence(miner: logs.LogMiner) -> None:
    result = _mine(miner, _stream(), boundary=T0 + 3000)

    assert all(not e.template.startswith("INFO GET") for e in result.summary.evidence)


def test_a_template_whose_rate_surges_is_reported_with_its_ratio(miner: logs.LogMiner) -> None:
    lines: list[str | LogLine] = []
    for i in range(600):
        t = T0 + i * 5
        lines.append(LogLine(message=f"INFO served {i}", timestamp=t))
        late = t >= T0 + 2400
        if (late and i % 2 == 0) or (not late and i % 60 == 0):
            lines.append(LogLine(message=f"WARN retrying upstream call {i} failed", timestamp=t))

    result = _mine(miner, lines, boundary=T0 + 2400)

    surge = [e for e in result.summary.evidence if e.kind == "surging"]
    assert len(surge) == 1
    assert surge[0].template.startswith("WARN retrying upstream call")
    assert surge[0].ratio is not None and surge[0].ratio >= 3.0
    assert surge[0].baseline_count > 0


def test_without_timestamps_the_last_quarter_of_lines_is_recent(miner: logs.LogMiner) -> None:
    lines: list[str | LogLine] = [f"INFO tick {i}" for i in range(90)]
    lines += [f"panic: runtime error: index out of range [{i}]" for i in range(30)]

    result = _mine(miner, lines, boundary=None)

    top = result.summary.evidence[0]
    assert top.kind == "new" and top.recent_count == 30
    assert "crash" in top.signatures
    assert result.hints["crash_loop"][0] > 0


def test_with_too_short_a_baseline_only_known_signatures_count(miner: logs.LogMiner) -> None:
    lines: list[str | LogLine] = ["INFO started", "java.lang.OutOfMemoryError: Java heap space"]

    result = _mine(miner, lines, boundary=None)

    assert [e.kind for e in result.summary.evidence] == ["signature"]
    assert result.summary.evidence[0].signatures[0] == "out_of_memory"


def test_numbers_addresses_and_ids_are_masked_into_one_template(miner: logs.LogMiner) -> None:
    lines: list[str | LogLine] = [
        f"user {i} from 192.168.{i}.7:{8000 + i} req 0x{i:04x}ab trace "
        f"123e4567-e89b-12d3-a456-4266141740{i:02d} took {i}.5ms"
        for i in range(40)
    ]

    result = _mine(miner, lines)

    assert result.summary.templates == 1


def test_masking_a_batch_at_once_equals_masking_each_line(miner: logs.LogMiner) -> None:
    a = logs.prepare(["a 1 b 10.0.0.1", "c 0xff d"], miner.settings)
    b = logs.prepare(["", "e 123e4567-e89b-12d3-a456-426614174000 f"], miner.settings)

    together = logs.mask_batch([a, b], miner)
    alone = [logs.mask_batch([a], miner)[0], logs.mask_batch([b], miner)[0]]

    assert [x.masked for x in together] == [x.masked for x in alone]
    assert together[0].masked == ["a <NUM> b <IP>", "c <HEX> d"]


def test_lines_are_cut_newlines_and_nul_replaced_and_only_the_last_ones_kept(
    miner: logs.LogMiner,
) -> None:
    settings = miner.settings.model_copy(update={"max_lines": 3, "max_line_chars": 20})
    lines: list[str | LogLine] = ["old 1", "old 2", "x" * 100, "two\nlines", "nul\x00byte"]

    prepared = logs.prepare(lines, settings)

    assert prepared.total == 5
    assert prepared.texts == ["x" * 20, "two lines", "nul\ufffdbyte"]


def test_mining_adversarial_lines_stops_at_its_work_budget(miner: logs.LogMiner) -> None:
    rnd = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
    lines: list[str | LogLine] = [
        " ".join(rnd.choice(words) + rnd.choice(words) for _ in range(60)) for _ in range(3000)
    ]

    result = _mine(miner, lines)

    assert result.summary.truncated
    assert result.summary.templates <= miner.settings.max_clusters


def test_mining_is_deterministic(miner: logs.LogMiner) -> None:
    first = _mine(miner, _stream(5), boundary=T0 + 3000)
    second = _mine(miner, _stream(5), boundary=T0 + 3000)

    assert first.summary.model_dump_json() == second.summary.model_dump_json()
