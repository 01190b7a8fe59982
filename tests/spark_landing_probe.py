"""Landing a control file's partitions into Spark, step by step, for tests/test_spark.py.
Runs in the environment with the extra ``spark``:

    python tests/spark_landing_probe.py FOLDER

Builds a control DuckDB file with a table ``raw.t`` of batches and a table
``intermediate.fit`` of dates, lands them into a local Spark session under FOLDER after
each change, and prints one JSON object per step: the rows written and what Spark then
holds per partition (rows and the sum of the value column).
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

from crm_pipeline.connections import WarehouseConfig
from crm_pipeline.spark_landing import land_partitions
from crm_pipeline.warehouse import Warehouse


def held(spark: Warehouse, table: str, key: str) -> dict[str, list]:
    return {str(k): [int(n), int(v)] for k, n, v in spark.query(
        f"select {key}, count(*), sum(v) from {table} group by {key}")}


def main(folder: Path) -> None:
    control = Warehouse(WarehouseConfig(kind="duckdb", duckdb_path=folder / "control.duckdb"))
    spark = Warehouse(WarehouseConfig(kind="spark", spark_dir=folder / "spark"))
    control.execute("create schema raw")
    control.execute("create schema intermediate")
    control.execute("create table raw.t (id bigint, v bigint, _batch_id varchar)")
    control.execute("create table intermediate.fit (as_of date, v bigint)")
    steps = []

    def step(name: str, written: int, table: str = "raw.t", key: str = "_batch_id") -> None:
        steps.append({"step": name, "written": written, "held": held(spark, table, key)})

    control.execute("insert into raw.t values (1, 10, 'b1'), (2, 20, 'b1'), (3, 30, 'b1'), (4, 40, 'b2'), (5, 50, 'b2')")
    step("first", land_partitions(control, spark, "raw", "t", "_batch_id"))
    step("again", land_partitions(control, spark, "raw", "t", "_batch_id"))
    control.execute("insert into raw.t values (6, 60, 'b3')")
    control.execute("delete from raw.t where id = 1")
    step("new batch, a row gone from b1", land_partitions(control, spark, "raw", "t", "_batch_id"))
    control.execute("delete from raw.t where _batch_id = 'b2'")
    step("b2 gone", land_partitions(control, spark, "raw", "t", "_batch_id"))

    d1, d2 = date(2026, 6, 30), date(2026, 7, 1)
    control.execute("insert into intermediate.fit values (?, 1), (?, 2), (?, 3)", (d1, d1, d2))
    step("fit first", land_partitions(control, spark, "intermediate", "fit", "as_of", only=[d1, d2]),
         "intermediate.fit", "as_of")
    control.execute("update intermediate.fit set v = 7 where as_of = ?", (d2,))
    step("fit of d2 again, same rows", land_partitions(control, spark, "intermediate", "fit", "as_of", only=[d2]),
         "intermediate.fit", "as_of")
    print(json.dumps(steps))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
