"""What ``crm status`` shows: the last runs (the stage a running one is in) and the
freshness of every published table, read from the warehouse or, while a run holds a
DuckDB file, from the snapshot that run keeps next to it.

DuckDB lets one process open a file for writing and no other process open it at all, not
even to read. So every time a run writes its record (its start, each stage's start and
end, its end) it also writes what ``crm status`` would show to ``<warehouse>.status.json``
beside the file (see ``write_snapshot``). ``crm status`` reads the warehouse when it can
and that snapshot when the file is locked. Times, ages and abandoned runs are worked out
when the report is shown, so an old snapshot still tells a dead run from a live one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from crm_pipeline.connections import WarehouseConfig
from crm_pipeline.liveness import abandoned_message, is_abandoned, now
from crm_pipeline.warehouse import Warehouse

SNAPSHOT_RUNS = 20

log = logging.getLogger(__name__)


def _text(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (date, datetime)) else value


def _moment(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def collect(wh: Warehouse, limit: int = 10, control: Warehouse | None = None) -> dict[str, Any]:
    """The run record (in ``control``, default ``wh``: a Spark warehouse keeps it in its
    control file) and the published versions as plain JSON values (no judgement yet)."""
    out: dict[str, Any] = {"runs": [], "tables": [], "recorded_at": now().isoformat()}
    control = control or wh
    if control.table_exists("ops", "pipeline_runs"):
        out["runs"] = _runs(control, limit)
    if wh.table_exists("ops", "published_versions"):
        out["tables"] = newest_versions(wh)
    return out


def _runs(wh: Warehouse, limit: int) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    columns = {c.lower() for c in wh.columns("ops", "pipeline_runs")}
    liveness = "pid, host, coalesce(last_seen_at, started_at)" if "last_seen_at" in columns else "null, null, null"
    keys = ("run_id", "as_of", "started_at", "finished_at", "status", "gate_verdict", "message", "pid", "host",
            "last_seen_at")
    for row in wh.query(
        "select run_id, as_of, started_at, finished_at, status, gate_verdict, message, "
        f"{liveness} from ops.pipeline_runs order by started_at desc limit ?",
        (int(limit),),
    ):
        runs.append({k: _text(v) for k, v in zip(keys, row)})
    running = [r["run_id"] for r in runs if r["status"] == "running"]
    if running and wh.table_exists("ops", "run_stages"):
        marks = ", ".join("?" for _ in running)
        current = {run_id: stage for run_id, stage in wh.query(
            f"select run_id, stage from ops.run_stages where status = 'running' and run_id in ({marks}) "
            "order by started_at", tuple(running))}
        for r in runs:
            r["stage"] = current.get(r["run_id"])
    return runs


def newest_versions(wh: Warehouse) -> list[dict[str, Any]]:
    """Every published table's newest version: its ``as_of``, when and how many rows."""
    tables: list[dict[str, Any]] = []
    for table, mode, as_of, published_at, rows in wh.query(
        "select v.table_name, v.mode, v.as_of, v.published_at, v.rows_published "
        "from ops.published_versions v join ("
        "  select table_name, max(as_of) as as_of from ops.published_versions group by table_name"
        ") newest on v.table_name = newest.table_name and v.as_of = newest.as_of "
        "order by v.table_name, v.published_at desc"
    ):
        if tables and tables[-1]["table"] == table:
            continue
        tables.append({"table": table, "mode": mode, "as_of": str(as_of)[:10],
                       "published_at": _text(published_at), "rows": int(rows)})
    return tables


def present(collected: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
    """The report ``crm status`` prints: seconds per run, abandoned runs named so, ages."""
    at = at or now()
    report: dict[str, Any] = {"recorded_at": collected.get("recorded_at"), "runs": [], "tables": []}
    for r in collected["runs"]:
        started, finished, last_seen = (_moment(r[k]) for k in ("started_at", "finished_at", "last_seen_at"))
        status, message = r["status"], r["message"]
        if is_abandoned(status, r["pid"], r["host"], last_seen, at):
            status, message = "abandoned", abandoned_message(r["pid"], r["host"], last_seen)
        elif status == "running" and r.get("stage"):
            message = f"in stage {r['stage']}" + (f"; {message}" if message else "")
        report["runs"].append({
            "run_id": r["run_id"], "as_of": r["as_of"], "status": status, "gate_verdict": r["gate_verdict"],
            "message": message, "started_at": r["started_at"],
            "seconds": (finished - started).total_seconds() if finished and started else None,
        })
    today = datetime.now(timezone.utc).date()
    for t in collected["tables"]:
        report["tables"].append({**t, "age_days": (today - date.fromisoformat(t["as_of"])).days})
    return report


def status_report(wh: Warehouse, limit: int = 10, control: Warehouse | None = None) -> dict[str, Any]:
    return present(collect(wh, limit, control))


def snapshot_path(config: WarehouseConfig) -> Path | None:
    """Where a DuckDB warehouse's status snapshot lives (a Spark warehouse's: beside its
    control file, with the run record only); None for a server warehouse."""
    config = config.control
    if config.kind != "duckdb" or config.duckdb_path is None:
        return None
    return config.duckdb_path.with_name(config.duckdb_path.name + ".status.json")


def write_snapshot(wh: Warehouse, tables: list[dict[str, Any]] | None = None) -> None:
    """Write what ``crm status`` would read, beside a DuckDB file (atomically).

    A Spark warehouse's control file holds the run record but not the published versions
    (they are in Spark): its publish passes ``tables`` (``newest_versions`` of the Spark
    warehouse), and later snapshots keep them, so that ``crm status`` shows the published
    tables while a night holds the catalog."""
    path = snapshot_path(wh.config)
    if path is None:
        return
    collected = collect(wh, SNAPSHOT_RUNS)
    if tables is not None:
        collected["tables"] = tables
    elif not wh.table_exists("ops", "published_versions") and path.exists():
        with contextlib.suppress(ValueError, KeyError):
            collected["tables"] = json.loads(path.read_text())["tables"]
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(collected, default=str))
    os.replace(temporary, path)


def remember_published(spark_wh: Warehouse) -> None:
    """Put a Spark warehouse's newest published versions into its control file's snapshot
    (``write_snapshot``). A failure is a warning: the publish itself has happened."""
    try:
        with Warehouse(spark_wh.config.control) as control:
            write_snapshot(control, tables=newest_versions(spark_wh))
    except Exception:  # noqa: BLE001 - the snapshot serves crm status; the publish matters more
        log.warning("could not write the published tables into the status snapshot", exc_info=True)


def read_snapshot(config: WarehouseConfig, limit: int = 10) -> dict[str, Any] | None:
    """The last snapshot of a DuckDB warehouse, as ``present`` shows it; None if there is none."""
    path = snapshot_path(config)
    if path is None or not path.exists():
        return None
    collected = json.loads(path.read_text())
    collected["runs"] = collected["runs"][:limit]
    return present(collected)
