"""Write-audit-publish: move the checked audit marts into ``published`` in one transaction.

Two kinds of published table:

* **current** tables hold the newest published ``as_of`` only. They are replaced as a
  whole, and only when this run's ``as_of`` is not older than what is published, so a
  backfill of a past date never turns BI's current view back in time.
* **history** tables keep one slice per key value (``as_of`` or the grade quarter).
  Publishing replaces this run's slice and leaves every other slice untouched, so a
  re-run or a backfill rewrites exactly its own date.

Everything, including the bookkeeping row in ``ops.published_versions`` and the grants of
the BI role, commits together; a failure or a kill at any point leaves ``published`` as it
was. On PostgreSQL the locks are taken with a ``lock_timeout`` and retried with backoff,
so an open BI transaction delays the swap but neither blocks it forever nor fails the run
before the configured patience is spent.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone

from crm_pipeline.warehouse import Warehouse, ident

log = logging.getLogger(__name__)

AUDIT_SCHEMA = "audit"
BI_ROLE = "crm_bi_reader"


@dataclass(frozen=True)
class PublishedTable:
    name: str
    mode: str  # "current" | "history"
    key: str | None = None  # the slice column of a history table
    required: bool = False


PUBLISHED_TABLES: tuple[PublishedTable, ...] = (
    PublishedTable("customer_segments", "current", required=True),
    PublishedTable("customer_rfm", "current", required=True),
    PublishedTable("customer_value_tiers", "current", required=True),
    PublishedTable("customer_churn", "current"),
    PublishedTable("retention_metrics", "current"),
    PublishedTable("complaint_summary", "current"),
    PublishedTable("account_contact_coverage", "current"),
    PublishedTable("pareto_concentration", "history", key="as_of"),
    PublishedTable("customer_credit_grades", "history", key="grade_quarter"),
    PublishedTable("customer_segment_history", "history", key="as_of"),
    PublishedTable("segment_profiles", "history", key="as_of"),
    PublishedTable("segment_migration", "history", key="as_of"),
    PublishedTable("customer_lifetime_value", "history", key="as_of"),
    PublishedTable("clv_model_runs", "history", key="as_of"),
)

VERSIONS_DDL = """create table if not exists ops.published_versions (
    table_name varchar, as_of date, run_id varchar, mode varchar, rows_published bigint,
    published_at timestamp)"""


class PublishError(RuntimeError):
    """Publishing could not complete; published is unchanged."""


@dataclass
class PublishResult:
    as_of: date
    tables: dict[str, int]  # table -> rows published (0 for a current table not swapped)
    skipped_current: list[str]  # current tables left alone because a newer as_of is published
    attempts: int
    seconds: float


def newest_published_as_of(wh: Warehouse, table: str) -> date | None:
    if not wh.table_exists("ops", "published_versions"):
        return None
    value = wh.scalar(
        "select max(as_of) from ops.published_versions where table_name = ? and mode = 'current'", (table,)
    )
    return value if value is None or isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _publish_once(wh: Warehouse, tables: list[PublishedTable], as_of: date, run_id: str, lock_timeout_ms: int) -> PublishResult:
    started = time.perf_counter()
    published: dict[str, int] = {}
    skipped: list[str] = []
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with wh.transaction():
        if wh.kind == "postgres":
            wh.execute(f"set local lock_timeout = {int(lock_timeout_ms)}")
        for t in tables:
            src = f"{AUDIT_SCHEMA}.{ident(t.name)}"
            dst = f"published.{ident(t.name)}"
            exists = wh.table_exists("published", t.name)
            if t.mode == "current":
                newest = newest_published_as_of(wh, t.name)
                if newest is not None and as_of < newest:
                    skipped.append(t.name)
                    published[t.name] = 0
                    continue
                if exists:
                    wh.execute(f"drop table {dst}")
                wh.execute(f"create table {dst} as select * from {src}")
            else:
                key = ident(t.key)
                if not exists:
                    wh.execute(f"create table {dst} as select * from {src} where 1 = 0")
                _check_same_columns(wh, t.name)
                wh.execute(f"delete from {dst} where {key} in (select distinct {key} from {src})")
                wh.execute(f"insert into {dst} select * from {src}")
            rows = int(wh.scalar(f"select count(*) from {src}"))
            published[t.name] = rows
            wh.execute(
                "insert into ops.published_versions values (?, ?, ?, ?, ?, ?)",
                (t.name, as_of, run_id, t.mode, rows, now),
            )
        if wh.kind == "postgres":
            grant_bi_reader(wh)
        _fault_point("before_commit")
    return PublishResult(as_of, published, skipped, 1, round(time.perf_counter() - started, 3))


def _check_same_columns(wh: Warehouse, table: str) -> None:
    have = wh.columns("published", table)
    new = wh.columns(AUDIT_SCHEMA, table)
    if have != new:
        raise PublishError(
            f"published.{table} has columns {have} but the audit table has {new}: "
            "a contract change of a history table needs a migration (see README, 'Changing a published table')"
        )


def _fault_point(name: str) -> None:
    """Test hook: CRM_FAULT_INJECT=publish:<name> raises here (used by the atomicity tests)."""
    if os.environ.get("CRM_FAULT_INJECT") == f"publish:{name}":
        raise PublishError(f"fault injected at publish:{name}")


def grant_bi_reader(wh: Warehouse) -> None:
    """Create the read-only BI role if missing and grant it select on published only."""
    exists = wh.scalar("select count(*) from pg_roles where rolname = ?", (BI_ROLE,))
    if not exists:
        wh.execute(f"create role {BI_ROLE} nologin")
    wh.execute(f"grant usage on schema published to {BI_ROLE}")
    wh.execute(f"grant select on all tables in schema published to {BI_ROLE}")


def publish(
    wh: Warehouse,
    as_of: date,
    run_id: str,
    *,
    tables: tuple[PublishedTable, ...] = PUBLISHED_TABLES,
    lock_timeout_ms: int | None = None,
    max_wait_seconds: float | None = None,
) -> PublishResult:
    """Publish every audit table of ``tables`` that exists; required ones must exist."""
    lock_timeout_ms = lock_timeout_ms or int(os.environ.get("CRM_PUBLISH_LOCK_TIMEOUT_MS", "5000"))
    max_wait_seconds = max_wait_seconds or float(os.environ.get("CRM_PUBLISH_MAX_WAIT_SECONDS", "1800"))
    wh.ensure_schemas()
    wh.execute(VERSIONS_DDL)
    present = [t for t in tables if wh.table_exists(AUDIT_SCHEMA, t.name)]
    missing = [t.name for t in tables if t.required and t not in present]
    if missing:
        raise PublishError(f"audit tables missing, nothing published: {', '.join(missing)}")
    deadline = time.monotonic() + max_wait_seconds
    attempt, delay = 0, 1.0
    while True:
        attempt += 1
        try:
            result = _publish_once(wh, present, as_of, run_id, lock_timeout_ms)
            result.attempts = attempt
            return result
        except Exception as exc:  # noqa: BLE001
            if not _is_lock_timeout(exc) or time.monotonic() + delay > deadline:
                if _is_lock_timeout(exc):
                    raise PublishError(
                        f"published tables stayed locked by other sessions for {max_wait_seconds:.0f}s "
                        f"({attempt} attempts); nothing was published. Ask long-running BI sessions to "
                        "commit, or raise CRM_PUBLISH_MAX_WAIT_SECONDS"
                    ) from None
                raise
            log.warning("publish attempt %d waited %d ms for a lock held by a reader; retrying in %.0fs",
                        attempt, lock_timeout_ms, delay)
            time.sleep(delay)
            delay = min(delay * 2, 60.0)


def _is_lock_timeout(exc: BaseException) -> bool:
    code = getattr(exc, "pgcode", None)
    return code == "55P03" or "lock timeout" in str(exc).lower()
