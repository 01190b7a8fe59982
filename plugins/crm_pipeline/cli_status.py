"""``crm status``: the last runs, their verdicts, and how fresh each published table is."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from crm_pipeline import status as run_status
from crm_pipeline.cli_common import UserError, _guard, _home, _warehouse_url, console
from crm_pipeline.connections import WarehouseConfig
from crm_pipeline.warehouse import Warehouse


@_guard
def status(
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm)."),
    warehouse: Optional[str] = typer.Option(None, "--warehouse", help="Warehouse URL (default: duckdb:///DIR/warehouse.duckdb)."),
    limit: int = typer.Option(10, "--limit", help="How many recent runs to show."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Show the last runs, their verdicts, and the freshness of each published table."""
    home_dir = _home(home)
    url = _warehouse_url(home_dir, warehouse)
    cfg = WarehouseConfig.from_url(url)
    if cfg.kind == "duckdb" and not cfg.duckdb_path.exists():
        raise UserError(f"no warehouse at {cfg.duckdb_path}", "run `crm run` first, or pass --home / --warehouse")
    with Warehouse(cfg, read_only=cfg.kind == "duckdb") as wh:
        report = run_status.status_report(wh, limit=limit)
    t = Table(title="recent runs")
    for col in ("run", "as_of", "status", "gate", "started", "seconds", "message"):
        t.add_column(col)
    for r in report["runs"]:
        t.add_row(r["run_id"][-32:], str(r["as_of"]), r["status"], str(r["gate_verdict"] or "-"),
                  str(r["started_at"])[:19], f"{r['seconds']:.0f}" if r["seconds"] is not None else "-",
                  (r["message"] or "")[:70])
    console.print(t)
    t = Table(title="published tables")
    for col in ("table", "mode", "newest as_of", "published at", "rows", "age (days)"):
        t.add_column(col)
    for p in report["tables"]:
        t.add_row(p["table"], p["mode"], str(p["as_of"]), str(p["published_at"])[:19], f"{p['rows']:,}",
                  str(p["age_days"]))
    console.print(t)
