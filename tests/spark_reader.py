"""A BI reader of a Spark warehouse, for tests/test_spark.py: reads every view of
``published`` through a local Spark session (as a BI tool on a Thrift server would) and
writes each as ``<table>.parquet`` into an output folder, with ``catalog.json`` (the store's
tables and ``ops.published_versions``). Runs in the environment with the extra ``spark``:

    python tests/spark_reader.py SPARK_DIR OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from crm_pipeline.spark_session import session_conf


def main(spark_dir: Path, out_dir: Path) -> None:
    builder = SparkSession.builder.enableHiveSupport()
    # the warehouse's own session settings, so a reader and the writer cannot drift apart;
    # one core is enough to read
    for key, value in {**session_conf(spark_dir), "spark.master": "local[1]"}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    out_dir.mkdir(parents=True, exist_ok=True)
    views = [t.name for t in spark.catalog.listTables("published")]
    for view in views:
        pq.write_table(spark.sql(f"select * from published.{view}").toArrow(), out_dir / f"{view}.parquet")
    versions = [r.asDict() for r in spark.sql(
        "select table_name, cast(as_of as string) as as_of, run_id, mode, rows_published, version "
        "from ops.published_versions").collect()]
    (out_dir / "catalog.json").write_text(json.dumps({
        "views": sorted(views),
        "view_types": sorted({t.tableType for t in spark.catalog.listTables("published")}),
        "store": sorted(t.name for t in spark.catalog.listTables("published_store")),
        "published_versions": versions,
    }))
    spark.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
