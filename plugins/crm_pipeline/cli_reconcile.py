"""``crm reconcile``: compare every key of the source with raw and quarantine now (the
comparison a night makes on its schedule), land what the windows missed, and record
rows deleted at the source as deleted versions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from crm_pipeline import extract, gates, settings
from crm_pipeline.cli_common import UserError, _demo_url, _ended_day, _guard, _home, _parse_date, _yesterday, console, \
    existing_warehouse, locked_warehouse
from crm_pipeline.connections import SOURCE_CONN_ID


@_guard
def reconcile(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="The night to account for (default: yesterday)."),
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm)."),
    source: Optional[str] = typer.Option(None, "--source", help="Source SQLAlchemy URL (default: the demo SQLite source)."),
    warehouse: Optional[str] = typer.Option(None, "--warehouse", help="Warehouse URL (default: duckdb:///DIR/warehouse.duckdb)."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Compare every source key with the warehouse: land missed rows, record hard deletes."""
    day = _ended_day(_parse_date(as_of, "--as-of") or _yesterday(), "--as-of")
    home_dir = _home(home)
    cfg = existing_warehouse(home_dir, warehouse)
    source_url = source or settings.airflow_connection(SOURCE_CONN_ID) or _demo_url(home_dir)
    with locked_warehouse(home_dir, cfg, day, busy_hint="wait until the run ends, then reconcile") as wh:
        accounts = extract.account_for_source(wh, source_url, as_of=day, run_id=f"reconcile__{day.isoformat()}",
                                              gate_settings=gates.GateSettings.from_env(), full=True)
    for acc in accounts:
        line = (f"{acc.entity}: {acc.reread:,} read again, {acc.landed:,} landed, {acc.quarantined:,} quarantined, "
                f"{acc.deleted:,} deleted at the source, {acc.odd_change_times:,} odd change times")
        console.print(("[green]ok[/] " if acc.ok else "[red]not reconciled[/] ") + line, highlight=False)
    try:
        extract.require_reconciled(accounts)
    except extract.SourceNotReconciled as exc:
        raise UserError(str(exc), "the keys are in ops.source_reconciliation; look at them at the source") from None
    console.print("published is unchanged until the next run builds on what landed")
