"""``crm spark publish``: gate and publish again the marts a night built on a Spark warehouse.

A night on Spark (``crm run --warehouse spark:///folder``, the extra ``spark``) builds,
gates and publishes by itself. This command gates the marts the last night left in the
session's ``audit`` schema and publishes them as a new version
(:mod:`crm_pipeline.publish_spark`): for a publish that failed after the gate, or to
check what a reader sees during a switch. Exit code 1 when the gate refuses, with one line
per failure; nothing is published then.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from crm_pipeline import gates, spark_session
from crm_pipeline.cli_common import UserError, _guard, _home, _parse_date, console, usable_spark_dir
from crm_pipeline.connections import WarehouseConfig
from crm_pipeline.publish_spark import publish_spark
from crm_pipeline.warehouse import Warehouse

spark_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                        help="A Spark warehouse's marts (the extra 'spark').")


def spark_warehouse(spark_dir: Path) -> Warehouse:
    """The Spark warehouse under ``spark_dir``, on the process's session (one-line errors
    when the extra or Java is missing)."""
    usable_spark_dir(spark_dir)
    try:
        spark_session.open_session(spark_dir)
    except Exception as exc:  # pyspark could not start its JVM
        if "JAVA" in str(exc).upper():
            raise UserError("Spark could not start Java", "install Java 17 (Debian: default-jre-headless)") from None
        raise
    return Warehouse(WarehouseConfig(kind="spark", spark_dir=spark_dir))


@spark_app.command("publish")
@_guard
def publish_command(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="The date the marts were built for, YYYY-MM-DD (default: theirs)."),
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm)."),
    warehouse: Optional[str] = typer.Option(None, "--warehouse", help="The Spark warehouse, spark:///path (default: spark:///HOME/spark)."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Gate the marts of the last night on a Spark warehouse and publish them again (a new version)."""
    home = _home(home)
    if warehouse is not None and not warehouse.startswith("spark:///"):
        raise UserError(f"{warehouse!r} is not a Spark warehouse", "pass --warehouse spark:///path/spark-folder")
    spark_dir = WarehouseConfig.from_url(warehouse).spark_dir if warehouse else home / "spark"
    if not (spark_dir / "metastore").exists():
        raise UserError(f"no Spark warehouse at {spark_dir}", "run `crm run --warehouse spark:///…` first")
    with spark_warehouse(spark_dir) as swh:
        if not swh.table_exists("audit", "customer_segments"):
            raise UserError(f"the Spark warehouse at {spark_dir} has no marts", "run `crm run --warehouse spark:///…` first")
        day = _parse_date(as_of, "--as-of") or swh.scalar("select max(as_of) from audit.customer_segments")
        if day is None:
            raise UserError("the Spark marts are empty", "run `crm run --warehouse spark:///…` first")
        _gate_and_publish(swh, home, day)


def _gate_and_publish(swh: Warehouse, home: Path, day: date) -> None:
    """Gate 2 on the Spark marts, then publish them; a refusal publishes nothing."""
    run_id = f"spark_publish__{day.isoformat()}T{datetime.now(timezone.utc):%H:%M:%S}"
    started = time.perf_counter()
    verdict = gates.gate2_audit(swh, as_of=day, docs_dir=home / "docs" / "gx", settings=gates.GateSettings.from_env())
    for warning in verdict.warnings:
        console.print(f"  [yellow]{warning}[/]")
    if not verdict.passed:
        for line in verdict.failures:
            console.print(f"  [red]{line}[/]")
        raise UserError("gate 2 refused the Spark marts; nothing was published", "see the lines above")
    gate_seconds = time.perf_counter() - started
    result = publish_spark(swh, day, run_id)
    skipped = f" ({len(result.skipped_current)} current tables kept: a newer date is published)" \
        if result.skipped_current else ""
    console.print(f"gate 2 passed in {gate_seconds:.1f} s; published on Spark for {day}: "
                  f"{len(result.tables)} tables, version {result.version}{skipped} in {result.seconds:.1f} s")
    console.print(f"read: crm status --warehouse spark://{swh.config.spark_dir}")
