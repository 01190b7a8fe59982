"""``crm status``: the last runs, their verdicts, and how fresh each published table is;
fits an 80-column terminal and prints JSON with ``--json``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Optional

import duckdb
import typer
from rich.markup import escape
from rich.table import Table

from crm_pipeline import spark_session, warm_client
from crm_pipeline import status as run_status
from crm_pipeline.cli_common import UserError, _guard, _home, _warehouse_url, console
from crm_pipeline.connections import WarehouseConfig
from crm_pipeline.warehouse import Warehouse

#: lines of a run's message shown under it; the whole message is in --json
MESSAGE_LINES = 3
COLOURS = {"success": "green", "failed": "red", "abandoned": "yellow", "running": "cyan"}


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _report(cfg: WarehouseConfig, limit: int) -> tuple[dict, bool]:
    """The report and whether it comes from a busy DuckDB file's snapshot."""
    try:
        if cfg.kind == "spark" and cfg.control.duckdb_path.exists():  # its run record: the control file
            with Warehouse(cfg) as wh, Warehouse(cfg.control, read_only=True) as control:
                return run_status.status_report(wh, limit=limit, control=control), False
        with Warehouse(cfg, read_only=cfg.kind == "duckdb") as wh:
            return run_status.status_report(wh, limit=limit), False
    except spark_session.CatalogInUse as exc:  # a night or a publish on that Spark warehouse
        report = run_status.read_snapshot(cfg, limit)
        if report is None:
            raise UserError(str(exc), "wait until it ends, then run `crm status` again") from None
        return report, True
    except RuntimeError as exc:  # a Spark warehouse without the extra 'spark'
        if cfg.kind == "spark":
            raise UserError(str(exc), "the default install has no Spark") from None
        raise
    except Exception as exc:  # noqa: BLE001 - only a held lock is answered here
        if not _is_locked(exc):
            raise
    report = run_status.read_snapshot(cfg, limit)
    if report is None:
        raise UserError(f"the warehouse {cfg.display} is held by another process and no run has recorded "
                        "its state beside it yet", "wait until that process ends, then run `crm status` again")
    return report, True


def _print_runs(report: dict, width: int) -> None:
    console.print("[bold]recent runs[/]")
    if not report["runs"]:
        console.print("  none yet")
    for r in report["runs"]:
        colour = COLOURS.get(r["status"], "white")
        seconds = f"{r['seconds']:.0f} s" if r["seconds"] is not None else "-"
        console.print(f"{r['as_of']}  [{colour}]{r['status']:<9}[/] gate {str(r['gate_verdict'] or '-'):<8} "
                      f"started {str(r['started_at'])[:16].replace('T', ' ')}  {seconds}", highlight=False)
        console.print(f"  [dim]{escape(r['run_id'])}[/]", highlight=False, soft_wrap=True)
        lines = textwrap.wrap(r["message"] or "", width=max(width - 4, 20))
        for line in lines[:MESSAGE_LINES]:
            console.print(f"  {escape(line)}", highlight=False)
        if len(lines) > MESSAGE_LINES:
            console.print("  [dim]… (the whole message: crm status --json)[/]")


def _print_tables(report: dict) -> None:
    # one space between columns: the longest table name, a date, a minute and 9,999,999 rows
    # fit 80 columns whole
    t = Table(title="published tables", title_justify="left", box=None, pad_edge=False, padding=(0, 0, 0, 1),
              title_style="bold", header_style="bold underline")
    for col, justify in (("table", "left"), ("mode", "left"), ("as_of", "left"), ("published at", "left"),
                         ("rows", "right"), ("age (d)", "right")):
        t.add_column(col, justify=justify, no_wrap=True)
    for p in report["tables"]:
        t.add_row(p["table"], p["mode"], str(p["as_of"]), str(p["published_at"])[:16].replace("T", " "),
                  f"{p['rows']:,}", str(p["age_days"]))
    console.print(t)


@_guard
def status(
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm)."),
    warehouse: Optional[str] = typer.Option(None, "--warehouse", help="Warehouse URL (default: duckdb:///DIR/warehouse.duckdb)."),
    limit: int = typer.Option(10, "--limit", help="How many recent runs to show."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (whole messages, for scripts)."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Show the last runs, their verdicts, and the freshness of each published table."""
    home_dir = _home(home)
    cfg = WarehouseConfig.from_url(_warehouse_url(home_dir, warehouse))
    if cfg.kind == "duckdb" and not cfg.duckdb_path.exists():
        raise UserError(f"no warehouse at {cfg.duckdb_path}", "run `crm run` first, or pass --home / --warehouse")
    if cfg.kind == "spark" and not (cfg.spark_dir / "metastore").exists():
        raise UserError(f"no Spark warehouse at {cfg.spark_dir}", "run `crm run --warehouse spark:///…` first, or pass another --warehouse")
    report, from_snapshot = _report(cfg, limit)
    server = warm_client.ask(home_dir, {"ping": True})  # the home's warm server (`crm serve`), if one runs
    if as_json:
        typer.echo(json.dumps({**report, "from_snapshot": from_snapshot, "warm_server": server}, indent=2,
                              default=str))
        return
    if from_snapshot:
        console.print(f"[yellow]the warehouse is held by a run in progress[/]: showing what it recorded at "
                      f"{str(report['recorded_at'])[:19].replace('T', ' ')} UTC", highlight=False)
    _print_runs(report, console.width)
    _print_tables(report)
    if server:
        busy = ", running a night" if server.get("busy") else ""
        console.print(f"warm server: PID {server.get('pid')}, since {str(server.get('since'))[:19].replace('T', ' ')} "
                      f"UTC, {server.get('nights')} night(s) served{busy} (`crm serve`)", highlight=False)

