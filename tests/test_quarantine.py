"""Quarantine is a waiting room: quarantined rows have a state, rows that only missed their
customer come back when it arrives, and an analyst admits or rejects rows with a reason.

Two nights are replayed after the baseline (``crm run`` once per night, on a DuckDB
warehouse and on a PostgreSQL one). Night 1 (DAY) sends, on the copied SQLite source:

* order 9_100_001 (1,200.00 CNY, shipped) for customer 8_100_001, which arrives on night 2;
* customer 8_100_002 with customer_type 'alien' (quarantined) and its order 9_100_002
  (1,200.00): the customer is fixed at the source on night 2;
* order 9_100_003 (gross -50) for customer 8_100_003, which arrives on night 2: it breaks
  the amount range as well, so it must keep waiting;
* order 9_100_004 (gross -75, a negative amount an analyst accepts) for customer 8_100_003:
  admitted with ``--force`` after night 1, it lands on night 2 once the customer is known;
* order 9_100_005 for an unknown customer: rejected after night 1;
* order 9_100_006 (gross -10) for a known customer: fixed at the source on night 2
  (gross 300.00), it comes back through the window and its quarantined version is superseded;
* one clean late order (23:30) so that night 2's window starts after the rows above.
"""

from __future__ import annotations

import getpass
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from crm_pipeline import extract
from crm_pipeline.contract import ORDERS
from crm_pipeline.extract import raw_store
from test_bad_input import customer, existing_customer, insert, order, ts
from wap_helpers import BASE_AS_OF, baseline_home, copy_home, open_wh, run_cli

DAY = BASE_AS_OF + timedelta(days=1)
NEXT = DAY + timedelta(days=1)
LATE_CUSTOMER, FIXED_CUSTOMER, NEGATIVE_CUSTOMER = 8_100_001, 8_100_002, 8_100_003
LATE_ORDER, FIXED_CUSTOMER_ORDER, NEGATIVE_ORDER, FORCED_ORDER, REJECTED_ORDER, FIXED_ORDER, CLEAN_LATE = (
    9_100_001, 9_100_002, 9_100_003, 9_100_004, 9_100_005, 9_100_006, 9_100_007)


def _night_one(source: Path) -> int:
    known = existing_customer(source)
    with sqlite3.connect(source) as con:
        insert(con, "orders", order(LATE_ORDER, LATE_CUSTOMER, updated_at=ts(DAY, 8)))
        insert(con, "customers", customer(FIXED_CUSTOMER, "Fixed Later Ltd", customer_type="alien"))
        insert(con, "orders", order(FIXED_CUSTOMER_ORDER, FIXED_CUSTOMER, updated_at=ts(DAY, 8, 5)))
        insert(con, "orders", order(NEGATIVE_ORDER, NEGATIVE_CUSTOMER, gross_amount=-50.0, updated_at=ts(DAY, 8, 10)))
        insert(con, "orders", order(FORCED_ORDER, NEGATIVE_CUSTOMER, gross_amount=-75.0, updated_at=ts(DAY, 8, 15)))
        insert(con, "orders", order(REJECTED_ORDER, 8_199_999, updated_at=ts(DAY, 8, 20)))
        insert(con, "orders", order(FIXED_ORDER, known, gross_amount=-10.0, updated_at=ts(DAY, 8, 25)))
        insert(con, "orders", order(CLEAN_LATE, known, updated_at=ts(DAY, 23, 30)))
    return known


def _night_two(source: Path) -> None:
    with sqlite3.connect(source) as con:
        insert(con, "customers", customer(LATE_CUSTOMER, "Arrived Late Ltd", d=NEXT))
        insert(con, "customers", customer(NEGATIVE_CUSTOMER, "Negative Ltd", d=NEXT))
        con.execute("update customers set customer_type = 'enterprise', updated_at = ? where customer_id = ?",
                    (ts(NEXT, 9), FIXED_CUSTOMER))
        con.execute("update orders set gross_amount = 300.0, updated_at = ? where order_id = ?",
                    (ts(NEXT, 10), FIXED_ORDER))


def _run(home: Path, day, warehouse: str):
    return run_cli(["run", "--home", home, "--as-of", day.isoformat(), "--source",
                    f"sqlite:///{home / 'source.sqlite'}", "--warehouse", warehouse])


def replay(home: Path, warehouse: str, monkeypatch) -> dict:
    """Night 1, the analyst's decisions, night 2; what each step printed."""
    # a handful of rows on a small source: the share and volume limits of gate 1 are not the subject
    monkeypatch.setenv("CRM_GATE_MAX_QUARANTINE_SHARE", "1")
    monkeypatch.setenv("CRM_GATE_VOLUME_FACTOR", "1000")
    out: dict = {"known": _night_one(home / "source.sqlite")}
    out["night1"] = _run(home, DAY, warehouse)
    assert out["night1"].exit_code == 0, out["night1"].output
    common = ["--home", home, "--warehouse", warehouse]
    out["refused"] = run_cli(["quarantine", "admit", NEGATIVE_ORDER, "--reason", "looks fine", *common])
    out["admit"] = run_cli(["quarantine", "admit", FORCED_ORDER, "--reason", "credit note booked as an order",
                            "--force", "--by", "analyst.anna", *common])
    out["reject"] = run_cli(["quarantine", "reject", REJECTED_ORDER, "--reason", "test order from the shop", *common])
    out["list"] = run_cli(["quarantine", "list", "--entity", "orders", "--state", "rejected", *common])
    _night_two(home / "source.sqlite")
    out["night2"] = _run(home, NEXT, warehouse)
    assert out["night2"].exit_code == 0, out["night2"].output
    return out


def _quarantined(wh, key: int) -> list[dict]:
    cols = ("_state", "_rule", "_decided_by", "_decided_at", "_decision_reason", "_admitted_batch_id", "_as_of")
    return [dict(zip(cols, row)) for row in wh.query(
        f"select {', '.join(cols)} from quarantine.orders where _key = ? order by _loaded_at", (str(key),))]


@pytest.fixture(scope="module")
def duckdb_replay(tmp_path_factory):
    home = copy_home(baseline_home(tmp_path_factory), tmp_path_factory.mktemp("waiting-room") / "home")
    with pytest.MonkeyPatch.context() as monkeypatch:
        out = replay(home, f"duckdb:///{home / 'warehouse.duckdb'}", monkeypatch)
    out["wh_url"] = f"duckdb:///{home / 'warehouse.duckdb'}"
    return out


def _assert_admitted_and_published(wh) -> None:
    for key, cid in ((LATE_ORDER, LATE_CUSTOMER), (FIXED_CUSTOMER_ORDER, FIXED_CUSTOMER)):
        [row] = _quarantined(wh, key)
        assert row["_state"] == "admitted" and row["_rule"] == "fk:customer_id"
        assert row["_decided_by"] == "crm pipeline" and row["_decided_at"] is not None
        assert f"customer_id {cid} is known now" in row["_decision_reason"]
        batch = row["_admitted_batch_id"]
        assert batch.startswith(f"orders-{NEXT.isoformat()}-admitted-")
        # in raw once, in that batch, visible from night 2
        assert wh.query("select _batch_id, cast(_visible_from as varchar), gross_amount from raw.orders "
                        "where order_id = ?", (key,)) == [(batch, NEXT.isoformat(), 1200)]
        # published: one shipped order of 1,200.00 on DAY, no longer a prospect
        monetary, frequency, segment = wh.query(
            "select monetary, frequency, rfm_segment from published.customer_rfm where customer_id = ?", (cid,))[0]
        assert (float(monetary), frequency) == (1200.0, 1)
        assert segment != "Prospects"


def test_order_for_a_customer_arriving_a_night_later_is_admitted_and_published(duckdb_replay):
    with open_wh(duckdb_replay["wh_url"]) as wh:
        # night 1: the order waited and the customer was unknown to published
        _assert_admitted_and_published(wh)


def test_order_whose_customer_was_quarantined_then_fixed_comes_back(duckdb_replay):
    with open_wh(duckdb_replay["wh_url"]) as wh:
        # the customer fixed at the source came back through the window: its quarantined
        # version is superseded by the version in raw
        assert wh.query("select _state, _rule from quarantine.customers where _key = ?", (str(FIXED_CUSTOMER),)) == [
            ("superseded", "in_set:customer_type")]
        assert wh.query("select customer_type from raw.customers where customer_id = ?", (FIXED_CUSTOMER,)) == [
            ("enterprise",)]
        [row] = _quarantined(wh, FIXED_CUSTOMER_ORDER)
        assert row["_state"] == "admitted"
        assert wh.scalar("select count(*) from published.customer_rfm where customer_id = ?", (FIXED_CUSTOMER,)) == 1


def test_a_row_that_also_breaks_another_rule_is_not_admitted(duckdb_replay):
    with open_wh(duckdb_replay["wh_url"]) as wh:
        [row] = _quarantined(wh, NEGATIVE_ORDER)
        assert row["_state"] == "waiting" and row["_rule"] == "range:gross_amount"
        assert row["_decided_by"] is None and row["_admitted_batch_id"] is None
        assert wh.scalar("select count(*) from raw.orders where order_id = ?", (NEGATIVE_ORDER,)) == 0
        # its customer arrived and has no revenue
        assert float(wh.scalar("select monetary from published.customer_rfm where customer_id = ?",
                               (NEGATIVE_CUSTOMER,))) == -75.0  # only the analyst's forced order counts


def test_admit_and_reject_through_the_cli_record_reason_who_when_and_state(duckdb_replay):
    refused = duckdb_replay["refused"]
    assert refused.exit_code == 1
    assert "still breaks range:gross_amount" in refused.output and "--force" in refused.output
    assert "Traceback" not in refused.output
    assert duckdb_replay["admit"].exit_code == 0, duckdb_replay["admit"].output
    assert "land in raw on the next run" in duckdb_replay["admit"].output
    assert duckdb_replay["reject"].exit_code == 0, duckdb_replay["reject"].output
    listed = duckdb_replay["list"].output
    assert str(REJECTED_ORDER) in listed and str(FORCED_ORDER) not in listed
    with open_wh(duckdb_replay["wh_url"]) as wh:
        [forced] = _quarantined(wh, FORCED_ORDER)
        assert forced["_state"] == "admitted" and forced["_decided_by"] == "analyst.anna"
        assert forced["_decision_reason"] == "credit note booked as an order"
        assert forced["_admitted_batch_id"].startswith(f"orders-{NEXT.isoformat()}-admitted-")
        assert forced["_decided_at"].date() >= NEXT  # decided after night 1 ran, on the wall clock
        assert wh.query("select gross_amount from raw.orders where order_id = ?", (FORCED_ORDER,)) == [(-75,)]
        [rejected] = _quarantined(wh, REJECTED_ORDER)
        assert rejected["_state"] == "rejected" and rejected["_decided_by"] == getpass.getuser()
        assert rejected["_decision_reason"] == "test order from the shop"
        assert rejected["_admitted_batch_id"] is None
        assert wh.scalar("select count(*) from raw.orders where order_id = ?", (REJECTED_ORDER,)) == 0


def test_a_row_fixed_at_the_source_supersedes_its_quarantined_version(duckdb_replay):
    with open_wh(duckdb_replay["wh_url"]) as wh:
        [row] = _quarantined(wh, FIXED_ORDER)
        assert row["_state"] == "superseded" and row["_admitted_batch_id"] is None
        assert [float(v) for (v,) in wh.query("select gross_amount from raw.orders where order_id = ?",
                                              (FIXED_ORDER,))] == [300.0]


def test_counts_per_state_are_in_the_summary_and_the_run_record(duckdb_replay):
    # orders after night 2: admitted 9_100_001, 9_100_002 (pipeline) and 9_100_004 (analyst);
    # waiting 9_100_003; rejected 9_100_005; superseded 9_100_006. customers: 8_100_002
    # superseded (fixed at the source on night 2).
    expected_orders = {"waiting": 1, "admitted": 3, "rejected": 1, "superseded": 1}
    with open_wh(duckdb_replay["wh_url"]) as wh:
        details = json.loads(wh.scalar(
            "select details from ops.run_stages s join ops.pipeline_runs r using (run_id) "
            "where s.stage = 'extract' and r.as_of = ?", (NEXT,)))
    assert details["quarantine"]["states"]["orders"] == expected_orders
    assert details["quarantine"]["states"]["customers"] == {"waiting": 0, "admitted": 0, "rejected": 0,
                                                            "superseded": 1}
    assert details["quarantine"]["landed"]["orders"]["admitted"] == 2
    assert details["quarantine"]["landed"]["orders"]["by_analyst"] == 1
    printed = duckdb_replay["night2"].output
    assert "quarantine (rows per state)" in printed
    orders_line = next(line for line in printed.splitlines() if "│ orders" in line and "quarantine" not in line
                       and line.count("│") == 7)
    assert [cell.strip() for cell in orders_line.split("│")[2:7]] == ["1", "3", "1", "1", "3"]


def test_a_quarantine_table_without_states_is_migrated(tmp_path):
    with open_wh(f"duckdb:///{tmp_path / 'old.duckdb'}") as wh:
        wh.ensure_schemas()
        wh.execute("create table quarantine.orders (_batch_id text, _as_of date, _key text, _rule text, "
                   "_reason text, _record text, _loaded_at timestamp)")
        wh.execute("insert into quarantine.orders values ('b1', date '2026-06-01', '1', 'fk:customer_id', "
                   "'fk:customer_id: customer_id 5 is not a known customer', '{}', timestamp '2026-06-02 01:00:00')")
        wh.execute("insert into quarantine.orders values ('b1', date '2026-06-01', '2', 'range:gross_amount', "
                   "'range:gross_amount: negative', '{}', timestamp '2026-06-02 01:00:00')")
        raw_store.ensure_tables(wh)
        assert wh.columns("quarantine", "orders")[-5:] == ["_state", "_decided_at", "_decided_by",
                                                          "_decision_reason", "_admitted_batch_id"]
        assert wh.query("select _key, _state from quarantine.orders order by _key") == [("1", "waiting"),
                                                                                      ("2", "waiting")]
        assert extract.state_counts(wh)[ORDERS.name]["waiting"] == 2


@pytest.mark.postgres
def test_an_admitted_row_is_published_on_a_postgres_warehouse(tmp_path, pg_database, monkeypatch):
    home = tmp_path / "home"
    made = run_cli(["demo-data", "--home", home, "--customers", 150, "--until", BASE_AS_OF.isoformat()])
    assert made.exit_code == 0, made.output
    base = _run(home, BASE_AS_OF, pg_database)
    assert base.exit_code == 0, base.output
    out = replay(home, pg_database, monkeypatch)
    assert out["admit"].exit_code == 0 and out["reject"].exit_code == 0 and out["refused"].exit_code == 1
    with open_wh(pg_database) as wh:
        _assert_admitted_and_published(wh)
        assert _quarantined(wh, NEGATIVE_ORDER)[0]["_state"] == "waiting"
        assert _quarantined(wh, FORCED_ORDER)[0]["_admitted_batch_id"] is not None
        assert _quarantined(wh, FIXED_ORDER)[0]["_state"] == "superseded"
