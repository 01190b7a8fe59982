"""The pushdown path: a PostgreSQL source's batch extracted as SQL in DuckDB (the DuckDB
warehouse itself, or an in-memory DuckDB bridging to a PostgreSQL warehouse), with only
the rows gate 1's suspect predicate flags going through Python for the exact check."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from crm_pipeline import gates
from crm_pipeline.connections import redact
from crm_pipeline.contract import RAW_META_COLUMNS, Entity
from crm_pipeline.errors import first_line
from crm_pipeline.extract.chunked import write_chunk
from crm_pipeline.extract.hashing import (
    loaded_row_hash_sql,
    row_hash_sql,
    row_hashes,
    stored_hash_sql,
)
from crm_pipeline.extract.raw_store import (
    NEVER_VISIBLE,
    BatchStats,
    commit_batch,
    fault_point,
    known_customers_sql,
    open_batch,
)
from crm_pipeline.extract.readers import (
    dialect,
    fast_reader_available,
    in_memory_duckdb,
    plain_url,
    postgres_extension_path,
    reader_from_env,
    sql_string,
    ts_text,
)
from crm_pipeline.warehouse import Warehouse, ident

log = logging.getLogger(__name__)

SOURCE_ALIAS = "crm_src"
WAREHOUSE_ALIAS = "crm_wh"
#: appended to the batch id of a first load's suspect rows while they wait in raw for the
#: exact gate (see ``_initial_load_direct``); such rows are never visible to a model
SUSPECT_MARK = "#suspect"
#: source column types (DuckDB's names for what the postgres scanner reads) that need no
#: parsing for each contract type; any other type sends the entity down the chunked path
_PUSHDOWN_TYPES = {
    "int": ("BIGINT", "INTEGER", "SMALLINT", "HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT", "TINYINT"),
    "money": ("DECIMAL", "DOUBLE", "FLOAT", "BIGINT", "INTEGER", "SMALLINT"),
    "text": ("VARCHAR",),
    "date": ("DATE",),
    "timestamp": ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"),
    "bool": ("BOOLEAN",),
}
#: how far PostgreSQL's own window filter reaches beyond the batch's window on each side:
#: a ``timestamp with time zone`` column compares the literal in the session's time zone
#: (at most 14 hours from UTC); the exact window is applied in DuckDB
INDEXED_WINDOW_MARGIN = timedelta(days=1)


# -- where the SQL runs --------------------------------------------------------------


def pushdown_possible(wh: Warehouse, engine, reader: str | None = None) -> bool:
    """Whether extraction can run as SQL in DuckDB: a PostgreSQL source, the postgres
    extension at hand, and the reader not forced (either warehouse: see ``sql_warehouse``)."""
    preferred = (reader or reader_from_env()).lower()
    return (wh.kind in ("duckdb", "postgres") and dialect(engine) == "postgresql"
            and preferred in ("auto", "pushdown") and fast_reader_available("duckdb"))


@contextlib.contextmanager
def sql_warehouse(wh: Warehouse, engine) -> Iterator[tuple[Warehouse, str]]:
    """Where extraction runs as SQL, and the source schema to read from.

    A DuckDB warehouse is its own: the source is attached to it. For a PostgreSQL
    warehouse it is an in-memory DuckDB with the warehouse attached as its default
    catalog (``crm_wh``) and the source attached read-only: the same SQL then reads the
    source with parallel scans and writes the warehouse with binary ``COPY``, instead of
    every row passing through Python, and a batch still commits in one PostgreSQL
    transaction. Nothing of the warehouse is held in the in-memory database."""
    if wh.kind == "duckdb":
        with attached_source(wh, engine) as schema:
            yield wh, schema
        return
    con = in_memory_duckdb(temp_directory=str(Path(tempfile.gettempdir()) / "crm-duckdb-spill"))
    bridge = Warehouse.duckdb_over(wh.config, con)
    try:
        url = wh.config.url.replace("postgresql+psycopg2://", "postgresql://")
        con.execute(f"ATTACH {sql_string(url)} AS {WAREHOUSE_ALIAS} (TYPE postgres)")
        con.execute(f"USE {WAREHOUSE_ALIAS}")
        with attached_source(bridge, engine) as schema:
            yield bridge, schema
    finally:
        bridge.close()


@contextlib.contextmanager
def attached_source(wh: Warehouse, engine) -> Iterator[str]:
    """The source attached read-only to the warehouse's DuckDB as ``crm_src``; yields the
    source schema to read from."""
    from sqlalchemy import text

    with engine.connect() as conn:
        schema = conn.execute(text("select current_schema()")).scalar_one()
    con = wh._con
    con.execute(f"LOAD '{postgres_extension_path()}'")
    con.execute(f"ATTACH {sql_string(plain_url(engine))} AS {SOURCE_ALIAS} (TYPE postgres, READ_ONLY)")
    try:
        yield schema
    finally:
        with contextlib.suppress(Exception):
            con.execute(f"DETACH {SOURCE_ALIAS}")


# -- what the source offers ----------------------------------------------------------


def _source_types(wh: Warehouse, schema: str, entity: Entity) -> dict[str, str]:
    rows = wh.query(f"describe select * from {SOURCE_ALIAS}.{ident(schema)}.{ident(entity.name)}")
    return {row[0]: str(row[1]).upper() for row in rows}


def _pushdown_compatible(entity: Entity, types: dict[str, str]) -> str | None:
    """None when every contract column has a type that needs no parsing, else why not."""
    for column, logical in entity.columns.items():
        source_type = types.get(column)
        if source_type is None:
            return f"column {column} is missing"
        base = source_type.split("(")[0].strip()
        if base not in _PUSHDOWN_TYPES[logical]:
            return f"column {column} is {source_type}, not a {logical} type"
    return None


def _typed_sql(column: str, logical: str, source_type: str, wh: Warehouse) -> str:
    column_sql = ident(column)
    if logical == "timestamp" and source_type == "TIMESTAMP WITH TIME ZONE":
        return f"timezone('UTC', {column_sql}) as {column_sql}"
    return f"cast({column_sql} as {wh.sql_type(logical)}) as {column_sql}"


def source_key_is_unique(engine, schema: str, entity: Entity) -> bool:
    """Whether the source table's primary key or a unique constraint is the entity's key
    alone: then no window of it can hold a key twice, and nobody needs to count."""
    import sqlalchemy as sa

    try:
        inspector = sa.inspect(engine)
        keys = [inspector.get_pk_constraint(entity.name, schema=schema).get("constrained_columns") or []]
        keys += [constraint.get("column_names") or []
                 for constraint in inspector.get_unique_constraints(entity.name, schema=schema)]
    except sa.exc.SQLAlchemyError as exc:
        log.info("%s: cannot read the source's key constraints (%s); counting keys instead",
                 entity.name, redact(first_line(exc)))
        return False
    return [entity.key] in [list(key) for key in keys]


def source_window_indexed(engine, schema: str, entity: Entity) -> bool:
    """Whether an index of the source table starts with the entity's ``updated_at``: then
    PostgreSQL can find a night's window through it."""
    import sqlalchemy as sa

    try:
        indexes = sa.inspect(engine).get_indexes(entity.name, schema=schema)
    except sa.exc.SQLAlchemyError as exc:
        log.info("%s: cannot read the source's indexes (%s); scanning the table",
                 entity.name, redact(first_line(exc)))
        return False
    return any((index.get("column_names") or [None])[0] == entity.updated_at for index in indexes)


def _indexed_window_source(schema: str, entity: Entity, start: datetime, end: datetime) -> str:
    """The incremental window of a source table as a query PostgreSQL runs itself
    (``postgres_query``), so its planner can use the ``updated_at`` index.

    The attached table is read in parallel ranges of pages, each filtered on its own: an
    index cannot help there, so a night's small share of the orders cost a scan of every
    page, and that grew with the history. The query reads the window widened by
    ``INDEXED_WINDOW_MARGIN``; the caller's filter keeps the exact window."""
    upd = ident(entity.updated_at)
    columns = list(entity.columns) + ([] if entity.updated_at in entity.columns else [entity.updated_at])
    query = (f"select {', '.join(ident(column) for column in columns)} from {ident(schema)}.{ident(entity.name)} "
             f"where {upd} >= '{ts_text(start - INDEXED_WINDOW_MARGIN)}' "
             f"and {upd} < '{ts_text(end + INDEXED_WINDOW_MARGIN)}'")
    return f"postgres_query('{SOURCE_ALIAS}', {sql_string(query)})"


# -- the batch -----------------------------------------------------------------------


def extract_pushdown(wh: Warehouse, engine, entity: Entity, *, schema: str, as_of: date, run_id: str,
                     overlap: timedelta, columns: list[str], gate_settings, customer_ids,
                     on_progress) -> BatchStats | None:
    """One batch as SQL inside the DuckDB warehouse (None: this entity needs the chunked path).

    1. One parallel scan of the source window (the postgres extension pushes the window
       filter down) lands the typed contract columns, the row hash and gate 1's suspect
       flag in ``raw._landing_<entity>_<batch>_in``, committed.
    2. Versions already in raw, and repeats inside the batch, are duplicates.
    3. Suspect rows (few) go through ``gates.gate1_rows`` (GX and the pandas pre-checks)
       for the exact rule and reason; the rest are good as they are.
    4. The good rows, the checked suspects and the quarantine move into raw/quarantine in
       one transaction with the bookkeeping row, as in the chunked path."""
    started = time.perf_counter()
    types = _source_types(wh, schema, entity)
    why = _pushdown_compatible(entity, types)
    if why:
        log.info("%s: extracting in chunks, not in SQL: %s", entity.name, why)
        return None
    with open_batch(wh, entity, "pushdown", as_of=as_of, overlap=overlap,
                    gate_settings=gate_settings) as (stats, landing, loaded_at, scratch):
        batch_id, window_start, window_end, is_initial = (stats.batch_id, stats.window_start, stats.window_end,
                                                          stats.is_initial)
        upd, key = ident(entity.updated_at), ident(entity.key)

        def ts(moment: datetime) -> str:
            return f"timestamp '{ts_text(moment)}'"

        where = f"{upd} < {ts(window_end)}" + (f" and {upd} >= {ts(window_start)}" if window_start else "")
        known = known_customers_sql(ts(window_end)) if customer_ids is not None else None
        inc = f"raw.{ident(landing + '_in')}"
        scratch += [inc, f"raw.{ident(landing + '_flagged')}"]
        typed = ", ".join(_typed_sql(column, logical, types[column], wh) for column, logical in entity.columns.items())

        def meta_with(batch_id_sql: str, visible_from_sql: str | None = None) -> str:
            visible_from = visible_from_sql or (f"cast({upd} as date)" if is_initial else f"date '{as_of.isoformat()}'")
            return (f"{batch_id_sql} as _batch_id, date '{as_of.isoformat()}' as _as_of, "
                    + f"{visible_from} as _visible_from, "
                    + (f"{ts(window_start)} as _window_start, " if window_start
                       else "cast(null as timestamp) as _window_start, ")
                    + f"{ts(window_end)} as _window_end, {ts(loaded_at)} as _loaded_at")

        meta = meta_with(f"'{batch_id}'")
        contract = ", ".join(ident(column) for column in entity.columns)
        source_unique = source_key_is_unique(engine, schema, entity)
        source = f"{SOURCE_ALIAS}.{ident(schema)}.{ident(entity.name)}"
        if not is_initial and window_start is not None and source_window_indexed(engine, schema, entity):
            source = _indexed_window_source(schema, entity, window_start, window_end)
        if is_initial and source_unique:
            _initial_load_direct(wh, entity, stats, source=source,
                                 typed=typed, source_types=types, where=where, meta_with=meta_with, known=known, landing=landing,
                                 loaded_at=loaded_at, run_id=run_id, columns=columns, customer_ids=customer_ids,
                                 gate_settings=gate_settings, started=started, on_progress=on_progress)
            return stats
        # 1. the scan: typed columns, the row hash (of the source values) and gate 1's
        #    suspect flag, assuming each key once in the batch (checked right after)
        flag_unique = gates.gate1_suspect_sql(entity, as_of=as_of, known_customers_sql=known, key_is_unique=True,
                                              outlier_limits=stats.outlier_limits)
        row_hash = loaded_row_hash_sql(wh, entity, types, initial=is_initial)
        wh.execute(
            f"create table {inc} as select *, ({flag_unique}) as _suspect from ("
            f"select {typed}, {row_hash} as _row_hash "
            f"from {source} where {where})")
        fault_point("after_first_chunk", entity)
        if source_unique:
            row_count = distinct_keys = wh.scalar(f"select count(*) from {inc}")
        else:
            row_count, distinct_keys = wh.query(f"select count(*), count(distinct {key}) from {inc}")[0]
        stats.rows_extracted = int(row_count)
        key_unique = int(row_count) == int(distinct_keys)
        if is_initial and not key_unique:  # repeats are told apart by their hash
            wh.execute(f"update {inc} set _row_hash = {row_hash_sql(entity, {})}")
        # 2. duplicates: versions already in raw (incremental windows only) and in-batch
        #    repeats; a first load of unique keys has none and is used as it is
        flagged = inc
        if not (is_initial and key_unique):
            dup_terms = []
            if not is_initial:
                dup_terms.append(
                    f"exists (select 1 from raw.{ident(entity.name)} r where r.{key} = i.{key} "
                    f"and {stored_hash_sql(entity, 'r')} = i._row_hash and r.{upd} < {ts(window_end)} "
                    f"and r.{upd} >= {ts(window_start)})")
            if not key_unique:
                dup_terms.append(f"row_number() over (partition by i.{key}, i._row_hash order by i.{upd}) > 1")
            suspect = gates.gate1_suspect_sql(entity, as_of=as_of, known_customers_sql=known,
                                              key_is_unique=key_unique, outlier_limits=stats.outlier_limits)
            flagged = f"raw.{ident(landing + '_flagged')}"
            wh.execute(f"create table {flagged} as select *, ({suspect}) as _suspect from "
                       f"(select i.* exclude (_suspect), ({' or '.join(dup_terms) or 'false'}) as _dup from {inc} i) "
                       f"where not _dup")
        fresh, n_suspect, n_clean = (int(count or 0) for count in wh.query(
            f"select count(*), count(*) filter (where _suspect), count(*) filter (where not _suspect) "
            f"from {flagged}")[0])
        if n_suspect + n_clean != fresh:  # pragma: no cover - an invariant, not an input error
            raise gates.GateError(f"{entity.name}: the suspect split lost rows ({n_suspect} + {n_clean} != {fresh})")
        stats.rows_duplicate = stats.rows_extracted - fresh
        # 3. suspects through the exact gate
        suspects = wh.query_df(f"select {contract}, _row_hash from {flagged} where _suspect")
        if len(suspects):
            _gate_suspects(wh, entity, stats, suspects, customer_ids, gate_settings, landing=landing,
                           loaded_at=loaded_at)
        stats.rows_staged = fresh - stats.rows_quarantined
        if on_progress:
            on_progress(stats.rows_extracted)
        # 4. the good rows move with the landing tables, in the same transaction
        if flagged != inc:
            wh.execute(f"drop table if exists {inc}")
        good_rows = (f"insert into raw.{ident(entity.name)} ({contract}, {', '.join(RAW_META_COLUMNS)}) "
                     f"select {contract}, {meta}, _row_hash from {flagged} where not _suspect")
        commit_batch(wh, entity, stats, landing=landing, run_id=run_id, columns=columns,
                     loaded_at=loaded_at, gate_settings=gate_settings, started=started, also=good_rows)
    return stats


def _initial_load_direct(wh: Warehouse, entity: Entity, stats: BatchStats, *, source: str, typed: str,
                         source_types: dict[str, str], where: str,
                         meta_with: Callable[..., str], known: str | None, landing: str, loaded_at: datetime, run_id: str,
                         columns: list[str], customer_ids, gate_settings, started: float, on_progress) -> None:
    """A first load of a source whose key is unique, written straight into raw: one scan
    of the source inserts every row of the window, then the rows gate 1's suspect
    predicate flags (few) go through ``gates.gate1_rows``; their good rows come back
    through the landing table, as in the other paths. The rows, the quarantine and the
    bookkeeping row commit in one transaction, so the batch is in raw whole or not at
    all, and there is no second copy of the table.

    In a DuckDB warehouse the suspect rows themselves wait in raw under a marked batch id
    and a ``_visible_from`` no run date reaches, and are deleted right after the commit.
    Deleting them inside the transaction instead made DuckDB rewrite the whole uncommitted
    insert at commit; deleting a few committed rows is cheap. Should the process die in
    between, no model can see them, and the entity's next batch deletes them before it
    reads raw (``purge_unchecked_rows``)."""
    contract = ", ".join(ident(column) for column in entity.columns)
    target = f"raw.{ident(entity.name)}"
    # the suspect flag is evaluated once, in the scan (scanning the transaction's own
    # uncommitted rows again costs more than the scan from the source)
    suspect = gates.gate1_suspect_sql(entity, as_of=stats.as_of, known_customers_sql=known, key_is_unique=True)
    marked = f"{stats.batch_id}{SUSPECT_MARK}"
    meta = meta_with(f"case when _suspect then '{marked}' else '{stats.batch_id}' end",
                     f"case when _suspect then date '{NEVER_VISIBLE}' else cast({ident(entity.updated_at)} as date) end")
    row_hash = loaded_row_hash_sql(wh, entity, source_types, initial=True)
    # only DuckDB's own tables pay for a delete inside the transaction; a PostgreSQL
    # warehouse (through the DuckDB bridge) deletes them there, as nothing is left behind
    after_commit = wh.config.kind == "duckdb"
    with wh.transaction():
        inserted = wh.scalar(f"insert into {target} ({contract}, {', '.join(RAW_META_COLUMNS)}) "
                             f"select {contract}, {meta}, _row_hash from (select *, ({suspect}) as _suspect from "
                             f"(select {typed}, {row_hash} as _row_hash from {source} where {where}))")
        fault_point("after_first_chunk", entity)
        stats.rows_extracted = int(inserted or 0)
        suspects = wh.query_df(f"select {contract}, _row_hash from {target} where _batch_id = ?", (marked,))
        if len(suspects) and not after_commit:
            wh.execute(f"delete from {target} where _batch_id = ?", (marked,))
        if len(suspects):
            _gate_suspects(wh, entity, stats, suspects, customer_ids, gate_settings, landing=landing,
                           loaded_at=loaded_at)
        stats.rows_staged = stats.rows_extracted - stats.rows_quarantined
        if on_progress:
            on_progress(stats.rows_extracted)
        commit_batch(wh, entity, stats, landing=landing, run_id=run_id, columns=columns,
                     loaded_at=loaded_at, gate_settings=gate_settings, started=started)
    if after_commit:
        fault_point("before_suspects_leave", entity)
        if len(suspects):
            wh.execute(f"delete from {target} where _batch_id = ?", (marked,))


# -- suspect rows through the exact gate ---------------------------------------------


def _gate_suspects(wh: Warehouse, entity: Entity, stats: BatchStats, suspects: pd.DataFrame, customer_ids,
                   gate_settings, *, landing: str, loaded_at: datetime) -> None:
    """The SQL paths' suspect rows through the exact gate 1 (``customer_ids``: a loader of
    the known ids, called only here): good rows and quarantine into the landing tables,
    counts into ``stats``."""
    result = gates.gate1_rows(entity, suspects[list(entity.columns)], customer_ids and customer_ids(),
                              as_of=stats.as_of, settings=gate_settings, outlier_limits=stats.outlier_limits)
    good = result.good.copy()
    good["_row_hash"] = _suspect_hashes(entity, suspects).loc[good.index].to_numpy()
    bad = result.quarantined
    stats.rows_quarantined = len(bad)
    for rule, count in bad["_rule"].value_counts().items() if len(bad) else ():
        stats.quarantine_rules[rule] = int(count)
    write_chunk(wh, entity, good, bad, landing=landing, batch_id=stats.batch_id, as_of=stats.as_of,
                is_initial=stats.is_initial, window_start=stats.window_start, window_end=stats.window_end,
                loaded_at=loaded_at)


def _suspect_hashes(entity: Entity, suspects: pd.DataFrame) -> pd.Series:
    """The row hashes of suspect rows as read from the source. A first load through SQL
    stores none (``stored_hash_sql`` computes them from raw later), but gate 1 may clean
    a suspect's values, and a hash of the cleaned values would not match the source's row
    when a later overlap window reads it again: these few are hashed here, before gate 1."""
    stored = suspects["_row_hash"]
    if stored.notna().all():
        return stored
    cols = list(entity.columns)
    return stored.where(stored.notna(), row_hashes(suspects[cols], cols, entity.columns))
