"""A night on a Spark warehouse: its control store, and what the models read landed from there into Spark.

On a Spark warehouse (``spark:///folder``) a night keeps its bookkeeping (``raw``,
``quarantine`` and ``ops``, whose rows are updated and deleted in place) in the embedded
DuckDB file ``<folder>/control.duckdb``: plain Parquet tables take no row-level update or
delete (docs/design.md, "A night on Spark"). Extraction, gate 1, the quarantine and the
run record work there exactly as on a DuckDB warehouse. What dbt and gate 2 read is then
landed into the Spark session, each table partitioned by a key, all changed partitions of
a table in one job (Spark's file commit protocol with dynamic partition overwrite: a
killed job leaves the partitions as they were):

* ``raw.<entity>`` by ``_batch_id``: a batch whose row count differs on Spark (new, or
  with suspect rows removed since) is written again; a batch gone from the control file
  is dropped. A re-run lands nothing twice.
* ``ops.pii_salt``, whole (one row: the salt of the hashed keys).
* the CLV step's ``intermediate.clv_fit``, ``clv_predictions`` and ``clv_diagnostics`` by
  ``as_of``: the night's date is written again (the step runs on the control file, reading
  the customer summary dbt built on Spark).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Iterable

from crm_pipeline.spark_session import spark_literal
from crm_pipeline.warehouse import Warehouse, ident

#: the CLV step's tables, landed by ``as_of``
CLV_TABLES = ("clv_fit", "clv_predictions", "clv_diagnostics")


def _literal(value: Any) -> str:
    return spark_literal(value.isoformat() if isinstance(value, date) else str(value))


def _duck_literal(value: Any) -> str:
    text = value.isoformat() if isinstance(value, date) else str(value)
    return "'" + text.replace("'", "''") + "'"


def land_partitions(control: Warehouse, spark_wh: Warehouse, schema: str, table: str, key: str, *,
                    only: Iterable[Any] | None = None) -> int:
    """Make ``schema.table`` on Spark hold the control file's partitions of ``key``: the
    values ``only`` (all that differ in row count when None) written again in one job,
    the values the control file no longer has dropped. Returns the rows written."""
    spark = spark_wh.session
    name = f"{ident(schema)}.{ident(table)}"
    key = ident(key)
    spark.sql(f"create database if not exists {ident(schema)}")
    exists = spark_wh.table_exists(schema, table)
    have = dict(control.query(f"select {key}, count(*) from {name} group by 1"))
    if only is None:
        landed = dict(spark_wh.query(f"select {key}, count(*) from {name} group by 1")) if exists else {}
        changed = [value for value, rows in have.items() if landed.get(value) != rows]
        gone = [value for value in landed if value not in have]
    else:
        changed, gone = [value for value in only if value in have], []
        if exists:
            landed = {value for (value,) in spark_wh.query(f"select distinct {key} from {name}")}
            gone = [value for value in only if value not in have and value in landed]
    written = 0
    if changed or not exists:
        where = f"{key} in ({', '.join(_duck_literal(v) for v in changed)})" if changed else "false"
        frame = spark.createDataFrame(control.query_arrow(f"select * from {name} where {where}"))
        written = sum(have[v] for v in changed)
        if not exists:
            frame.write.format("parquet").partitionBy(key).saveAsTable(name)
        else:
            spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
            frame.select(*spark_wh.columns(schema, table)).write.insertInto(name, overwrite=True)
    for value in gone:
        spark.sql(f"alter table {name} drop if exists partition ({key} = {_literal(value)})")
    if changed or gone:
        spark.sql(f"refresh table {name}")
    return written


def land_whole(control: Warehouse, spark_wh: Warehouse, schema: str, table: str) -> int:
    """``schema.table`` of the control file written to Spark as a whole (a small table)."""
    spark = spark_wh.session
    name = f"{ident(schema)}.{ident(table)}"
    spark.sql(f"create database if not exists {ident(schema)}")
    arrow = control.query_arrow(f"select * from {name}")
    spark.createDataFrame(arrow).write.mode("overwrite").format("parquet").saveAsTable(name)
    return arrow.num_rows


def land_raw(control: Warehouse, spark_wh: Warehouse) -> dict[str, int]:
    """Every raw table and the salt of the hashed keys, as the control file holds them;
    returns the rows written per table."""
    written = {"ops.pii_salt": land_whole(control, spark_wh, "ops", "pii_salt")}
    for table in control.tables("raw"):
        if not table.startswith("_"):
            written[f"raw.{table}"] = land_partitions(control, spark_wh, "raw", table, "_batch_id")
    return written


def land_clv(control: Warehouse, spark_wh: Warehouse, as_of: date) -> dict[str, int]:
    """The CLV step's tables for ``as_of``; returns the rows written per table."""
    return {f"intermediate.{table}": land_partitions(control, spark_wh, "intermediate", table, "as_of", only=[as_of])
            for table in CLV_TABLES if control.table_exists("intermediate", table)}
