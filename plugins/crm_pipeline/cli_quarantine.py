"""``crm quarantine list|admit|reject``: the rows gate 1 quarantined, their state, and an
analyst's decision on them (who, when, why). Admitted rows land in raw on the next run,
once their customer is known; rejected rows never do."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from crm_pipeline import extract
from crm_pipeline.cli_common import UserError, _guard, _home, _warehouse_url, console
from crm_pipeline.connections import WarehouseConfig
from crm_pipeline.warehouse import Warehouse

quarantine_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                             help="Quarantined rows: list them, admit or reject them with a reason.")

_HOME = typer.Option(None, "--home", help="State folder (default ./.crm).")
_WAREHOUSE = typer.Option(None, "--warehouse", help="Warehouse URL (default: duckdb:///DIR/warehouse.duckdb).")
_DEBUG = typer.Option(False, "--debug", help="Show full tracebacks.")


def _open(home: Optional[Path], warehouse: Optional[str]) -> Warehouse:
    cfg = WarehouseConfig.from_url(_warehouse_url(_home(home), warehouse))
    if cfg.kind == "duckdb" and not cfg.duckdb_path.exists():
        raise UserError(f"no warehouse at {cfg.duckdb_path}", "run `crm run` first, or pass --home / --warehouse")
    return Warehouse(cfg)


@quarantine_app.command("list")
@_guard
def list_rows(
    entity: Optional[str] = typer.Option(None, "--entity", help="Only this entity (orders, customers, …)."),
    state: Optional[str] = typer.Option(None, "--state", help="Only rows in this state: " + ", ".join(extract.STATES)),
    reason: Optional[str] = typer.Option(None, "--reason", help="Only rows whose rule or reason contains this text."),
    limit: int = typer.Option(50, "--limit", help="How many rows to show."),
    home: Optional[Path] = _HOME,
    warehouse: Optional[str] = _WAREHOUSE,
    debug: bool = _DEBUG,
) -> None:
    """List quarantined rows with their state, rule, reason and decision."""
    if state and state not in extract.STATES:
        raise UserError(f"no state {state!r}", f"use one of {', '.join(extract.STATES)}")
    with _open(home, warehouse) as wh:
        try:
            rows = extract.list_rows(wh, entity=entity, state=state, reason=reason, limit=limit)
        except extract.DecisionRefused as exc:
            raise UserError(str(exc), "see `crm quarantine list --help`") from None
        counts = extract.state_counts(wh)
    # a row per line, its reason and the decision beneath it: whole keys and reasons at 80 columns
    console.print(f"[bold]quarantined rows[/] ({len(rows):,} shown)")
    for r in rows:
        console.print(f"{r['entity']} [bold]{escape(str(r['key']))}[/]  {r['state'] or '-'}  {r['rule'] or '-'}  "
                      f"as_of {r['as_of']}", highlight=False)
        console.print(f"  reason: {escape(r['reason'] or '-')}", highlight=False)
        if r["decided_by"]:
            console.print(f"  {r['state']} by {escape(r['decided_by'])} at {str(r['decided_at'])[:16]}: "
                          f"{escape(r['decision_reason'] or '-')}", highlight=False)
    for name, per_state in counts.items():
        if entity is None or name == entity:
            console.print(f"{name}: " + ", ".join(f"{count:,} {st}" for st, count in per_state.items()))


def _decide(state: str, entity: str, keys: List[str], reason: str, by: Optional[str], force: bool,
            home: Optional[Path], warehouse: Optional[str]) -> int:
    who = by or getpass.getuser()
    with _open(home, warehouse) as wh:
        try:
            return extract.decide(wh, entity, keys, state, reason=reason, by=who, force=force)
        except extract.DecisionRefused as exc:
            raise UserError(str(exc), "see `crm quarantine list --state waiting`") from None


@quarantine_app.command("admit")
@_guard
def admit(
    keys: List[str] = typer.Argument(..., help="Keys of the waiting rows to admit."),
    entity: str = typer.Option("orders", "--entity", help="The entity of the keys."),
    reason: str = typer.Option(..., "--reason", help="Why the rows are admitted (recorded)."),
    by: Optional[str] = typer.Option(None, "--by", help="Who decides (default: the OS user)."),
    force: bool = typer.Option(False, "--force", help="Admit rows that still break a value rule, as they are."),
    home: Optional[Path] = _HOME,
    warehouse: Optional[str] = _WAREHOUSE,
    debug: bool = _DEBUG,
) -> None:
    """Admit waiting rows: they land in raw on the next run, once their customer is known."""
    count = _decide(extract.ADMITTED, entity, keys, reason, by, force, home, warehouse)
    console.print(f"admitted {count:,} row(s) of {entity} ({', '.join(keys)}); they land in raw on the next run, "
                  "once their customer is known")


@quarantine_app.command("reject")
@_guard
def reject(
    keys: List[str] = typer.Argument(..., help="Keys of the waiting rows to reject."),
    entity: str = typer.Option("orders", "--entity", help="The entity of the keys."),
    reason: str = typer.Option(..., "--reason", help="Why the rows are rejected (recorded)."),
    by: Optional[str] = typer.Option(None, "--by", help="Who decides (default: the OS user)."),
    home: Optional[Path] = _HOME,
    warehouse: Optional[str] = _WAREHOUSE,
    debug: bool = _DEBUG,
) -> None:
    """Reject waiting rows: they stay in quarantine and are never admitted."""
    count = _decide(extract.REJECTED, entity, keys, reason, by, False, home, warehouse)
    console.print(f"rejected {count:,} row(s) of {entity} ({', '.join(keys)})")
