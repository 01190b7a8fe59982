"""The dbt project on Spark SQL: from the raw tables of a DuckDB night, ``crm spark build``
builds every seed, model and test on a local Spark session, and its tables equal DuckDB's
row for row.

The night runs on DuckDB; ``crm spark build`` runs in an environment of its own with the
extra ``spark`` (``uv run --isolated --extra spark``), as a user installs it: the default
environment has no pyspark (Great Expectations imports pyspark whenever it is installed).
The Spark tables are read back as the Parquet files the session wrote, with DuckDB, not
through Spark.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import duckdb
import pytest
import yaml

from crm_pipeline.settings import DBT_PROJECT_DIR, PROJECT_ROOT
from crm_pipeline.spark_session import SPARK_DIR_VARIABLE, session_conf
from helpers import comparable_rows, crm

pytestmark = [pytest.mark.slow, pytest.mark.spark]

AS_OF = date(2026, 6, 30)
CUSTOMERS = 300
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
    uv = shutil.which("uv")
    assert uv, "the tests run through uv (the README's test command)"
    spark = subprocess.run([uv, "run", "--isolated", "--locked", "--extra", "spark", "crm", "spark", "build",
                            "--home", str(home)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1500,
                           env={**os.environ, "COLUMNS": "200"})
    return home, spark


def test_without_the_extra_the_command_says_how_to_install_it(built):
    """The default environment has no pyspark: one line that says how to get it."""
    home, _ = built
    done = crm("spark", "build", "--home", str(home))
    assert done.returncode == 1
    assert "uv sync --extra spark" in done.stderr and "Traceback" not in done.stderr, done.stderr


def _parquet(home: Path, schema: str, table: str) -> str:
    return f"read_parquet('{home / 'spark' / 'tables' / (schema + '.db') / table}/*.parquet')"


def test_every_seed_model_and_test_builds_on_spark(built):
    home, spark = built
    assert spark.returncode == 0, spark.stdout[-4000:] + spark.stderr[-4000:]
    summary = re.search(r"dbt build on Spark for (\S+): (.*)", spark.stdout)
    assert summary, spark.stdout
    assert summary.group(1) == AS_OF.isoformat()
    counts = {status: int(n) for n, status in re.findall(r"(\d+) (\w+)", summary.group(2))}
    assert set(counts) == {"success", "pass"}, counts  # nothing failed, errored or was skipped
    assert counts["success"] > 80 and counts["pass"] > 200, counts
    assert re.search(r"loaded into Spark: .*raw\.orders [\d,]+", spark.stdout)


@pytest.mark.parametrize("schema", ["config", "audit"])
def test_spark_tables_equal_duckdb_row_for_row(built, schema):
    """Seeds (config: an apostrophe, nulls, decimals) and marts (audit) equal DuckDB's:
    the same columns in the same order and the same rows, decimals to six places."""
    home, spark = built
    assert spark.returncode == 0, spark.stderr[-4000:]
    mismatches, compared = [], 0
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        tables = [t for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = ? order by 1", [schema]).fetchall()]
        assert tables
        for table in tables:
            d_cols = [c for (c,) in con.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
                "order by ordinal_position", [schema, table]).fetchall()]
            files = home / "spark" / "tables" / f"{schema}.db" / table
            if not list(files.glob("*.parquet")):
                mismatches.append(f"{table}: no Parquet files on Spark")
                continue
            s_cols = [r[0] for r in con.execute(f"describe select * from {_parquet(home, schema, table)}").fetchall()]
            if d_cols != s_cols:
                mismatches.append(f"{table}: columns {d_cols} on DuckDB, {s_cols} on Spark")
                continue
            cols = ", ".join(c for c in d_cols if c not in VOLATILE)
            d_rows = comparable_rows(con.execute(f"select {cols} from {schema}.{table}").fetchall())
            s_rows = comparable_rows(con.execute(f"select {cols} from {_parquet(home, schema, table)}").fetchall())
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
