"""Gate 1 and gate 2 on small hand-built data; every expected outcome is worked out by hand.

Gate 1: one bad row per rule (the rest good), counts add up, original values kept in
``_record``. Gate 1 batch: drift, volume collapse and spike, quarantine share. Gate 2 on a
scratch DuckDB (and once on PostgreSQL): passes on good data and fails on a duplicate or
missing customer, a bad grade, a personal-data column, a 50% drop vs published, wrong
tier sizes, and a metric error.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import date
from decimal import Decimal

import pandas as pd
import pytest

from crm_pipeline import gates
from crm_pipeline.contract import COMPLAINTS, CUSTOMERS, ENTITIES, ORDERS
from crm_pipeline.gates import GateError, GateSettings, expected_tier_counts, gate1_batch, gate1_rows, gate2_audit
from crm_pipeline.gates import audit_inputs
from crm_pipeline.gates.outliers import OutlierLimit
from crm_pipeline.gates.audit import _gate2_columns
from crm_pipeline.warehouse import Warehouse, WarehouseConfig

AS_OF = date(2026, 6, 30)


# ---------------------------------------------------------------------------------------
# gate 1: rows
# ---------------------------------------------------------------------------------------
def order(order_id, **over):
    row = dict(
        order_id=order_id, customer_id=1, order_date="2026-06-01", status="shipped", currency="CNY",
        gross_amount="120.50", cost_amount="80.00", product_category="tea", invoice_due_date="2026-07-01",
        paid_amount=None, paid_at=None, written_off_amount="0", updated_at="2026-06-30 10:00:00", is_deleted="0",
    )
    row.update(over)
    return row


@pytest.fixture(scope="module")
def orders_result():
    rows = [
        order(1),                                               # good (SQLite-style text)
        order(2, gross_amount=Decimal("99.99"), order_date=pd.Timestamp("2026-05-02"),
              invoice_due_date="2028-01-15", is_deleted=False),  # good: due date 1.5 years ahead
        order(3, customer_id=None),                             # not_null:customer_id
        order(4, currency="XYZ"),                               # in_set:currency
        order(5, gross_amount="-10"),                           # range:gross_amount (negative)
        order(6, gross_amount="2000000000"),                    # range:gross_amount (> 1e9)
        order(7, order_date="31/02/2026"),                      # parse:order_date
        order(8, order_date="1985-03-01"),                      # range:order_date (before 1990)
        order(9, updated_at="2026-07-05 00:00:00"),             # range:updated_at (> as_of + 1 day)
        order(10, customer_id=999),                             # fk:customer_id
        order(11, gross_amount="12,5O"),                        # parse:gross_amount
        order(12, status="lost"),                               # in_set:status
        order(13, invoice_due_date="2030-01-01"),               # range:invoice_due_date (> 2 years)
        order(14, updated_at="2026-07-01 23:00:00"),            # good: as_of + 1 day is allowed
    ]
    batch = pd.DataFrame(rows, dtype=object, index=range(100, 100 + len(rows)))
    return batch, gate1_rows(ORDERS, batch, {1, 2, 3}, as_of=AS_OF)


def test_orders_one_bad_row_per_rule(orders_result):
    batch, res = orders_result
    rules = dict(zip(res.quarantined["_key"], res.quarantined["_rule"]))
    assert rules == {
        "3": "not_null:customer_id",
        "4": "in_set:currency",
        "5": "range:gross_amount",
        "6": "range:gross_amount",
        "7": "parse:order_date",
        "8": "range:order_date",
        "9": "range:updated_at",
        "10": "fk:customer_id",
        "11": "parse:gross_amount",
        "12": "in_set:status",
        "13": "range:invoice_due_date",
    }
    assert sorted(res.good["order_id"].tolist()) == [1, 2, 14]
    assert len(res.good) + len(res.quarantined) == len(batch)
    # the original index is kept on both sides (extraction joins row hashes on it)
    assert set(res.good.index) | set(res.quarantined.index) == set(batch.index)
    assert not set(res.good.index) & set(res.quarantined.index)


def test_orders_good_rows_are_typed(orders_result):
    _, res = orders_result
    g = res.good.set_index("order_id")
    assert str(g.index.dtype) == "Int64"
    assert str(res.good["customer_id"].dtype) == "Int64"
    assert res.good["gross_amount"].dtype == "float64"
    assert g.loc[1, "gross_amount"] == 120.50 and g.loc[2, "gross_amount"] == 99.99
    assert str(res.good["order_date"].dtype) == "datetime64[ns]"
    assert g.loc[2, "order_date"] == pd.Timestamp("2026-05-02")
    assert str(res.good["updated_at"].dtype) == "datetime64[ns]"
    assert g.loc[1, "updated_at"] == pd.Timestamp("2026-06-30 10:00:00")
    assert res.good["is_deleted"].dtype == bool and not res.good["is_deleted"].any()
    assert g.loc[1, "status"] == "shipped"
    assert pd.isna(g.loc[1, "paid_at"])


def test_orders_reasons_and_records(orders_result):
    _, res = orders_result
    q = res.quarantined.set_index("_key")
    assert list(res.quarantined.columns) == ["_key", "_rule", "_reason", "_record"]
    assert "'XYZ'" in q.loc["4", "_reason"] and "CNY" in q.loc["4", "_reason"]
    assert "'31/02/2026'" in q.loc["7", "_reason"] and "not a valid date" in q.loc["7", "_reason"]
    assert "999" in q.loc["10", "_reason"] and "not a known customer" in q.loc["10", "_reason"]
    # parse failure is not also reported as "missing"
    assert "missing" not in q.loc["7", "_reason"]
    rec = json.loads(q.loc["11", "_record"])
    assert rec["gross_amount"] == "12,5O"          # original value, not the cast
    assert rec["customer_id"] == 1 and rec["order_id"] == 11
    assert set(rec) == set(ORDERS.columns)
    assert json.loads(q.loc["3", "_record"])["customer_id"] is None


def test_orders_checks_one_per_rule(orders_result):
    _, res = orders_result
    by_rule = {c["rule"]: c for c in res.checks}
    spec = json.loads(gates.suite_path("raw_orders").read_text())
    for exp in spec["expectations"]:          # every rule of the file is reported
        assert exp["meta"]["rule"] in by_rule
    c = by_rule["range:gross_amount"]
    assert c["expectation"] == "expect_column_values_to_be_between" and c["column"] == "gross_amount"
    assert c["success"] is False and c["unexpected_count"] == 2 and c["examples"] == ["-10", "2000000000"]
    assert by_rule["not_null:order_id"]["success"] is True
    assert by_rule["parse:order_date"]["unexpected_count"] == 1


def test_first_rule_wins_and_reason_lists_all():
    batch = pd.DataFrame([order(1, currency="XYZ", gross_amount="-5", product_category="x" * 1001)], dtype=object)
    res = gate1_rows(ORDERS, batch, None, as_of=AS_OF)
    assert res.good.empty
    row = res.quarantined.iloc[0]
    assert row["_rule"] == "in_set:currency"       # file order: not_null, in_set, range, length
    assert row["_reason"].split("; ")[0].startswith("in_set:currency:")
    assert "range:gross_amount" in row["_reason"] and "length:product_category" in row["_reason"]
    # fk skipped when the caller has no customer ids
    fk = next(c for c in res.checks if c["rule"] == "fk:customer_id")
    assert fk["success"] is True and "skipped" in fk["note"]


def customer(cid, **over):
    row = dict(
        customer_id=cid, name=f"Customer {cid}", customer_type="enterprise", industry="retail", region="east",
        acquisition_channel="referral", account_manager="Li Na", credit_limit=50000, status="active",
        created_at="2020-01-01 00:00:00", updated_at="2026-06-30 09:00:00", is_deleted=0,
    )
    row.update(over)
    return row


def test_customers_text_duplicates_and_keys():
    rows = [
        customer(1, name="张伟 Smith"),                             # good: mixed scripts
        customer(2, name="N" * 10_000),                             # length:name (max 1,000)
        customer(3, name="Acme\x00 Trading\x07 Ltd\r\n"),           # good: control chars removed
        customer(4, status="gone"),                                 # in_set:status
        customer(None),                                             # not_null:customer_id
        customer(5, region="north"),                                # duplicate_key (same updated_at,
        customer(5, region="south"),                                #   different content): both
        customer(6, updated_at="2026-06-29 09:00:00"),              # two versions of 6 with different
        customer(6, region="west"),                                 #   updated_at: both good
        customer(7, created_at="1899-12-31"),                       # range:created_at
        customer(8, is_deleted="maybe"),                            # parse:is_deleted
        customer(9, name="Robert'); DROP TABLE customers;--"),      # good: SQL-looking text is data
    ]
    batch = pd.DataFrame(rows, dtype=object)
    res = gate1_rows(CUSTOMERS, batch, None, as_of=AS_OF)
    q = res.quarantined
    assert sorted(zip(q["_key"].fillna("<null>"), q["_rule"])) == sorted([
        ("2", "length:name"), ("4", "in_set:status"), ("<null>", "not_null:customer_id"),
        ("5", "duplicate_key"), ("5", "duplicate_key"), ("7", "range:created_at"), ("8", "parse:is_deleted"),
    ])
    good = res.good.set_index(res.good.index)
    names = dict(zip(res.good["customer_id"].tolist(), res.good["name"].tolist()))
    assert names[1] == "张伟 Smith"
    assert names[3] == "Acme Trading Ltd\r\n"
    assert names[9] == "Robert'); DROP TABLE customers;--"
    assert sorted(res.good["customer_id"].tolist()) == [1, 3, 6, 6, 9]
    assert len(good) + len(q) == len(batch)
    clean = next(c for c in res.checks if c["rule"] == "clean:name")
    assert clean["unexpected_count"] == 1 and clean["success"] is True
    long_reason = q.loc[q["_key"] == "2", "_reason"].iloc[0]
    assert "10,000 characters" in long_reason and len(long_reason) < 300
    assert json.loads(q.loc[q["_key"] == "2", "_record"].iloc[0])["name"] == "N" * 10_000


def complaint(cid, **over):
    row = dict(
        complaint_id=cid, customer_id=1, order_id=None, opened_at="2026-06-10 08:00:00", category="delivery",
        severity=2, channel="phone", status="resolved", resolved_at="2026-06-12 17:00:00",
        compensation_amount=0, description="late", updated_at="2026-06-30 08:00:00", is_deleted=False,
    )
    row.update(over)
    return row


def test_complaints_rules():
    rows = [
        complaint(1, description="x'; DELETE FROM orders WHERE 1=1; --"),   # good
        complaint(2, resolved_at="2026-06-09 08:00:00"),                     # order:resolved_before_opened
        complaint(3, severity=7),                                            # in_set:severity
        complaint(4, severity="high"),                                       # parse:severity
        complaint(5, customer_id=42),                                        # fk:customer_id
        complaint(6, opened_at="2099-01-01 00:00:00", resolved_at=None),     # range:opened_at
        complaint(7, resolved_at=None, status="open", severity=4.0),         # good: 4.0 is an int
    ]
    res = gate1_rows(COMPLAINTS, pd.DataFrame(rows), [1, 2], as_of=AS_OF)
    assert dict(zip(res.quarantined["_key"], res.quarantined["_rule"])) == {
        "2": "order:resolved_before_opened", "3": "in_set:severity", "4": "parse:severity",
        "5": "fk:customer_id", "6": "range:opened_at",
    }
    assert sorted(res.good["complaint_id"].tolist()) == [1, 7]
    assert res.good.set_index("complaint_id").loc[1, "description"].startswith("x'; DELETE")
    assert res.good["severity"].tolist() == [2, 4]


def test_outlier_amounts_are_quarantined_above_the_limit():
    """Limit = 100 × p99 of 10,000 = 1,000,000: 999,999,999.99 (under the range rule's
    1e9) and 1,000,000.01 are outliers, 1,000,000.00 is not; a negative amount breaks the
    range rule first and its reason lists the outlier too; the cost column's own limit
    (100 × 50 = 5,000) catches 5,000.01."""
    limits = {"gross_amount": OutlierLimit("gross_amount", 10000.0, 500, 100.0),
              "cost_amount": OutlierLimit("cost_amount", 50.0, 500, 100.0)}
    rows = [
        order(1, gross_amount="999999999.99"),          # the incident's order
        order(2, gross_amount="1000000.00"),            # at the limit: kept
        order(3, gross_amount="1000000.01"),            # just over
        order(4, gross_amount="-2000000"),              # range first, outlier too
        order(5, cost_amount="5000.01"),                # the cost column's limit
        order(6),                                       # good
    ]
    res = gate1_rows(ORDERS, pd.DataFrame(rows, dtype=object), {1}, as_of=AS_OF, outlier_limits=limits)
    assert dict(zip(res.quarantined["_key"], res.quarantined["_rule"])) == {
        "1": "outlier:gross_amount", "3": "outlier:gross_amount", "4": "range:gross_amount",
        "5": "outlier:cost_amount"}
    assert sorted(res.good["order_id"].tolist()) == [2, 6]
    reasons = dict(zip(res.quarantined["_key"], res.quarantined["_reason"]))
    assert reasons["1"] == ("outlier:gross_amount: gross_amount value '999999999.99' is above 100 × the p99 "
                            "(10,000.00) of 500 recent non-zero values = 1,000,000.00; check it against the "
                            "source and admit the row if it is right")
    assert "range:gross_amount" in reasons["4"] and "outlier:gross_amount" in reasons["4"]
    check = next(c for c in res.checks if c["rule"] == "outlier:gross_amount")
    assert check["unexpected_count"] == 3 and not check["success"] and check["limit"] == 1_000_000.0
    # without limits (a first load, a thin history) the same rows pass this rule
    plain = gate1_rows(ORDERS, pd.DataFrame(rows, dtype=object), {1}, as_of=AS_OF)
    assert set(plain.quarantined["_rule"]) == {"range:gross_amount"}


def test_outlier_compensation_in_complaints():
    """Another entity, another money column: a compensation of 9,000,000 against a limit of
    100 × 900 = 90,000 is an outlier; 80,000 is not."""
    limits = {"compensation_amount": OutlierLimit("compensation_amount", 900.0, 150, 100.0)}
    rows = [complaint(1, compensation_amount="9000000"), complaint(2, compensation_amount="80000")]
    res = gate1_rows(COMPLAINTS, pd.DataFrame(rows), [1, 2], as_of=AS_OF, outlier_limits=limits)
    assert dict(zip(res.quarantined["_key"], res.quarantined["_rule"])) == {"1": "outlier:compensation_amount"}


def test_missing_contract_column_raises():
    batch = pd.DataFrame([order(1)]).rename(columns={"gross_amount": "gross_amt"})
    with pytest.raises(GateError, match="orders: schema drift: missing column gross_amount"):
        gate1_rows(ORDERS, batch, None, as_of=AS_OF)


def test_empty_batch():
    res = gate1_rows(ORDERS, pd.DataFrame(columns=list(ORDERS.columns)), set(), as_of=AS_OF)
    assert res.good.empty and res.quarantined.empty
    assert all(c["success"] for c in res.checks)


def test_suite_files_match_the_contract():
    for e in ENTITIES:
        spec = gates.load_suite_file(f"raw_{e.name}")
        assert spec["column_types"] == dict(e.columns)
        rules = [x["meta"]["rule"] for x in spec["expectations"]]
        assert len(rules) == len(set(rules)), e.name
        assert f"not_null:{e.key}" in rules and "duplicate_key" in rules


# ---------------------------------------------------------------------------------------
# gate 1: batch
# ---------------------------------------------------------------------------------------
def test_batch_schema_drift():
    cols = [c if c != "gross_amount" else "gross_amt" for c in ORDERS.columns]
    v = gate1_batch(ORDERS, cols, rows=0, quarantined=0, recent_rows=[], incremental=False)
    assert not v.ok
    assert v.failures == ["orders: schema drift: missing column gross_amount, unexpected column gross_amt"]
    assert gate1_batch(ORDERS, list(ORDERS.columns), 0, 0, []).ok


def test_batch_volume():
    recent = [1000, 980, 1020, 1010]              # median 1005
    cols = list(ORDERS.columns)
    collapse = gate1_batch(ORDERS, cols, rows=50, quarantined=0, recent_rows=recent)   # -95%
    assert not collapse.ok and "volume collapse" in collapse.failures[0] and "1,005" in collapse.failures[0]
    spike = gate1_batch(ORDERS, cols, rows=10_051, quarantined=0, recent_rows=recent)
    assert not spike.ok and "volume spike" in spike.failures[0]
    assert gate1_batch(ORDERS, cols, rows=101, quarantined=0, recent_rows=recent).ok        # >= median / 10 = 100.5
    assert gate1_batch(ORDERS, cols, rows=10_050, quarantined=0, recent_rows=recent).ok
    assert gate1_batch(ORDERS, cols, rows=50, quarantined=0, recent_rows=recent, incremental=False).ok
    assert gate1_batch(ORDERS, cols, rows=1, quarantined=0, recent_rows=[1000, 1000]).ok      # < 3 batches
    assert gate1_batch(ORDERS, cols, rows=0, quarantined=0, recent_rows=[10, 12, 15]).ok       # median < 20
    tight = GateSettings(volume_factor=2)
    assert not gate1_batch(ORDERS, cols, rows=400, quarantined=0, recent_rows=recent, settings=tight).ok


def test_batch_quarantine_share():
    cols = list(ORDERS.columns)
    v = gate1_batch(ORDERS, cols, rows=100, quarantined=21, recent_rows=[])
    assert not v.ok and "21 of 100 rows (21%)" in v.failures[0] and "20%" in v.failures[0]
    assert gate1_batch(ORDERS, cols, rows=100, quarantined=20, recent_rows=[]).ok
    assert gate1_batch(ORDERS, cols, rows=100, quarantined=40, recent_rows=[],
                       settings=GateSettings(max_quarantine_share=0.5)).ok


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("CRM_GATE_VOLUME_FACTOR", "5")
    monkeypatch.setenv("CRM_GATE_FAIL_ON_CLV", "true")
    s = GateSettings.from_env()
    assert s.volume_factor == 5.0 and s.fail_on_clv is True and s.max_quarantine_share == 0.2
    monkeypatch.setenv("CRM_GATE_MAX_QUARANTINE_SHARE", "lots")
    with pytest.raises(GateError, match="CRM_GATE_MAX_QUARANTINE_SHARE"):
        GateSettings.from_env()


def test_expected_tier_counts():
    assert expected_tier_counts(1000) == {"VIP": 10, "Major": 40, "Ordinary": 150, "Small": 800}
    # ceil(0.5)=1, ceil(2.5)=3, ceil(10)=10, 50
    assert expected_tier_counts(50) == {"VIP": 1, "Major": 2, "Ordinary": 7, "Small": 40}
    assert expected_tier_counts(0) == {"VIP": 0, "Major": 0, "Ordinary": 0, "Small": 0}


# ---------------------------------------------------------------------------------------
# gate 2
# ---------------------------------------------------------------------------------------
SEGMENTS = ["Prospect", "VIP – healthy", "Core – develop", "Small – low touch"]


def build_audit(wh: Warehouse, n: int = 100, *, published: int | None = None) -> None:
    """n customers, all buyers (100 give tiers 1 / 4 / 15 / 80); segments 10% Prospect, rest Core."""
    for schema in ("audit", "staging", "config", "published"):
        wh.execute(f"create schema if not exists {schema}")
    wh.execute("create table staging.stg_crm__customers (customer_id bigint, customer_name varchar)")
    wh.append_df("staging", "stg_crm__customers",
                 pd.DataFrame({"customer_id": range(1, n + 1), "customer_name": [f"c{i}" for i in range(1, n + 1)]}))
    wh.execute("create table config.segment_rules (rule_order integer, segment varchar)")
    wh.append_df("config", "segment_rules", pd.DataFrame({"rule_order": [10, 20, 30, 40], "segment": SEGMENTS}))
    ids = list(range(1, n + 1))
    vip, major, ordinary, small = {100: (1, 4, 15, 80), 50: (1, 2, 7, 40)}[n]   # ceil(share x n), by hand
    tiers = ["VIP"] * vip + ["Major"] * major + ["Ordinary"] * ordinary + ["Small"] * small
    seg = pd.DataFrame({
        "customer_id": ids,
        "segment": ["Prospect" if i % 10 == 0 else "Core – develop" for i in ids],
        "account_manager": ["Li Na"] * n,
        "value_tier": tiers,
        "credit_grade": (["AAA", "AA", "A", "B", "C", None] * n)[:n],
        "purchase_likelihood": [0.5] * n,
        "prob_alive": [0.9] * n,
    })
    wh.execute("create table audit.customer_segments (customer_id bigint, segment varchar, account_manager varchar, "
               "value_tier varchar, credit_grade varchar, purchase_likelihood numeric(6,4), prob_alive double precision)")
    wh.append_df("audit", "customer_segments", seg)
    wh.execute("create table audit.customer_value_tiers (customer_id bigint, value_tier varchar, revenue_rank integer)")
    wh.append_df("audit", "customer_value_tiers",
                 pd.DataFrame({"customer_id": ids, "value_tier": tiers, "revenue_rank": ids}))
    wh.execute("create table audit.customer_rfm (customer_id bigint, r_score integer, f_score integer, m_score integer)")
    wh.append_df("audit", "customer_rfm", pd.DataFrame({"customer_id": ids, "r_score": [i % 5 + 1 for i in ids],
                                                        "f_score": 3, "m_score": 5}))
    wh.execute("create table audit.customer_credit_grades (customer_id bigint, grade_quarter date, "
               "credit_grade varchar, total_score numeric(5,2), is_reconstructed boolean, "
               "reconstructed_indicators varchar)")
    wh.append_df("audit", "customer_credit_grades", pd.DataFrame({
        "customer_id": ids, "grade_quarter": [date(2026, 4, 1)] * n,
        "credit_grade": ["A"] * n, "total_score": [72.5] * n, "is_reconstructed": [False] * n,
        "reconstructed_indicators": [""] * n}))
    if published is not None:
        wh.execute("create table published.customer_segments as select * from audit.customer_segments "
                   f"where customer_id <= {int(published)}")


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory):
    """One Data Docs site for the module, as in production where runs accumulate."""
    return tmp_path_factory.mktemp("home") / "docs" / "gx"


@pytest.fixture()
def duck(tmp_path, docs_dir):
    wh = Warehouse(WarehouseConfig(kind="duckdb", duckdb_path=tmp_path / "warehouse.duckdb"))
    try:
        yield wh, docs_dir
    finally:
        wh.close()


def run2(wh, docs, **kw):
    return gate2_audit(wh, as_of=AS_OF, docs_dir=docs, **kw)


def test_gate2_passes_on_good_data(duck):
    wh, docs = duck
    build_audit(wh, published=100)
    r = run2(wh, docs)
    assert r.passed, r.failures
    assert r.failures == [] and r.docs_path == str(docs.resolve() / "index.html")
    assert os.path.exists(r.docs_path)
    assert any(c["expectation"] == "expect_column_values_to_be_unique" and c["success"] for c in r.checks)
    tier = next(c for c in r.checks if c["expectation"] == "expect_column_pair_values_to_be_equal")
    assert tier["success"] and "100 buyers" in tier["table"]


def test_gate2_fails_on_duplicate_customer(duck):
    wh, docs = duck
    build_audit(wh)
    wh.execute("insert into audit.customer_segments (customer_id, segment, value_tier) values (17, 'Prospect', 'Small')")
    r = run2(wh, docs, expected_customers=101)     # row count matches: only uniqueness catches it
    assert not r.passed
    assert r.failures == ["gate 2 failed: expect_column_values_to_be_unique on audit.customer_segments.customer_id: "
                          "2 unexpected values, e.g. [17, 17] (one segment per customer)"]


def test_gate2_fails_on_missing_customer(duck):
    wh, docs = duck
    build_audit(wh)
    wh.execute("delete from audit.customer_segments where customer_id = 42")
    r = run2(wh, docs)
    assert not r.passed
    text = "\n".join(r.failures)
    assert "expect_table_row_count_to_equal on audit.customer_segments: observed 99 rows, expected 100" in text
    assert "coverage" in text and "e.g. [42]" in text


def test_gate2_fails_on_bad_grade_and_unknown_segment(duck):
    wh, docs = duck
    build_audit(wh)
    wh.execute("update audit.customer_segments set credit_grade = 'D' where customer_id = 3")
    wh.execute("update audit.customer_segments set segment = 'Mystery' where customer_id = 4")
    r = run2(wh, docs)
    assert not r.passed
    assert any("credit_grade" in f and "['D']" in f for f in r.failures), r.failures
    assert any("audit.customer_segments.segment" in f and "['Mystery']" in f for f in r.failures), r.failures


def test_gate2_fails_on_a_grade_or_score_outside_the_seeds(duck):
    """The grades are those of the seed credit_grade_cutoffs (AAA, AA, A, B, C) and the score
    runs from its lowest min_score (0) to the sum of credit_scorecard's max_points (100)."""
    wh, docs = duck
    build_audit(wh)
    wh.execute("update audit.customer_credit_grades set credit_grade = 'D' where customer_id = 7")
    wh.execute("update audit.customer_credit_grades set total_score = 100.5 where customer_id = 8")
    wh.execute("update audit.customer_credit_grades set total_score = 100 where customer_id = 9")   # the top: allowed
    wh.execute("update audit.customer_credit_grades set total_score = 0 where customer_id = 10")    # the bottom: allowed
    r = run2(wh, docs)
    assert not r.passed
    assert r.failures == [
        "gate 2 failed: expect_column_values_to_be_in_set on audit.customer_credit_grades.credit_grade: "
        "1 unexpected values, e.g. ['D'] (a grade of the seed credit_grade_cutoffs)",
        "gate 2 failed: expect_column_values_to_be_between on audit.customer_credit_grades.total_score: "
        "1 unexpected values, e.g. [100.5] (from the lowest grade's min_score (seed credit_grade_cutoffs) "
        "to the scorecard's total points (seed credit_scorecard))",
    ]


def test_gate2_without_a_seed_stops(duck, tmp_path, monkeypatch):
    """No copy of a seed's rule to fall back on: a seed neither in the warehouse nor in the
    seeds folder stops gate 2, and the tier sizes cannot be computed without it."""
    wh, docs = duck
    build_audit(wh)     # the warehouse has config.segment_rules only
    monkeypatch.setattr(audit_inputs, "DBT_SEEDS_DIR", tmp_path / "no_seeds")
    with pytest.raises(GateError, match="gate 2 needs the seed value_tier_cutpoints"):
        run2(wh, docs)
    with pytest.raises(GateError, match="value_tier_cutpoints"):
        expected_tier_counts(1000)


def test_gate2_fails_on_personal_data_column(duck):
    wh, docs = duck
    build_audit(wh)
    wh.execute("alter table audit.customer_segments add column email varchar")
    wh.execute("create table audit.contact_list (customer_id bigint, contact_name varchar)")
    r = run2(wh, docs)
    assert not r.passed
    [f] = r.failures
    assert "personal" in f and "customer_segments.email" in f and "contact_list.contact_name" in f


def test_gate2_fails_on_drop_vs_published(duck):
    wh, docs = duck
    build_audit(wh, n=50)
    wh.execute("create table published.customer_segments as select * from audit.customer_segments")
    wh.execute("insert into published.customer_segments select customer_id + 50, segment, account_manager, "
               "value_tier, credit_grade, purchase_likelihood, prob_alive from audit.customer_segments")
    r = run2(wh, docs)          # 100 published, 50 now: a 50% drop (limit 20%)
    assert not r.passed
    assert any("expect_table_row_count_to_be_between" in f and "observed 50 rows" in f for f in r.failures), r.failures
    # the same drop is accepted with a looser limit
    r = run2(wh, docs, settings=GateSettings(max_segment_drop_share=0.6))
    assert r.passed, r.failures


def test_gate2_fails_on_segment_mix_shift(duck):
    wh, docs = duck
    build_audit(wh, published=100)
    wh.execute("update audit.customer_segments set segment = 'Small – low touch' where customer_id <= 70")
    r = run2(wh, docs)
    assert not r.passed
    assert any("share_change" in f and "Core – develop" in f for f in r.failures), r.failures


def test_gate2_fails_on_wrong_tier_sizes(duck):
    wh, docs = duck
    build_audit(wh)
    wh.execute("update audit.customer_value_tiers set value_tier = 'VIP' where customer_id = 2")   # 2 VIP, 3 Major
    r = run2(wh, docs)
    assert not r.passed
    [f] = r.failures
    assert "VIP: 2 customers, expected 1" in f and "Major: 3 customers, expected 4" in f


def test_gate2_metric_error_fails(duck):
    wh, docs = duck
    build_audit(wh)
    wh.execute("alter table audit.customer_segments drop column purchase_likelihood")
    r = run2(wh, docs)
    assert not r.passed
    [f] = r.failures
    assert "purchase_likelihood could not be evaluated" in f and "does not exist" in f


def test_gate2_required_table_missing(duck):
    wh, docs = duck
    build_audit(wh)
    wh.execute("drop table audit.customer_segments")
    wh.execute("drop table audit.customer_rfm")
    r = run2(wh, docs)
    assert not r.passed
    assert r.failures == ["gate 2 failed: required table audit.customer_segments does not exist"]


def test_gate2_soft_clv(duck):
    wh, docs = duck
    build_audit(wh)
    wh.execute("update audit.customer_segments set prob_alive = 1.5 where customer_id = 5")
    r = run2(wh, docs)
    assert r.passed and len(r.warnings) == 1 and "prob_alive" in r.warnings[0]
    r = run2(wh, docs, settings=GateSettings(fail_on_clv=True))
    assert not r.passed


def test_gate2_warns_on_a_shifted_scorecard_and_stops_on_impossible_exposure(duck):
    """A stability index above the shift band (credit_scorecard_stability.status 'shift')
    is a warning naming the measure, and the night publishes; overdue receivables larger
    than the open ones are impossible and stop it."""
    wh, docs = duck
    build_audit(wh)
    wh.execute("create table audit.credit_scorecard_stability (grade_quarter date, measure varchar, "
               "band_from numeric(6,2), psi numeric(18,6), current_share numeric(18,6), "
               "previous_share numeric(18,6), status varchar)")
    wh.execute("insert into audit.credit_scorecard_stability values "
               "(date '2026-04-01', 'total_score', 60, 0.31, 0.5, 0.2, 'shift'), "
               "(date '2026-04-01', 'debt_ratio', 3, 0.02, 0.5, 0.5, 'stable')")
    wh.execute("create table audit.credit_exposure_by_grade (grade_quarter date, credit_grade varchar, "
               "customers integer, open_receivables numeric(18,2), overdue_receivables numeric(18,2))")
    wh.execute("insert into audit.credit_exposure_by_grade values (date '2026-04-01', 'A', 3, 100, 40), "
               "(date '2026-04-01', '(not graded)', 1, 0, 0)")
    r = run2(wh, docs)
    assert r.passed, r.failures
    assert len(r.warnings) == 1 and "credit_scorecard_stability.status" in r.warnings[0], r.warnings
    assert "total_score" in r.warnings[0] and "debt_ratio" not in r.warnings[0]
    wh.execute("update audit.credit_exposure_by_grade set overdue_receivables = 140 where credit_grade = 'A'")
    r = run2(wh, docs)
    assert not r.passed
    assert any("credit_exposure_by_grade" in f and "'A'" in f for f in r.failures), r.failures


@pytest.mark.postgres
def test_gate2_on_postgres():
    psycopg2 = pytest.importorskip("psycopg2")
    base = os.environ.get("CRM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test").rsplit("/", 1)[0]
    name = f"gates_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg2.connect(base + "/postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"create database {name}")
    import tempfile
    from pathlib import Path

    try:
        with Warehouse(WarehouseConfig(kind="postgres", url=f"{base}/{name}")) as wh, \
                tempfile.TemporaryDirectory() as tmp:
            docs = Path(tmp) / "docs" / "gx"
            build_audit(wh, published=100)
            r = run2(wh, docs)
            assert r.passed, r.failures
            wh.execute("update audit.customer_segments set customer_id = 7 where customer_id = 8")
            r = run2(wh, docs)
            assert not r.passed
            assert any("expect_column_values_to_be_unique" in f and "[7, 7]" in f for f in r.failures), r.failures
            assert any("coverage" in f and "[8]" in f for f in r.failures), r.failures
    finally:
        with admin.cursor() as cur:
            cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s "
                        "and pid <> pg_backend_pid()", (name,))
            cur.execute(f"drop database if exists {name}")
        admin.close()


def test_gate2_reads_only_the_columns_its_checks_name():
    """A mart of a million rows by 60 columns is read with the columns its expectations,
    examples and derived checks name; a table-wide column check reads everything."""
    spec = {
        "expectations": [
            {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["customer_id", "grade_quarter"]}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "credit_grade"},
             "meta": {"example_column": "customer_id"}},
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "total_score"},
             "meta": {"example_format": "{customer_id}: {total_score} in {grade_quarter}"}},
            {"type": "expect_table_row_count_to_equal", "kwargs": {"value": "$expected_customers"}},
        ],
        "derived": [{"kind": "tier_sizes"}, {"kind": "mix_vs_published", "column": "segment_name"},
                    {"kind": "volume_vs_published", "expectations": []}],
    }
    assert _gate2_columns(spec) == {"customer_id", "grade_quarter", "credit_grade", "total_score",
                                    "value_tier", "segment_name"}
    wide = {"expectations": [{"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": ["a"]}}]}
    assert _gate2_columns(wide) is None
    assert _gate2_columns({"derived": [{"kind": "something_new"}]}) is None
