"""The bad-input cases of test_bad_input.py, extracted into a PostgreSQL warehouse.

The DuckDB suite runs them through the whole DAG; here gate 1 and the quarantine writes
run against PostgreSQL (stage functions, no DAG): every bad row lands in
``quarantine.<entity>`` with its rule and original values, the good rows in ``raw``, and
the counts reconcile.
"""

from __future__ import annotations

import json

import pytest

from crm_pipeline import demo, extract, runs
from crm_pipeline.warehouse import Warehouse, WarehouseConfig
from test_bad_input import (
    BAD_ORDERS, BASE_AS_OF, CONTROL_CHARS_CUSTOMER, DAY, GOOD_COMPLAINTS, GOOD_CUSTOMERS, GOOD_ORDERS,
    LONG_NAME_CUSTOMER, MIXED_SCRIPT_CUSTOMER, RESOLVED_BEFORE_OPENED, SQL_TEXT, SQL_TEXT_COMPLAINT,
    inject_row_level_rubbish,
)

pytestmark = pytest.mark.postgres


def test_bad_rows_are_quarantined_with_their_rule_in_postgres(tmp_path, pg_database):
    source = tmp_path / "source.sqlite"
    demo.advance_source(f"sqlite:///{source}", BASE_AS_OF, customers=150)
    url = f"sqlite:///{source}"
    with Warehouse(WarehouseConfig.from_url(pg_database)) as wh:
        extract.extract_all(wh, url, as_of=BASE_AS_OF, run_id="pg-base")
        inject_row_level_rubbish(source)
        extract.extract_all(wh, url, as_of=DAY, run_id="pg-bad")

        quarantined = wh.query("select _key, _rule, _reason, _record from quarantine.orders where _as_of = ?", (DAY,))
        rules_by_key: dict[str, set[str]] = {}
        records = {}
        for key, rule, reason, record in quarantined:
            rules_by_key.setdefault(key, set()).add(rule)
            records.setdefault(key, []).append(json.loads(record))
            assert reason.strip()
        for name, (key, over, rule) in BAD_ORDERS.items():
            if key is None:
                matches = [r for r, recs in records.items()
                           if any(rec.get("product_category") == "case-null-key" for rec in recs)]
                assert matches, name
                assert rule in rules_by_key[matches[0]], name
            else:
                assert rule in rules_by_key.get(str(key), set()), (name, rules_by_key.get(str(key)))
        # the original values travel with the quarantined row
        absurd = records[str(BAD_ORDERS["unparseable_number"][0])][0]
        assert absurd["gross_amount"] == "12,5O"

        complaint_rules = dict(wh.query(
            "select _key, _rule from quarantine.complaints where _as_of = ?", (DAY,)))
        assert complaint_rules[str(RESOLVED_BEFORE_OPENED)] == "order:resolved_before_opened"
        customer_rules = dict(wh.query("select _key, _rule from quarantine.customers where _as_of = ?", (DAY,)))
        assert customer_rules[str(LONG_NAME_CUSTOMER)].startswith("length:")

        staged_orders = {r[0] for r in wh.query("select order_id from raw.orders where _as_of = ?", (DAY,))}
        assert set(GOOD_ORDERS) <= staged_orders
        staged_customers = dict(wh.query("select customer_id, name from raw.customers where _as_of = ?", (DAY,)))
        assert set(GOOD_CUSTOMERS) <= set(staged_customers)
        assert staged_customers[MIXED_SCRIPT_CUSTOMER] == "Zhang 张伟 Иван Ωmega ﷺ 😀"
        cleaned = staged_customers[CONTROL_CHARS_CUSTOMER]
        assert "\x00" not in cleaned and "\x07" not in cleaned and "Name" in cleaned
        descriptions = dict(wh.query("select complaint_id, description from raw.complaints where _as_of = ?", (DAY,)))
        assert descriptions[SQL_TEXT_COMPLAINT] == SQL_TEXT
        assert set(GOOD_COMPLAINTS) <= set(descriptions)

        # nothing lost: for every entity, extracted = duplicate + staged + quarantined, and
        # staged / quarantined match what is in raw / quarantine for the batch
        for run_id in ("pg-base", "pg-bad"):
            for entity in runs.reconcile(wh, run_id):
                assert entity["ok"], entity
