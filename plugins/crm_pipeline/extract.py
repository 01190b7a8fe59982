"""Incremental, idempotent extraction of the source entities into ``raw.*``.

One batch per entity per run. The window is derived from what already landed in the
warehouse (the watermark is the newest ``updated_at`` in ``raw``), widened by an overlap
margin so late commits are not missed, and bounded above by the end of the run's day.
Rows stream from the source in bounded chunks. Identical re-sent versions are counted
and skipped, rows that break a row rule of gate 1 go to ``quarantine.<entity>`` with the
reason, the rest are appended to ``raw.<entity>``; the batch, its quarantine rows and its
bookkeeping row in ``ops.extract_batches`` commit in one transaction, so a batch is
either complete or absent and a retry never duplicates rows.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Iterator

import pandas as pd

from crm_pipeline.contract import ENTITIES, Entity
from crm_pipeline.warehouse import Warehouse, ident

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 50_000
DEFAULT_OVERLAP = timedelta(hours=2)

OPS_DDL = (
    """create table if not exists ops.extract_batches (
        run_id varchar, batch_id varchar, entity varchar, as_of date,
        window_start timestamp, window_end timestamp, is_initial boolean,
        rows_extracted bigint, rows_duplicate bigint, rows_staged bigint,
        rows_quarantined bigint, seconds double precision, loaded_at timestamp)""",
)

QUARANTINE_COLUMNS = {
    "_batch_id": "text",
    "_as_of": "date",
    "_key": "text",
    "_rule": "text",
    "_reason": "text",
    "_record": "text",
    "_loaded_at": "timestamp",
}


class SourceError(RuntimeError):
    """The source cannot be read (unreachable, missing table, schema drift)."""


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

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("window_start", "window_end", "as_of"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d


# -- reading the source ------------------------------------------------------------


def _sqlalchemy_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    if url.startswith("mysql://"):
        return "mysql+pymysql://" + url[len("mysql://"):]
    return url


def source_engine(url: str):
    from sqlalchemy import create_engine

    return create_engine(_sqlalchemy_url(url), pool_pre_ping=True)


def source_columns(engine, entity: Entity) -> list[str]:
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            result = conn.execute(text(f"select * from {ident(entity.name)} where 1 = 0"))
            return list(result.keys())
    except Exception as exc:  # noqa: BLE001 - turned into one clear line
        raise SourceError(f"cannot read source table {entity.name!r}: {_first_line(exc)}") from exc


def _bound(engine, value: datetime | None):
    if value is None:
        return None
    if engine.dialect.name == "sqlite":
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def iter_source_chunks(
    engine, entity: Entity, lo: datetime | None, hi: datetime, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Rows of one entity changed in [lo, hi), streamed in chunks of at most chunk_rows."""
    from sqlalchemy import text

    where = f"{ident(entity.updated_at)} < :hi"
    params = {"hi": _bound(engine, hi)}
    if lo is not None:
        where += f" and {ident(entity.updated_at)} >= :lo"
        params["lo"] = _bound(engine, lo)
    sql = text(
        f"select * from {ident(entity.name)} where {where} "
        f"order by {ident(entity.updated_at)}, {ident(entity.key)}"
    )
    try:
        with engine.connect().execution_options(stream_results=True, max_row_buffer=chunk_rows) as conn:
            result = conn.execute(sql, params)
            cols = list(result.keys())
            while True:
                rows = result.fetchmany(chunk_rows)
                if not rows:
                    break
                yield pd.DataFrame.from_records(rows, columns=cols, coerce_float=False)
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise SourceError(f"reading {entity.name} from the source failed: {_first_line(exc)}") from exc


# -- the batch ---------------------------------------------------------------------


def row_hashes(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A content hash per row over the contract columns, stable across source engines."""
    normalised = df[columns].astype(object).where(df[columns].notna(), None)

    def norm(v) -> str:
        if v is None:
            return "\x00"
        if isinstance(v, (datetime, pd.Timestamp)):
            return pd.Timestamp(v).strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(v, bool):
            return "1" if v else "0"
        return str(v)

    joined = normalised.apply(lambda r: "\x1f".join(norm(v) for v in r), axis=1, raw=True)
    return joined.map(lambda s: hashlib.sha1(s.encode("utf-8", "surrogatepass")).hexdigest())


def ensure_tables(wh: Warehouse) -> None:
    wh.ensure_raw_tables()
    for ddl in OPS_DDL:
        wh.execute(ddl)
    for entity in ENTITIES:
        body = ", ".join(f"{c} {wh.sql_type(t)}" for c, t in QUARANTINE_COLUMNS.items())
        wh.execute(f"create table if not exists quarantine.{ident(entity.name)} ({body})")


def watermark(wh: Warehouse, entity: Entity, before: datetime) -> datetime | None:
    value = wh.scalar(
        f"select max({ident(entity.updated_at)}) from raw.{ident(entity.name)} where {ident(entity.updated_at)} < ?",
        (before,),
    )
    return pd.Timestamp(value).to_pydatetime() if value is not None else None


def recent_batch_sizes(wh: Warehouse, entity: Entity, as_of: date, n: int = 7) -> list[int]:
    rows = wh.query(
        "select rows_extracted from ops.extract_batches where entity = ? and not is_initial and as_of < ? "
        "order by as_of desc limit ?",
        (entity.name, as_of, n),
    )
    return [int(r[0]) for r in rows]


def _existing_hashes(wh: Warehouse, entity: Entity, lo: datetime | None, hi: datetime) -> set[tuple[str, str]]:
    sql = f"select cast({ident(entity.key)} as varchar), _row_hash from raw.{ident(entity.name)} where {ident(entity.updated_at)} < ?"
    params: list = [hi]
    if lo is not None:
        sql += f" and {ident(entity.updated_at)} >= ?"
        params.append(lo)
    return {(str(k), h) for k, h in wh.query(sql, params)}


def _key_text(series: pd.Series) -> pd.Series:
    def one(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    return series.astype(object).map(one)


def extract_entity(
    wh: Warehouse,
    engine,
    entity: Entity,
    *,
    as_of: date,
    run_id: str,
    overlap: timedelta = DEFAULT_OVERLAP,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    known_customer_ids: Callable[[], set[int]] | None = None,
    gate_settings=None,
    on_progress: Callable[[int], None] | None = None,
) -> BatchStats:
    """Extract one entity's batch for the day ``as_of`` and commit it atomically."""
    from crm_pipeline import gates

    started = time.perf_counter()
    window_end = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
    interval_start = window_end - timedelta(days=1)
    mark = watermark(wh, entity, window_end)
    is_initial = mark is None
    window_start = None if is_initial else min(mark, interval_start) - overlap
    batch_id = f"{entity.name}-{as_of.isoformat()}-{uuid.uuid4().hex[:8]}"
    stats = BatchStats(entity.name, batch_id, as_of, window_start, window_end, is_initial)

    # batch-level contract first: a renamed or missing column stops the run before any read
    cols = source_columns(engine, entity)
    verdict = gates.gate1_batch(entity, cols, rows=0, quarantined=0, recent_rows=[], settings=gate_settings, incremental=False)
    if not verdict.ok:
        raise BatchRejected("; ".join(verdict.failures))

    seen = _existing_hashes(wh, entity, window_start, window_end)
    customer_ids = known_customer_ids() if known_customer_ids and entity.name != "customers" else None
    contract_cols = list(entity.columns)
    good_parts: list[pd.DataFrame] = []
    bad_parts: list[pd.DataFrame] = []
    for chunk in iter_source_chunks(engine, entity, window_start, window_end, chunk_rows):
        stats.rows_extracted += len(chunk)
        chunk = chunk[contract_cols]
        hashes = row_hashes(chunk, contract_cols)
        keys = _key_text(chunk[entity.key])
        dup = pd.Series([(k, h) in seen for k, h in zip(keys, hashes)], index=chunk.index)
        stats.rows_duplicate += int(dup.sum())
        fresh = chunk[~dup]
        fresh_hashes = hashes[~dup]
        if fresh.empty:
            if on_progress:
                on_progress(len(chunk))
            continue
        result = gates.gate1_rows(entity, fresh, customer_ids, as_of=as_of, settings=gate_settings)
        good = result.good.copy()
        good["_row_hash"] = fresh_hashes.loc[good.index].values
        good_parts.append(good)
        if len(result.quarantined):
            bad_parts.append(result.quarantined)
        seen.update(zip(_key_text(good[entity.key]), good["_row_hash"]))
        if on_progress:
            on_progress(len(chunk))

    good_all = pd.concat(good_parts) if good_parts else pd.DataFrame(columns=contract_cols + ["_row_hash"])
    bad_all = pd.concat(bad_parts) if bad_parts else pd.DataFrame(columns=["_key", "_rule", "_reason", "_record"])
    stats.rows_staged = len(good_all)
    stats.rows_quarantined = len(bad_all)
    if len(bad_all):
        stats.quarantine_rules = bad_all["_rule"].value_counts().to_dict()

    verdict = gates.gate1_batch(
        entity,
        cols,
        rows=stats.rows_extracted - stats.rows_duplicate,
        quarantined=stats.rows_quarantined,
        recent_rows=recent_batch_sizes(wh, entity, as_of),
        settings=gate_settings,
        incremental=not is_initial,
    )
    if not verdict.ok:
        raise BatchRejected("; ".join(verdict.failures))

    loaded_at = datetime.now(timezone.utc).replace(tzinfo=None)
    if len(good_all):
        good_all = good_all.copy()
        good_all["_batch_id"] = batch_id
        good_all["_as_of"] = as_of
        if is_initial:
            good_all["_visible_from"] = pd.to_datetime(good_all[entity.updated_at]).dt.date
        else:
            good_all["_visible_from"] = as_of
        good_all["_window_start"] = window_start
        good_all["_window_end"] = window_end
        good_all["_loaded_at"] = loaded_at
    if len(bad_all):
        bad_all = bad_all[["_key", "_rule", "_reason", "_record"]].copy()
        bad_all["_batch_id"] = batch_id
        bad_all["_as_of"] = as_of
        bad_all["_loaded_at"] = loaded_at
    stats.seconds = round(time.perf_counter() - started, 3)

    with wh.transaction():
        wh.append_df("raw", entity.name, good_all)
        wh.append_df("quarantine", entity.name, bad_all)
        wh.execute(
            "insert into ops.extract_batches values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id, batch_id, entity.name, as_of, window_start, window_end, is_initial,
                stats.rows_extracted, stats.rows_duplicate, stats.rows_staged,
                stats.rows_quarantined, stats.seconds, loaded_at,
            ),
        )
    log.info(
        "extracted %s: %d rows (%d duplicate, %d staged, %d quarantined) window [%s, %s)",
        entity.name, stats.rows_extracted, stats.rows_duplicate, stats.rows_staged,
        stats.rows_quarantined, window_start, window_end,
    )
    return stats


def known_customers_loader(wh: Warehouse, as_of: date) -> Callable[[], set[int]]:
    """Customer ids that exist in raw (any version up to the end of as_of)."""

    def load() -> set[int]:
        end = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
        return {int(r[0]) for r in wh.query("select distinct customer_id from raw.customers where updated_at < ?", (end,))}

    return load


def extract_all(
    wh: Warehouse,
    source_url: str,
    *,
    as_of: date,
    run_id: str,
    entities: tuple[Entity, ...] = ENTITIES,
    overlap: timedelta = DEFAULT_OVERLAP,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    gate_settings=None,
    progress: bool = False,
) -> list[BatchStats]:
    """Extract every entity, customers first (the others' foreign keys point at them)."""
    ensure_tables(wh)
    engine = source_engine(source_url)
    ordered = sorted(entities, key=lambda e: e.name != "customers")
    out: list[BatchStats] = []
    try:
        for entity in ordered:
            out.append(
                extract_entity(
                    wh, engine, entity, as_of=as_of, run_id=run_id, overlap=overlap,
                    chunk_rows=chunk_rows, known_customer_ids=known_customers_loader(wh, as_of),
                    gate_settings=gate_settings,
                )
            )
    finally:
        engine.dispose()
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
