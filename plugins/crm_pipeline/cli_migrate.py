"""``crm migrate``: apply the project's pending migrations of published history tables
(``migrations.py``), once, before the first night of a new version."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from crm_pipeline import migrations
from crm_pipeline.cli_common import _guard, _home, console, locked_warehouse, warehouse_config


@_guard
def migrate(
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm)."),
    warehouse: Optional[str] = typer.Option(None, "--warehouse", help="Warehouse URL (default: duckdb:///DIR/warehouse.duckdb)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the pending migrations, change nothing."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Bring published history tables to the shape this version publishes."""
    home_dir = _home(home)
    cfg, exists = warehouse_config(home_dir, warehouse)
    if not exists:
        console.print("nothing to migrate: no warehouse yet (the first run creates every table in its current shape)")
        return
    with locked_warehouse(home_dir, cfg, busy_hint="wait until the run ends, then migrate") as wh:
        if dry_run:
            todo = migrations.pending(wh)
            for m in todo:
                console.print(f"pending {m.id}: {m.description} (published.{m.table})", highlight=False)
            if not todo:
                console.print("nothing to migrate", highlight=False)
            return
        applied = migrations.apply_pending(wh)
    if not applied:
        console.print("nothing to migrate", highlight=False)
    for a in applied:
        what = (f"added {', '.join(a.added)} to published.{a.migration.table} (NULL on earlier slices)" if a.added
                else f"published.{a.migration.table} needed no change")
        console.print(f"applied {a.migration.id}: {what}", highlight=False)
