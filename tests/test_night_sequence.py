"""A sequence of nights publishes what a full rebuild of the same date publishes.

Whatever makes a night cheaper (kept seeds, incremental models, tests that skip what
cannot change) must not change what BI reads. One warehouse lives through a sequence of
nights on the embedded default (SQLite demo source, DuckDB):

* D0: the first load;
* D1, D2: ordinary increments;
* late changes: after D2's night, the source gets an order changed within D2 (after that
  night read it: the next window's overlap finds it) and a customer changed three days
  back (older than any window: the nightly reconciliation finds it);
* D3: the increment that lands them;
* a backfill of D1, then a re-run of D3.

The sequence's nights run in a warm server of its home (``crm serve``), the rebuilds each
in a cold process of their own: what a warm night publishes is compared with cold ones.

After D1 and after D3 the same date is rebuilt in full on a copy of the home: the same
source and the same raw history, but every table dbt derives dropped (staging,
intermediate, the audit schema, the seeds and their recorded state), so the night
recomputes everything from raw instead of continuing from kept rows. (A first load into an
empty warehouse is not that rebuild: with no history before its first night, the credit
snapshot grades from reconstructed data and segment migration has no previous night.)
Every published table must equal the rebuild's row for row (all columns but the run's
clocks and ids, helpers' ``VOLATILE``): history tables on the slice of that date, current
tables whole. The backfill of D1 must give D1's slices again and leave the current tables
at D3; afterwards every history table holds one row per customer and date.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from datetime import date, timedelta

import pytest

from crm_pipeline.publish import PUBLISHED_TABLES
from helpers import (CRM_COMMAND, PROJECT_ROOT, crm, published_tables, start_warm_server, stop_warm_server,
                     table_checksum)

pytestmark = pytest.mark.slow

D0 = date(2026, 5, 11)  # inside a quarter: no night of the sequence starts one
D1, D2, D3 = (D0 + timedelta(days=n) for n in (1, 2, 3))
CUSTOMERS = 150
#: one salt for every warehouse: hashed personal fields are then comparable between them
ENV = {"CRM_PII_SALT": "night-sequence-test-salt"}


def _run(*args: str) -> None:
    proc = crm(*args, env=ENV)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _night(*args: str) -> None:
    """A night of the sequence's home, through the ``crm`` command: handed to its warm server."""
    proc = subprocess.run([CRM_COMMAND, *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=900,
                          env={**os.environ, "COLUMNS": "200", **ENV})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


#: the history tables sliced by run date (the credit tables are sliced by grade quarter)
DATED_HISTORY = {t.name for t in PUBLISHED_TABLES if t.mode == "history" and t.key == "as_of"}


def _published(url: str, day: date) -> dict[str, tuple[int, str]]:
    """Every published table's (rows, checksum): history tables by run date on ``day``'s
    slice, every other table whole."""
    return {table: table_checksum(url, table, f"where as_of = '{day}'" if table in DATED_HISTORY else "")
            for table in published_tables(url)}


#: what dbt derives: dropped for the full rebuild
DERIVED_SCHEMAS = ("staging", "intermediate", "audit", "config")


def _rebuild(nightly_home, day: date, home) -> dict[str, tuple[int, str]]:
    """``day`` again on a copy of the home, with everything dbt derives dropped first."""
    import duckdb

    shutil.copytree(nightly_home, home, ignore=shutil.ignore_patterns("logs", "docs", "*.lock", "*.sock", "cosmos-cache"))
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        for schema in DERIVED_SCHEMAS:
            con.execute(f"drop schema if exists {schema} cascade")
        con.execute("delete from ops.dbt_seed_state")
        con.execute("drop table if exists ops.dbt_full_check")  # every data test runs again
    url = f"duckdb:///{home / 'warehouse.duckdb'}"
    _run("run", "--home", str(home), "--as-of", day.isoformat(), "--source", f"sqlite:///{home / 'source.sqlite'}",
         "--warehouse", url)
    return _published(url, day)


def _late_changes(source_db) -> tuple[int, int]:
    """After D2's night: an order changed late on D2 and a customer changed on D0 (the day
    the first load read), both only now visible at the source."""
    with sqlite3.connect(source_db) as con:
        order_id = con.execute("select order_id from orders where status = 'shipped' and is_deleted = 0 "
                               "order by order_id limit 1").fetchone()[0]
        con.execute("update orders set gross_amount = gross_amount + 1234.50, updated_at = ? where order_id = ?",
                    (f"{D2} 23:58:00", order_id))
        # a customer unchanged since before D0: the late version is its newest
        customer_id = con.execute("select customer_id from customers where is_deleted = 0 and updated_at < ? "
                                  "order by customer_id limit 1", (f"{D0} 23:30:00",)).fetchone()[0]
        con.execute("update customers set region = 'Late-Region', updated_at = ? where customer_id = ?",
                    (f"{D0} 23:30:00", customer_id))
    return order_id, customer_id


def _differences(got: dict, want: dict) -> list[str]:
    return sorted(t for t in set(got) | set(want) if got.get(t) != want.get(t))


def test_a_sequence_of_nights_publishes_what_a_full_rebuild_publishes(tmp_path):
    home = tmp_path / "nightly"
    server = start_warm_server(home, ENV)
    try:
        _sequence(tmp_path, home)
    finally:
        assert stop_warm_server(server, home) == 0
    import duckdb

    # every night of the sequence ran in the warm server, every rebuild in a process of its own
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        assert {pid for (pid,) in con.execute("select pid from ops.pipeline_runs").fetchall()} == {server.pid}
    for rebuilt in ("rebuild-d1", "rebuild-d3"):  # a copy of the home: its newest run is the rebuild's
        with duckdb.connect(str(tmp_path / rebuilt / "warehouse.duckdb"), read_only=True) as con:
            newest = con.execute("select pid from ops.pipeline_runs order by started_at desc limit 1").fetchone()[0]
        assert newest != server.pid


def _sequence(tmp_path, home) -> None:
    source_db = home / "source.sqlite"
    url = f"duckdb:///{home / 'warehouse.duckdb'}"
    args = ["--home", str(home), "--customers", str(CUSTOMERS)]
    _night("run", *args, "--as-of", D0.isoformat())

    _night("run", *args, "--as-of", D1.isoformat())
    rebuilt_d1 = _rebuild(home, D1, tmp_path / "rebuild-d1")
    nightly_d1 = _published(url, D1)
    assert len(nightly_d1) >= 30 and sum(rows > 0 for rows, _ in nightly_d1.values()) >= 25
    assert _differences(nightly_d1, rebuilt_d1) == []

    _night("run", *args, "--as-of", D2.isoformat())
    order_id, customer_id = _late_changes(source_db)
    _night("run", *args, "--as-of", D3.isoformat())
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:  # both late changes landed
        assert con.execute("select count(*) from raw.orders where order_id = ? and updated_at = ?",
                           [order_id, f"{D2} 23:58:00"]).fetchone()[0] == 1
        assert con.execute("select count(*) from raw.customers where customer_id = ? and region = 'Late-Region'",
                           [customer_id]).fetchone()[0] == 1
    rebuilt_d3 = _rebuild(home, D3, tmp_path / "rebuild-d3")
    nightly_d3 = _published(url, D3)
    assert _differences(nightly_d3, rebuilt_d3) == []

    # a backfill of D1 gives D1's slices again; the current tables still show D3
    _night("backfill", "--from", D1.isoformat(), "--to", D1.isoformat(), *args[:2], "--source", f"sqlite:///{source_db}")
    after_backfill = _published(url, D1)
    assert len(DATED_HISTORY) >= 10 and all(after_backfill[t] == nightly_d1[t] for t in DATED_HISTORY)
    assert _differences(_published(url, D3), rebuilt_d3) == []

    # a re-run of D3 changes nothing
    _night("run", *args, "--as-of", D3.isoformat())
    assert _differences(_published(url, D3), rebuilt_d3) == []
    # and after the backfill and the re-run every history table of customers holds one row
    # per customer and slice, and the segment history a slice for each date of the sequence
    history = {t.name: t.key for t in PUBLISHED_TABLES if t.mode == "history"}
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        per_customer = {table for (table,) in con.execute(
            "select table_name from information_schema.columns where table_schema = 'published' "
            "and column_name = 'customer_id'").fetchall()} & set(history)
        assert {"customer_segment_history", "customer_lifetime_value", "customer_credit_grades"} <= per_customer
        for table in sorted(per_customer):
            total, distinct = con.execute(f"select count(*), count(distinct (customer_id, {history[table]})) "
                                          f"from published.{table}").fetchone()
            assert total == distinct > 0, table
        assert [r[0] for r in con.execute("select distinct as_of from published.customer_segment_history "
                                          "order by 1").fetchall()] == [D0, D1, D2, D3]
