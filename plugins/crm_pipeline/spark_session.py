"""The local Spark session of a Spark warehouse: its settings, and tables loaded from Arrow.

A local session (pyspark's bundled Spark, ``local[*]``) keeps its tables as Parquet under
``<spark dir>/tables`` and its catalog in an embedded Derby metastore under
``<spark dir>/metastore``, so that a second process (the next task of a night, or dbt)
finds the tables the first one wrote. dbt's profile (``dbt_project/profiles.yml``, target
``spark``) passes the same settings to dbt-spark's session; a test keeps the two equal.

pyspark is the optional extra ``spark``: this module imports it only when a session is
opened, and says how to install it when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

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
        "spark.ui.enabled": "false",
    }


def open_session(spark_dir: Path) -> Any:
    """The process's Spark session over ``spark_dir`` (created on first use; dbt-spark's
    session method then reuses it)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # the extra is not installed
        raise RuntimeError("the Spark warehouse needs the extra 'spark': uv sync --extra spark") from exc
    Path(spark_dir).mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in session_conf(spark_dir).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def load_arrow_tables(spark: Any, tables: Iterable[tuple[str, str, Any]]) -> dict[str, int]:
    """Write each ``(schema, table, pyarrow.Table)`` as a Parquet table of the catalog,
    replacing one of the same name; returns the rows written per ``schema.table``.

    Rows go through Arrow, not pandas (pyspark 4.3 does not support pandas 3), so the
    column types are kept: decimals, dates and timestamps arrive as they are."""
    written: dict[str, int] = {}
    for schema, table, arrow_table in tables:
        spark.sql(f"create database if not exists {schema}")
        frame = spark.createDataFrame(arrow_table)
        frame.write.mode("overwrite").format("parquet").saveAsTable(f"{schema}.{table}")
        written[f"{schema}.{table}"] = arrow_table.num_rows
    return written
