"""Write-audit-publish: move the checked audit marts into ``published`` in one transaction.

Two kinds of published table:

* **current** tables hold the newest published ``as_of`` only. They are replaced as a
  whole, and only when this run's ``as_of`` is not older than what is published, so a
  backfill of a past date never turns BI's current view back in time.
* **history** tables keep one slice per key value (``as_of`` or the grade quarter).
  Publishing replaces this run's slice and leaves every other slice untouched, so a
  re-run or a backfill rewrites exactly its own date.

Everything, including the bookkeeping row in ``ops.published_versions``, the run's
"nothing lost" reconciliation (``ops.run_entity_counts``) and the grants of the BI role,
commits together; a failure or a kill at any point leaves ``published`` as it was. On
PostgreSQL the locks are taken with a ``lock_timeout`` and retried with backoff, so an open
BI transaction delays the swap but neither blocks it forever nor fails the run before the
configured patience is spent.

Only one publish runs at a time per warehouse: on PostgreSQL an advisory lock taken inside
the publish transaction (released by commit, rollback or the death of the session), on
DuckDB an exclusive ``fcntl`` lock on ``<warehouse file>.publish.lock`` (released when the
process ends, however it ends). A second publisher waits for the first, up to
``CRM_PUBLISH_MAX_WAIT_SECONDS``, then fails with a one-line message.

The BI role ``crm_bi_reader`` (PostgreSQL only) is created if missing, without login and
without any role attribute; in every publish transaction it is granted ``usage`` on the
schema ``published`` and ``select`` on its tables, and everything else is revoked: no
usage, select or write on any other schema of the database, no create anywhere, no
membership of another role. A BI user logs in as its own role and is granted
``crm_bi_reader``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from crm_pipeline import runs, settings
from crm_pipeline.warehouse import Warehouse, ident

log = logging.getLogger(__name__)

AUDIT_SCHEMA = "audit"
BI_ROLE = "crm_bi_reader"
#: the schema BI may read; every other schema of the database is closed to BI_ROLE
PUBLISHED_SCHEMA = "published"
#: PostgreSQL advisory lock key of "a publish is in progress" (per database)
PUBLISH_LOCK_KEY = 0x63726D5F707562  # "crm_pub"


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
    PublishedTable("clv_model_diagnostics", "history", key="as_of"),
    # the scorecard and grade cut-offs a credit grade row is read against
    PublishedTable("credit_scorecard", "current"),
    PublishedTable("credit_grade_cutoffs", "current"),
    # the credit desk's monitoring of the scorecard (docs/rules.md, "Monitoring the scorecard")
    PublishedTable("credit_grade_migration", "history", key="grade_quarter"),
    PublishedTable("credit_scorecard_stability", "history", key="grade_quarter"),
    PublishedTable("credit_exposure_by_grade", "history", key="as_of"),
    PublishedTable("credit_exposure_customers", "current"),
    PublishedTable("credit_grade_outcomes", "current"),
    PublishedTable("credit_outcome_customers", "current"),
    # value and profit (docs/rules.md "Profit concentration", "ABC on combined value", "Segment P&L")
    PublishedTable("profit_concentration", "history", key="as_of"),
    PublishedTable("profit_whale_curve", "history", key="as_of"),
    PublishedTable("customer_value_scores", "current"),
    PublishedTable("segment_pnl", "history", key="as_of"),
    # acquisition, reminders and churn causes (docs/rules.md)
    PublishedTable("acquisition_channels", "current"),
    PublishedTable("acquisition_cohorts", "current"),
    PublishedTable("acquisition_cohort_retention", "current"),
    PublishedTable("reorder_reminders", "current"),
    PublishedTable("churn_reasons", "current"),
    PublishedTable("churn_reason_mix", "current"),
)

VERSIONS_DDL = """create table if not exists ops.published_versions (
    table_name varchar, as_of date, run_id varchar, mode varchar, rows_published bigint,
    published_at timestamp)"""


class PublishError(RuntimeError):
    """Publishing could not complete; published is unchanged."""


class PublishNeedsMigration(PublishError):
    """A published history table has another shape than tonight's: only ``crm migrate``
    helps, so the publish task does not retry it."""


class _PublishBusy(RuntimeError):
    """Another session holds the publish lock (retried like a lock timeout)."""


@dataclass
class PublishResult:
    as_of: date
    tables: dict[str, int]  # table -> rows published (0 for a current table not swapped)
    skipped_current: list[str]  # current tables left alone because a newer as_of is published
    attempts: int
    seconds: float
    #: the run's per-entity "nothing lost" proof, as committed in ops.run_entity_counts
    reconciliation: list[dict] = field(default_factory=list)
    #: the version the published views show (Spark warehouse; None elsewhere)
    version: str | None = None


def newest_published_as_of(wh: Warehouse, table: str) -> date | None:
    if not wh.table_exists("ops", "published_versions"):
        return None
    value = wh.scalar(
        "select max(as_of) from ops.published_versions where table_name = ? and mode = 'current'", (table,)
    )
    return value if value is None or isinstance(value, date) else date.fromisoformat(str(value)[:10])


def behind_published(wh: Warehouse, table: str, as_of: date) -> bool:
    """Whether a newer date of the current table ``table`` is published than ``as_of``
    (a backfill then leaves it alone)."""
    newest = newest_published_as_of(wh, table)
    return newest is not None and as_of < newest


def reconcile_or_refuse(wh: Warehouse, run_id: str) -> list[dict]:
    """Nothing lost: every extracted row of the run is in raw, in quarantine or counted as
    a duplicate. Records the proof in ``ops.run_entity_counts`` (with the publish, in its
    transaction) and raises ``PublishError`` on a mismatch, so that nothing is published."""
    reconciliation = runs.record_reconciliation(wh, run_id)
    broken = [r for r in reconciliation if not r["ok"]]
    if broken:
        raise PublishError("nothing published: the run's row counts do not add up for "
                           + "; ".join(runs.describe_reconciliation(r) for r in broken))
    return reconciliation


def _publish_once(wh: Warehouse, tables: list[PublishedTable], as_of: date, run_id: str, lock_timeout_ms: int) -> PublishResult:
    started = time.perf_counter()
    published: dict[str, int] = {}
    skipped: list[str] = []
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with wh.transaction():
        if wh.kind == "postgres":
            wh.execute(f"set local lock_timeout = {int(lock_timeout_ms)}")
            _pg_publish_lock(wh)
        reconciliation = reconcile_or_refuse(wh, run_id)
        for i, t in enumerate(tables):
            src = f"{AUDIT_SCHEMA}.{ident(t.name)}"
            dst = f"published.{ident(t.name)}"
            exists = wh.table_exists("published", t.name)
            if t.mode == "current":
                if behind_published(wh, t.name, as_of):
                    skipped.append(t.name)
                    published[t.name] = 0
                    continue
                if exists:
                    wh.execute(f"drop table {dst}")
                wh.execute(f"create table {dst} as select * from {src}")
                if wh.kind == "postgres":
                    # a new table has no planner statistics until autovacuum gets to it:
                    # BI's first queries (and the report, right after) were planned for
                    # millions of rows and paid for JIT compilation (docs/design.md)
                    wh.execute(f"analyze {dst}")
            else:
                key = ident(t.key)
                if not exists:
                    wh.execute(f"create table {dst} as select * from {src} where 1 = 0")
                if wh.kind == "postgres":
                    # the night's slice is replaced by its key: without an index every
                    # night's delete (and every BI query for one slice) scans all history
                    wh.execute(f"create index if not exists {ident(t.name + '_' + t.key + '_idx')} "
                               f"on {dst} ({key})")
                check_same_columns(wh, t.name)
                wh.execute(f"delete from {dst} where {key} in (select distinct {key} from {src})")
                wh.execute(f"insert into {dst} select * from {src}")
            # the descriptions dbt wrote on the audit table, where BI tools look for them
            wh.set_comments("published", t.name, *wh.comments(AUDIT_SCHEMA, t.name))
            rows = int(wh.scalar(f"select count(*) from {src}"))
            published[t.name] = rows
            wh.execute(
                "insert into ops.published_versions values (?, ?, ?, ?, ?, ?)",
                (t.name, as_of, run_id, t.mode, rows, now),
            )
            if i == 0:
                fault_point("after_first_table")
        if wh.kind == "postgres":
            grant_bi_reader(wh)
        fault_point("before_commit")
    return PublishResult(as_of, published, skipped, 1, round(time.perf_counter() - started, 3),
                         reconciliation=reconciliation)


def check_same_columns(wh: Warehouse, table: str) -> None:
    """A published history table keeps tonight's columns, in their order, or the publish
    needs a migration (``PublishNeedsMigration``)."""
    have = wh.columns("published", table)
    new = wh.columns(AUDIT_SCHEMA, table)
    if have != new:
        added = [c for c in new if c not in have]
        gone = [c for c in have if c not in new]
        what = "; ".join(part for part in (
            f"tonight adds {', '.join(added)}" if added else "",
            f"tonight has no {', '.join(gone)}" if gone else "",
            "" if added or gone else "the same columns in another order") if part)
        raise PublishNeedsMigration(
            f"published.{table} has another shape than tonight's table ({what}): "
            "a contract change of a history table needs a migration: `crm migrate` applies the project's pending "
            "ones (see docs/design.md, 'Changing a published table')"
        )


def fault_point(name: str) -> None:
    """Test hook for the atomicity tests, inside the publish transaction.

    ``CRM_FAULT_INJECT=publish:<name>`` raises a PublishError at the point ``<name>``
    (``after_first_table``, ``before_commit``); ``publish:kill_<name>`` kills this process
    with SIGKILL there, as an OOM killer or ``kill -9`` would."""
    fault = settings.fault_inject()
    if fault == f"publish:{name}":
        raise PublishError(f"fault injected at publish:{name}")
    if fault == f"publish:kill_{name}":
        log.warning("fault injected: killing this process at publish:%s", name)
        os.kill(os.getpid(), signal.SIGKILL)


# -- the publish lock ------------------------------------------------------------------


def _pg_publish_lock(wh: Warehouse) -> None:
    """Take the transaction-scoped advisory lock "a publish is in progress" or raise _PublishBusy."""
    if wh.scalar("select pg_try_advisory_xact_lock(?)", (PUBLISH_LOCK_KEY,)):
        return
    holder = wh.scalar(
        "select min(pid) from pg_locks where locktype = 'advisory' and granted "
        "and database = (select oid from pg_database where datname = current_database()) "
        "and ((classid::bigint << 32) | objid::bigint) = ?",
        (PUBLISH_LOCK_KEY,),
    )
    raise _PublishBusy(f"another run is publishing to this warehouse (PostgreSQL session {holder or '?'})")


@contextlib.contextmanager
def _duckdb_publish_lock(wh: Warehouse, max_wait_seconds: float):
    """Hold ``<warehouse file>.publish.lock`` exclusively while publishing (DuckDB)."""
    if wh.kind != "duckdb" or wh.config.duckdb_path is None:
        yield
        return
    with publish_lock(wh.config.duckdb_path.with_name(wh.config.duckdb_path.name + ".publish.lock"),
                      max_wait_seconds):
        yield


@contextlib.contextmanager
def publish_lock(path, max_wait_seconds: float):
    """Hold the file ``path`` exclusively (``fcntl``) while publishing: a second publisher
    waits up to ``max_wait_seconds``, then fails with a one-line message."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max_wait_seconds
        delay = 0.2
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() + delay > deadline:
                    holder = ""
                    with contextlib.suppress(OSError, ValueError):
                        holder = os.pread(fd, 64, 0).decode().strip()
                    raise PublishError(
                        f"another run is publishing to this warehouse (lock {path}"
                        f"{', held by process ' + holder if holder else ''}) and did not finish within "
                        f"{max_wait_seconds:.0f}s; nothing was published. Retry when it is done, or raise "
                        "CRM_PUBLISH_MAX_WAIT_SECONDS"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -- the BI role -----------------------------------------------------------------------


def _savepoint(wh: Warehouse, sql: str, what: str) -> bool:
    """Run one statement that may be refused (e.g. missing privileges) without aborting
    the surrounding transaction; a refusal is logged."""
    wh.execute("savepoint crm_bi_grant")
    try:
        wh.execute(sql)
    except Exception as exc:  # noqa: BLE001
        wh.execute("rollback to savepoint crm_bi_grant")
        log.warning("could not %s: %s", what, str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
        return False
    wh.execute("release savepoint crm_bi_grant")
    return True


def grant_bi_reader(wh: Warehouse) -> None:
    """Create the read-only BI role if missing; it may select from ``published`` and nothing else.

    Runs inside the publish transaction (after the tables were swapped, so the grants cover
    the new tables) and is idempotent: everything the role could do beyond that is revoked
    again on every publish."""
    role = BI_ROLE
    if not wh.scalar("select count(*) from pg_roles where rolname = ?", (role,)):
        # a concurrent publish to another database of the cluster may create it first
        wh.execute(
            "do $$ begin create role " + role + " nologin; "
            "exception when duplicate_object or unique_violation then null; end $$"
        )
    attrs = wh.query(
        "select rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls from pg_roles where rolname = ?",
        (role,),
    )
    if attrs and any(attrs[0]):
        _savepoint(wh, f"alter role {role} nosuperuser nocreatedb nocreaterole noreplication nobypassrls",
                   f"remove the attributes of role {role}")
    # no inherited rights: crm_bi_reader is a member of no other role (e.g. pg_read_all_data)
    for (parent,) in wh.query(
        "select p.rolname from pg_auth_members m join pg_roles p on p.oid = m.roleid "
        "join pg_roles r on r.oid = m.member where r.rolname = ?",
        (role,),
    ):
        _savepoint(wh, f'revoke "{parent}" from {role}', f"revoke role {parent} from {role}")
    db = wh.scalar("select current_database()")
    wh.execute(f'revoke create on database "{db}" from {role}')
    schemas = [
        r[0] for r in wh.query(
            "select nspname from pg_namespace where nspname not like 'pg\\_%' "
            "and nspname <> 'information_schema' order by nspname"
        )
    ]
    for schema in schemas:
        q = '"' + schema.replace('"', '""') + '"'
        if schema == PUBLISHED_SCHEMA:
            continue
        wh.execute(f"revoke all on schema {q} from {role}")
        wh.execute(f"revoke all on all tables in schema {q} from {role}")
        wh.execute(f"revoke all on all sequences in schema {q} from {role}")
    wh.execute(f"revoke all on schema {PUBLISHED_SCHEMA} from {role}")
    wh.execute(f"grant usage on schema {PUBLISHED_SCHEMA} to {role}")
    wh.execute(f"revoke all on all tables in schema {PUBLISHED_SCHEMA} from {role}")
    wh.execute(f"grant select on all tables in schema {PUBLISHED_SCHEMA} to {role}")
    # a table created in published outside a publish (e.g. by hand) is readable too
    wh.execute(f"alter default privileges in schema {PUBLISHED_SCHEMA} grant select on tables to {role}")


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
    if lock_timeout_ms is None:
        lock_timeout_ms = settings.publish_lock_timeout_ms()
    if max_wait_seconds is None:
        max_wait_seconds = settings.publish_max_wait_seconds()
    lock_timeout_ms = max(1, int(lock_timeout_ms))
    max_wait_seconds = max(0.0, float(max_wait_seconds))
    wh.ensure_schemas()
    wh.execute(VERSIONS_DDL)
    present = [t for t in tables if wh.table_exists(AUDIT_SCHEMA, t.name)]
    missing = [t.name for t in tables if t.required and t not in present]
    if missing:
        raise PublishError(f"audit tables missing, nothing published: {', '.join(missing)}")
    started = time.monotonic()
    deadline = started + max_wait_seconds
    with _duckdb_publish_lock(wh, max_wait_seconds):
        attempt, delay = 0, 1.0
        while True:
            attempt += 1
            try:
                result = _publish_once(wh, present, as_of, run_id, lock_timeout_ms)
                result.attempts = attempt
                return result
            except Exception as exc:  # noqa: BLE001
                retryable = _is_lock_timeout(exc) or isinstance(exc, _PublishBusy)
                if not retryable or time.monotonic() + delay > deadline:
                    if isinstance(exc, _PublishBusy):
                        raise PublishError(
                            f"{exc} and did not finish within {max_wait_seconds:.0f}s ({attempt} attempts); "
                            "nothing was published. Retry when it is done, or raise CRM_PUBLISH_MAX_WAIT_SECONDS"
                        ) from None
                    if retryable:
                        raise PublishError(
                            f"published tables stayed locked by other sessions for "
                            f"{time.monotonic() - started:.0f}s ({attempt} attempts, limit {max_wait_seconds:.0f}s); "
                            "nothing was published. Ask long-running BI sessions to commit, or raise "
                            "CRM_PUBLISH_MAX_WAIT_SECONDS"
                        ) from None
                    raise
                log.warning("publish attempt %d could not get its locks (%s); retrying in %.0fs",
                            attempt, str(exc).strip().splitlines()[0] if str(exc).strip() else "lock timeout",
                            delay)
                time.sleep(delay)
                delay = min(delay * 2, 60.0)


def _is_lock_timeout(exc: BaseException) -> bool:
    code = getattr(exc, "pgcode", None)
    return code == "55P03" or "lock timeout" in str(exc).lower()
