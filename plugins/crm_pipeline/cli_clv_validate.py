"""``crm clv validate``: check the lifetime-value model on a holdout of the warehouse's data.

Fits BG/NBD and Gamma-Gamma on the purchases up to ``as_of`` − N weeks and compares the
predicted repeat purchases and spend of the last N weeks with what the customers did
(:mod:`crm_pipeline.clv_validation`), prints the calibration table and records it in the
warehouse; the nights of ``CRM_CLV_VALIDATE_DAY`` do the same and publish it as
``clv_model_diagnostics``. Exit code 2 when the calibration period gives no usable fit.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Optional

import typer

from crm_pipeline import clv_validation
from crm_pipeline.cli_common import UserError, _guard, _home, _parse_date, console, existing_warehouse, locked_warehouse
from crm_pipeline.warehouse import Warehouse


def _built_as_of(wh: Warehouse) -> date | None:
    if not wh.table_exists("intermediate", "int_customer_order_summary"):
        return None
    value = wh.scalar("select max(as_of) from intermediate.int_customer_order_summary")
    return None if value is None else date.fromisoformat(str(value)[:10])


@_guard
def validate(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="End of the holdout, YYYY-MM-DD (default: the date the warehouse was last built for)."),
    holdout_weeks: Optional[int] = typer.Option(None, "--holdout-weeks", min=1, help="Weeks held out (default CRM_CLV_HOLDOUT_WEEKS, 26)."),
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm)."),
    warehouse: Optional[str] = typer.Option(None, "--warehouse", help="Warehouse URL (default: duckdb:///DIR/warehouse.duckdb)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary and the table as JSON."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Check the CLV model: fit without the last weeks, compare with what happened in them."""
    home_dir = _home(home)
    cfg = existing_warehouse(home_dir, warehouse)
    wanted = _parse_date(as_of, "--as-of")
    with locked_warehouse(home_dir, cfg) as wh:
        built = _built_as_of(wh)
        if built is None:
            raise UserError("the warehouse has no built orders", "run `crm run` first")
        day = wanted or built
        if day > built:
            raise UserError(f"--as-of {day} is after the date the warehouse was built for ({built})",
                            f"run `crm run --as-of {day}` first")
        summary = clv_validation.run(wh, day, "crm-clv-validate", holdout_weeks)
        table = clv_validation.read_table(wh, day)
    columns = ["frequency_group", "customers", "actual_purchases_mean", "predicted_purchases_mean", "purchases_mae",
               "spend_customers", "actual_spend_mean", "predicted_spend_mean"]
    if as_json:
        rows = json.loads(table[columns].to_json(orient="records"))
        typer.echo(json.dumps({"as_of": day.isoformat(), **summary, "groups": rows}, indent=2))
    else:
        console.print(f"CLV holdout check as of {day}: calibration to {summary['calibration_end']}, "
                      f"{summary['holdout_weeks']} weeks held out, {summary['customers']} customers: "
                      f"{summary['status']}", highlight=False)
        if summary["status"] == "ok":
            typer.echo(table[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if summary["status"] != "ok":
        console.print(f"no usable fit on the calibration period: {summary.get('message', '')}", highlight=False)
        raise typer.Exit(2)
