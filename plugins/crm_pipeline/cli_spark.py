"""``crm spark build``: a DuckDB night's marts built, gated and published on a local Apache
Spark session.

Loads the raw tables, the PII salt and the CLV step's tables of a DuckDB warehouse into the
local Spark session under ``<home>/spark`` (:mod:`crm_pipeline.spark_session`) and runs
``dbt build`` there (target ``spark``) for the warehouse's last date or ``--as-of``: every
seed, model and data test, as a night's two dbt stages do (unit tests too with
``CRM_DBT_UNIT_TESTS=1``). Gate 2 then checks the
Spark marts as on every warehouse, and :mod:`crm_pipeline.publish_spark` publishes them
(``--no-publish`` stops after the build). It is how to run the project on Spark (the extra
``spark``) before the pipeline extracts into Spark itself. Exit code 1 when a node fails or
the gate refuses, with one line per failure; nothing is published then.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from crm_pipeline import gates, settings, spark_session
from crm_pipeline.cli_common import UserError, _guard, _home, _parse_date, console, existing_warehouse, locked_warehouse
from crm_pipeline.connections import WarehouseConfig
from crm_pipeline.dbt_invoke import dbt_environment, summarise_results
from crm_pipeline.publish_spark import publish_spark
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
    publish: bool = typer.Option(True, "--publish/--no-publish", help="Gate and publish the Spark marts (default) or stop after the build."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write each stage's seconds and rows to this JSON file (crm bench reads it)."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Load a DuckDB night's inputs into a local Spark session, build the marts there, gate and publish them."""
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
        started = time.perf_counter()
        spark = _open_session(spark_dir)
        loaded = spark_session.load_arrow_tables(
            spark, ((s, t, wh.query_arrow(f"select * from {s}.{t}")) for s, t in raw + list(NON_RAW_INPUTS)))
    stages = {"load": {"seconds": round(time.perf_counter() - started, 3), "rows": sum(loaded.values())}}
    console.print(f"loaded into Spark in {stages['load']['seconds']:.1f} s: "
                  f"{', '.join(f'{name} {rows:,}' for name, rows in loaded.items())}")
    started = time.perf_counter()

    from dbt.cli.main import dbtRunner

    target_dir = spark_dir / "dbt-target"
    env = {"CRM_DBT_TARGET": "spark", spark_session.SPARK_DIR_VARIABLE: str(spark_dir), "CRM_AS_OF": day.isoformat()}
    # unit tests as in a night: left out unless CRM_DBT_UNIT_TESTS=1 (their rows assume the
    # project's default as_of)
    unit_tests = [] if settings.dbt_unit_tests() else ["--exclude-resource-type", "unit_test"]
    with dbt_environment(env):
        result = dbtRunner().invoke([
            "build", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target", "spark", "--target-path", str(target_dir), "--log-path", str(target_dir / "logs"),
            "--vars", f"{{as_of: '{day.isoformat()}'}}", "--quiet", *unit_tests,
        ])
    counts, failures = summarise_results(result)
    stages["dbt_build"] = {"seconds": round(time.perf_counter() - started, 3), "rows": sum(counts.values())}
    console.print(f"dbt build on Spark for {day}: "
                  + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
                  + f" in {stages['dbt_build']['seconds']:.1f} s")
    for line in failures:
        console.print(f"  [red]{line}[/]")
    if result.exception is not None:
        raise UserError(f"dbt could not build on Spark: {result.exception}", f"see {target_dir / 'logs'}")
    if failures or not result.success:
        raise typer.Exit(1)
    if not publish:
        console.print(f"marts: {spark_dir / 'tables' / 'audit.db'} (Parquet; schema audit of the session)")
    else:
        stages.update(_gate_and_publish(spark_dir, day))
    if json_path is not None:
        json_path.write_text(json.dumps({"as_of": day.isoformat(), "stages": stages}, indent=2))


@spark_app.command("publish")
@_guard
def publish_command(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="The date the marts were built for, YYYY-MM-DD (default: theirs)."),
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm); the session's tables are in HOME/spark."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Gate and publish the marts `crm spark build --no-publish` built (again: a new version)."""
    spark_dir = _home(home) / "spark"
    if not (spark_dir / "metastore").exists():
        raise UserError(f"no Spark warehouse at {spark_dir}", "run `crm spark build` first")
    _open_session(spark_dir)
    with Warehouse(WarehouseConfig(kind="spark", spark_dir=spark_dir)) as swh:
        if not swh.table_exists("audit", "customer_segments"):
            raise UserError(f"the Spark warehouse at {spark_dir} has no marts", "run `crm spark build` first")
        built = swh.scalar("select max(as_of) from audit.customer_segments")
    day = _parse_date(as_of, "--as-of") or built
    if day is None:
        raise UserError("the Spark marts are empty", "run `crm spark build` first")
    _gate_and_publish(spark_dir, day if isinstance(day, date) else date.fromisoformat(str(day)[:10]))


def _gate_and_publish(spark_dir: Path, day: date) -> dict[str, dict]:
    """Gate 2 on the Spark marts, then publish them; a refusal publishes nothing. Returns
    the seconds and rows of both stages."""
    run_id = f"spark_build__{day.isoformat()}T{datetime.now(timezone.utc):%H:%M:%S}"
    started = time.perf_counter()
    with Warehouse(WarehouseConfig(kind="spark", spark_dir=spark_dir)) as swh:
        verdict = gates.gate2_audit(swh, as_of=day, docs_dir=spark_dir / "docs" / "gx",
                                    settings=gates.GateSettings.from_env())
        for warning in verdict.warnings:
            console.print(f"  [yellow]{warning}[/]")
        if not verdict.passed:
            for line in verdict.failures:
                console.print(f"  [red]{line}[/]")
            raise UserError("gate 2 refused the Spark marts; nothing was published", "see the lines above")
        gate_seconds = time.perf_counter() - started
        result = publish_spark(swh, day, run_id)
        version = swh.scalar("select max(version) from ops.published_versions where run_id = ?", (run_id,))
    skipped = f" ({len(result.skipped_current)} current tables kept: a newer date is published)" \
        if result.skipped_current else ""
    console.print(f"gate 2 passed in {gate_seconds:.1f} s; published on Spark for {day}: "
                  f"{len(result.tables)} tables, version {version}{skipped} in {result.seconds:.1f} s")
    console.print(f"read: crm status --warehouse spark://{spark_dir}")
    return {"gate": {"seconds": round(gate_seconds, 3), "rows": None},
            "publish": {"seconds": result.seconds, "rows": sum(result.tables.values())}}
