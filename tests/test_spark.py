"""The dbt project on Spark SQL: from the raw tables of a DuckDB night, ``crm spark build``
builds every seed, model and test on a local Spark session, gates and publishes the marts
there, and what BI reads on Spark equals what it reads on DuckDB.

The night runs on DuckDB; the Spark commands run in an environment of their own with the
extra ``spark`` (``uv sync --extra spark`` into a folder), as a user installs it: the
default environment has no pyspark (Great Expectations imports pyspark whenever it is
installed).
The audit tables are read back as the Parquet files the session wrote, with DuckDB; the
published views through Spark, by ``tests/spark_reader.py`` (a BI reader).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from datetime import date
from pathlib import Path

import duckdb
import pytest
import yaml

from crm_pipeline.publish import PUBLISHED_TABLES
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


@functools.cache
def spark_environment() -> Path:
    """An environment with the extra ``spark``, made once per test process as a user makes
    one (``uv sync --locked --extra spark``) in a folder of its own. Not ``uv run
    --isolated``: its environment lives in uv's cache, which another uv command may clean
    while a Spark process still reads its jars."""
    uv = shutil.which("uv")
    assert uv, "the tests run through uv (the README's test command)"
    folder = Path(tempfile.mkdtemp(prefix="crm-spark-env-"))
    atexit.register(shutil.rmtree, folder, True)
    made = subprocess.run([uv, "sync", "--locked", "--extra", "spark", "--quiet"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(folder)})
    assert made.returncode == 0, made.stderr[-3000:]
    return folder


def with_spark(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """A command (``crm`` or ``python``) in the environment with the extra ``spark``."""
    program = spark_environment() / "bin" / args[0]
    return subprocess.run([str(program), *args[1:]], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=1500, env={**os.environ, "COLUMNS": "200", **(env or {})})


def test_commands_that_need_duckdb_or_postgresql_refuse_a_spark_warehouse_in_one_line(tmp_path):
    """Only `crm spark …` and `crm status` work on a Spark warehouse so far; every other
    command says so in one line, before it touches anything."""
    url = f"spark://{tmp_path / 'spark'}"
    for args in (("run", "--as-of", "2026-06-30"), ("report",), ("reconcile",), ("migrate",)):
        done = crm(*args, "--home", str(tmp_path / "home"), "--warehouse", url)
        assert done.returncode == 1, (args, done.stdout[-500:])
        assert "crm spark build" in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    assert not (tmp_path / "home" / "demo").exists() and not (tmp_path / "spark").exists()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    home = tmp_path_factory.mktemp("spark") / "home"
    night = crm("run", "--home", str(home), "--as-of", AS_OF.isoformat(), "--customers", str(CUSTOMERS))
    assert night.returncode == 0, night.stdout[-3000:] + night.stderr[-3000:]
    # unit tests too: their rows assume the project's default as_of, this night's date
    return home, with_spark("crm", "spark", "build", "--home", str(home), env={"CRM_DBT_UNIT_TESTS": "1"})


def read_published(home: Path, out: Path) -> dict:
    """Every published view read through Spark into ``out``; the catalog's facts."""
    done = with_spark("python", "tests/spark_reader.py", str(home / "spark"), str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "catalog.json").read_text())


@pytest.fixture(scope="module")
def published(built, tmp_path_factory):
    home, spark = built
    assert spark.returncode == 0, spark.stdout[-4000:] + spark.stderr[-4000:]
    out = tmp_path_factory.mktemp("published_on_spark")
    return home, out, read_published(home, out)


def test_without_the_extra_the_command_says_how_to_install_it(built):
    """The default environment has no pyspark: one line that says how to get it."""
    home, _ = built
    for args in (("spark", "build", "--home", str(home)), ("status", "--warehouse", f"spark://{home / 'spark'}")):
        done = crm(*args)
        assert done.returncode == 1, args
        assert "uv sync --extra spark" in done.stderr and "Traceback" not in done.stderr, done.stderr


def _parquet(home: Path, schema: str, table: str) -> str:
    return f"read_parquet('{home / 'spark' / 'tables' / (schema + '.db') / table}/*.parquet')"


def test_every_seed_model_and_test_builds_on_spark(built):
    home, spark = built
    assert spark.returncode == 0, spark.stdout[-4000:] + spark.stderr[-4000:]
    summary = re.search(r"dbt build on Spark for (\S+): (.*) in [\d.]+ s$", spark.stdout, re.MULTILINE)
    assert summary, spark.stdout
    assert summary.group(1) == AS_OF.isoformat()
    counts = {status: int(n) for n, status in re.findall(r"(\d+) (\w+)", summary.group(2))}
    assert set(counts) == {"success", "pass"}, counts  # nothing failed, errored or was skipped
    assert counts["success"] > 80 and counts["pass"] > 200, counts
    assert re.search(r"loaded into Spark in [\d.]+ s: .*raw\.orders [\d,]+", spark.stdout)
    assert re.search(r"gate 2 passed in [\d.]+ s; published on Spark for " + AS_OF.isoformat(), spark.stdout)


def compare_with_duckdb(con, schema: str, table: str, on_spark: str) -> tuple[str | None, int]:
    """DuckDB's ``schema.table`` against the relation ``on_spark`` (Parquet written by Spark):
    the same columns in the same order, the same row count and the same order-independent
    checksum of the business columns (every column but the wall-clock ones; decimals to six
    places). Returns the mismatch (None if equal) and the rows compared."""
    d_cols = [c for (c,) in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position", [schema, table]).fetchall()]
    s_cols = [r[0] for r in con.execute(f"describe select * from {on_spark}").fetchall()]
    if d_cols != s_cols:
        return f"{table}: columns {d_cols} on DuckDB, {s_cols} on Spark", 0
    cols = ", ".join(c for c in d_cols if c not in VOLATILE)
    d_rows = comparable_rows(con.execute(f"select {cols} from {schema}.{table}").fetchall())
    s_rows = comparable_rows(con.execute(f"select {cols} from {on_spark}").fetchall())
    d_sum, s_sum = (hashlib.sha256(repr(rows).encode()).hexdigest() for rows in (d_rows, s_rows))
    if len(d_rows) != len(s_rows) or d_sum != s_sum:
        first = next(((a, b) for a, b in zip(d_rows, s_rows) if a != b), None)
        diff = {c: (a, b) for c, a, b in zip(cols.split(", "), *first) if a != b} if first else {}
        return (f"{table}: {len(d_rows)} rows on DuckDB, {len(s_rows)} on Spark; checksums {d_sum[:12]} and "
                f"{s_sum[:12]}; first differing row {first[0][:2] if first else None}: {diff}"), len(d_rows)
    return None, len(d_rows)


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
            files = home / "spark" / "tables" / f"{schema}.db" / table
            if not list(files.glob("*.parquet")):
                mismatches.append(f"{table}: no Parquet files on Spark")
                continue
            mismatch, rows = compare_with_duckdb(con, schema, table, _parquet(home, schema, table))
            mismatches += [mismatch] if mismatch else []
            compared += rows
    assert not mismatches, "\n".join(mismatches)
    assert compared > (CUSTOMERS * 5 if schema == "audit" else 50)


def differences_from_duckdb(home: Path, out: Path) -> tuple[list[str], int, list[str]]:
    """Each published table of the DuckDB night against the one read on Spark: the same
    columns, the same row count and the same order-independent checksum of the business
    columns (every column but the wall-clock ones). Returns the mismatches, the rows
    compared and the tables."""
    mismatches, compared = [], 0
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        tables = [t for (t,) in con.execute("select table_name from information_schema.tables "
                                            "where table_schema = 'published' order by 1").fetchall()]
        for table in tables:
            path = out / f"{table}.parquet"
            if not path.exists():
                mismatches.append(f"{table}: not published on Spark")
                continue
            mismatch, rows = compare_with_duckdb(con, "published", table, f"read_parquet('{path}')")
            mismatches += [mismatch] if mismatch else []
            compared += rows
    return mismatches, compared, tables


def test_every_published_table_equals_duckdb(published):
    """What BI reads from ``published`` on Spark (views, read through Spark) equals what it
    reads on DuckDB for the same date: the same tables, row counts and checksums."""
    home, out, catalog = published
    mismatches, compared, tables = differences_from_duckdb(home, out)
    assert not mismatches, "\n".join(mismatches)
    assert catalog["views"] == tables and len(tables) >= 30
    assert catalog["view_types"] == ["VIEW"]  # BI reads views switched per night, never the store
    assert compared > CUSTOMERS * 10


def test_status_json_lists_every_published_table_on_spark(published):
    """``crm status --json`` on the Spark warehouse: every published table with its newest
    as_of and row count, as the DuckDB warehouse's status says of the same night."""
    home, out, _ = published
    on_spark = with_spark("crm", "status", "--warehouse", f"spark://{home / 'spark'}", "--json")
    assert on_spark.returncode == 0, on_spark.stderr[-3000:]
    on_duckdb = crm("status", "--home", str(home), "--json")
    assert on_duckdb.returncode == 0, on_duckdb.stderr[-3000:]

    def tables(done):
        return {t["table"]: (t["mode"], t["as_of"], t["rows"]) for t in json.loads(done.stdout)["tables"]}

    spark_tables = tables(on_spark)
    assert spark_tables == tables(on_duckdb)
    assert {as_of for _, as_of, _ in spark_tables.values()} == {AS_OF.isoformat()}
    with duckdb.connect() as con:  # a current table's count is its rows as read on Spark
        for table, (mode, _, rows) in spark_tables.items():
            if mode == "current":
                assert con.execute(f"select count(*) from read_parquet('{out / table}.parquet')").fetchone()[0] == rows


def test_a_second_publish_switches_every_view_and_replaces_the_slices(published, tmp_path):
    """Publishing the same night again (``crm spark publish``) writes a new version of every
    current table and re-points its view, replaces each history table's slice instead of
    adding to it, keeps two versions of a current table, and names the version in
    ``ops.published_versions``: BI still reads exactly DuckDB's tables."""
    home, _, first = published
    again = with_spark("crm", "spark", "publish", "--home", str(home))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert re.search(r"gate 2 passed in [\d.]+ s; published on Spark for " + AS_OF.isoformat(), again.stdout), \
        again.stdout
    catalog = read_published(home, tmp_path)
    mismatches, _, tables = differences_from_duckdb(home, tmp_path)
    assert not mismatches, "\n".join(mismatches)
    versions: dict[str, list[str]] = {}
    for row in catalog["published_versions"]:
        versions.setdefault(row["table_name"], []).append(row["version"])
    assert set(versions) == set(tables)
    assert all(len(set(v)) == 2 for v in versions.values()), versions
    newest = {table: max(v) for table, v in versions.items()}
    current = {r["table_name"] for r in catalog["published_versions"] if r["mode"] == "current"}
    for table in current:  # the two versions kept behind a current view, the older ones dropped
        kept = sorted(name for name in catalog["store"] if name.startswith(table + "__v"))
        assert kept == sorted(f"{table}__{v}" for v in versions[table]), (table, kept)
        assert f"{table}__{newest[table]}" in kept
    history = set(tables) - current
    assert history and all(table in catalog["store"] for table in history)
    # each slice of a history table: the folder of the new version and of the one it replaced
    store = home / "spark" / "tables" / "published_store.db"
    slices = [folder for table in history for folder in (store / table).glob("*=*") if folder.is_dir()]
    assert len(slices) >= len(history) // 2
    for folder in slices:
        assert len([version for version in folder.iterdir() if version.is_dir()]) == 2, folder
    assert len(set(newest.values())) == 1  # one version name for the whole publish


def test_a_publish_killed_after_its_first_table_leaves_every_view_whole(published, tmp_path):
    """Killed (SIGKILL) right after the first table switched: every view still reads a
    whole version (equal to DuckDB's tables), the first table shows the new version and
    ``ops.published_versions`` says so, every other table still shows the one before."""
    home, _, _ = published
    killed = with_spark("crm", "spark", "publish", "--home", str(home),
                        env={"CRM_FAULT_INJECT": "publish:kill_after_first_table"})
    assert killed.returncode != 0, killed.stdout[-2000:]
    catalog = read_published(home, tmp_path)
    mismatches, _, _ = differences_from_duckdb(home, tmp_path)
    assert not mismatches, "\n".join(mismatches)
    versions: dict[str, set[str]] = {}
    for row in catalog["published_versions"]:
        versions.setdefault(row["table_name"], set()).add(row["version"])
    first = PUBLISHED_TABLES[0].name
    others = {len(v) for table, v in versions.items() if table != first}
    assert len(others) == 1 and len(versions[first]) == others.pop() + 1, versions


@pytest.mark.postgres
def test_bench_on_spark_times_the_build_gate_and_publish_next_to_duckdb(tmp_path):
    """``crm bench --warehouse spark`` at a small scale: the DuckDB night, then the same
    night built, gated and published on Spark, each stage timed; Spark publishes as many
    rows as DuckDB (a source of 300 customers: 600 contacts, 3000 orders, 30 complaints,
    120 × 4 statements: 4,410 raw rows loaded, plus the salt and the CLV tables)."""
    from conftest import _pg_admin_url
    from test_bench import _drop_databases

    out, db = tmp_path / "bench.json", "crm_ci_bench_spark"
    try:
        done = with_spark("crm", "bench", "--scale", "300x3000", "--source", _pg_admin_url(db), "--warehouse", "spark",
                          "--skip-reference", "--phases", "full", "--home", str(tmp_path / "bench"), "--json", str(out))
    finally:
        _drop_databases(db + "_")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    runs = {(r["phase"], r["warehouse"]): r for r in figures["runs"]}
    assert set(runs) == {("full", "duckdb"), ("full", "spark")} and all(r["ok"] for r in runs.values())
    spark, on_duckdb = runs[("full", "spark")]["stages"], runs[("full", "duckdb")]["stages"]
    for stage in ("load", "dbt_build", "gate", "publish", "total"):
        assert spark[stage]["seconds"] > 0, stage
    assert spark["load"]["rows"] >= 4410 + 2
    assert spark["publish"]["rows"] == on_duckdb["publish"]["rows"] > 300
    assert spark["total"]["peak_rss_mb"] > 0
    assert figures["ratios"]["spark_vs_duckdb_build_gate_publish_full"] > 0
    assert "spark" in done.stdout
