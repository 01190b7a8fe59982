"""Running extraction: one entity's batch (as SQL in DuckDB when it can, else in chunks
through the reader chain, falling back reader by reader) and every entity of a run,
customers first, with the known customer ids loaded once for the others."""

from __future__ import annotations

import contextlib
import functools
import logging
from datetime import date, datetime, timedelta
from typing import Callable

from crm_pipeline import gates, settings
from crm_pipeline.connections import redact
from crm_pipeline.contract import ENTITIES, Entity
from crm_pipeline.errors import first_line
from crm_pipeline.extract.chunked import extract_batch
from crm_pipeline.extract.pushdown import (
    extract_pushdown,
    pushdown_possible,
    sql_warehouse,
)
from crm_pipeline.extract.raw_store import (
    BatchRejected,
    BatchStats,
    ensure_tables,
    known_customers_sql,
)
from crm_pipeline.extract.readers import (
    ReaderFailed,
    reader_chain,
    source_columns,
    source_engine,
)
from crm_pipeline.warehouse import Warehouse, ident

log = logging.getLogger(__name__)

DEFAULT_OVERLAP = timedelta(hours=2)


def overlap_from_env() -> timedelta:
    return settings.extract_overlap()


def chunk_rows_from_env() -> int:
    return settings.extract_chunk_rows()


def extract_entity(
    wh: Warehouse,
    engine,
    entity: Entity,
    *,
    as_of: date,
    run_id: str,
    overlap: timedelta | None = None,
    chunk_rows: int | None = None,
    known_customer_ids: Callable[[], set[int]] | None = None,
    gate_settings=None,
    on_progress: Callable[[int], None] | None = None,
    reader: str | None = None,
    pushdown: tuple[Warehouse, str] | None = None,
) -> BatchStats:
    """Extract one entity's batch for the day ``as_of`` and commit it atomically, with
    DuckDB's ``memory_limit`` at ``CRM_DUCKDB_MEMORY_LIMIT`` meanwhile.

    With ``pushdown`` (the warehouse connection to run SQL in and the source schema, from
    ``sql_warehouse``) the batch runs as SQL in DuckDB when the entity's source types
    allow; otherwise, and after a failure there, in chunks."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(wh.memory_limit())
        if pushdown is not None and pushdown[0] is not wh:
            stack.enter_context(pushdown[0].memory_limit())
        return _extract_entity(wh, engine, entity, as_of=as_of, run_id=run_id, overlap=overlap,
                               chunk_rows=chunk_rows, known_customer_ids=known_customer_ids,
                               gate_settings=gate_settings, on_progress=on_progress, reader=reader,
                               pushdown=pushdown)


def _extract_entity(wh: Warehouse, engine, entity: Entity, *, as_of: date, run_id: str, overlap, chunk_rows,
                    known_customer_ids, gate_settings, on_progress, reader, pushdown) -> BatchStats:
    overlap = overlap_from_env() if overlap is None else overlap
    chunk_rows = chunk_rows_from_env() if chunk_rows is None else int(chunk_rows)

    # batch-level contract first: a renamed or missing column stops the run before any read
    cols = source_columns(engine, entity)
    verdict = gates.gate1_batch(entity, cols, rows=0, quarantined=0, recent_rows=[], settings=gate_settings, incremental=False)
    if not verdict.ok:
        raise BatchRejected("; ".join(verdict.failures))
    lazy_ids = known_customer_ids if known_customer_ids and entity.name != "customers" else None

    if pushdown is not None and pushdown[0] is not wh and wh.scalar(
            f"select count(*) from (select 1 from raw.{ident(entity.name)} limit 1) r"):
        # through the bridge to a PostgreSQL warehouse only a first load pays off: a
        # night's batch is small, and DuckDB would pull every watermark and overlap
        # comparison across the wire rather than let PostgreSQL answer it
        pushdown = None
    if pushdown is not None:
        import duckdb

        try:
            stats = extract_pushdown(pushdown[0], engine, entity, schema=pushdown[1], as_of=as_of, run_id=run_id,
                                     overlap=overlap, columns=cols, gate_settings=gate_settings,
                                     customer_ids=lazy_ids, on_progress=on_progress)
        except duckdb.Error as exc:
            log.warning("%s: extraction in SQL failed (%s); the batch was rolled back, reading it in chunks",
                        entity.name, redact(first_line(exc)))
            stats = None
        if stats is not None:
            return stats
    customer_ids = lazy_ids() if lazy_ids else None
    chain = reader_chain(engine, reader)
    for position, name in enumerate(chain):
        try:
            return extract_batch(wh, engine, entity, name, as_of=as_of, run_id=run_id, overlap=overlap,
                                 chunk_rows=chunk_rows, customer_ids=customer_ids, columns=cols,
                                 gate_settings=gate_settings, on_progress=on_progress)
        except ReaderFailed as exc:
            log.warning("%s: %s; the batch was rolled back, reading it again with the %s reader",
                        entity.name, exc, chain[position + 1])
    raise AssertionError("unreachable: the sqlalchemy reader never raises ReaderFailed")  # pragma: no cover


def known_customers_loader(wh: Warehouse, as_of: date) -> Callable[[], set[int]]:
    """Customer ids that exist in raw (any version up to the end of as_of)."""

    def load() -> set[int]:
        end = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
        return {int(row[0]) for row in wh.query(known_customers_sql("?"), (end,))}

    return load


def extract_all(
    wh: Warehouse,
    source_url: str,
    *,
    as_of: date,
    run_id: str,
    entities: tuple[Entity, ...] = ENTITIES,
    overlap: timedelta | None = None,
    chunk_rows: int | None = None,
    gate_settings=None,
    progress: bool = False,
    reader: str | None = None,
) -> list[BatchStats]:
    """Extract every entity, customers first (the others' foreign keys point at them).

    Each entity's batch commits on its own; after a failure a retry re-reads the
    committed entities' windows and finds only duplicates."""
    overlap = overlap_from_env() if overlap is None else overlap
    chunk_rows = chunk_rows_from_env() if chunk_rows is None else chunk_rows
    ensure_tables(wh)
    engine = source_engine(source_url)
    ordered = sorted(entities, key=lambda entity: entity.name != "customers")
    out: list[BatchStats] = []
    try:
        with contextlib.ExitStack() as stack:
            schema = None
            sql_wh = None
            if pushdown_possible(wh, engine, reader):
                try:
                    sql_wh, schema = stack.enter_context(sql_warehouse(wh, engine))
                except Exception as exc:  # noqa: BLE001 - the chunked readers still work
                    log.warning("cannot attach the source to the warehouse (%s); extracting in chunks",
                                redact(first_line(exc)))
            # loaded once, when an entity after the customers first needs it
            known_ids = functools.cache(known_customers_loader(wh, as_of))
            for entity in ordered:
                out.append(
                    extract_entity(
                        wh, engine, entity, as_of=as_of, run_id=run_id, overlap=overlap,
                        chunk_rows=chunk_rows, known_customer_ids=known_ids,
                        gate_settings=gate_settings, reader=reader,
                        pushdown=(sql_wh, schema) if sql_wh is not None else None,
                    )
                )
    finally:
        engine.dispose()
    return out
