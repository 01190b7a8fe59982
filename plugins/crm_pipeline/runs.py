"""The run record: ``ops.pipeline_runs`` and ``ops.run_stages``, and the ``stage`` context
that every task (the dbt stages included) uses to time itself and record its outcome.

Every run leaves one row in ``ops.pipeline_runs`` (its verdict and message) and one row
per stage in ``ops.run_stages`` (seconds and a JSON of counts), next to the per-entity
batch counts in ``ops.extract_batches``. Together they prove, for every entity, that
rows extracted = duplicates skipped + rows staged in raw + rows quarantined.

A run also records which process works on it and when it was last seen (every stage's
start and end). A run still "running" whose process is gone is *abandoned*: the next run
marks it so in the record, and ``crm status`` shows it so (see ``is_abandoned``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, Iterator

from crm_pipeline import interrupts, progress
from crm_pipeline.connections import RunSettings
from crm_pipeline.errors import first_line
from crm_pipeline.liveness import abandoned_message, is_abandoned, now
from crm_pipeline.status import write_snapshot
from crm_pipeline.warehouse import Warehouse, ident

log = logging.getLogger(__name__)

RUNS_DDL = (
    """create table if not exists ops.pipeline_runs (
        run_id varchar, as_of date, started_at timestamp, finished_at timestamp,
        status varchar, gate_verdict varchar, message varchar, warehouse varchar, docs varchar,
        pid bigint, host varchar, last_seen_at timestamp)""",
    """create table if not exists ops.run_stages (
        run_id varchar, stage varchar, status varchar, started_at timestamp,
        seconds double precision, details varchar)""",
    # run records written before the liveness columns existed
    "alter table ops.pipeline_runs add column if not exists pid bigint",
    "alter table ops.pipeline_runs add column if not exists host varchar",
    "alter table ops.pipeline_runs add column if not exists last_seen_at timestamp",
)

def ensure(wh: Warehouse) -> None:
    wh.ensure_schemas()
    for ddl in RUNS_DDL:
        wh.execute(ddl)


def mark_abandoned_runs(wh: Warehouse) -> list[str]:
    """Close every run recorded as running whose process is gone; returns their ids."""
    ensure(wh)
    marked = []
    for run_id, pid, host, last_seen_at in wh.query(
        "select run_id, pid, host, coalesce(last_seen_at, started_at) from ops.pipeline_runs "
        "where status = 'running'"
    ):
        if is_abandoned("running", pid, host, last_seen_at):
            wh.execute("update ops.pipeline_runs set status = 'abandoned', message = ? where run_id = ? "
                       "and status = 'running'", (abandoned_message(pid, host, last_seen_at), run_id))
            marked.append(run_id)
    return marked


def _seen(wh: Warehouse, run_id: str) -> None:
    wh.execute("update ops.pipeline_runs set pid = ?, host = ?, last_seen_at = ? where run_id = ?",
               (os.getpid(), socket.gethostname(), now(), run_id))


def start_run(wh: Warehouse, run_id: str, as_of: date, warehouse_display: str) -> None:
    ensure(wh)
    for abandoned in mark_abandoned_runs(wh):
        log.warning("run %s was abandoned by its process; marked so", abandoned)
    with wh.transaction():
        wh.execute("delete from ops.pipeline_runs where run_id = ?", (run_id,))
        wh.execute("delete from ops.run_stages where run_id = ?", (run_id,))
        wh.execute(
            "insert into ops.pipeline_runs (run_id, as_of, started_at, status, warehouse, pid, host, last_seen_at) "
            "values (?, ?, ?, 'running', ?, ?, ?, ?)",
            (run_id, as_of, now(), warehouse_display, os.getpid(), socket.gethostname(), now()),
        )
    _snapshot(wh)


def record_stage(wh: Warehouse, run_id: str, stage: str, status: str, started_at: datetime,
                 seconds: float, details: dict[str, Any] | None = None) -> None:
    ensure(wh)
    with wh.transaction():
        wh.execute("delete from ops.run_stages where run_id = ? and stage = ?", (run_id, stage))
        wh.execute(
            "insert into ops.run_stages values (?, ?, ?, ?, ?, ?)",
            (run_id, stage, status, started_at, round(seconds, 3), json.dumps(details or {}, default=str)),
        )
        _seen(wh, run_id)
    _snapshot(wh)


def record_stage_start(run_id: str, stage_name: str, started_at: datetime) -> None:
    """The run is seen and the stage is recorded as running (``crm status`` names it)."""
    try:
        with open_warehouse() as wh:
            record_stage(wh, run_id, stage_name, "running", started_at, 0.0)
    except Exception:  # noqa: BLE001 - liveness is a convenience; the stage matters more
        log.warning("could not record that run %s is alive", run_id, exc_info=True)


def _snapshot(wh: Warehouse) -> None:
    """Keep the status snapshot of a DuckDB warehouse current (``status.write_snapshot``)."""
    try:
        write_snapshot(wh)
    except Exception:  # noqa: BLE001 - the snapshot serves crm status; the run matters more
        log.warning("could not write the status snapshot", exc_info=True)


def finish_run(wh: Warehouse, run_id: str, status: str, gate_verdict: str | None,
               message: str | None, docs: str | None = None) -> None:
    ensure(wh)
    wh.execute(
        "update ops.pipeline_runs set finished_at = ?, status = ?, gate_verdict = coalesce(?, gate_verdict), "
        "message = ?, docs = coalesce(?, docs) where run_id = ?",
        (now(), status, gate_verdict, (message or "")[:2000], docs, run_id),
    )
    _snapshot(wh)


def open_warehouse() -> Warehouse:
    """Where this run's record lives (the ``crm_warehouse`` connection's warehouse, or
    the control file of a Spark warehouse)."""
    return Warehouse(RunSettings.resolve().warehouse.control)


def record_success(run_id: str, stage_name: str, started_at: datetime, seconds: float,
                   details: dict | None) -> None:
    progress.emit(stage_name, "ok", seconds)
    with open_warehouse() as wh:
        record_stage(wh, run_id, stage_name, "ok", started_at, seconds, details)


def record_failure(run_id: str, stage_name: str, started_at: datetime, seconds: float,
                   exc: BaseException) -> None:
    """Record the stage as failed and the run as failed with the error's first line."""
    progress.emit(stage_name, "failed", seconds)
    try:
        with open_warehouse() as wh:
            record_stage(wh, run_id, stage_name, "failed", started_at, seconds, {"error": first_line(exc)})
            finish_run(wh, run_id, "failed", None, f"{stage_name}: {first_line(exc)}")
    except Exception:  # noqa: BLE001 - the original error matters more than the record
        log.exception("could not record the failure of %s", stage_name)


@contextmanager
def stage(run_id: str, name: str) -> Iterator[dict[str, Any]]:
    """Time a stage and record it; the body fills the yielded dict with its counts. A
    failing body marks the stage and the run failed before the error goes on."""
    started_at = now()
    started = time.perf_counter()
    details: dict[str, Any] = {}
    record_stage_start(run_id, name, started_at)
    progress.emit(name, "running")
    try:
        interrupts.check()  # an interrupt that a library swallowed stops the night here
        yield details
    except BaseException as exc:
        record_failure(run_id, name, started_at, time.perf_counter() - started, exc)
        raise
    record_success(run_id, name, started_at, time.perf_counter() - started, details)


def run_summary(wh: Warehouse, run_id: str) -> dict[str, Any]:
    """Everything the CLI prints about one run, read back from the run record."""
    ensure(wh)
    rows = wh.query(
        "select run_id, as_of, started_at, finished_at, status, gate_verdict, message, warehouse, docs "
        "from ops.pipeline_runs where run_id = ?",
        (run_id,),
    )
    if not rows:
        return {}
    keys = ("run_id", "as_of", "started_at", "finished_at", "status", "gate_verdict", "message", "warehouse", "docs")
    out: dict[str, Any] = dict(zip(keys, rows[0]))
    out["stages"] = [
        {"stage": s, "status": st, "seconds": sec, "details": json.loads(d or "{}")}
        for s, st, sec, d in wh.query(
            "select stage, status, seconds, details from ops.run_stages where run_id = ? order by started_at",
            (run_id,),
        )
    ]
    extract_details = next((s["details"] for s in out["stages"] if s["stage"] == "extract"), {})
    if extract_details.get("quarantine"):
        # rows per state of every quarantine table after the night's admissions, and what landed
        out["quarantine"] = extract_details["quarantine"]
    if wh.table_exists("ops", "extract_batches"):
        # summed per entity: a retried extract leaves one row per attempt that committed;
        # a re-run of the same date (same Airflow run id) counts only its own batches
        out["entities"] = [
            dict(zip(("entity", "extracted", "duplicate", "staged", "quarantined"), r))
            for r in wh.query(
                "select entity, sum(rows_extracted), sum(rows_duplicate), sum(rows_staged), "
                "sum(rows_quarantined) from ops.extract_batches where run_id = ? and loaded_at >= ? "
                "group by entity order by entity",
                (run_id, out["started_at"]),
            )
        ]
    if wh.table_exists("ops", "published_versions"):
        out["published"] = [
            dict(zip(("table", "mode", "rows"), r))
            for r in wh.query(
                "select table_name, mode, rows_published from ops.published_versions where run_id = ? "
                "and published_at >= ? order by table_name",
                (run_id, out["started_at"]),
            )
        ]
    return out


# -- "nothing lost": the per-entity reconciliation of a run ----------------------------

ENTITY_COUNTS_DDL = """create table if not exists ops.run_entity_counts (
    run_id varchar, entity varchar, batches bigint, extracted bigint, duplicate bigint,
    staged bigint, quarantined bigint, raw_rows bigint, quarantine_rows bigint, ok boolean,
    checked_at timestamp)"""


def reconcile(wh: Warehouse, run_id: str) -> list[dict[str, Any]]:
    """Prove, per entity, that nothing of the run's extraction was lost.

    For every entity the run extracted (summed over its batches in ``ops.extract_batches``;
    a retried extract can leave more than one batch per entity): ``ok`` is true when
    ``extracted == duplicate + staged + quarantined``, ``staged`` equals the rows of
    ``raw.<entity>`` that carry the run's batch ids and ``quarantined`` equals the rows of
    ``quarantine.<entity>`` that carry them. Returns one dict per entity, ordered by name:
    entity, batches, extracted, duplicate, staged, quarantined, raw_rows, quarantine_rows, ok.
    """
    if not wh.table_exists("ops", "extract_batches"):
        return []
    rows = wh.query(
        "select entity, batch_id, rows_extracted, rows_duplicate, rows_staged, rows_quarantined, loaded_at "
        "from ops.extract_batches where run_id = ? order by entity, batch_id",
        (run_id,),
    )
    by_entity: dict[str, dict[str, Any]] = {}
    batch_ids: dict[str, list[str]] = {}
    loaded: dict[str, list] = {}
    for entity, batch_id, extracted, duplicate, staged, quarantined, loaded_at in rows:
        e = by_entity.setdefault(entity, {"entity": entity, "batches": 0, "extracted": 0, "duplicate": 0,
                                          "staged": 0, "quarantined": 0})
        e["batches"] += 1
        e["extracted"] += int(extracted or 0)
        e["duplicate"] += int(duplicate or 0)
        e["staged"] += int(staged or 0)
        e["quarantined"] += int(quarantined or 0)
        batch_ids.setdefault(entity, []).append(batch_id)
        loaded.setdefault(entity, []).append(loaded_at)

    def count_in(schema: str, entity: str, ids: list[str], loaded_at: list) -> int:
        """Rows of ``schema.entity`` with the batch ids. A batch's rows all carry its load
        time, so the rows are looked up by it first: on PostgreSQL raw.orders has an index
        on _loaded_at, where a look-up by batch id alone would scan the whole table."""
        if not wh.table_exists(schema, entity):
            return 0
        marks = ", ".join("?" for _ in ids)
        times = [t for t in loaded_at if t is not None]
        by_time = f"_loaded_at in ({', '.join('?' for _ in times)}) and " if len(times) == len(ids) else ""
        return int(wh.scalar(
            f"select count(*) from {ident(schema)}.{ident(entity)} where {by_time}_batch_id in ({marks})",
            (*(times if by_time else ()), *ids),
        ) or 0)

    out: list[dict[str, Any]] = []
    for entity in sorted(by_entity):
        e = by_entity[entity]
        e["raw_rows"] = count_in("raw", entity, batch_ids[entity], loaded[entity])
        e["quarantine_rows"] = count_in("quarantine", entity, batch_ids[entity], loaded[entity])
        e["ok"] = (
            e["extracted"] == e["duplicate"] + e["staged"] + e["quarantined"]
            and e["staged"] == e["raw_rows"]
            and e["quarantined"] == e["quarantine_rows"]
        )
        out.append(e)
    return out


def describe_reconciliation(r: dict[str, Any]) -> str:
    """One line for one entity of ``reconcile``: what does not add up."""
    parts = []
    if r["extracted"] != r["duplicate"] + r["staged"] + r["quarantined"]:
        parts.append(f"extracted {r['extracted']:,} != duplicate {r['duplicate']:,} + staged {r['staged']:,} "
                     f"+ quarantined {r['quarantined']:,}")
    if r["staged"] != r["raw_rows"]:
        parts.append(f"staged {r['staged']:,} but raw.{r['entity']} holds {r['raw_rows']:,} rows of the run's batches")
    if r["quarantined"] != r["quarantine_rows"]:
        parts.append(f"quarantined {r['quarantined']:,} but quarantine.{r['entity']} holds "
                     f"{r['quarantine_rows']:,} rows of the run's batches")
    return f"{r['entity']}: " + ("; ".join(parts) if parts else "ok")


def record_reconciliation(wh: Warehouse, run_id: str) -> list[dict[str, Any]]:
    """``reconcile`` the run and store the result in ``ops.run_entity_counts`` (replacing
    an earlier check of the same run); returns the result."""
    result = reconcile(wh, run_id)
    wh.execute(ENTITY_COUNTS_DDL)
    with wh.transaction():
        wh.execute("delete from ops.run_entity_counts where run_id = ?", (run_id,))
        checked_at = now()
        for r in result:
            wh.execute(
                "insert into ops.run_entity_counts values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, r["entity"], r["batches"], r["extracted"], r["duplicate"], r["staged"],
                 r["quarantined"], r["raw_rows"], r["quarantine_rows"], r["ok"], checked_at),
            )
    return result
