"""Bad input: what the nightly run does with a source that sends rubbish.

One small demo source and one baseline warehouse are built once (``helpers.baseline_home``,
a real ``crm run`` for 2026-06-30). Each scenario copies that state folder, damages the
copied SQLite source for the next day and runs the real DAG (``crm`` as a user runs it):

* row-level rubbish (all cases in ONE run, each with its own key): null and duplicate keys,
  orders for unknown customers, negative and absurd amounts, unknown currency and status,
  dates in the far future and before 1990, unparseable numbers and dates in text columns,
  a 10,000-character name, a complaint resolved before it was opened → each row lands in
  ``quarantine.<entity>`` with the right ``_rule``, its batch id and its original values,
  and the rest of the day is published; control characters and mixed scripts in names and
  SQL-looking free text are data: cleaned or kept, and published;
* batch-level rubbish (one run each): a renamed source column, a 95% drop in one entity's
  volume → the run stops before dbt with a one-line message and ``published`` is unchanged.

No scenario may show a stack trace to the user, and every run's row counts add up.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest

from crm_pipeline import runs
from crm_pipeline.contract import ENTITY_BY_NAME
from wap_helpers import BASE_AS_OF, baseline_home, copy_home, open_wh, published_checksum, run_cli, run_cli_process

pytestmark = pytest.mark.slow

DAY = BASE_AS_OF + timedelta(days=1)  # the day the rubbish arrives


def ts(d: date, hh: int = 10, mm: int = 0) -> str:
    return f"{d.isoformat()} {hh:02d}:{mm:02d}:00.000000"


# ---------------------------------------------------------------------------------------
# the source
# ---------------------------------------------------------------------------------------
def drop_primary_key(con: sqlite3.Connection, table: str) -> None:
    """Rebuild a source table without its primary key, as a source view or a careless
    export would be, so that null and duplicate keys can arrive."""
    sql = con.execute("select sql from sqlite_master where type = 'table' and name = ?", (table,)).fetchone()[0]
    sql = re.sub(r",\s*PRIMARY KEY \([^)]*\)", "", sql).replace(" NOT NULL", "")
    con.execute(sql.replace(f"CREATE TABLE {table}", f"CREATE TABLE {table}__nopk", 1))
    con.execute(f"insert into {table}__nopk select * from {table}")
    con.execute(f"drop table {table}")
    con.execute(f"alter table {table}__nopk rename to {table}")
    con.execute(f"create index ix_{table}_updated_at on {table} (updated_at)")


def insert(con: sqlite3.Connection, table: str, row: dict) -> None:
    con.execute(f"insert into {table} ({', '.join(row)}) values ({', '.join('?' for _ in row)})", list(row.values()))


def order(order_id, known_customer: int, d: date = DAY, **over) -> dict:
    row = dict(order_id=order_id, customer_id=known_customer, order_date=d.isoformat(), status="shipped", currency="CNY",
               gross_amount=1200.0, cost_amount=700.0, product_category="hardware",
               invoice_due_date=(d + timedelta(days=30)).isoformat(), paid_amount=None, paid_at=None,
               written_off_amount=0, updated_at=ts(d, 12, order_id % 60 if isinstance(order_id, int) else 0),
               is_deleted=0)
    row.update(over)
    return row


def customer(customer_id, name: str, d: date = DAY, **over) -> dict:
    row = dict(customer_id=customer_id, name=name, customer_type="enterprise", industry="retail", region="East",
               acquisition_channel="referral", account_manager="Test Manager", credit_limit=50_000, status="active",
               created_at=ts(d, 9), updated_at=ts(d, 9), is_deleted=0)
    row.update(over)
    return row


def complaint(complaint_id, customer_id, d: date = DAY, **over) -> dict:
    row = dict(complaint_id=complaint_id, customer_id=customer_id, order_id=None, opened_at=ts(d, 8),
               category="delivery", severity=2, channel="phone", status="resolved", resolved_at=ts(d, 11),
               compensation_amount=0, description="parcel late", updated_at=ts(d, 11), is_deleted=0)
    row.update(over)
    return row


# the rubbish: key -> (entity, expected rule); None keys are found by a marker column
BAD_ORDERS = {
    "null_key": (None, dict(product_category="case-null-key"), "not_null:order_id"),
    "duplicate_a": (9_600_002, dict(gross_amount=100.0), "duplicate_key"),
    "duplicate_b": (9_600_002, dict(gross_amount=200.0), "duplicate_key"),
    "unknown_customer": (9_600_003, dict(customer_id=99_999_999), "fk:customer_id"),
    "negative_amount": (9_600_004, dict(gross_amount=-50.0), "range:gross_amount"),
    "absurd_amount": (9_600_005, dict(gross_amount=9_000_000_000.0), "range:gross_amount"),
    "unknown_currency": (9_600_006, dict(currency="XYZ"), "in_set:currency"),
    "unknown_status": (9_600_007, dict(status="teleported"), "in_set:status"),
    "far_future_date": (9_600_008, dict(order_date="2999-01-01"), "range:order_date"),
    "before_1990": (9_600_009, dict(order_date="1985-03-01"), "range:order_date"),
    "unparseable_number": (9_600_010, dict(gross_amount="12,5O"), "parse:gross_amount"),
    "unparseable_date": (9_600_011, dict(order_date="31/02/2026"), "parse:order_date"),
}
LONG_NAME_CUSTOMER = 9_500_001
CONTROL_CHARS_CUSTOMER = 9_500_002
MIXED_SCRIPT_CUSTOMER = 9_500_003
GOOD_CUSTOMERS = range(9_500_010, 9_500_030)
GOOD_ORDERS = range(9_700_000, 9_700_080)
RESOLVED_BEFORE_OPENED = 9_800_001
SQL_TEXT_COMPLAINT = 9_800_002
GOOD_COMPLAINTS = range(9_800_010, 9_800_020)
SQL_TEXT = "Robert'); DROP TABLE published.customer_segments;-- 1=1 OR '' = '"


def existing_customer(source: Path) -> int:
    with sqlite3.connect(source) as con:
        return con.execute("select min(customer_id) from customers where not is_deleted "
                           "and created_at < '2026-01-01'").fetchone()[0]


def inject_row_level_rubbish(source: Path) -> int:
    """All row-level cases, plus enough good rows that the quarantined share of each
    batch stays under the gate-1 limit (20%). Returns the known customer used."""
    cid = existing_customer(source)
    con = sqlite3.connect(source)
    drop_primary_key(con, "orders")
    for name, (key, over, _rule) in BAD_ORDERS.items():
        insert(con, "orders", order(key, cid, **over))
    for k in GOOD_ORDERS:
        insert(con, "orders", order(k, cid))
    insert(con, "customers", customer(LONG_NAME_CUSTOMER, "A" * 10_000))
    insert(con, "customers", customer(CONTROL_CHARS_CUSTOMER, "Bad\x00\x07 Name\x1b Ltd"))
    insert(con, "customers", customer(MIXED_SCRIPT_CUSTOMER, "Zhang 张伟 Иван Ωmega ﷺ 😀"))
    for k in GOOD_CUSTOMERS:
        insert(con, "customers", customer(k, f"Good Customer {k}"))
    insert(con, "complaints", complaint(RESOLVED_BEFORE_OPENED, cid, opened_at=ts(DAY, 15), resolved_at=ts(DAY, 9),
                                        updated_at=ts(DAY, 15)))
    insert(con, "complaints", complaint(SQL_TEXT_COMPLAINT, cid, description=SQL_TEXT))
    for k in GOOD_COMPLAINTS:
        insert(con, "complaints", complaint(k, cid))
    con.commit()
    con.close()
    return cid


def run_args(home: Path, day: date) -> list[str]:
    """``crm run`` for ``day`` on the copied source (not advanced by the demo generator)
    and the copied warehouse, both named explicitly."""
    return ["run", "--home", str(home), "--as-of", day.isoformat(), "--source", f"sqlite:///{home / 'source.sqlite'}",
            "--warehouse", f"duckdb:///{home / 'warehouse.duckdb'}"]


def crm_run(home: Path, day: date):
    return run_cli(run_args(home, day))


def same(recorded, sent) -> bool:
    """An original value kept in ``_record`` (SQLite may hand 100.0 back as 100)."""
    if isinstance(recorded, (int, float)) and isinstance(sent, (int, float)):
        return float(recorded) == float(sent)
    return str(recorded) == str(sent)


def assert_clean_output(result) -> None:
    out = result.output
    assert "Traceback" not in out and 'File "' not in out, out


def history_slice_checksum(wh, as_of: date) -> list:
    return sorted(map(repr, wh.query("select * from published.customer_segment_history where as_of = ?", (as_of,))))


def assert_counts_add_up(wh, run_id: str) -> list[dict]:
    rec = runs.reconcile(wh, run_id)
    assert rec, "the run extracted nothing"
    assert all(r["ok"] for r in rec), [runs.describe_reconciliation(r) for r in rec if not r["ok"]]
    return rec


# ---------------------------------------------------------------------------------------
# row-level rubbish: quarantined with the right reason, the rest published
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def row_level_run(tmp_path_factory):
    home = copy_home(baseline_home(tmp_path_factory), tmp_path_factory.mktemp("bad-rows") / "home")
    with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as wh:
        before = published_checksum(wh)
        before_slice = history_slice_checksum(wh, BASE_AS_OF)
    cid = inject_row_level_rubbish(home / "source.sqlite")
    result = crm_run(home, DAY)
    return home, result, before, before_slice, cid


def test_row_level_run_succeeds_without_a_stack_trace(row_level_run):
    home, result, *_ = row_level_run
    assert_clean_output(result)
    assert result.exit_code == 0, result.output
    assert "success" in result.output and "gate: passed" in result.output


def test_each_bad_row_is_quarantined_with_its_rule(row_level_run):
    home, *_ = row_level_run
    with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as wh:
        batches = dict(wh.query("select entity, batch_id from ops.extract_batches where as_of = ?", (DAY,)))
        q_orders = wh.query("select _key, _rule, _reason, _record, _batch_id from quarantine.orders where _as_of = ?",
                            (DAY,))
        q_customers = wh.query("select _key, _rule, _record, _batch_id from quarantine.customers where _as_of = ?",
                               (DAY,))
        q_complaints = wh.query("select _key, _rule, _record, _batch_id from quarantine.complaints where _as_of = ?",
                                (DAY,))
    assert {r[4] for r in q_orders} == {batches["orders"]}
    by_key: dict = {}
    for key, rule, reason, record, _ in q_orders:
        by_key.setdefault(key, []).append((rule, reason, json.loads(record)))
    for name, (key, over, rule) in BAD_ORDERS.items():
        if key is None:
            hits = [v for v in by_key.get(None, []) if v[2].get("product_category") == "case-null-key"]
        else:
            hits = by_key.get(str(key), [])
        assert hits, f"{name}: order {key} not in quarantine.orders"
        assert {h[0] for h in hits} == {rule}, f"{name}: {hits}"
        for field_name, value in over.items():  # the original value, exactly as sent
            assert any(same(h[2].get(field_name), value) for h in hits), f"{name}: {hits[0][2]}"
    assert len(by_key["9600002"]) == 2  # both versions of an ambiguous duplicate
    assert len(q_orders) == len(BAD_ORDERS)  # and nothing else
    assert [(k, r) for k, r, rec, b in q_customers] == [(str(LONG_NAME_CUSTOMER), "length:name")]
    assert len(json.loads(q_customers[0][2])["name"]) == 10_000
    assert q_customers[0][3] == batches["customers"]
    assert [(k, r) for k, r, rec, b in q_complaints] == [(str(RESOLVED_BEFORE_OPENED), "order:resolved_before_opened")]


def test_the_rest_of_the_day_is_published(row_level_run):
    home, result, before, before_slice, cid = row_level_run
    with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as wh:
        assert published_checksum(wh) != before
        as_of = wh.scalar("select max(as_of) from ops.published_versions where table_name = 'customer_segments'")
        assert as_of == DAY
        published = {r[0] for r in wh.query("select customer_id from published.customer_segments")}
        # good, cleaned and mixed-script customers are published; the quarantined one is not
        assert set(GOOD_CUSTOMERS) | {CONTROL_CHARS_CUSTOMER, MIXED_SCRIPT_CUSTOMER} <= published
        assert LONG_NAME_CUSTOMER not in published
        names = dict(wh.query("select customer_id, name from raw.customers where customer_id in (?, ?)",
                              (CONTROL_CHARS_CUSTOMER, MIXED_SCRIPT_CUSTOMER)))
        assert names[CONTROL_CHARS_CUSTOMER] == "Bad Name Ltd"  # control characters removed
        assert names[MIXED_SCRIPT_CUSTOMER] == "Zhang 张伟 Иван Ωmega ﷺ 😀"
        # SQL-looking free text is data: stored as sent, nothing was executed
        assert wh.scalar("select description from raw.complaints where complaint_id = ?",
                         (SQL_TEXT_COMPLAINT,)) == SQL_TEXT
        assert wh.table_exists("published", "customer_segments")
        staged = wh.scalar("select count(*) from raw.orders where _as_of = ? and order_id between ? and ?",
                           (DAY, GOOD_ORDERS.start, GOOD_ORDERS.stop))
        assert staged == len(GOOD_ORDERS)
        # the good orders count: the known customer's frequency includes the day's orders
        assert wh.scalar("select recency_days from published.customer_rfm where customer_id = ?", (cid,)) == 0
        # history: the earlier slice is untouched, the new slice appended
        assert history_slice_checksum(wh, BASE_AS_OF) == before_slice
        assert [r[0] for r in wh.query("select distinct as_of from published.customer_segment_history order by 1")] \
            == [BASE_AS_OF, DAY]


def test_row_level_run_counts_add_up(row_level_run):
    home, *_ = row_level_run
    with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as wh:
        run_id = wh.scalar("select run_id from ops.pipeline_runs where as_of = ?", (DAY,))
        rec = {r["entity"]: r for r in assert_counts_add_up(wh, run_id)}
        recorded = dict(wh.query("select entity, ok from ops.run_entity_counts where run_id = ?", (run_id,)))
    assert rec["orders"]["quarantined"] == len(BAD_ORDERS)
    assert rec["orders"]["staged"] >= len(GOOD_ORDERS)
    assert rec["customers"]["quarantined"] == 1
    assert recorded and all(recorded.values()) and set(recorded) == set(rec)


# ---------------------------------------------------------------------------------------
# batch-level rubbish: the run stops before dbt, published unchanged
# ---------------------------------------------------------------------------------------
def _assert_stopped(home: Path, day: date, before: str, expected: str) -> None:
    with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as wh:
        assert published_checksum(wh) == before
        status, verdict, message = wh.query(
            "select status, gate_verdict, message from ops.pipeline_runs where as_of = ?", (day,))[0]
        stages = dict(wh.query("select stage, status from ops.run_stages where run_id = "
                               "(select run_id from ops.pipeline_runs where as_of = ?)", (day,)))
        batches = wh.scalar("select count(*) from ops.extract_batches where as_of = ? and entity = 'orders'", (day,))
    assert status == "failed" and verdict is None
    assert message.startswith("extract: ") and expected in message and "\n" not in message
    assert stages.get("extract") == "failed"
    assert not any(s.startswith("dbt") for s in stages), stages  # stopped before dbt
    assert batches == 0  # entities extracted before it may have landed; the refused batch did not


def test_renamed_source_column_stops_the_run(tmp_path_factory, tmp_path):
    """End to end through the real ``crm`` command in its own process: exit code 1, one
    clear line, no stack trace on the terminal, published unchanged."""
    home = copy_home(baseline_home(tmp_path_factory), tmp_path / "home")
    with sqlite3.connect(home / "source.sqlite") as con:
        con.execute("alter table orders rename column currency to currency_code")
    with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as wh:
        before = published_checksum(wh)
    expected = "orders: schema drift: missing column currency, unexpected column currency_code"
    proc = run_cli_process(run_args(home, DAY))
    shown = proc.stdout + proc.stderr
    assert proc.returncode == 1, shown
    assert "Traceback" not in shown and 'File "' not in shown, shown
    assert expected in " ".join(shown.split()), shown
    _assert_stopped(home, DAY, before, expected)


def test_volume_collapse_stops_the_run(tmp_path_factory, tmp_path, monkeypatch):
    """Three incremental days of ~100 orders, then a day with 5 (a 95% drop). The days are
    built with extraction only, and the failing day runs the DAG's extract stage directly
    (``pipeline.begin`` + ``pipeline.extract``: the stage that stops the DAG before dbt)."""
    from crm_pipeline import extract, gates, pipeline

    home = copy_home(baseline_home(tmp_path_factory), tmp_path / "home")
    source = home / "source.sqlite"
    cid = existing_customer(source)
    next_key = 9_900_000
    days = [DAY + timedelta(days=i) for i in range(4)]
    sizes = (100, 110, 95, 5)
    with sqlite3.connect(source) as con:
        for d, n in zip(days, sizes):
            for _ in range(n):
                next_key += 1
                insert(con, "orders", order(next_key, cid, d))
    wh_url = f"duckdb:///{home / 'warehouse.duckdb'}"
    with open_wh(wh_url) as wh:
        before = published_checksum(wh)
        for d, n in zip(days[:3], sizes):
            stats = extract.extract_all(wh, f"sqlite:///{source}", as_of=d, run_id=f"volume-build-{d}",
                                        entities=(ENTITY_BY_NAME["customers"], ENTITY_BY_NAME["orders"]))
            assert {s.entity: s.rows_staged for s in stats}["orders"] >= n
        recent = extract.recent_batch_sizes(wh, ENTITY_BY_NAME["orders"], days[3])
    # the unit part: the same numbers straight into the batch gate
    verdict = gates.gate1_batch(ENTITY_BY_NAME["orders"], list(ENTITY_BY_NAME["orders"].columns), rows=5,
                                quarantined=0, recent_rows=recent)
    assert not verdict.ok and "orders: volume collapse: 5 rows vs a median of" in verdict.failures[0]
    # the stage the DAG runs
    monkeypatch.setenv("CRM_HOME", str(home))
    monkeypatch.setenv("AIRFLOW_CONN_CRM_SOURCE", f"sqlite:///{source}")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_WAREHOUSE", wh_url)
    run_id = f"volume-collapse-{days[3]}"
    pipeline.begin(run_id, days[3])
    with pytest.raises(extract.BatchRejected) as err:
        pipeline.extract(run_id, days[3])
    expected = "orders: volume collapse: 5 rows vs a median of"
    assert expected in str(err.value) and "\n" not in str(err.value)
    _assert_stopped(home, days[3], before, expected)
