"""What ``crm status`` shows: the last runs and the freshness of every published table."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from crm_pipeline import runs
from crm_pipeline.warehouse import Warehouse


def status_report(wh: Warehouse, limit: int = 10) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": [], "tables": []}
    if not wh.table_exists("ops", "pipeline_runs"):
        return out
    columns = {c.lower() for c in wh.columns("ops", "pipeline_runs")}
    liveness = "pid, host, coalesce(last_seen_at, started_at)" if "last_seen_at" in columns else "null, null, null"
    for run_id, as_of, started, finished, status, verdict, message, pid, host, last_seen in wh.query(
        "select run_id, as_of, started_at, finished_at, status, gate_verdict, message, "
        f"{liveness} from ops.pipeline_runs order by started_at desc limit ?",
        (int(limit),),
    ):
        seconds = (finished - started).total_seconds() if finished and started else None
        if runs.is_abandoned(status, pid, host, last_seen):
            status, message = "abandoned", runs.abandoned_message(pid, host, last_seen)
        out["runs"].append({"run_id": run_id, "as_of": as_of, "status": status, "gate_verdict": verdict,
                            "message": message, "started_at": started, "seconds": seconds})
    if wh.table_exists("ops", "published_versions"):
        today = datetime.now(timezone.utc).date()
        for table, mode, as_of, published_at, rows in wh.query(
            "select v.table_name, v.mode, v.as_of, v.published_at, v.rows_published "
            "from ops.published_versions v join ("
            "  select table_name, max(as_of) as as_of from ops.published_versions group by table_name"
            ") newest on v.table_name = newest.table_name and v.as_of = newest.as_of "
            "order by v.table_name, v.published_at desc"
        ):
            if out["tables"] and out["tables"][-1]["table"] == table:
                continue
            d = as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of)[:10])
            out["tables"].append({"table": table, "mode": mode, "as_of": d, "published_at": published_at,
                                  "rows": int(rows), "age_days": (today - d).days})
    return out
