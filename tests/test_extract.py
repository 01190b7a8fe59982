"""Extraction, unit-ish: windows, watermark and overlap, late commits, new versions and soft
deletes, duplicates, identical batches from every reader, row hashes across engines, and
the atomicity of a batch when the source fails mid-extract. No Airflow, no full DAG."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from crm_pipeline import demo
from crm_pipeline import extract as ex
from crm_pipeline.extract import readers as source_readers, run as extract_run
from crm_pipeline.contract import ENTITIES, ENTITY_BY_NAME
from crm_pipeline.gates import GateSettings
from crm_pipeline.warehouse import Warehouse, WarehouseConfig
from helpers import psycopg2_url

D1 = date(2024, 3, 30)
D2 = D1 + timedelta(days=1)
CUSTOMERS = 300
META = ["_batch_id", "_loaded_at"]


def end_of(d: date) -> datetime:
    return datetime.combine(d + timedelta(days=1), datetime.min.time())


def wh_at(path: Path) -> Warehouse:
    return Warehouse(WarehouseConfig.from_url(f"duckdb:///{path}"))


@pytest.fixture(scope="module")
def sqlite_d1(tmp_path_factory) -> Path:
    """A demo SQLite source at the end of D1 (copy it before changing it)."""
    path = tmp_path_factory.mktemp("src") / "source.sqlite"
    demo.advance_source(f"sqlite:///{path}", D1, customers=CUSTOMERS)
    return path


@pytest.fixture()
def source(sqlite_d1, tmp_path) -> Path:
    path = tmp_path / "source.sqlite"
    path.write_bytes(sqlite_d1.read_bytes())
    return path


def src_count(path: Path, sql: str, *params) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql, params).fetchone()[0]
    finally:
        con.close()


def raw_frame(wh: Warehouse, entity: str) -> pd.DataFrame:
    e = ENTITY_BY_NAME[entity]
    df = wh.query_df(f"select * from raw.{entity} order by {e.key}, updated_at")
    return df.drop(columns=META).reset_index(drop=True)


# ---------------------------------------------------------------------------------------
# settings and hashes (pure)
# ---------------------------------------------------------------------------------------
def test_settings_from_the_environment(monkeypatch):
    assert ex.overlap_from_env() == timedelta(minutes=120)
    monkeypatch.setenv("CRM_EXTRACT_OVERLAP_MINUTES", "30")
    monkeypatch.setenv("CRM_EXTRACT_CHUNK_ROWS", "1_000")
    assert ex.overlap_from_env() == timedelta(minutes=30)
    assert ex.chunk_rows_from_env() == 1000
    monkeypatch.setenv("CRM_EXTRACT_CHUNK_ROWS", "lots")
    with pytest.raises(ValueError, match="CRM_EXTRACT_CHUNK_ROWS"):
        ex.chunk_rows_from_env()
    monkeypatch.setenv("CRM_EXTRACT_READER", "pandas")
    with pytest.raises(ValueError, match="CRM_EXTRACT_READER"):
        ex.reader_from_env()


def test_row_hash_normalises_engine_types():
    cols = ["order_id", "gross_amount", "paid_at", "order_date", "is_deleted", "status"]
    types = {c: ENTITY_BY_NAME["orders"].columns[c] for c in cols}
    sqlite_like = pd.DataFrame({"order_id": [5, 6], "gross_amount": [100, 1590.59],
                                "paid_at": ["2024-01-02 03:04:05.000000", None],
                                "order_date": ["2024-01-02", "2024-01-03"], "is_deleted": [0, 1],
                                "status": ["shipped", "returned"]})
    pg_like = pd.DataFrame({"order_id": pd.array([5, 6], dtype="Int64"),
                            "gross_amount": [Decimal("100.00"), Decimal("1590.5900000000")],
                            "paid_at": [datetime(2024, 1, 2, 3, 4, 5), None],
                            "order_date": [date(2024, 1, 2), date(2024, 1, 3)],
                            "is_deleted": pd.array([False, True], dtype="boolean"),
                            "status": ["shipped", "returned"]})
    a = ex.row_hashes(sqlite_like, cols, types)
    b = ex.row_hashes(pg_like, cols, types)
    assert list(a) == list(b)
    assert a.iloc[0] != a.iloc[1]
    changed = pg_like.copy()
    changed.loc[0, "status"] = "returned"
    assert ex.row_hashes(changed, cols, types).iloc[0] != b.iloc[0]


# ---------------------------------------------------------------------------------------
# windows, watermark, overlap, late commits, new versions, duplicates
# ---------------------------------------------------------------------------------------
def test_initial_then_incremental_window_and_reconciliation(source, tmp_path):
    url = f"sqlite:///{source}"
    with wh_at(tmp_path / "wh.duckdb") as wh:
        first = ex.extract_all(wh, url, as_of=D1, run_id="r1")
        for s in first:
            assert s.is_initial and s.window_start is None and s.window_end == end_of(D1)
            assert s.rows_extracted == s.rows_duplicate + s.rows_staged + s.rows_quarantined
            assert s.rows_staged + s.rows_quarantined == src_count(source, f"select count(*) from {s.entity}")
        mark = {e.name: ex.watermark(wh, e, end_of(D2)) for e in ENTITIES}
        # the same day again: everything in the window is a duplicate, nothing is staged
        again = ex.extract_all(wh, url, as_of=D1, run_id="r1b")
        assert all(s.rows_staged == 0 and s.rows_duplicate == s.rows_extracted for s in again)
        assert sum(s.rows_duplicate for s in again) > 0
        demo.advance_source(url, D2, customers=CUSTOMERS)
        second = ex.extract_all(wh, url, as_of=D2, run_id="r2", overlap=timedelta(minutes=45))
        for s in second:
            e = ENTITY_BY_NAME[s.entity]
            assert not s.is_initial
            # from the watermark (what landed), not the wall clock, minus the overlap
            assert s.window_start == min(mark[s.entity], end_of(D1)) - timedelta(minutes=45)
            lo = s.window_start.strftime("%Y-%m-%d %H:%M:%S.%f")
            hi = end_of(D2).strftime("%Y-%m-%d %H:%M:%S.%f")
            changed = src_count(source, f"select count(*) from {e.name} where updated_at >= ? and updated_at < ?",
                                end_of(D1).strftime("%Y-%m-%d %H:%M:%S.%f"), hi)
            in_window = src_count(source, f"select count(*) from {e.name} where updated_at >= ? and updated_at < ?",
                                  lo, hi)
            assert s.rows_extracted == in_window
            assert s.rows_staged + s.rows_quarantined == changed
            assert s.rows_duplicate == in_window - changed
            # one row per version: no key has the same updated_at twice in raw
            dupes = wh.scalar(f"select count(*) - count(distinct ({e.key}, updated_at)) from raw.{e.name}")
            assert dupes == 0


def test_late_commit_within_the_overlap_is_caught(source, tmp_path):
    url = f"sqlite:///{source}"
    with wh_at(tmp_path / "a.duckdb") as a, wh_at(tmp_path / "b.duckdb") as b:
        ex.extract_all(a, url, as_of=D1, run_id="a1")
        ex.extract_all(b, url, as_of=D1, run_id="b1")
        newest = ex.watermark(a, ENTITY_BY_NAME["orders"], end_of(D1))
    # a transaction that started before the D1 extract commits after it: its row carries
    # an updated_at a little before the newest change that had landed
    late = newest - timedelta(minutes=20)
    con = sqlite3.connect(source)
    order_id = con.execute("select min(order_id) from orders where status = 'shipped'").fetchone()[0]
    con.execute("update orders set status = 'returned', updated_at = ? where order_id = ?",
                (late.strftime("%Y-%m-%d %H:%M:%S.%f"), order_id))
    con.commit()
    con.close()
    with wh_at(tmp_path / "a.duckdb") as a, wh_at(tmp_path / "b.duckdb") as b:
        ex.extract_all(a, url, as_of=D2, run_id="a2")  # default overlap: 120 minutes
        ex.extract_all(b, url, as_of=D2, run_id="b2", overlap=timedelta(0))
        got_a = a.query("select status from raw.orders where order_id = ? order by updated_at", (order_id,))
        got_b = b.query("select status from raw.orders where order_id = ? order by updated_at", (order_id,))
    assert [r[0] for r in got_a] == ["shipped", "returned"]
    assert [r[0] for r in got_b] == ["shipped"]  # without the margin the late commit is lost


def test_changes_and_soft_deletes_arrive_as_new_versions_and_staging_drops_deleted(source, tmp_path):
    url = f"sqlite:///{source}"
    path = tmp_path / "wh.duckdb"
    with wh_at(path) as wh:
        ex.extract_all(wh, url, as_of=D1, run_id="r1")
    at = lambda h: datetime.combine(D2, datetime.min.time()).replace(hour=h).strftime("%Y-%m-%d %H:%M:%S.%f")  # noqa: E731
    con = sqlite3.connect(source)
    cid = con.execute("select min(customer_id) from customers where not is_deleted").fetchone()[0]
    oid = con.execute("select min(order_id) from orders where status = 'shipped'").fetchone()[0]
    con.execute("update customers set is_deleted = 1, updated_at = ? where customer_id = ?", (at(9), cid))
    con.execute("update orders set status = 'returned', updated_at = ? where order_id = ?", (at(10), oid))
    con.commit()
    con.close()
    with wh_at(path) as wh:
        stats = {s.entity: s for s in ex.extract_all(wh, url, as_of=D2, run_id="r2")}
        assert stats["customers"].rows_staged >= 1 and stats["orders"].rows_staged >= 1
        versions = wh.query("select is_deleted, _as_of, _visible_from from raw.customers where customer_id = ? "
                            "order by updated_at", (cid,))
        assert [bool(v[0]) for v in versions] == [False, True]
        assert versions[1][1:] == (D2, D2)
        assert [r[0] for r in wh.query("select status from raw.orders where order_id = ? order by updated_at",
                                        (oid,))] == ["shipped", "returned"]
    # staging (the real dbt model) keeps the customer on D1 and drops it on D2
    assert _staged_customer_count(path, D1, cid, tmp_path) == 1
    assert _staged_customer_count(path, D2, cid, tmp_path) == 0


def _staged_customer_count(path: Path, as_of: date, cid: int, tmp_path: Path) -> int:
    import os

    from dbt.cli.main import dbtRunner

    from crm_pipeline.settings import DBT_PROJECT_DIR

    env = WarehouseConfig.from_url(f"duckdb:///{path}").dbt_env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        res = dbtRunner().invoke([
            "run", "--select", "+stg_crm__customers", "--project-dir", str(DBT_PROJECT_DIR),
            "--profiles-dir", str(DBT_PROJECT_DIR), "--target", "duckdb",
            "--target-path", str(tmp_path / "dbt-target"), "--log-path", str(tmp_path / "dbt-logs"),
            "--vars", f"{{as_of: '{as_of.isoformat()}'}}", "--quiet",
        ])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert res.success, res.exception
    with wh_at(path) as wh:
        schema = wh.scalar("select table_schema from information_schema.tables where table_name = 'stg_crm__customers'")
        return int(wh.scalar(f"select count(*) from {schema}.stg_crm__customers where customer_id = ?", (cid,)))


# ---------------------------------------------------------------------------------------
# a source failing mid-extract
# ---------------------------------------------------------------------------------------
def test_failure_after_the_first_chunk_leaves_no_row_and_the_retry_lands_each_row_once(source, tmp_path,
                                                                                       monkeypatch):
    url = f"sqlite:///{source}"
    monkeypatch.setenv("CRM_FAULT_INJECT", "extract:after_first_chunk:orders")
    monkeypatch.setenv("CRM_FAULT_MARKER", str(tmp_path / "fault.fired"))
    n_orders = src_count(source, "select count(*) from orders")
    n_customers = src_count(source, "select count(*) from customers")
    with wh_at(tmp_path / "wh.duckdb") as wh:
        with pytest.raises(ex.SourceError, match="fault injected"):
            ex.extract_all(wh, url, as_of=D1, run_id="r1", chunk_rows=40)
        assert n_orders > 40  # the first chunk had been written inside the batch's transaction
        assert wh.scalar("select count(*) from raw.orders") == 0
        assert wh.scalar("select count(*) from quarantine.orders") == 0
        assert wh.scalar("select count(*) from ops.extract_batches where entity = 'orders'") == 0
        assert wh.scalar("select count(*) from raw.customers") == n_customers  # committed before the failure
        # the retry (the marker says the fault already fired)
        stats = {s.entity: s for s in ex.extract_all(wh, url, as_of=D1, run_id="r1", chunk_rows=40)}
        assert wh.scalar("select count(*) from raw.orders") + stats["orders"].rows_quarantined == n_orders
        for e in ENTITIES:
            total, distinct = wh.query(f"select count(*), count(distinct {e.key}) from raw.{e.name}")[0]
            assert total == distinct, e.name  # each row exactly once
        assert stats["customers"].rows_staged == 0
        assert stats["customers"].rows_duplicate == stats["customers"].rows_extracted
        assert not [t for s in ("raw", "quarantine") for t in wh.tables(s) if t.startswith(ex.LANDING_PREFIX)]


def test_failure_after_landing_before_the_move_leaves_raw_untouched(source, tmp_path, monkeypatch):
    """Every chunk is landed and committed, gate 1 passed, then the run dies before the
    move: raw, quarantine and ops hold nothing of the batch and no landing table is left."""
    url = f"sqlite:///{source}"
    monkeypatch.setenv("CRM_FAULT_INJECT", "extract:before_commit:orders")
    monkeypatch.setenv("CRM_FAULT_MARKER", str(tmp_path / "fault.fired"))
    n_orders = src_count(source, "select count(*) from orders")
    with wh_at(tmp_path / "wh.duckdb") as wh:
        with pytest.raises(ex.SourceError, match="before_commit"):
            ex.extract_all(wh, url, as_of=D1, run_id="r1", chunk_rows=40)
        assert wh.scalar("select count(*) from raw.orders") == 0
        assert wh.scalar("select count(*) from ops.extract_batches where entity = 'orders'") == 0
        assert not [t for s in ("raw", "quarantine") for t in wh.tables(s) if t.startswith(ex.LANDING_PREFIX)]
        stats = {s.entity: s for s in ex.extract_all(wh, url, as_of=D1, run_id="r1", chunk_rows=40)}
        assert wh.scalar("select count(*) from raw.orders") + stats["orders"].rows_quarantined == n_orders


def test_landing_tables_of_a_killed_attempt_are_dropped_and_never_reach_raw(source, tmp_path):
    """A killed process cannot clean up: its landing tables (with committed chunks) stay
    behind. The next attempt drops them; their rows never count in raw."""
    url = f"sqlite:///{source}"
    n_orders = src_count(source, "select count(*) from orders")
    with wh_at(tmp_path / "wh.duckdb") as wh:
        ex.ensure_tables(wh)
        stray = f"{ex.LANDING_PREFIX}orders_deadbeef"
        wh.execute(f"create table raw.{stray} as select * from raw.orders where 1 = 0")
        wh.execute(f"insert into raw.{stray} (order_id, customer_id, _batch_id) values (1, 1, 'orders-x-deadbeef')")
        wh.execute(f"create table quarantine.{stray} as select * from quarantine.orders where 1 = 0")
        stats = {s.entity: s for s in ex.extract_all(wh, url, as_of=D1, run_id="r1", chunk_rows=40)}
        assert not [t for s in ("raw", "quarantine") for t in wh.tables(s) if t.startswith(ex.LANDING_PREFIX)]
        assert wh.scalar("select count(*) from raw.orders where _batch_id = 'orders-x-deadbeef'") == 0
        total, distinct = wh.query("select count(*), count(distinct order_id) from raw.orders")[0]
        assert total == distinct == n_orders - stats["orders"].rows_quarantined


# ---------------------------------------------------------------------------------------
# every reader, every engine: identical batches, identical hashes
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_sources(tmp_path_factory, request):
    """The same demo world at D1 in SQLite, PostgreSQL and MariaDB."""
    pg = request.getfixturevalue("pg_database_module")
    my = request.getfixturevalue("mariadb_database_module")
    lite = f"sqlite:///{tmp_path_factory.mktemp('lite') / 'source.sqlite'}"
    for url in (lite, psycopg2_url(pg), my):
        demo.advance_source(url, D1, customers=CUSTOMERS)
    return {"sqlite": lite, "postgresql": pg, "mariadb": my}


@pytest.fixture(scope="module")
def pg_database_module():
    import uuid

    import psycopg2

    from conftest import _pg_admin_url

    name = f"crm_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(_pg_admin_url())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"create database {name}")
    yield _pg_admin_url(name)
    with admin.cursor() as cur:
        cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s "
                    "and pid <> pg_backend_pid()", (name,))
        cur.execute(f"drop database if exists {name}")
    admin.close()


@pytest.fixture(scope="module")
def mariadb_database_module():
    import uuid

    import pymysql

    from conftest import MARIADB_URL

    name = f"crm_test_{uuid.uuid4().hex[:10]}"
    con = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    with con.cursor() as cur:
        cur.execute(f"create database {name} character set utf8mb4")
    yield MARIADB_URL.rsplit("/", 1)[0] + "/" + name
    with con.cursor() as cur:
        cur.execute(f"drop database if exists {name}")
    con.close()


@pytest.mark.postgres
@pytest.mark.mariadb
def test_same_row_hashes_from_sqlite_postgresql_and_mariadb(three_sources):
    hi = end_of(D1)
    for e in ENTITIES:
        by_engine = {}
        for name, url in three_sources.items():
            engine = ex.source_engine(url)
            try:
                frames = list(ex.iter_source_chunks(engine, e, None, hi, 10_000, "sqlalchemy"))
            finally:
                engine.dispose()
            df = pd.concat(frames)
            by_engine[name] = dict(zip(ex.key_text(df[e.key]), ex.row_hashes(df, list(e.columns), e.columns)))
        assert by_engine["sqlite"] == by_engine["postgresql"] == by_engine["mariadb"], e.name


@pytest.mark.postgres
@pytest.mark.mariadb
def test_every_reader_gives_identical_chunks_and_batches(three_sources, tmp_path):
    hi = end_of(D1)
    for source, readers in (("postgresql", ["sqlalchemy", "connectorx", "duckdb"]),
                            ("mariadb", ["sqlalchemy", "connectorx"])):
        engine = ex.source_engine(three_sources[source])
        try:
            for e in ENTITIES:
                chunks = {r: list(ex.iter_source_chunks(engine, e, None, hi, 37, r)) for r in readers}
                for r in readers[1:]:
                    assert len(chunks[r]) == len(chunks["sqlalchemy"]), (source, e.name, r)
                    for a, b in zip(chunks["sqlalchemy"], chunks[r]):
                        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
        finally:
            engine.dispose()
    # whole batches: raw and the counts are the same whatever the reader and the chunk size
    results = {}
    for source, reader, chunk in (("sqlite", "sqlalchemy", 50_000), ("postgresql", "duckdb", 50_000),
                                  ("postgresql", "connectorx", 23), ("postgresql", "sqlalchemy", 50_000),
                                  ("mariadb", "connectorx", 50_000)):
        with wh_at(tmp_path / f"{source}-{reader}-{chunk}.duckdb") as wh:
            stats = ex.extract_all(wh, three_sources[source], as_of=D1, run_id="r", reader=reader, chunk_rows=chunk)
            assert {s.reader for s in stats} == {reader}
            results[(source, reader, chunk)] = (
                {e.name: raw_frame(wh, e.name) for e in ENTITIES},
                [(s.entity, s.rows_extracted, s.rows_duplicate, s.rows_staged, s.rows_quarantined) for s in stats],
            )
    base_raw, base_counts = results[("sqlite", "sqlalchemy", 50_000)]
    for key, (raw, counts) in results.items():
        assert counts == base_counts, key
        for name in base_raw:
            pd.testing.assert_frame_equal(raw[name].drop(columns=["_window_end"]),
                                          base_raw[name].drop(columns=["_window_end"]), obj=f"{key} {name}")


@pytest.mark.postgres
def test_a_failing_fast_reader_falls_back_without_duplicates(three_sources, tmp_path, monkeypatch):
    real = source_readers._READ["duckdb"]

    def flaky(engine, entity, lo, hi, chunk_rows):
        for i, chunk in enumerate(real(engine, entity, lo, hi, chunk_rows)):
            if i == 1:
                raise ConnectionError("server closed the connection unexpectedly")
            yield chunk

    monkeypatch.setitem(source_readers._READ, "duckdb", flaky)
    monkeypatch.setattr(extract_run, "pushdown_possible", lambda *a, **k: False)  # the chunked readers' chain
    with wh_at(tmp_path / "wh.duckdb") as wh:
        stats = ex.extract_all(wh, three_sources["postgresql"], as_of=D1, run_id="r", chunk_rows=25)
        by = {s.entity: s for s in stats}
        assert by["orders"].reader in ("connectorx", "sqlalchemy")
        for e in ENTITIES:
            total, distinct = wh.query(f"select count(*), count(distinct {e.key}) from raw.{e.name}")[0]
            assert total == distinct
            assert total + by[e.name].rows_quarantined == by[e.name].rows_extracted


@pytest.mark.postgres
def test_a_failing_sql_extraction_falls_back_to_chunks_without_duplicates(three_sources, tmp_path, monkeypatch):
    """The warehouse-side extraction breaks after its scan (a DuckDB error): the batch is
    rolled back and read again in chunks; every row lands once."""
    from crm_pipeline import gates

    real = gates.gate1_suspect_sql

    def broken(entity, **kwargs):
        return real(entity, **kwargs) if entity.name != "orders" else "no_such_column is null"

    monkeypatch.setattr(gates, "gate1_suspect_sql", broken)
    with wh_at(tmp_path / "wh.duckdb") as wh:
        stats = ex.extract_all(wh, three_sources["postgresql"], as_of=D1, run_id="r")
        by = {s.entity: s for s in stats}
        assert by["customers"].reader == "pushdown"
        assert by["orders"].reader in ("duckdb", "connectorx", "sqlalchemy")
        assert not [t for s in ("raw", "quarantine") for t in wh.tables(s) if t.startswith(ex.LANDING_PREFIX)]
        for e in ENTITIES:
            total, distinct = wh.query(f"select count(*), count(distinct {e.key}) from raw.{e.name}")[0]
            assert total == distinct
            assert total + by[e.name].rows_quarantined == by[e.name].rows_extracted


def test_extraction_caps_duckdb_memory_only_while_it_runs(source, tmp_path, monkeypatch):
    """memory_limit belongs to the DuckDB instance that dbt's connection shares in the same
    process: extraction sets CRM_DUCKDB_MEMORY_LIMIT for itself and puts the old value back."""
    monkeypatch.setenv("CRM_DUCKDB_MEMORY_LIMIT", "300MB")
    seen = []
    real = extract_run._extract_entity

    def spy(wh, *args, **kwargs):
        seen.append(wh.scalar("select current_setting('memory_limit')"))
        return real(wh, *args, **kwargs)

    monkeypatch.setattr(extract_run, "_extract_entity", spy)
    with wh_at(tmp_path / "wh.duckdb") as wh:
        before = wh.scalar("select current_setting('memory_limit')")  # DuckDB's default
        ex.extract_all(wh, f"sqlite:///{source}", as_of=D1, run_id="r1")
        assert wh.scalar("select current_setting('memory_limit')") == before
    assert seen and set(seen) == {"286.1 MiB"}  # 300 MB = 300,000,000 bytes = 286.1 MiB


def test_a_refused_batch_keeps_its_broken_rows_and_reasons_where_the_stop_points(source, tmp_path):
    """Gate 1 refuses a batch whose quarantined share is above the limit: nothing of it
    is loaded, and the stop message names a table that holds each broken row's reason."""
    con = sqlite3.connect(source)
    con.execute("update orders set gross_amount = 'twelve' where order_id % 2 = 0")
    con.commit()
    con.close()
    broken = src_count(source, "select count(*) from orders where order_id % 2 = 0")
    url = f"sqlite:///{source}"
    with wh_at(tmp_path / "wh.duckdb") as wh:
        with pytest.raises(ex.BatchRejected) as refused:
            ex.extract_all(wh, url, as_of=D1, run_id="r1")
        message = str(refused.value)
        assert "orders:" in message and "above the limit of 20%" in message
        batch_id = message.split("where batch_id = '")[1].split("'")[0]
        assert batch_id.startswith("orders-")
        assert wh.scalar("select count(*) from raw.orders") == 0
        assert wh.scalar("select count(*) from quarantine.orders") == 0
        rows = wh.query("select entity, run_id, verdict, _key, _rule, _reason from ops.rejected_batches "
                        "where batch_id = ?", (batch_id,))
        assert len(rows) == broken > 0
        assert {r[0] for r in rows} == {"orders"} and {r[1] for r in rows} == {"r1"}
        assert all("above the limit" in r[2] for r in rows)
        assert {int(r[3]) % 2 for r in rows} == {0}
        assert all("gross_amount" in r[5] for r in rows)


def test_ids_above_2_to_the_53_stay_exact_beside_a_null(source, tmp_path):
    """A whole-number column with a NULL in the same chunk is never read through float64:
    2**53 + 1 has no float64 of its own (it would become 2**53)."""
    big_customer, big_order = 2**53 + 1, 2**62 + 3
    con = sqlite3.connect(source)
    template = con.execute("select * from customers order by customer_id limit 1").fetchone()
    names = [d[0] for d in con.execute("select * from customers limit 0").description]
    row = dict(zip(names, template), customer_id=big_customer)
    con.execute(f"insert into customers ({', '.join(names)}) values ({', '.join('?' for _ in names)})",
                [row[n] for n in names])
    order = con.execute("select * from orders order by order_id limit 1").fetchone()
    order_names = [d[0] for d in con.execute("select * from orders limit 0").description]
    insert = f"insert into orders ({', '.join(order_names)}) values ({', '.join('?' for _ in order_names)})"
    con.execute(insert, [dict(zip(order_names, order), order_id=big_order, customer_id=big_customer)[n]
                         for n in order_names])
    con.execute(insert, [dict(zip(order_names, order), order_id=big_order + 1, customer_id=None)[n]
                         for n in order_names])
    con.commit()
    con.close()
    with wh_at(tmp_path / "wh.duckdb") as wh:
        ex.extract_all(wh, f"sqlite:///{source}", as_of=D1, run_id="r1",
                       gate_settings=GateSettings(max_quarantine_share=1.0))
        assert wh.query("select customer_id from raw.customers where customer_id = ?", (big_customer,)) == \
            [(big_customer,)]
        assert wh.query("select order_id, customer_id from raw.orders where order_id = ?", (big_order,)) == \
            [(big_order, big_customer)]
        assert wh.scalar("select count(*) from raw.orders where customer_id = ?", (2**53,)) == 0
        reasons = wh.query("select _key, _reason from quarantine.orders where _key = ?", (str(big_order + 1),))
        assert len(reasons) == 1 and "customer_id" in reasons[0][1]
        assert "e+" not in reasons[0][1] and ".0" not in reasons[0][0]
