"""The dbt project on Spark SQL: from the raw tables of a DuckDB night, a local Spark session
builds every seed, model and data test, and its marts equal DuckDB's row for row.

The night runs on DuckDB (in its own process); its raw tables, the PII salt and the CLV
step's outputs are loaded into Spark through Arrow (crm_pipeline.spark_session), and dbt
builds on the session in this process (dbt-spark's session method reuses it).
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path

import duckdb
import pytest
import yaml

from crm_pipeline.dbt_ops import DBT_PROJECT_DIR
from crm_pipeline.spark_session import SPARK_DIR_VARIABLE, load_arrow_tables, open_session, session_conf
from helpers import comparable_rows, crm

pytestmark = [pytest.mark.slow, pytest.mark.spark]

AS_OF = date(2026, 6, 30)
CUSTOMERS = 300
#: what the marts stage reads besides raw: the salt of the hashed keys and the CLV step's
#: tables (written by Python between the two dbt stages)
NON_RAW_INPUTS = [("ops", "pii_salt"), ("intermediate", "clv_fit"), ("intermediate", "clv_predictions"),
                  ("intermediate", "clv_diagnostics")]
#: wall-clock columns, different between two builds by nature
VOLATILE = {"fit_seconds", "fitted_at", "run_id"}


def test_dbt_profile_passes_the_session_settings_of_spark_session():
    """profiles.yml and crm_pipeline.spark_session describe the same session."""
    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())["crm"]["outputs"]["spark"]
    rendered = {
        key: re.sub(r"\{\{ env_var\('" + SPARK_DIR_VARIABLE + r"', '[^']*'\) \}\}", "/x/spark", str(value))
        for key, value in profile["server_side_parameters"].items()
    }
    assert rendered == session_conf(Path("/x/spark"))
    assert profile["method"] == "session"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    home = tmp_path_factory.mktemp("spark") / "home"
    night = crm("run", "--home", str(home), "--as-of", AS_OF.isoformat(), "--customers", str(CUSTOMERS))
    assert night.returncode == 0, night.stdout[-3000:] + night.stderr[-3000:]
    duck_path = home / "warehouse.duckdb"

    spark = open_session(home / "spark")
    with duckdb.connect(str(duck_path), read_only=True) as con:
        raw = [("raw", t) for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw' order by 1").fetchall()]
        loaded = load_arrow_tables(spark, [(s, t, con.execute(f"select * from {s}.{t}").arrow().read_all())
                                           for s, t in raw + NON_RAW_INPUTS])
    assert loaded["raw.orders"] > CUSTOMERS

    from dbt.cli.main import dbtRunner

    env = {"CRM_DBT_TARGET": "spark", SPARK_DIR_VARIABLE: str(home / "spark"), "CRM_AS_OF": AS_OF.isoformat()}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = dbtRunner().invoke([
            "build", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target", "spark", "--target-path", str(home / "spark-target"), "--vars", f"{{as_of: {AS_OF}}}",
        ])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield spark, duck_path, result
    spark.stop()


def test_every_seed_model_and_test_builds_on_spark(built):
    _, _, result = built
    assert result.exception is None, result.exception
    statuses = {}
    for node in result.result.results:
        statuses.setdefault(str(node.status), []).append(node.node.unique_id)
    failed = {s: ids for s, ids in statuses.items() if s not in ("success", "pass")}
    assert not failed, failed
    kinds = {uid.split(".")[0] for ids in statuses.values() for uid in ids}
    assert {"seed", "model", "test", "unit_test"} <= kinds
    assert len(statuses["success"]) > 80 and len(statuses["pass"]) > 200


@pytest.mark.parametrize("schema", ["config", "audit"])
def test_spark_tables_equal_duckdb_row_for_row(built, schema):
    """Seeds (config: an apostrophe, nulls, decimals) and marts (audit) equal DuckDB's:
    the same columns in the same order and the same rows, decimals to six places."""
    spark, duck_path, result = built
    assert result.exception is None
    mismatches, compared = [], 0
    with duckdb.connect(str(duck_path), read_only=True) as con:
        tables = [t for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = ? order by 1", [schema]).fetchall()]
        assert tables
        for table in tables:
            d_cols = [c for (c,) in con.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
                "order by ordinal_position", [schema, table]).fetchall()]
            s_cols = spark.table(f"{schema}.{table}").columns
            if d_cols != s_cols:
                mismatches.append(f"{table}: columns {d_cols} on DuckDB, {s_cols} on Spark")
                continue
            cols = ", ".join(c for c in d_cols if c not in VOLATILE)
            d_rows = comparable_rows(con.execute(f"select {cols} from {schema}.{table}").fetchall())
            s_rows = comparable_rows(tuple(r) for r in spark.sql(f"select {cols} from {schema}.{table}").collect())
            if len(d_rows) != len(s_rows):
                mismatches.append(f"{table}: {len(d_rows)} rows on DuckDB, {len(s_rows)} on Spark")
                continue
            for d_row, s_row in zip(d_rows, s_rows):
                if d_row != s_row:
                    diff = {c: (a, b) for c, a, b in zip(cols.split(", "), d_row, s_row) if a != b}
                    mismatches.append(f"{table}: first differing row {d_row[:2]}: {diff}")
                    break
            compared += len(d_rows)
    assert not mismatches, "\n".join(mismatches)
    assert compared > (CUSTOMERS * 5 if schema == "audit" else 50)
