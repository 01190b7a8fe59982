"""A night on Apache Spark: ``crm run --warehouse spark:///…`` extracts into the warehouse's
control file, lands raw in Spark, builds every seed, model and test there, gates and
publishes; what BI reads on Spark equals what it reads on DuckDB for the same night.

The Spark commands run in an environment of their own with the extra ``spark``
(``uv sync --extra spark`` into a folder), as a user installs it: the default environment
has no pyspark (Great Expectations imports pyspark whenever it is installed). The audit
and raw tables are read back as the Parquet files the session wrote, with DuckDB; the
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


def test_an_airflow_connection_of_type_spark_names_the_warehouse_folder(tmp_path, monkeypatch):
    """``crm_warehouse`` as an Airflow connection of type spark (JSON, as a secrets backend
    gives it): the folder of the local session, whose control file lies inside it."""
    from crm_pipeline.connections import WAREHOUSE_CONN_ID, WarehouseConfig, connection_url

    monkeypatch.chdir(tmp_path)
    for path in (str(tmp_path / "wh"), "wh"):  # absolute, or relative to the working directory
        monkeypatch.setenv("AIRFLOW_CONN_CRM_WAREHOUSE", json.dumps({"conn_type": "spark", "extra": {"path": path}}))
        cfg = WarehouseConfig.from_url(connection_url(WAREHOUSE_CONN_ID))
        assert (cfg.kind, cfg.spark_dir) == ("spark", tmp_path / "wh")
        assert cfg.control.kind == "duckdb" and cfg.control.duckdb_path == tmp_path / "wh" / "control.duckdb"
        assert cfg.control.control == cfg.control  # the control file is its own control


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
    """`crm run`, `crm spark publish` and `crm status` work on a Spark warehouse; every other
    command that reads the warehouse says so in one line, before it touches anything."""
    url = f"spark://{tmp_path / 'spark'}"
    for args in (("report",), ("reconcile",), ("migrate",)):
        done = crm(*args, "--home", str(tmp_path / "home"), "--warehouse", url)
        assert done.returncode == 1, (args, done.stdout[-500:])
        assert "needs DuckDB or PostgreSQL" in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    assert not (tmp_path / "home" / "demo").exists() and not (tmp_path / "spark").exists()


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """The same demo night (300 customers) on DuckDB and on Spark, each in its own home."""
    on_duckdb = tmp_path_factory.mktemp("duckdb") / "home"
    night = crm("run", "--home", str(on_duckdb), "--as-of", AS_OF.isoformat(), "--customers", str(CUSTOMERS))
    assert night.returncode == 0, night.stdout[-3000:] + night.stderr[-3000:]
    home = tmp_path_factory.mktemp("spark") / "home"
    on_spark = with_spark("crm", "run", "--home", str(home), "--as-of", AS_OF.isoformat(), "--customers",
                          str(CUSTOMERS), "--warehouse", f"spark://{home / 'spark'}")
    return on_duckdb, home, on_spark


@pytest.fixture(scope="module")
def built(nights):
    """The Spark night's home, after its run succeeded."""
    _, home, on_spark = nights
    assert on_spark.returncode == 0, on_spark.stdout[-4000:] + on_spark.stderr[-4000:]
    return home


def read_published(home: Path, out: Path) -> dict:
    """Every published view read through Spark into ``out``; the catalog's facts."""
    done = with_spark("python", "tests/spark_reader.py", str(home / "spark"), str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "catalog.json").read_text())


@pytest.fixture(scope="module")
def published(nights, built, tmp_path_factory):
    """Every published view read through Spark after the night and after a publish of the
    same night killed (SIGKILL) right after its first table switched: what a reader sees
    in the middle of a switch, which must still be the night's tables whole."""
    killed = with_spark("crm", "spark", "publish", "--home", str(built),
                        env={"CRM_FAULT_INJECT": "publish:kill_after_first_table"})
    assert killed.returncode != 0, killed.stdout[-2000:]
    out = tmp_path_factory.mktemp("published_on_spark")
    return nights[0], built, out, read_published(built, out)


def test_without_the_extra_the_command_says_how_to_install_it(built):
    """The default environment has no pyspark: one line that says how to get it."""
    url = f"spark://{built / 'spark'}"
    for args in (("run", "--home", str(built), "--as-of", AS_OF.isoformat(), "--warehouse", url),
                 ("spark", "publish", "--home", str(built)), ("status", "--warehouse", url)):
        done = crm(*args)
        assert done.returncode == 1, args
        assert "uv sync --extra spark" in done.stderr and "Traceback" not in done.stderr, done.stderr


def _parquet(home: Path, schema: str, table: str) -> str:
    """The Parquet files of a Spark table (a partitioned table's too, its key read back)."""
    folder = home / "spark" / "tables" / (schema + ".db") / table
    return f"read_parquet('{folder}/**/*.parquet', hive_partitioning = true, hive_types_autocast = false)"


def test_the_night_on_spark_runs_every_stage_and_records_itself_in_the_control_file(built):
    """The whole night ran on Spark: the run record (in the warehouse's control file) has
    every stage ok, dbt built every seed, model, unit and data test without a failure, the
    raw tables landed in Spark, the publish names its version and the report was written."""
    with duckdb.connect(str(built / "spark" / "control.duckdb"), read_only=True) as con:
        run = con.execute("select run_id, status, gate_verdict, warehouse from ops.pipeline_runs "
                          "where as_of = ?", [AS_OF]).fetchall()
        assert len(run) == 1 and run[0][1:] == ("success", "passed", f"spark://{built / 'spark'}"), run
        stages = {name: (status, json.loads(details or "{}")) for name, status, details in con.execute(
            "select stage, status, details from ops.run_stages where run_id = ?", [run[0][0]]).fetchall()}
        raw = {f"raw.{t}": con.execute(f"select count(*) from raw.{t}").fetchone()[0]
               for (t,) in con.execute("select table_name from information_schema.tables "
                                       "where table_schema = 'raw'").fetchall() if not t.startswith("_")}
    assert {name: status for name, (status, _) in stages.items()} == {
        **{name: "ok" for name in ("extract", "dbt_staging", "clv_fit", "dbt_marts", "gate", "publish", "report")},
        "docs": "skipped"}  # the tests' CRM_DBT_DOCS=0 (conftest.py)
    for name in ("dbt_staging", "dbt_marts"):
        counts = {k: v for k, v in stages[name][1].items() if isinstance(v, int)}
        assert set(counts) <= {"success", "pass"} and counts["success"] > 20, (name, counts)
    landed = stages["extract"][1]["landed_on_spark"]["rows"]
    assert {k: v for k, v in landed.items() if k.startswith("raw.")} == raw and sum(raw.values()) > CUSTOMERS * 5
    assert landed["ops.pii_salt"] == 1
    assert stages["clv_fit"][1]["landed_on_spark"]["intermediate.clv_predictions"] == stages["clv_fit"][1]["predictions"]
    assert re.fullmatch(r"v\d{20}", stages["publish"][1]["version"])
    assert (built / "docs" / "report" / f"{AS_OF.isoformat()}.html").stat().st_size > 10_000


def test_raw_on_spark_equals_the_control_file(built):
    """Every raw table landed in Spark holds the control file's rows, batch for batch."""
    with duckdb.connect(str(built / "spark" / "control.duckdb"), read_only=True) as con:
        tables = [t for (t,) in con.execute("select table_name from information_schema.tables where "
                                            "table_schema = 'raw' order by 1").fetchall() if not t.startswith("_")]
        assert len(tables) == 5
        for table in tables:
            cols = ", ".join(c for (c,) in con.execute(
                "select column_name from information_schema.columns where table_schema = 'raw' and table_name = ? "
                "order by ordinal_position", [table]).fetchall())
            mine = comparable_rows(con.execute(f"select {cols} from raw.{table}").fetchall())
            theirs = comparable_rows(con.execute(f"select {cols} from {_parquet(built, 'raw', table)}").fetchall())
            assert len(mine) == len(theirs) > 0 and mine == theirs, table


def test_landing_writes_changed_batches_only_and_drops_the_ones_gone(tmp_path):
    """Landing step by step (tests/spark_landing_probe.py): the rows written and what Spark
    holds per partition (rows, sum of v), worked out by hand from the probe's statements."""
    done = with_spark("python", "tests/spark_landing_probe.py", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    steps = {s["step"]: (s["written"], s["held"]) for s in json.loads(done.stdout.strip().splitlines()[-1])}
    assert steps == {
        "first": (5, {"b1": [3, 60], "b2": [2, 90]}),
        "again": (0, {"b1": [3, 60], "b2": [2, 90]}),  # a re-run lands nothing twice
        "new batch, a row gone from b1": (3, {"b1": [2, 50], "b2": [2, 90], "b3": [1, 60]}),
        "b2 gone": (0, {"b1": [2, 50], "b3": [1, 60]}),
        "fit first": (3, {"2026-06-30": [2, 3], "2026-07-01": [1, 3]}),
        # the night's date is written again even with as many rows as before
        "fit of d2 again, same rows": (1, {"2026-06-30": [2, 3], "2026-07-01": [1, 7]}),
    }


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
def test_spark_tables_equal_duckdb_row_for_row(nights, built, schema):
    """Seeds (config: an apostrophe, nulls, decimals) and marts (audit) equal DuckDB's:
    the same columns in the same order and the same rows, decimals to six places."""
    mismatches, compared = [], 0
    with duckdb.connect(str(nights[0] / "warehouse.duckdb"), read_only=True) as con:
        tables = [t for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = ? order by 1", [schema]).fetchall()]
        assert tables
        for table in tables:
            files = built / "spark" / "tables" / f"{schema}.db" / table
            if not list(files.glob("*.parquet")):
                mismatches.append(f"{table}: no Parquet files on Spark")
                continue
            mismatch, rows = compare_with_duckdb(con, schema, table, _parquet(built, schema, table))
            mismatches += [mismatch] if mismatch else []
            compared += rows
    assert not mismatches, "\n".join(mismatches)
    assert compared > (CUSTOMERS * 5 if schema == "audit" else 50)


def differences_from_duckdb(duckdb_home: Path, out: Path) -> tuple[list[str], int, list[str]]:
    """Each published table of the DuckDB night against the one read on Spark: the same
    columns, the same row count and the same order-independent checksum of the business
    columns (every column but the wall-clock ones). Returns the mismatches, the rows
    compared and the tables."""
    mismatches, compared = [], 0
    with duckdb.connect(str(duckdb_home / "warehouse.duckdb"), read_only=True) as con:
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
    reads on DuckDB for the same date: the same tables, row counts and checksums (read
    after a publish killed mid-switch: every view shows a whole version)."""
    duckdb_home, _, out, catalog = published
    mismatches, compared, tables = differences_from_duckdb(duckdb_home, out)
    assert not mismatches, "\n".join(mismatches)
    assert catalog["views"] == tables and len(tables) >= 30
    assert catalog["view_types"] == ["VIEW"]  # BI reads views switched per night, never the store
    assert compared > CUSTOMERS * 10


def test_a_publish_killed_after_its_first_table_leaves_every_view_whole(published):
    """Killed (SIGKILL) right after the first table switched (the ``published`` fixture):
    every view still reads a whole version (equal to DuckDB's tables), the first table
    shows the new version and ``ops.published_versions`` says so, every other table still
    shows the night's."""
    duckdb_home, _, out, catalog = published
    mismatches, _, _ = differences_from_duckdb(duckdb_home, out)
    assert not mismatches, "\n".join(mismatches)
    versions: dict[str, set[str]] = {}
    for row in catalog["published_versions"]:
        versions.setdefault(row["table_name"], set()).add(row["version"])
    first = PUBLISHED_TABLES[0].name
    assert {len(v) for table, v in versions.items() if table != first} == {1}, versions
    assert len(versions[first]) == 2, versions


def test_status_json_lists_every_published_table_on_spark(published):
    """``crm status --json`` on the Spark warehouse: every published table with its newest
    as_of and row count, as the DuckDB warehouse's status says of the same night."""
    duckdb_home, home, out, _ = published
    on_spark = with_spark("crm", "status", "--warehouse", f"spark://{home / 'spark'}", "--json")
    assert on_spark.returncode == 0, on_spark.stderr[-3000:]
    on_duckdb = crm("status", "--home", str(duckdb_home), "--json")
    assert on_duckdb.returncode == 0, on_duckdb.stderr[-3000:]
    # the run record, from the control file
    assert [(r["as_of"], r["status"]) for r in json.loads(on_spark.stdout)["runs"]] == [(AS_OF.isoformat(), "success")]

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
    """Publishing the same night again (``crm spark publish``, after the killed one of the
    ``published`` fixture) writes a new version of every current table and re-points its
    view, replaces each history table's slice instead of adding to it, keeps the two
    newest versions of a current table, and names the version in
    ``ops.published_versions``: BI still reads exactly DuckDB's tables."""
    duckdb_home, home, _, _ = published
    again = with_spark("crm", "spark", "publish", "--home", str(home))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert re.search(r"gate 2 passed in [\d.]+ s; published on Spark for " + AS_OF.isoformat(), again.stdout), \
        again.stdout
    catalog = read_published(home, tmp_path)
    mismatches, _, tables = differences_from_duckdb(duckdb_home, tmp_path)
    assert not mismatches, "\n".join(mismatches)
    versions: dict[str, list[str]] = {}
    for row in catalog["published_versions"]:
        versions.setdefault(row["table_name"], []).append(row["version"])
    assert set(versions) == set(tables)
    first = PUBLISHED_TABLES[0].name  # switched by the killed publish too
    assert all(len(set(v)) == (3 if table == first else 2) for table, v in versions.items()), versions
    newest = {table: max(v) for table, v in versions.items()}
    current = {r["table_name"] for r in catalog["published_versions"] if r["mode"] == "current"}
    assert first in current
    for table in current:  # the two newest versions kept behind a current view, the older ones dropped
        kept = sorted(name for name in catalog["store"] if name.startswith(table + "__v"))
        assert kept == sorted(f"{table}__{v}" for v in sorted(set(versions[table]))[-2:]), (table, kept)
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


def test_a_warehouse_in_use_by_another_process_is_a_one_line_answer(built):
    """Spark's embedded catalog takes one process at a time: while another process holds
    it, `crm status` shows the run record's last snapshot, and `crm run` and `crm spark
    publish` refuse in one line instead of failing deep in Hive's client."""
    holder = subprocess.Popen(
        [str(spark_environment() / "bin" / "python"), "-c",
         "import sys, time; from crm_pipeline.spark_session import open_session; "
         "open_session(sys.argv[1]).sql('show databases').collect(); print('held', flush=True); time.sleep(600)",
         str(built / "spark")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=PROJECT_ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        url = f"spark://{built / 'spark'}"
        status = with_spark("crm", "status", "--warehouse", url, "--json")
        assert status.returncode == 0, status.stderr[-2000:]
        shown = json.loads(status.stdout)
        assert shown["from_snapshot"] is True and [r["status"] for r in shown["runs"]] == ["success"]
        # the published tables too, as the last publish left them (the snapshot keeps them)
        assert {t["table"] for t in shown["tables"]} == {t.name for t in PUBLISHED_TABLES}, shown["tables"]
        assert {t["as_of"] for t in shown["tables"]} == {AS_OF.isoformat()}
        for args in (("run", "--home", str(built), "--as-of", AS_OF.isoformat(), "--warehouse", url),
                     ("spark", "publish", "--home", str(built))):
            done = with_spark("crm", *args)
            assert done.returncode == 1, args
            assert "is in use by another process" in done.stderr and "Traceback" not in done.stderr, done.stderr
            assert "Exception" not in done.stderr, done.stderr[-2000:]
    finally:
        holder.kill()
        holder.wait()
