"""Runtime flags: set, read back, and set for the first time by two writers at once."""

from __future__ import annotations

from aegis.database.core import Database
from aegis.flags import service as flags
from tests.support.races import race


def test_a_flag_reads_back_what_was_set_last(database: Database) -> None:
    with database.unit_of_work() as session:
        assert flags.get(session=session, name="executor_enabled", default="true") == "true"
        flags.set_flag(session=session, name="executor_enabled", value="false", actor="alice")
        assert flags.get(session=session, name="executor_enabled") == "false"  # same session
    with database.unit_of_work() as session:
        flags.set_flag(session=session, name="executor_enabled", value="true", actor="bob")
    with database.unit_of_work() as session:
        assert flags.get(session=session, name="executor_enabled") == "true"


def test_two_writers_setting_a_new_flag_at_once_do_not_collide(database: Database) -> None:
    # e.g. the first two policy changes of a new install both bump the policy generation: the
    # second writes while the first's row is written but not yet committed

    def write_meanwhile() -> None:
        with database.unit_of_work() as session:
            flags.set_flag(session=session, name="policy_generation", value="two", actor="b")

    with database.unit_of_work() as session:
        flags.set_flag(session=session, name="policy_generation", value="one", actor="a")
        session.flush()
        racing = race(write_meanwhile)
    racing.done()  # raises what the second writer raised
    with database.unit_of_work() as session:
        assert flags.get(session=session, name="policy_generation") == "two"
