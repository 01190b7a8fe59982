"""The warehouse side of extraction: the ``ops``/``quarantine`` tables, the watermark and
extraction window read from ``raw``, a batch's landing tables, and opening a batch and
committing it into ``raw`` in one transaction with its ``ops.extract_batches`` row."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Iterator

import pandas as pd

from crm_pipeline import gates, settings
from crm_pipeline.contract import ENTITIES, Entity
from crm_pipeline.extract.hashing import SEPARATOR, stored_hash_sql
from crm_pipeline.extract.readers import SourceError
from crm_pipeline.warehouse import Warehouse, ident

log = logging.getLogger(__name__)

#: a batch lands chunk by chunk in raw.<prefix><entity>_<batch> (and quarantine.<same>)
LANDING_PREFIX = "_landing_"
#: the ``_visible_from`` of a suspect row waiting in raw: later than any run date
NEVER_VISIBLE = "9999-12-31"

OPS_DDL = (
    """create table if not exists ops.extract_batches (
        run_id varchar, batch_id varchar, entity varchar, as_of date,
        window_start timestamp, window_end timestamp, is_initial boolean,
        rows_extracted bigint, rows_duplicate bigint, rows_staged bigint,
        rows_quarantined bigint, seconds double precision, loaded_at timestamp)""",
    # a batch that gate 1 refused leaves nothing in raw or quarantine: what it held that
    # broke row rules is kept here, with the batch's verdict, so a stop names rows that exist
    """create table if not exists ops.rejected_batches (
        entity varchar, run_id varchar, batch_id varchar, verdict varchar, rejected_at timestamp,
        _as_of date, _key varchar, _rule varchar, _reason varchar, _record varchar)""",
)

QUARANTINE_COLUMNS = {
    "_batch_id": "text",
    "_as_of": "date",
    "_key": "text",
    "_rule": "text",
    "_reason": "text",
    "_record": "text",
    "_loaded_at": "timestamp",
    # a quarantined row's state: waiting (no decision yet), admitted (by the pipeline once
    # its customer is known, or by an analyst), rejected (by an analyst) or superseded (a
    # version as new or newer landed in raw); who decided, when and why; the raw batch an
    # admitted row landed in (empty while an analyst's admission waits for the next run)
    "_state": "text",
    "_decided_at": "timestamp",
    "_decided_by": "text",
    "_decision_reason": "text",
    "_admitted_batch_id": "text",
}
#: the state of every row gate 1 quarantines, and of the rows of a quarantine table
#: written before states existed (see docs/design.md, "Quarantine is a waiting room")
WAITING = "waiting"


class BatchRejected(RuntimeError):
    """Gate 1 refused a whole batch; nothing of it was written."""


@dataclass
class BatchStats:
    entity: str
    batch_id: str
    as_of: date
    window_start: datetime | None
    window_end: datetime
    is_initial: bool
    rows_extracted: int = 0
    rows_duplicate: int = 0
    rows_staged: int = 0
    rows_quarantined: int = 0
    seconds: float = 0.0
    quarantine_rules: dict[str, int] = field(default_factory=dict)
    reader: str = ""
    #: gate 1's outlier limit of each money column (``gates.outliers``); none on a first load
    outlier_limits: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        values = asdict(self)
        for name in ("window_start", "window_end", "as_of"):
            values[name] = values[name].isoformat() if values[name] is not None else None
        values["outlier_limits"] = {column: limit.as_dict() for column, limit in self.outlier_limits.items()}
        return values


# -- tables and windows --------------------------------------------------------------


def ensure_tables(wh: Warehouse) -> None:
    wh.ensure_raw_tables()
    for ddl in OPS_DDL:
        wh.execute(ddl)
    for entity in ENTITIES:
        body = ", ".join(f"{column} {wh.sql_type(logical)}" for column, logical in QUARANTINE_COLUMNS.items())
        wh.execute(f"create table if not exists quarantine.{ident(entity.name)} ({body})")
        migrate_quarantine(wh, entity)


def migrate_quarantine(wh: Warehouse, entity: Entity) -> None:
    """A quarantine table written before rows had a state gets the decision columns; its
    rows become ``waiting`` (whatever their rule: nobody has decided on any of them)."""
    table = f"quarantine.{ident(entity.name)}"
    present = set(wh.columns("quarantine", entity.name))
    missing = [column for column in QUARANTINE_COLUMNS if column not in present]
    for column in missing:
        wh.execute(f"alter table {table} add column {column} {wh.sql_type(QUARANTINE_COLUMNS[column])}")
    if "_state" in missing:
        wh.execute(f"update {table} set _state = ? where _state is null", (WAITING,))


def watermark(wh: Warehouse, entity: Entity, before: datetime) -> datetime | None:
    """The newest change that landed in raw before ``before`` (never the wall clock)."""
    value = wh.scalar(
        f"select max({ident(entity.updated_at)}) from raw.{ident(entity.name)} where {ident(entity.updated_at)} < ?",
        (before,),
    )
    return pd.Timestamp(value).to_pydatetime() if value is not None else None


def index_raw_windows(wh: Warehouse) -> None:
    """PostgreSQL warehouse: index each raw table on its change time, once its first load
    is in (an index built before a bulk load slows every insert). A night's watermark
    (``watermark``) and its look-up of the versions already in the window
    (``existing_versions``) then read the window through the index instead of scanning
    every version in raw. DuckDB scans its own tables in parallel and keeps no such index."""
    if wh.kind != "postgres":
        return
    for entity in ENTITIES:
        upd = ident(entity.updated_at)
        wh.execute(f"create index if not exists {ident(entity.name + '__' + entity.updated_at)} "
                   f"on raw.{ident(entity.name)} ({upd})")


def extraction_window(wh: Warehouse, entity: Entity, as_of: date, overlap: timedelta) -> tuple[datetime | None, datetime]:
    """[start, end) of the batch for ``as_of``: from the watermark (or the start of the
    day, whichever is earlier) minus the overlap, to the end of the day; no start for
    the first load. The overlap (``CRM_EXTRACT_OVERLAP_MINUTES``) catches late commits;
    a row changed after the fact has a new ``updated_at`` and arrives as a new version."""
    window_end = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
    interval_start = window_end - timedelta(days=1)
    mark = watermark(wh, entity, window_end)
    if mark is None:
        return None, window_end
    return min(mark, interval_start) - overlap, window_end


def recent_batch_sizes(wh: Warehouse, entity: Entity, as_of: date, n: int = 7) -> list[int]:
    """The rows extracted by the ``n`` latest incremental batches of ``entity`` before ``as_of``."""
    rows = wh.query(
        # side batches (rows read beside the window, hard deletes) have no window start
        "select rows_extracted from ops.extract_batches where entity = ? and not is_initial "
        "and window_start is not null and as_of < ? "
        "order by as_of desc limit ?",
        (entity.name, as_of, n),
    )
    return [int(row[0]) for row in rows]


def existing_versions(wh: Warehouse, entity: Entity, lo: datetime | None, hi: datetime) -> pd.Index:
    """``key<US>hash`` of every version already in raw inside the window."""
    hashed = stored_hash_sql(entity) if wh.kind == "duckdb" else "_row_hash"
    sql = (f"select cast({ident(entity.key)} as varchar), {hashed} from raw.{ident(entity.name)} "
           f"where {ident(entity.updated_at)} < ?")
    params: list = [hi]
    if lo is not None:
        sql += f" and {ident(entity.updated_at)} >= ?"
        params.append(lo)
    rows = wh.query(sql, params)
    return pd.Index(sorted({f"{key}{SEPARATOR}{row_hash}" for key, row_hash in rows}), dtype=object)


def known_customers_sql(end: str) -> str:
    """Customer ids that exist in raw with a version before ``end`` (a literal or ``?``)."""
    return f"select distinct customer_id from raw.customers where updated_at < {end}"


# -- test hook -----------------------------------------------------------------------


def fault_point(name: str, entity: Entity) -> None:
    """Test hook: ``CRM_FAULT_INJECT=extract:<name>[:<entity>]`` raises SourceError here,
    once: the first time it fires it leaves a marker file (``CRM_FAULT_MARKER``, default
    ``$CRM_HOME/.fault-extract-<name>.fired``) and later attempts pass."""
    spec = settings.fault_inject()
    parts = spec.split(":")
    if len(parts) < 2 or parts[0] != "extract" or parts[1] != name:
        return
    if len(parts) > 2 and parts[2] and parts[2] != entity.name:
        return
    marker = settings.fault_marker(f".fault-extract-{name}.fired")
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{entity.name} {datetime.now(timezone.utc).isoformat()}\n")
    raise SourceError(f"fault injected at extract:{name} ({entity.name}): the source went away mid-extract")


# -- a batch: landing tables, open, commit -------------------------------------------


def _landing_table(entity: Entity, batch_id: str) -> str:
    """The name of the batch's landing tables: ``raw.<name>`` holds its good rows and
    ``quarantine.<name>`` its quarantined ones."""
    return f"{LANDING_PREFIX}{entity.name}_{batch_id.rsplit('-', 1)[-1]}"


def drop_landing_tables(wh: Warehouse, entity: Entity | None = None) -> list[str]:
    """Drop landing tables left by an attempt that did not finish (a crash, a killed task).

    Their rows never reached ``raw``; dropping them is all the clean-up a retry needs."""
    prefix = LANDING_PREFIX + (f"{entity.name}_" if entity else "")
    dropped = []
    for schema in ("raw", "quarantine"):
        for table in wh.tables(schema):
            if table.startswith(prefix):
                wh.execute(f"drop table if exists {ident(schema)}.{ident(table)}")
                dropped.append(f"{schema}.{table}")
    if dropped:
        log.info("dropped landing tables of an unfinished attempt: %s", ", ".join(dropped))
    return dropped


def purge_unchecked_rows(wh: Warehouse, entity: Entity) -> int:
    """Delete the suspect rows a first load left in raw when it stopped between its commit
    and their deletion (see ``_initial_load_direct`` in the pushdown module); returns how
    many. Only a first load leaves them, so only while the entity's newest batch is its
    first load is raw read; and only in a DuckDB warehouse (a PostgreSQL one deletes them
    inside the batch's transaction: reading raw for them cost a scan of every table there)."""
    if wh.config.kind != "duckdb":
        return 0
    newest = wh.query("select is_initial from ops.extract_batches where entity = ? "
                      "order by loaded_at desc limit 1", (entity.name,))
    if not newest or not newest[0][0]:
        return 0
    unchecked = int(wh.scalar(f"select count(*) from raw.{ident(entity.name)} "
                              f"where _visible_from = date '{NEVER_VISIBLE}'") or 0)
    if unchecked:
        wh.execute(f"delete from raw.{ident(entity.name)} where _visible_from = date '{NEVER_VISIBLE}'")
        log.info("%s: deleted %d unchecked rows an interrupted first load left in raw", entity.name, unchecked)
    return unchecked


@contextlib.contextmanager
def open_batch(wh: Warehouse, entity: Entity, reader: str, *, as_of: date, overlap: timedelta,
               gate_settings=None) -> Iterator[tuple[BatchStats, str, datetime, list[str]]]:
    """A new batch: its window (from the watermark), gate 1's outlier limits (from raw's
    recent history; none for a first load), its empty landing tables (after dropping those
    of an unfinished attempt) and its load time. Yields (stats, landing
    table name, loaded_at, scratch tables); the landing and scratch tables are dropped
    when the block ends, whatever happened. Logs the batch's counts on success."""
    batch_id = f"{entity.name}-{as_of.isoformat()}-{uuid.uuid4().hex[:8]}"
    landing = _landing_table(entity, batch_id)
    drop_landing_tables(wh, entity)
    purge_unchecked_rows(wh, entity)
    window_start, window_end = extraction_window(wh, entity, as_of, overlap)
    stats = BatchStats(entity.name, batch_id, as_of, window_start, window_end, window_start is None, reader=reader)
    if not stats.is_initial:
        stats.outlier_limits = gates.outlier_limits(wh, entity, window_end=window_end,
                                                    settings=gate_settings or gates.GateSettings())
    loaded_at = datetime.now(timezone.utc).replace(tzinfo=None)
    scratch: list[str] = [f"{schema}.{ident(landing)}" for schema in ("raw", "quarantine")]
    for schema in ("raw", "quarantine"):
        wh.execute(f"create table {schema}.{ident(landing)} as select * from {schema}.{ident(entity.name)} where 1 = 0")
    try:
        yield stats, landing, loaded_at, scratch
    finally:
        with contextlib.suppress(Exception):
            for table in scratch:
                wh.execute(f"drop table if exists {table}")
    log.info(
        "extracted %s with %s: %d rows (%d duplicate, %d staged, %d quarantined) window [%s, %s) in %.1fs",
        entity.name, reader, stats.rows_extracted, stats.rows_duplicate, stats.rows_staged,
        stats.rows_quarantined, stats.window_start, stats.window_end, stats.seconds,
    )


def keep_rejected_batch(wh: Warehouse, entity: Entity, stats: "BatchStats", landing: str, run_id: str,
                        verdict: str) -> str:
    """Record a refused batch in ``ops.rejected_batches``: its quarantined rows with their
    reasons, or one row with the verdict alone; returns where to look, in one phrase."""
    rejected_at = datetime.now(timezone.utc).replace(tzinfo=None)
    head = (entity.name, run_id, stats.batch_id, verdict[:2000], rejected_at)
    with wh.transaction():
        wh.execute(
            "insert into ops.rejected_batches select ?, ?, ?, ?, ?, _as_of, _key, _rule, _reason, _record "
            f"from quarantine.{ident(landing)}", head)
        kept = int(wh.scalar("select count(*) from ops.rejected_batches where batch_id = ?",
                             (stats.batch_id,)) or 0)
        if not kept:
            wh.execute("insert into ops.rejected_batches (entity, run_id, batch_id, verdict, rejected_at, _as_of) "
                       "values (?, ?, ?, ?, ?, ?)", (*head, stats.as_of))
    rows = f"its {kept:,} rows that broke row rules, with their reasons," if kept else "its verdict"
    return (f"nothing of batch {stats.batch_id} was loaded; {rows} in ops.rejected_batches "
            f"where batch_id = '{stats.batch_id}'")


def commit_batch(wh: Warehouse, entity: Entity, stats: BatchStats, *, landing: str, run_id: str,
                 columns: list[str], loaded_at: datetime, gate_settings, started: float,
                 also: str | None = None) -> None:
    """Batch-level gate 1, then the landing tables into raw/quarantine in one transaction
    (with ``also``, one more statement that writes the batch's rows into raw)."""
    verdict = gates.gate1_batch(
        entity,
        columns,
        rows=stats.rows_extracted - stats.rows_duplicate,
        quarantined=stats.rows_quarantined,
        recent_rows=recent_batch_sizes(wh, entity, stats.as_of),
        settings=gate_settings,
        incremental=not stats.is_initial,
    )
    if not verdict.ok:
        failures = "; ".join(verdict.failures)
        raise BatchRejected(f"{failures} ({keep_rejected_batch(wh, entity, stats, landing, run_id, failures)})")
    fault_point("before_commit", entity)
    with wh.transaction():
        if also:
            wh.execute(also)
        for schema in ("raw", "quarantine"):
            wh.execute(f"insert into {ident(schema)}.{ident(entity.name)} "
                       f"select * from {ident(schema)}.{ident(landing)}")
            wh.execute(f"drop table {ident(schema)}.{ident(landing)}")
        stats.seconds = round(time.perf_counter() - started, 3)
        wh.execute(
            "insert into ops.extract_batches values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id, stats.batch_id, entity.name, stats.as_of, stats.window_start, stats.window_end,
                stats.is_initial, stats.rows_extracted, stats.rows_duplicate, stats.rows_staged,
                stats.rows_quarantined, stats.seconds, loaded_at,
            ),
        )
