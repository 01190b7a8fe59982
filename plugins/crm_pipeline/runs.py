"""The run record: ``ops.pipeline_runs`` and ``ops.run_stages``.

Every run leaves one row in ``ops.pipeline_runs`` (its verdict and message) and one row
per stage in ``ops.run_stages`` (seconds and a JSON of counts), next to the per-entity
batch counts in ``ops.extract_batches``. Together they prove, for every entity, that
rows extracted = duplicates skipped + rows staged in raw + rows quarantined.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from typing import Any

from crm_pipeline.warehouse import Warehouse

RUNS_DDL = (
    """create table if not exists ops.pipeline_runs (
        run_id varchar, as_of date, started_at timestamp, finished_at timestamp,
        status varchar, gate_verdict varchar, message varchar, warehouse varchar, docs varchar)""",
    """create table if not exists ops.run_stages (
        run_id varchar, stage varchar, status varchar, started_at timestamp,
        seconds double precision, details varchar)""",
)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def ensure(wh: Warehouse) -> None:
    wh.ensure_schemas()
    for ddl in RUNS_DDL:
        wh.execute(ddl)


def start_run(wh: Warehouse, run_id: str, as_of: date, warehouse_display: str) -> None:
    ensure(wh)
    with wh.transaction():
        wh.execute("delete from ops.pipeline_runs where run_id = ?", (run_id,))
        wh.execute("delete from ops.run_stages where run_id = ?", (run_id,))
        wh.execute(
            "insert into ops.pipeline_runs values (?, ?, ?, null, 'running', null, null, ?, null)",
            (run_id, as_of, _now(), warehouse_display),
        )


def record_stage(wh: Warehouse, run_id: str, stage: str, status: str, started_at: datetime,
                 seconds: float, details: dict[str, Any] | None = None) -> None:
    ensure(wh)
    with wh.transaction():
        wh.execute("delete from ops.run_stages where run_id = ? and stage = ?", (run_id, stage))
        wh.execute(
            "insert into ops.run_stages values (?, ?, ?, ?, ?, ?)",
            (run_id, stage, status, started_at, round(seconds, 3), json.dumps(details or {}, default=str)),
        )


def finish_run(wh: Warehouse, run_id: str, status: str, gate_verdict: str | None,
               message: str | None, docs: str | None = None) -> None:
    ensure(wh)
    wh.execute(
        "update ops.pipeline_runs set finished_at = ?, status = ?, gate_verdict = coalesce(?, gate_verdict), "
        "message = ?, docs = coalesce(?, docs) where run_id = ?",
        (_now(), status, gate_verdict, (message or "")[:2000], docs, run_id),
    )


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
    if wh.table_exists("ops", "extract_batches"):
        out["entities"] = [
            dict(zip(("entity", "extracted", "duplicate", "staged", "quarantined"), r))
            for r in wh.query(
                "select entity, rows_extracted, rows_duplicate, rows_staged, rows_quarantined "
                "from ops.extract_batches where run_id = ? order by entity",
                (run_id,),
            )
        ]
    if wh.table_exists("ops", "published_versions"):
        out["published"] = [
            dict(zip(("table", "mode", "rows"), r))
            for r in wh.query(
                "select table_name, mode, rows_published from ops.published_versions where run_id = ? "
                "order by table_name",
                (run_id,),
            )
        ]
    return out
