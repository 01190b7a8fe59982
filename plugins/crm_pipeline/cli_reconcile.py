"""``crm reconcile``: compare every key of the source with raw and quarantine now (the
comparison a night makes on its schedule), land what the windows missed, and record
rows deleted at the source as deleted versions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from crm_pipeline import extract, gates, settings
from crm_pipeline.cli_common import UserError, _demo_url, _ended_day, _guard, _home, _parse_date, _warehouse_url, \
    _yesterday, console
from crm_pipeline.connections import SOURCE_CONN_ID, WarehouseConfig
from crm_pipeline.home_lock import HomeBusy, one_run_per_home
from crm_pipeline.warehouse import Warehouse


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
    cfg = WarehouseConfig.from_url(_warehouse_url(home_dir, warehouse))
    if cfg.kind == "duckdb" and not cfg.duckdb_path.exists():
        raise UserError(f"no warehouse at {cfg.duckdb_path}", "run `crm run` first, or pass --home / --warehouse")
    source_url = source or settings.airflow_connection(SOURCE_CONN_ID) or _demo_url(home_dir)
    try:
        with one_run_per_home(home_dir, day), Warehouse(cfg) as wh:
            accounts = extract.account_for_source(wh, source_url, as_of=day, run_id=f"reconcile__{day.isoformat()}",
                                                  gate_settings=gates.GateSettings.from_env(), full=True)
    except HomeBusy as exc:
        raise UserError(str(exc), "wait until the run ends, then reconcile") from None
    for acc in accounts:
        line = (f"{acc.entity}: {acc.reread:,} read again, {acc.landed:,} landed, {acc.quarantined:,} quarantined, "
                f"{acc.deleted:,} deleted at the source, {acc.odd_change_times:,} odd change times")
        console.print(("[green]ok[/] " if acc.ok else "[red]not reconciled[/] ") + line, highlight=False)
    try:
        extract.require_reconciled(accounts)
    except extract.SourceNotReconciled as exc:
        raise UserError(str(exc), "the keys are in ops.source_reconciliation; look at them at the source") from None
    console.print("published is unchanged until the next run builds on what landed")
