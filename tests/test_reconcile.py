"""Every source row accounted for: change times in other formats or NULL, rows committed
late into a window already read, rows deleted at the source, and a night that cannot
account for a row fails naming it. Extraction runs through its real functions against
real sources (SQLite, PostgreSQL, MariaDB) into a DuckDB warehouse."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from crm_pipeline import demo, extract
from crm_pipeline.cli import app
from crm_pipeline.extract import Accounting, SourceNotReconciled, account_for_source, extract_all
from crm_pipeline.warehouse import Warehouse, WarehouseConfig

DAY = date(2026, 3, 30)
NEXT = DAY + timedelta(days=1)
CUSTOMERS = 60


def _warehouse(tmp_path) -> Warehouse:
    return Warehouse(WarehouseConfig.from_url(f"duckdb:///{tmp_path / 'warehouse.duckdb'}"))


def _orders(url: str) -> sa.Table:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    return engine, sa.Table("orders", sa.MetaData(), autoload_with=engine)


def _add_order(url: str, order_id: int, updated_at) -> int:
    """A copy of an existing order under a new key with ``updated_at`` stored as given
    (on SQLite exactly as given: text, a number or NULL); returns its customer."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///"):]) as con:
            con.row_factory = sqlite3.Row
            row = dict(con.execute("select * from orders limit 1").fetchone())
            if isinstance(updated_at, datetime):
                updated_at = updated_at.strftime("%Y-%m-%d %H:%M:%S")
            row.update({"order_id": order_id, "updated_at": updated_at})
            con.execute(f"insert into orders ({', '.join(row)}) values ({', '.join('?' for _ in row)})",
                        tuple(row.values()))
        return row["customer_id"]
    engine, table = _orders(url)
    with engine.begin() as con:
        row = dict(con.execute(sa.select(table).limit(1)).mappings().one())
        row.update({"order_id": order_id, "updated_at": updated_at})
        con.execute(table.insert().values(**row))
    engine.dispose()
    return row["customer_id"]


def _night(wh: Warehouse, url: str, day: date, *, full: bool = False) -> dict[str, Accounting]:
    extract_all(wh, url, as_of=day, run_id=f"night__{day}")
    return {a.entity: a for a in account_for_source(wh, url, as_of=day, run_id=f"night__{day}", full=full)}


def _raw_times(wh: Warehouse, order_id: int) -> list[str]:
    return [str(t) for (t,) in wh.query("select updated_at from raw.orders where order_id = ? order by updated_at",
                                        (order_id,))]


@pytest.fixture()
def sqlite_source(tmp_path):
    url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    demo.advance_source(url, DAY, customers=CUSTOMERS)
    return url


def test_change_times_in_other_formats_land_once_and_null_or_no_time_is_quarantined(tmp_path, sqlite_source):
    with _warehouse(tmp_path) as wh:
        _night(wh, sqlite_source, DAY)
        demo.advance_source(sqlite_source, NEXT, customers=CUSTOMERS)
        epoch = int(datetime(2026, 3, 31, 11, 30, tzinfo=timezone.utc).timestamp())
        odd = {
            9_800_001: ("2026/03/31 10:00", "2026-03-31 10:00:00"),
            9_800_002: ("31.03.2026 11:00:00", "2026-03-31 11:00:00"),   # day first, as written in Europe
            9_800_003: ("2026-03-31T12:00:00+02:00", "2026-03-31 10:00:00"),  # to UTC
            9_800_004: (epoch, "2026-03-31 11:30:00"),                    # epoch seconds
            9_800_005: (epoch * 1000, "2026-03-31 11:30:00"),             # epoch milliseconds
        }
        for order_id, (stored, _) in odd.items():
            _add_order(sqlite_source, order_id, stored)
        _add_order(sqlite_source, 9_800_006, None)
        _add_order(sqlite_source, 9_800_007, "last tuesday-ish")
        accounts = _night(wh, sqlite_source, NEXT)
        for order_id, (_, expected) in odd.items():
            assert _raw_times(wh, order_id) == [expected], order_id
        reasons = dict(wh.query("select _key, _reason from quarantine.orders where _key in ('9800006', '9800007')"))
        assert "not_null:updated_at" in reasons["9800006"]
        assert "updated_at" in reasons["9800007"] and "last tuesday-ish" in reasons["9800007"]
        assert accounts["orders"].ok
        # the same night again (a retry): nothing lands twice, nothing is quarantined twice
        raw_rows = wh.scalar("select count(*) from raw.orders")
        quarantined = wh.scalar("select count(*) from quarantine.orders")
        again = {a.entity: a for a in account_for_source(wh, sqlite_source, as_of=NEXT, run_id="retry")}
        assert (again["orders"].landed, again["orders"].quarantined) == (0, 0)
        assert wh.scalar("select count(*) from raw.orders") == raw_rows
        assert wh.scalar("select count(*) from quarantine.orders") == quarantined


def _late_commit(wh: Warehouse, url: str) -> None:
    _night(wh, url, DAY)
    demo.advance_source(url, NEXT, customers=CUSTOMERS)
    # committed late: its change time is inside the window night 1 had already read
    _add_order(url, 9_700_001, datetime(2026, 3, 28, 9, 0, 0))
    extract_all(wh, url, as_of=NEXT, run_id="night2")
    assert _raw_times(wh, 9_700_001) == []  # the night's window starts after it
    accounts = {a.entity: a for a in account_for_source(wh, url, as_of=NEXT, run_id="night2")}
    assert _raw_times(wh, 9_700_001) == ["2026-03-28 09:00:00"]
    assert (accounts["orders"].reread, accounts["orders"].landed, accounts["orders"].ok) == (1, 1, True)
    recorded = wh.query("select reread, landed, ok from ops.source_reconciliation where run_id = 'night2' "
                        "and entity = 'orders'")
    assert recorded == [(1, 1, True)]


def test_a_row_committed_late_into_a_read_window_is_read_again_sqlite(tmp_path, sqlite_source):
    with _warehouse(tmp_path) as wh:
        _late_commit(wh, sqlite_source)


@pytest.mark.postgres
def test_a_row_committed_late_into_a_read_window_is_read_again_postgres(tmp_path, pg_database):
    demo.advance_source(pg_database, DAY, customers=CUSTOMERS)
    with _warehouse(tmp_path) as wh:
        _late_commit(wh, pg_database)


@pytest.mark.mariadb
def test_a_row_committed_late_into_a_read_window_is_read_again_mariadb(tmp_path, mariadb_database):
    demo.advance_source(mariadb_database, DAY, customers=CUSTOMERS)
    with _warehouse(tmp_path) as wh:
        _late_commit(wh, mariadb_database)


def test_a_row_deleted_at_the_source_becomes_a_deleted_version_through_crm_reconcile(tmp_path, sqlite_source):
    with _warehouse(tmp_path) as wh:
        accounts = _night(wh, sqlite_source, DAY)
        assert accounts["orders"].deleted == 0
        victim = wh.scalar("select min(order_id) from raw.orders where not is_deleted")
    engine, table = _orders(sqlite_source)
    with engine.begin() as con:
        con.execute(table.delete().where(table.c.order_id == victim))
    engine.dispose()
    result = CliRunner().invoke(app, ["reconcile", "--as-of", DAY.isoformat(), "--home", str(tmp_path),
                                      "--source", sqlite_source])
    assert result.exit_code == 0, result.output
    assert "orders: 0 read again, 0 landed, 0 quarantined, 1 deleted at the source" in " ".join(result.output.split())
    with _warehouse(tmp_path) as wh:
        latest = wh.query("select is_deleted, cast(updated_at as varchar) from raw.orders where order_id = ? "
                          "order by updated_at desc limit 1", (victim,))
        assert latest == [(True, "2026-03-30 23:59:59.999999")]
        # a second comparison finds nothing more to delete
        again = {a.entity: a for a in account_for_source(wh, sqlite_source, as_of=DAY, run_id="r2", full=True)}
        assert again["orders"].deleted == 0


def test_what_cannot_be_accounted_for_fails_the_night_naming_the_keys():
    accounts = [Accounting("customers"), Accounting("orders", missing_keys=[str(k) for k in range(1, 26)])]
    with pytest.raises(SourceNotReconciled) as failure:
        extract.require_reconciled(accounts)
    message = str(failure.value)
    assert "orders: 25 rows of the source are in neither raw nor quarantine" in message
    assert "keys 1, 2, 3" in message and "20 …" in message and "21" not in message.split("keys")[1]
    assert "customers" not in message
    extract.require_reconciled([Accounting("orders")])  # nothing missing: no failure
