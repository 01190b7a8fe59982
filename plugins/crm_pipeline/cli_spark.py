"""``crm spark build``: a DuckDB night's marts built again on a local Apache Spark session.

Loads the raw tables, the PII salt and the CLV step's tables of a DuckDB warehouse into the
local Spark session under ``<home>/spark`` (:mod:`crm_pipeline.spark_session`) and runs
``dbt build`` there (target ``spark``) for the warehouse's last date or ``--as-of``: every
seed, model, unit and data test, as a night's two dbt stages do. Nothing is published; the
marts are Parquet tables under ``<home>/spark/tables/audit.db``. It is how to try the
project on Spark (the extra ``spark``) before the pipeline extracts into Spark itself.
Exit code 1 when a node fails, with one line per failure.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Optional

import typer

from crm_pipeline import spark_session
from crm_pipeline.cli_common import UserError, _guard, _home, _parse_date, console, existing_warehouse, locked_warehouse
from crm_pipeline.dbt_invoke import dbt_environment, summarise_results
from crm_pipeline.settings import DBT_PROJECT_DIR
from crm_pipeline.warehouse import Warehouse

spark_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                        help="The dbt project on a local Apache Spark session (the extra 'spark').")

#: what the marts read besides raw: the salt of the hashed keys and the CLV step's tables
NON_RAW_INPUTS = (("ops", "pii_salt"), ("intermediate", "clv_fit"), ("intermediate", "clv_predictions"),
                  ("intermediate", "clv_diagnostics"))


def _last_built(wh: Warehouse) -> date | None:
    if not wh.table_exists("intermediate", "clv_fit"):
        return None
    value = wh.scalar("select max(as_of) from intermediate.clv_fit")
    return None if value is None else date.fromisoformat(str(value)[:10])


def _open_session(spark_dir: Path):
    try:
        return spark_session.open_session(spark_dir)
    except RuntimeError as exc:  # the extra is missing
        raise UserError(str(exc), "the default install has no Spark") from None
    except Exception as exc:  # pyspark could not start its JVM
        if "JAVA" in str(exc).upper():
            raise UserError("Spark could not start Java", "install Java 17 (Debian: default-jre-headless)") from None
        raise


@spark_app.command("build")
@_guard
def build(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Date to build, YYYY-MM-DD (default: the last date the warehouse was built for)."),
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm); the session's tables go to HOME/spark."),
    warehouse: Optional[str] = typer.Option(None, "--warehouse", help="The DuckDB warehouse to read (default: HOME/warehouse.duckdb)."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Load a DuckDB night's inputs into a local Spark session and build the marts there."""
    home = _home(home)
    cfg = existing_warehouse(home, warehouse)
    if cfg.kind != "duckdb":
        raise UserError("crm spark build reads a DuckDB warehouse", "pass --warehouse duckdb:///path/warehouse.duckdb")
    spark_dir = home / "spark"
    with locked_warehouse(home, cfg) as wh:
        day = _parse_date(as_of, "--as-of") or _last_built(wh)
        if day is None:
            raise UserError("the warehouse has no night to build from", "run `crm run` first")
        raw = [("raw", table) for table in wh.tables("raw") if not table.startswith("_")]
        missing = [f"{s}.{t}" for s, t in NON_RAW_INPUTS if not wh.table_exists(s, t)]
        if not raw or missing:
            raise UserError(f"the warehouse lacks {', '.join(missing) or 'raw tables'}", "run `crm run` first")
        spark = _open_session(spark_dir)
        loaded = spark_session.load_arrow_tables(
            spark, ((s, t, wh.query_arrow(f"select * from {s}.{t}")) for s, t in raw + list(NON_RAW_INPUTS)))
    console.print(f"loaded into Spark: {', '.join(f'{name} {rows:,}' for name, rows in loaded.items())}")

    from dbt.cli.main import dbtRunner

    target_dir = spark_dir / "dbt-target"
    env = {"CRM_DBT_TARGET": "spark", spark_session.SPARK_DIR_VARIABLE: str(spark_dir), "CRM_AS_OF": day.isoformat()}
    with dbt_environment(env):
        result = dbtRunner().invoke([
            "build", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target", "spark", "--target-path", str(target_dir), "--log-path", str(target_dir / "logs"),
            "--vars", f"{{as_of: '{day.isoformat()}'}}", "--quiet",
        ])
    counts, failures = summarise_results(result)
    console.print(f"dbt build on Spark for {day}: "
                  + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    for line in failures:
        console.print(f"  [red]{line}[/]")
    if result.exception is not None:
        raise UserError(f"dbt could not build on Spark: {result.exception}", f"see {target_dir / 'logs'}")
    if failures or not result.success:
        raise typer.Exit(1)
    console.print(f"marts: {spark_dir / 'tables' / 'audit.db'} (Parquet; schema audit of the session)")
