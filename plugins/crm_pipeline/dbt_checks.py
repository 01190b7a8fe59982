"""Whether a night runs the data tests of the intermediate models.

Those tests check the SQL that builds the intermediate models more than the night's data:
the data is checked as it enters (gate 1, the staging models' tests) and as it leaves (the
marts' tests and constraints, gate 2). So they run when that SQL may have changed, and
as a periodic full check: on a warehouse with no full check recorded, when the dbt
project or target differs from the last full check's, when the last one is
``CRM_DBT_FULL_CHECK_DAYS`` days old or more, and every night when that is 0. After a
night that ran them passes both dbt stages, the warehouse records the project's
fingerprint and the time (``ops.dbt_full_check``). docs/design.md, "Intermediate tests
run when the project changes".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from crm_pipeline.warehouse import Warehouse

#: the intermediate models' data tests, as a dbt exclusion: the tests declared beside them
#: and, as dbt widens an exclusion to the tests of the nodes it names, every test reading an
#: intermediate model (tests/test_dbt_stages.py)
INTERMEDIATE_TESTS = "path:models/intermediate,resource_type:test"
CHECK_STATE_DDL = ("create table if not exists ops.dbt_full_check (fingerprint varchar not null, "
                   "checked_at timestamp not null)")  # UTC


@dataclass(frozen=True)
class TestPlan:
    run: bool
    why: str  # for the run record: why they run, or when they last passed


def plan(wh: Warehouse, fingerprint: str, every_days: int, now: datetime | None = None) -> TestPlan:
    """Whether tonight runs the intermediate models' tests, and why."""
    now = now or datetime.now(timezone.utc)
    if every_days <= 0:
        return TestPlan(True, "every night (CRM_DBT_FULL_CHECK_DAYS=0)")
    rows = wh.query("select fingerprint, checked_at from ops.dbt_full_check") \
        if wh.table_exists("ops", "dbt_full_check") else []
    if len(rows) != 1:
        return TestPlan(True, "no full check recorded")
    recorded, checked_at = rows[0][0], _utc(rows[0][1])
    if recorded != fingerprint:
        return TestPlan(True, "the dbt project changed since the last full check")
    if now - checked_at >= timedelta(days=every_days):
        return TestPlan(True, f"the last full check is {every_days} days old or more")
    return TestPlan(False, f"passed on {checked_at:%Y-%m-%d %H:%M} UTC with this project")


def _utc(value: datetime | str) -> datetime:
    """A stored time (UTC, without a zone) as an aware datetime."""
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def record(wh: Warehouse, fingerprint: str, now: datetime | None = None) -> None:
    """Record that a night ran every data test of the project with ``fingerprint`` and passed."""
    checked_at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None)
    with wh.transaction():
        wh.execute(CHECK_STATE_DDL)
        wh.execute("delete from ops.dbt_full_check")
        wh.execute("insert into ops.dbt_full_check (fingerprint, checked_at) values (?, ?)", (fingerprint, checked_at))
