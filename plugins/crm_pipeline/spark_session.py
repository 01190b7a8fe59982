"""The local Spark session of a Spark warehouse: its settings, and its SQL and catalog behind
DuckDB's connection calls (``SparkSql``, what ``Warehouse`` uses).

A local session (pyspark's bundled Spark, ``local[*]``) keeps its tables as Parquet under
``<spark dir>/tables`` and its catalog in an embedded Derby metastore under
``<spark dir>/metastore``, so that a second process (the next task of a night, or dbt)
finds the tables the first one wrote. dbt's profile (``dbt_project/profiles.yml``, target
``spark``) passes the same settings to dbt-spark's session; a test keeps the two equal.

pyspark is the optional extra ``spark``: this module imports it only when a session is
opened, and says how to install it when it is missing.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

#: dbt-spark's session settings in profiles.yml name the folder by this variable
SPARK_DIR_VARIABLE = "CRM_SPARK_DIR"


def session_conf(spark_dir: Path) -> dict[str, str]:
    """The settings of the local session whose tables and catalog live under ``spark_dir``."""
    spark_dir = Path(spark_dir)
    return {
        "spark.master": "local[*]",
        "spark.sql.warehouse.dir": f"{spark_dir}/tables",
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={spark_dir}/metastore;create=true",
        # Derby's log goes to the Spark folder instead of the working directory
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={spark_dir}",
        "spark.sql.session.timeZone": "UTC",
        # `timestamp` without a time zone, as on DuckDB and PostgreSQL: BI in any time zone
        # reads the same wall-clock times (Spark's default is a local-time-zone timestamp)
        "spark.sql.timestampType": "TIMESTAMP_NTZ",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }


class CatalogInUse(RuntimeError):
    """Another process has the warehouse's embedded catalog open."""


def catalog_in_use(spark_dir: Path) -> bool:
    """Whether another process has the embedded Derby catalog under ``spark_dir`` open: Derby
    holds an exclusive lock on ``metastore/dbex.lck`` while it runs, and takes one process
    at a time (a second one fails deep in Hive's client with pages of Java traces)."""
    import fcntl

    lock = Path(spark_dir) / "metastore" / "dbex.lck"
    try:
        handle = open(lock, "rb+")
    except OSError:  # no catalog yet, or it was shut down cleanly
        return False
    with handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(handle, fcntl.LOCK_UN)
    return False


def require_extra() -> None:
    """Raise a one-line RuntimeError when pyspark (the extra ``spark``) is not installed."""
    import importlib.util

    if importlib.util.find_spec("pyspark") is None:
        raise RuntimeError("the Spark warehouse needs the extra 'spark': uv sync --extra spark")


def open_session(spark_dir: Path) -> Any:
    """The process's Spark session over ``spark_dir`` (created on first use; dbt-spark's
    session method then reuses it)."""
    try:
        with warnings.catch_warnings():  # pyspark warns that it does not test pandas 3; it reads Arrow here
            warnings.simplefilter("ignore", FutureWarning)
            from pyspark.sql import SparkSession
    except ImportError as exc:  # the extra is not installed
        raise RuntimeError("the Spark warehouse needs the extra 'spark': uv sync --extra spark") from exc
    Path(spark_dir).mkdir(parents=True, exist_ok=True)
    # a local session talks to itself: no warning that the host name resolves to loopback
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # this process's own session (ours or dbt-spark's) holds the catalog: only another
    # process's is a refusal
    if getattr(SparkSession, "_instantiatedSession", None) is None and catalog_in_use(spark_dir):
        raise CatalogInUse(f"the Spark warehouse at {spark_dir} is in use by another process "
                           "(its embedded catalog takes one process at a time)")
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in session_conf(spark_dir).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    # pyspark logs every failed statement with its Java trace; the caller reports it in one line
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    return spark


def spark_literal(text: str) -> str:
    """A Spark SQL string literal: Spark escapes with backslashes (two quotes in a row are
    two literals, which Spark joins)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SparkResult:
    """The result of one statement, read the ways ``Warehouse`` reads DuckDB's."""

    def __init__(self, frame: Any):
        self._frame = frame

    def fetchall(self) -> list[tuple]:
        return [tuple(row) for row in self._frame.collect()]

    def df(self) -> Any:
        return self._frame.toArrow().to_pandas()


class SparkSql:
    """A session's SQL with DuckDB's connection calls (``execute(sql, params)``): ``?``
    parameters are Spark's positional parameters. Spark SQL has no multi-statement
    transaction; what a Spark warehouse makes atomic instead is in docs/design.md."""

    def __init__(self, spark: Any):
        self.spark = spark

    def execute(self, sql: str, params: Any = None) -> SparkResult:
        args = list(params) if params else None
        return SparkResult(self.spark.sql(sql, args=args) if args else self.spark.sql(sql))

    def tables(self, schema: str) -> list[str]:
        if not self.spark.catalog.databaseExists(schema):
            return []
        return sorted(t.name for t in self.spark.catalog.listTables(schema) if not t.isTemporary)

    def table_exists(self, schema: str, table: str) -> bool:
        return self.spark.catalog.databaseExists(schema) and self.spark.catalog.tableExists(f"{schema}.{table}")

    def columns(self, schema: str, table: str) -> list[tuple[str, str | None]]:
        """(name, comment) of each column, in the table's order."""
        return [(c.name, c.description) for c in self.spark.catalog.listColumns(f"{schema}.{table}")]

    def table_comment(self, schema: str, table: str) -> str | None:
        return self.spark.catalog.getTable(f"{schema}.{table}").description

    def close(self) -> None:
        """The session stays open for the process (dbt-spark's session method reuses it)."""
