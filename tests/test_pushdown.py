"""Extraction as SQL inside a DuckDB warehouse (``pushdown``) against the chunked path.

The same PostgreSQL source, with rows that break gate 1 in every way a typed source can,
is extracted twice: through the warehouse (``pushdown``) and through the chunked
connectorx reader. Both must land the same rows with the same hashes, quarantine the same
rows under the same rules and reasons, and, after a day of changes, count the same
duplicates (which needs the row hashes of both paths to agree)."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from crm_pipeline import demo, extract as ex
from crm_pipeline.extract import hashing, pushdown as pushdown_path
from crm_pipeline.contract import ENTITIES, ORDERS
from crm_pipeline.gates import GateSettings
from crm_pipeline.warehouse import Warehouse, WarehouseConfig

pytestmark = pytest.mark.postgres

D1 = date(2024, 3, 31)
D2 = D1 + timedelta(days=1)


def _pg(url: str):
    import psycopg2

    con = psycopg2.connect(url)
    con.autocommit = True
    return con


def _inject(url: str, day: date = D2) -> dict[int, str]:
    """Break some orders and one complaint on ``day``; returns order id → the rule expected."""
    con = _pg(url)
    at = datetime.combine(day, datetime.min.time()) + timedelta(hours=9)
    expected = {}
    with con.cursor() as cur:
        cur.execute("select order_id from orders order by order_id limit 8")
        ids = [r[0] for r in cur.fetchall()]
        cases = [
            ("status = 'lost'", "in_set:status"),
            ("gross_amount = -5", "range:gross_amount"),
            ("currency = null", "not_null:currency"),
            ("customer_id = 99999999", "fk:customer_id"),
            ("paid_at = timestamp '2031-01-01 00:00:00'", "range:paid_at"),
            ("product_category = 'hard' || chr(7) || 'ware'", None),  # cleaned, stays good
            ("status = ''", "in_set:status"),
            ("gross_amount = 12.50, cost_amount = 100.00, paid_amount = 0.05", None),  # good: money texts
        ]
        for oid, (assignment, rule) in zip(ids, cases):
            cur.execute(f"update orders set {assignment}, updated_at = %s where order_id = %s", (at, oid))
            if rule:
                expected[oid] = rule
        cur.execute("select complaint_id from complaints order by complaint_id limit 1")
        cid = cur.fetchone()[0]
        cur.execute("update complaints set resolved_at = opened_at - interval '1 day', updated_at = %s "
                    "where complaint_id = %s", (at, cid))
    con.close()
    return expected


def _raw(wh: Warehouse, entity) -> pd.DataFrame:
    """raw with each version's hash: stored, or (a first load through SQL) computed from
    the typed columns, which must give what the chunked path computed in Python."""
    cols = ", ".join([*entity.columns, f"{ex.stored_hash_sql(entity)} as _row_hash", "_visible_from", "_as_of"])
    df = wh.query_df(f"select {cols} from raw.{entity.name} order by {entity.key}, updated_at, _row_hash")
    return df.reset_index(drop=True)


def _quarantine(wh: Warehouse, entity) -> list[tuple]:
    return sorted(wh.query(f"select _key, _rule, _reason, _record, _as_of from quarantine.{entity.name}"),
                  key=lambda r: tuple(str(x) for x in r))


def _stats(batches) -> dict:
    return {s.entity: (s.rows_extracted, s.rows_duplicate, s.rows_staged, s.rows_quarantined) for s in batches}


def test_pushdown_lands_what_the_chunked_path_lands(tmp_path, pg_database):
    demo.advance_source(pg_database, D1, customers=120)
    # "mixed": first load through SQL (no stored hashes), the day after in chunks, which
    # must still recognise the re-read versions by their (computed) hashes
    whs = {name: Warehouse(WarehouseConfig.from_url(f"duckdb:///{tmp_path / name}.duckdb"))
           for name in ("pushdown", "chunked", "mixed")}
    readers = {"pushdown": None, "chunked": "connectorx", "mixed": None}
    try:
        first = {n: ex.extract_all(wh, pg_database, as_of=D1, run_id="r1", reader=readers[n]) for n, wh in whs.items()}
        readers["mixed"] = "connectorx"
        assert {s.reader for s in first["pushdown"]} == {"pushdown"}
        assert {s.reader for s in first["chunked"]} == {"connectorx"}
        assert _stats(first["pushdown"]) == _stats(first["chunked"])
        # the SQL path's first load stores no hash; the chunked path stores every one
        stored = {n: wh.scalar("select count(_row_hash) from raw.orders") for n, wh in whs.items()}
        assert stored["pushdown"] == 0 and stored["chunked"] == whs["chunked"].scalar("select count(*) from raw.orders")

        demo.advance_source(pg_database, D2, customers=120)
        expected = _inject(pg_database)
        lenient = GateSettings(max_quarantine_share=1.0)  # a small day with many broken rows
        second = {n: ex.extract_all(wh, pg_database, as_of=D2, run_id="r2", reader=readers[n], gate_settings=lenient)
                  for n, wh in whs.items()}
        s2 = _stats(second["pushdown"])
        assert s2 == _stats(second["chunked"]) == _stats(second["mixed"])
        # the overlap re-reads rows that already landed: both paths see them as duplicates
        assert s2["orders"][1] > 0, s2

        for entity in ENTITIES:
            b = _raw(whs["chunked"], entity)
            for other in ("pushdown", "mixed"):
                a = _raw(whs[other], entity)
                pd.testing.assert_frame_equal(a, b, check_dtype=False, obj=f"{other}: raw.{entity.name}")
                assert _quarantine(whs[other], entity) == _quarantine(whs["chunked"], entity), (other, entity.name)

        rules = dict(whs["pushdown"].query("select cast(_key as bigint), _rule from quarantine.orders"))
        assert rules == expected
        assert whs["pushdown"].query("select _rule from quarantine.complaints") == [("order:resolved_before_opened",)]
        cleaned = whs["pushdown"].scalar(
            "select product_category from raw.orders where product_category like 'hard%ware' and _as_of = ?", (D2,))
        assert cleaned == "hardware"
        # no landing table is left behind
        for wh in whs.values():
            assert not [t for s in ("raw", "quarantine") for t in wh.tables(s) if t.startswith(ex.LANDING_PREFIX)]
    finally:
        for wh in whs.values():
            wh.close()


def test_a_first_load_straight_into_raw_quarantines_like_the_chunked_path(tmp_path, pg_database, monkeypatch):
    """Broken rows already in the first load. With the source's primary key on the entity
    key, the SQL path inserts the window straight into raw and takes the suspects out
    again; without it, it lands and counts the batch first. Both must land and quarantine
    exactly what the chunked reader does."""
    demo.advance_source(pg_database, D1, customers=120)
    expected = _inject(pg_database, D1)
    engine = ex.source_engine(pg_database)
    try:
        assert ex.source_key_is_unique(engine, "public", ORDERS)
        landed = {}
        for name, reader in (("direct", None), ("chunked", "connectorx"), ("counted", None)):
            if name == "counted":
                con = _pg(pg_database)
                with con.cursor() as cur:
                    cur.execute("alter table orders drop constraint orders_pkey")
                con.close()
                assert not ex.source_key_is_unique(engine, "public", ORDERS)
            with Warehouse(WarehouseConfig.from_url(f"duckdb:///{tmp_path / name}.duckdb")) as wh:
                stats = {s.entity: s for s in ex.extract_all(wh, pg_database, as_of=D1, run_id="r1", reader=reader)}
                assert stats["orders"].reader == ("connectorx" if reader else "pushdown")
                assert stats["orders"].rows_quarantined == len(expected)
                assert stats["orders"].rows_staged + len(expected) == stats["orders"].rows_extracted
                landed[name] = ({e.name: _raw(wh, e) for e in ENTITIES},
                                {e.name: _quarantine(wh, e) for e in ENTITIES},
                                dict(wh.query("select cast(_key as bigint), _rule from quarantine.orders")))
                assert not [t for s in ("raw", "quarantine") for t in wh.tables(s) if t.startswith(ex.LANDING_PREFIX)]
    finally:
        engine.dispose()
    for name in ("direct", "counted"):
        assert landed[name][2] == expected, name
        assert landed[name][1] == landed["chunked"][1], name
        for entity in ENTITIES:
            pd.testing.assert_frame_equal(landed[name][0][entity.name], landed["chunked"][0][entity.name],
                                          check_dtype=False, obj=f"{name}: raw.{entity.name}")
    # the control character was cleaned, the row kept
    cleaned = landed["direct"][0]["orders"].loc[lambda df: df["product_category"] == "hardware", "order_id"]
    assert len(cleaned) >= 1
    # the next day re-reads the whole first day (a long overlap): the cleaned rows and
    # every other version are recognised as already landed, none lands twice
    monkeypatch.setenv("CRM_EXTRACT_OVERLAP_MINUTES", str(3 * 24 * 60))
    with Warehouse(WarehouseConfig.from_url(f"duckdb:///{tmp_path / 'direct'}.duckdb")) as wh:
        again = {s.entity: s for s in ex.extract_all(wh, pg_database, as_of=D2, run_id="r2",
                                                       gate_settings=GateSettings(max_quarantine_share=1.0))}
        # nothing changed in the source: only the quarantined rows are read as new (again)
        assert again["orders"].rows_staged == 0
        assert again["orders"].rows_quarantined == len(expected)
        versions = dict(wh.query("select order_id, count(*) from raw.orders where updated_at < ? group by order_id",
                                 (datetime.combine(D2, datetime.min.time()),)))
    assert set(versions.values()) == {1}
    assert all(versions[int(k)] == 1 for k in cleaned)


def test_a_first_load_stopped_before_its_suspects_left_raw_is_mended_by_the_retry(tmp_path, pg_database,
                                                                                monkeypatch):
    """The first load's suspect rows leave raw right after the batch's commit. A process
    that dies in between leaves them there, never visible to a run date; the retry
    deletes them before it reads raw and lands what an uninterrupted first load lands."""
    demo.advance_source(pg_database, D1, customers=120)
    expected = _inject(pg_database, D1)
    with Warehouse(WarehouseConfig.from_url(f"duckdb:///{tmp_path / 'clean'}.duckdb")) as wh:
        ex.extract_all(wh, pg_database, as_of=D1, run_id="r1")
        clean = ({e.name: _raw(wh, e) for e in ENTITIES}, {e.name: _quarantine(wh, e) for e in ENTITIES})

    monkeypatch.setenv("CRM_FAULT_INJECT", "extract:before_suspects_leave:orders")
    monkeypatch.setenv("CRM_FAULT_MARKER", str(tmp_path / "fault.fired"))
    with Warehouse(WarehouseConfig.from_url(f"duckdb:///{tmp_path / 'stopped'}.duckdb")) as wh:
        with pytest.raises(ex.SourceError, match="fault injected"):
            ex.extract_all(wh, pg_database, as_of=D1, run_id="f1")
        # the batch committed; its suspects wait in raw, out of sight of every run date
        assert "orders" in {r[0] for r in wh.query("select entity from ops.extract_batches")}
        waiting = {int(r[0]) for r in wh.query(
            f"select order_id from raw.orders where _visible_from = date '{ex.NEVER_VISIBLE}'")}
        assert set(expected) <= waiting
        assert all(str(r[0]).endswith(ex.SUSPECT_MARK) for r in wh.query(
            f"select distinct _batch_id from raw.orders where _visible_from = date '{ex.NEVER_VISIBLE}'"))
        visible = wh.scalar("select count(*) from raw.orders where _visible_from <= ?", (D1,))
        assert visible == len(clean[0]["orders"])  # the good rows of the batch, suspects' good ones included

        retry = {s.entity: s for s in ex.extract_all(wh, pg_database, as_of=D1, run_id="f2",
                                                       gate_settings=GateSettings(max_quarantine_share=1.0))}
        assert retry["orders"].rows_staged == 0  # nothing new: the committed batch stands
        assert wh.scalar(f"select count(*) from raw.orders where _visible_from = date '{ex.NEVER_VISIBLE}'") == 0
        for entity in ENTITIES:
            pd.testing.assert_frame_equal(_raw(wh, entity), clean[0][entity.name], check_dtype=False,
                                          obj=f"retried: raw.{entity.name}")
        # the retry re-read the window: the quarantined rows were read again and quarantined again
        assert retry["orders"].rows_quarantined == len(expected)
        assert dict(wh.query("select cast(_key as bigint), _rule from quarantine.orders "
                             "where _batch_id = ?", (retry["orders"].batch_id,))) == expected


def test_money_text_is_the_same_in_python_and_in_sql():
    """Hand-written expectations: to the cent, two decimals."""
    import duckdb

    values = [100.0, 12.5, 0.05, -12.3, 1590.59, 99999999999.99, 0.1, 1e-3]
    expected = ["100.00", "12.50", "0.05", "-12.30", "1590.59", "99999999999.99", "0.10", "0.00"]
    assert list(hashing._canon_money(np.array(values))) == expected
    con = duckdb.connect()
    sql = ex.money_text_sql("x")
    got = [con.execute(f"select {sql} from (select cast(? as decimal(18,2)) as x)", [v]).fetchone()[0] for v in values]
    assert got == expected


def test_a_source_column_of_another_type_takes_the_chunked_path(tmp_path, pg_database):
    """gross_amount stored as text in the source: the SQL path cannot type it; the chunked
    path parses it (and quarantines what does not parse)."""
    demo.advance_source(pg_database, D1, customers=60)
    con = _pg(pg_database)
    with con.cursor() as cur:
        cur.execute("alter table orders alter column gross_amount type text")
        cur.execute("update orders set gross_amount = '12,5O' where order_id = (select min(order_id) from orders)")
    con.close()
    with Warehouse(WarehouseConfig.from_url(f"duckdb:///{tmp_path / 'w.duckdb'}")) as wh:
        stats = {s.entity: s for s in ex.extract_all(wh, pg_database, as_of=D1, run_id="r1")}
        assert stats["orders"].reader != "pushdown"
        assert stats["customers"].reader == "pushdown"
        assert stats["orders"].quarantine_rules == {"parse:gross_amount": 1}
        total = wh.scalar("select count(*) from raw.orders") + stats["orders"].rows_quarantined
        assert total == stats["orders"].rows_extracted
    assert ORDERS.columns["gross_amount"] == "money"


def test_timestamp_text_is_the_same_in_python_and_in_sql():
    import duckdb

    values = ["2024-01-02 03:04:05.500000", "2024-01-02 03:04:05", "2024-01-02 03:04:05.000123", "2024-01-02 00:00:00"]
    expected = ["2024-01-02 03:04:05.5", "2024-01-02 03:04:05", "2024-01-02 03:04:05.000123", "2024-01-02 00:00:00"]
    got_py = list(hashing._canon(pd.Series(pd.to_datetime(values, format="ISO8601")), "timestamp"))
    assert got_py == expected
    con = duckdb.connect()
    sql = hashing._canon_sql("ts", "timestamp", "TIMESTAMP")
    got_sql = [con.execute(f"select {sql} from (select cast(? as timestamp) as ts)", [v]).fetchone()[0] for v in values]
    assert got_sql == expected


def _raw_stored(wh: Warehouse, entity) -> pd.DataFrame:
    """raw with each version's stored hash (a PostgreSQL warehouse keeps every one)."""
    cols = ", ".join([*entity.columns, "_row_hash", "_visible_from", "_as_of"])
    return wh.query_df(f"select {cols} from raw.{entity.name} order by {entity.key}, updated_at, _row_hash"
                       ).reset_index(drop=True)


def test_a_postgres_warehouse_first_load_runs_as_sql_in_duckdb(tmp_path, pg_databases, monkeypatch):
    """PostgreSQL source, PostgreSQL warehouse: the first load runs in an in-memory DuckDB
    with both attached. It must land, hash and quarantine what the chunked reader does,
    with the source's key constraint and without it; the night after (chunked, as every
    batch into a non-empty raw) must recognise the re-read versions by their stored hashes;
    and a failure inside the batch must leave nothing of it in raw."""
    source = pg_databases()
    demo.advance_source(source, D1, customers=120)
    expected = _inject(source, D1)
    whs = {name: Warehouse(WarehouseConfig.from_url(pg_databases())) for name in ("sql", "chunked", "counted")}
    readers = {"sql": None, "chunked": "connectorx", "counted": None}
    lenient = GateSettings(max_quarantine_share=1.0)
    try:
        first = {}
        for name, wh in whs.items():
            if name == "counted":
                con = _pg(source)
                with con.cursor() as cur:
                    cur.execute("alter table orders drop constraint orders_pkey")
                con.close()
            first[name] = ex.extract_all(wh, source, as_of=D1, run_id="r1", reader=readers[name],
                                         gate_settings=lenient)
        assert {s.reader for s in first["sql"]} == {s.reader for s in first["counted"]} == {"pushdown"}
        assert {s.reader for s in first["chunked"]} == {"connectorx"}
        assert _stats(first["sql"]) == _stats(first["chunked"]) == _stats(first["counted"])
        assert first["sql"][2].entity == "orders" and first["sql"][2].rows_quarantined == len(expected)
        for name, wh in whs.items():
            assert dict(wh.query("select cast(_key as bigint), _rule from quarantine.orders")) == expected, name
            total, hashed = wh.query("select count(*), count(_row_hash) from raw.orders")[0]
            assert total == hashed > 0, name  # PostgreSQL compares stored hashes only
        for entity in ENTITIES:
            b = _raw_stored(whs["chunked"], entity)
            for name in ("sql", "counted"):
                pd.testing.assert_frame_equal(_raw_stored(whs[name], entity), b, check_dtype=False,
                                              obj=f"{name}: raw.{entity.name}")
                assert _quarantine(whs[name], entity) == _quarantine(whs["chunked"], entity), (name, entity.name)

        # the night after: raw is not empty any more, so the batch is read in chunks and
        # compares the overlap's versions with the hashes the SQL path stored
        demo.advance_source(source, D2, customers=120)
        _inject(source, D2)
        second = {n: ex.extract_all(whs[n], source, as_of=D2, run_id="r2", gate_settings=lenient)
                  for n in ("sql", "chunked")}
        assert "pushdown" not in {s.reader for s in second["sql"]}
        assert _stats(second["sql"]) == _stats(second["chunked"])
        assert _stats(second["sql"])["orders"][1] > 0  # re-read versions counted as duplicates
        for entity in ENTITIES:
            pd.testing.assert_frame_equal(_raw_stored(whs["sql"], entity), _raw_stored(whs["chunked"], entity),
                                          check_dtype=False, obj=f"day 2: raw.{entity.name}")
        for wh in whs.values():
            assert not [t for s in ("raw", "quarantine") for t in wh.tables(s) if t.startswith(ex.LANDING_PREFIX)]
    finally:
        for wh in whs.values():
            wh.close()

    # a failure after the orders were inserted, inside the batch's transaction: nothing
    # of the batch stays in raw or in the bookkeeping; the retry lands it whole
    monkeypatch.setenv("CRM_FAULT_INJECT", "extract:after_first_chunk:orders")
    monkeypatch.setenv("CRM_FAULT_MARKER", str(tmp_path / "fault.fired"))
    with Warehouse(WarehouseConfig.from_url(pg_databases())) as wh:
        with pytest.raises(ex.SourceError, match="fault injected"):
            ex.extract_all(wh, source, as_of=D1, run_id="f1", gate_settings=lenient)
        assert (tmp_path / "fault.fired").exists()
        assert wh.scalar("select count(*) from raw.orders") == 0
        assert wh.scalar("select count(*) from quarantine.orders") == 0
        assert sorted(r[0] for r in wh.query("select entity from ops.extract_batches")) == ["contacts", "customers"]
        retry = {s.entity: s for s in ex.extract_all(wh, source, as_of=D1, run_id="f2", gate_settings=lenient)}
        assert retry["orders"].reader == "pushdown"
        assert wh.scalar("select count(*) from raw.orders") == retry["orders"].rows_staged > 0
        assert retry["customers"].rows_staged == 0 and retry["customers"].rows_duplicate > 0


def _index_scans(url: str, index: str) -> int:
    con = _pg(url)
    with con.cursor() as cur:
        cur.execute("select pg_stat_clear_snapshot()")
        cur.execute("select coalesce(sum(idx_scan), 0) from pg_stat_user_indexes where indexrelname = %s", (index,))
        n = int(cur.fetchone()[0])
    con.close()
    return n


def test_an_increment_reads_its_window_through_the_source_index(tmp_path, pg_database, monkeypatch):
    """A night's window of a source table with an index on updated_at is read by
    PostgreSQL through that index, not by scanning every page; what lands is what the
    scan of the whole table lands. The source's updated_at here is a timestamp with time
    zone and its sessions run eight hours east of UTC: a version one microsecond before
    the window's end (UTC) is in the night's batch, one at the end is not."""
    demo.advance_source(pg_database, D1, customers=80)
    dbname = pg_database.rsplit("/", 1)[1]
    con = _pg(pg_database)
    with con.cursor() as cur:
        cur.execute("alter table orders alter column updated_at type timestamptz using updated_at at time zone 'UTC'")
        cur.execute(f"alter database {dbname} set timezone = 'Asia/Shanghai'")
        # the tables are tiny: without this the planner would rightly scan them whole
        cur.execute(f"alter database {dbname} set enable_seqscan = off")
    con.close()
    whs = {name: Warehouse(WarehouseConfig.from_url(f"duckdb:///{tmp_path / name}.duckdb"))
           for name in ("indexed", "scanned")}
    try:
        for wh in whs.values():
            ex.extract_all(wh, pg_database, as_of=D1, run_id="r1")
        demo.advance_source(pg_database, D2, customers=80)
        end = datetime.combine(D2 + timedelta(days=1), datetime.min.time())  # the batch's window end, UTC
        con = _pg(pg_database)
        with con.cursor() as cur:
            cur.execute("select order_id from orders order by order_id limit 2")
            inside, outside = (r[0] for r in cur.fetchall())
            cur.execute("update orders set updated_at = %s::timestamp at time zone 'UTC' where order_id = %s",
                        (end - timedelta(microseconds=1), inside))
            cur.execute("update orders set updated_at = %s::timestamp at time zone 'UTC' where order_id = %s",
                        (end, outside))
        con.close()

        before = _index_scans(pg_database, "ix_orders_updated_at")
        indexed = {s.entity: s for s in ex.extract_all(whs["indexed"], pg_database, as_of=D2, run_id="r2")}
        after = before
        for _ in range(50):  # a backend reports its statistics when it ends
            after = _index_scans(pg_database, "ix_orders_updated_at")
            if after > before:
                break
            time.sleep(0.1)
        assert after > before, "the increment did not read orders through ix_orders_updated_at"

        monkeypatch.setattr(pushdown_path, "source_window_indexed", lambda *a, **k: False)
        scanned = {s.entity: s for s in ex.extract_all(whs["scanned"], pg_database, as_of=D2, run_id="r2")}
        assert indexed["orders"].reader == scanned["orders"].reader == "pushdown"
        assert _stats(indexed.values()) == _stats(scanned.values())
        for entity in ENTITIES:
            pd.testing.assert_frame_equal(_raw(whs["indexed"], entity), _raw(whs["scanned"], entity),
                                          check_dtype=False, obj=f"raw.{entity.name}")
        d2_orders = {r[0] for r in whs["indexed"].query("select order_id from raw.orders where _as_of = ?", (D2,))}
        assert inside in d2_orders
        assert outside not in d2_orders
    finally:
        for wh in whs.values():
            wh.close()
