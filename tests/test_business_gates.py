"""Gates guard the business numbers, not only the shapes: every expected value by hand.

* Gate 1's outlier limit from raw's recent history (p99 of 1..200 is 198.01, so a factor
  of 100 gives 19,801), none when the history is thin, and the 999,999,999.99 order
  quarantined as ``outlier:gross_amount`` on both extraction paths (PostgreSQL source).
* Gate 2's key figures: the 999,999,999.99 order multiplies trailing revenue by 1,981.20
  against 505,000 published and stops the publish (figure, old, new, customer 17 in the
  message; published unchanged); a grade mix moved from 0.16 to 0.50 only warns and
  publishes; the first run (nothing published) passes; on DuckDB and PostgreSQL.
* The scorecard's open-ended bins are held by dbt unit tests (``test_dbt_unit.py``).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from crm_pipeline import demo, extract as ex, pipeline, runs
from crm_pipeline import publish as pub
from crm_pipeline.contract import ORDERS
from crm_pipeline.gates import GateSettings, gate1_suspect_sql, gate2_audit, outlier_limits
from crm_pipeline.warehouse import Warehouse, WarehouseConfig
from test_gates import build_audit
from wap_helpers import published_checksum

AS_OF = date(2026, 6, 30)
PUBLISHED_AS_OF = date(2026, 6, 29)
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------
# gate 1: the outlier limit from raw's recent history
# ---------------------------------------------------------------------------------------
def _orders_history(wh: Warehouse, amounts: list[float], *, end: datetime) -> None:
    wh.ensure_raw_tables()
    rows = pd.DataFrame({
        "order_id": range(1, len(amounts) + 1), "customer_id": 1, "order_date": end.date() - timedelta(days=5),
        "status": "shipped", "currency": "CNY", "gross_amount": amounts, "cost_amount": 0.0,
        "product_category": "tea", "invoice_due_date": end.date(), "paid_amount": None, "paid_at": None,
        "written_off_amount": 0.0, "updated_at": end - timedelta(days=5), "is_deleted": False,
    })
    wh.append_df("raw", "orders", rows[list(ORDERS.columns)])


def test_outlier_limit_is_a_factor_of_the_recent_p99(tmp_path):
    end = datetime(2026, 7, 1)
    with Warehouse(WarehouseConfig.from_url(f"duckdb:///{tmp_path / 'w.duckdb'}")) as wh:
        _orders_history(wh, [float(v) for v in range(1, 201)], end=end)
        # an old huge amount outside the 90-day history is not part of the distribution
        wh.execute("update raw.orders set gross_amount = 5000000, updated_at = timestamp '2025-01-01 00:00:00' "
                   "where order_id = 200")
        limits = outlier_limits(wh, ORDERS, window_end=end, settings=GateSettings(outlier_min_rows=100))
        # 1..199 in the window: p99 (linear) at position 198 × 0.99 = 196.02 → 197 + 0.02 = 197.02
        assert set(limits) == {"gross_amount"}  # cost and written-off amounts are all zero: no limit
        assert limits["gross_amount"].percentile_value == pytest.approx(197.02)
        assert limits["gross_amount"].limit == pytest.approx(19702.0)
        assert limits["gross_amount"].history_rows == 199
        # too thin a history: no limit at all
        assert outlier_limits(wh, ORDERS, window_end=end, settings=GateSettings(outlier_min_rows=200)) == {}
        # the SQL path flags the row above the limit (and not the one at it) as a suspect
        predicate = gate1_suspect_sql(ORDERS, as_of=AS_OF, known_customers_sql=None, key_is_unique=True,
                                      outlier_limits=limits)
        wh.execute("create table main.night as select * from raw.orders where order_id in (1, 2, 3)")
        wh.execute("update main.night set updated_at = timestamp '2026-06-30 09:00:00', "
                   "gross_amount = case order_id when 1 then 19702.00 when 2 then 19702.01 else 999999999.99 end")
        flagged = wh.query(f"select order_id from main.night where {predicate} order by 1")
        assert flagged == [(2,), (3,)]


# ---------------------------------------------------------------------------------------
# gate 1 on both extraction paths (PostgreSQL source)
# ---------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_the_huge_order_is_an_outlier_on_both_extraction_paths(tmp_path, pg_database):
    import psycopg2

    d1, d2 = date(2024, 3, 31), date(2024, 4, 1)
    demo.advance_source(pg_database, d1, customers=120)
    whs = {name: Warehouse(WarehouseConfig.from_url(f"duckdb:///{tmp_path / name}.duckdb"))
           for name in ("pushdown", "chunked")}
    readers = {"pushdown": None, "chunked": "connectorx"}
    settings = GateSettings(max_quarantine_share=1.0, outlier_min_rows=20)
    try:
        for name, wh in whs.items():
            ex.extract_all(wh, pg_database, as_of=d1, run_id="r1", reader=readers[name], gate_settings=settings)
        demo.advance_source(pg_database, d2, customers=120)
        con = psycopg2.connect(pg_database)
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("select min(order_id) from orders")
            huge = cur.fetchone()[0]
            cur.execute("update orders set gross_amount = 999999999.99, updated_at = %s where order_id = %s",
                        (datetime(2024, 4, 1, 9), huge))
        con.close()
        second = {name: ex.extract_all(wh, pg_database, as_of=d2, run_id="r2", reader=readers[name],
                                       gate_settings=settings) for name, wh in whs.items()}
        assert {s.reader for s in second["pushdown"]} == {"pushdown"}
        for name, wh in whs.items():
            rows = wh.query("select _key, _rule, _reason from quarantine.orders")
            assert [(key, rule) for key, rule, _ in rows] == [(str(huge), "outlier:gross_amount")], (name, rows)
            assert "gross_amount value 999999999.99 is above 100 × the p99" in rows[0][2]
            assert "\n" not in rows[0][2]
            assert wh.scalar("select count(*) from raw.orders where order_id = ? and gross_amount > 1e8",
                             (huge,)) == 0
        assert whs["pushdown"].query("select _reason from quarantine.orders") == \
            whs["chunked"].query("select _reason from quarantine.orders")
        orders = next(s for s in second["pushdown"] if s.entity == "orders")
        assert "gross_amount" in orders.outlier_limits and orders.quarantine_rules == {"outlier:gross_amount": 1}
    finally:
        for wh in whs.values():
            wh.close()


# ---------------------------------------------------------------------------------------
# gate 2: key figures against the last published date
# ---------------------------------------------------------------------------------------
def _night_and_published(wh: Warehouse) -> None:
    """build_audit's 100 customers with trailing revenue 100 × id (505,000 in all), margin
    30 × id and CLV 10 × id; the same numbers published for the day before."""
    build_audit(wh)
    wh.execute("alter table audit.customer_segments add column as_of date")
    wh.execute("alter table audit.customer_segments add column clv_12m decimal(18, 2)")
    wh.execute(f"update audit.customer_segments set as_of = date '{AS_OF}', clv_12m = 10 * customer_id")
    wh.execute("alter table audit.customer_value_tiers add column trailing_12m_revenue decimal(18, 2)")
    wh.execute("alter table audit.customer_value_tiers add column trailing_12m_margin decimal(18, 2)")
    wh.execute("update audit.customer_value_tiers set trailing_12m_revenue = 100 * customer_id, "
               "trailing_12m_margin = 30 * customer_id")
    wh.execute("create table audit.pareto_concentration (as_of date, top20_revenue_share decimal(18, 6))")
    wh.execute(f"insert into audit.pareto_concentration values (date '{AS_OF}', 0.78)")
    for table in ("customer_segments", "customer_value_tiers", "customer_rfm", "customer_credit_grades"):
        wh.execute(f"create table published.{table} as select * from audit.{table}")
    wh.execute(f"update published.customer_segments set as_of = date '{PUBLISHED_AS_OF}'")
    wh.execute(f"create table published.pareto_concentration as select date '{PUBLISHED_AS_OF}' as as_of, "
               "top20_revenue_share from audit.pareto_concentration")


def _huge_order(wh: Warehouse) -> None:
    wh.execute("update audit.customer_value_tiers set trailing_12m_revenue = trailing_12m_revenue + 999999999.99 "
               "where customer_id = 17")
    wh.execute("update audit.pareto_concentration set top20_revenue_share = 0.997")


REVENUE_STOP = ("gate 2 failed: key figure trailing_revenue moved from 505,000 to 1,000,504,999.99 "
                "(×1,981.20, limit ×2) vs published 2026-06-29; customers who moved it most: 17 (+999,999,999.99)")
SHARE_STOP = ("gate 2 failed: key figure top20_revenue_share moved from 0.7800 to 0.9970 (shift 0.2170, limit 0.1) "
              "vs published 2026-06-29; customers who moved it most: 17 (+999,999,999.99)")
GRADE_WARN = ("gate 2 warning: key figure grade_mix (credit_grade C) moved from 0.1600 to 0.5000 (shift 0.3400, "
              "limit 0.25) vs published 2026-06-29; customers who moved it most: 1 (AAA → C), 2 (AA → C), 3 (A → C)")


def _duck(tmp_path) -> Warehouse:
    return Warehouse(WarehouseConfig(kind="duckdb", duckdb_path=tmp_path / "warehouse.duckdb"))


def test_key_figures_pass_when_nothing_moved_and_on_the_first_run(tmp_path):
    with _duck(tmp_path) as wh:
        build_audit(wh)
        first = gate2_audit(wh, as_of=AS_OF, docs_dir=tmp_path / "docs")
        assert first.passed, first.failures
        assert {f["status"] for f in first.key_figures} == {"skipped"}
        assert all(f["detail"] == "nothing published yet" for f in first.key_figures)
    with _duck(tmp_path / "again") as wh:
        _night_and_published(wh)
        same = gate2_audit(wh, as_of=AS_OF, docs_dir=tmp_path / "docs")
        assert same.passed and same.warnings == [], (same.failures, same.warnings)
        figures = {f["figure"]: f for f in same.key_figures}
        assert set(figures) == {"customer_count", "trailing_revenue", "trailing_margin", "top20_revenue_share",
                                "segment_mix", "grade_mix", "total_clv"}
        assert {f["status"] for f in figures.values()} == {"ok"}
        assert figures["trailing_revenue"]["old"] == figures["trailing_revenue"]["new"] == 505000.0
        assert figures["total_clv"]["new"] == 50500.0 and figures["trailing_margin"]["new"] == 151500.0


def test_key_figures_just_under_and_over_the_factor(tmp_path):
    """Revenue × 2 exactly is at the limit (passes); one cent more is beyond it (stops)."""
    with _duck(tmp_path) as wh:
        _night_and_published(wh)
        wh.execute("update audit.customer_value_tiers set trailing_12m_revenue = trailing_12m_revenue + 505000 "
                   "where customer_id = 100")
        assert gate2_audit(wh, as_of=AS_OF, docs_dir=tmp_path / "docs").passed
        wh.execute("update audit.customer_value_tiers set trailing_12m_revenue = trailing_12m_revenue + 0.01 "
                   "where customer_id = 100")
        result = gate2_audit(wh, as_of=AS_OF, docs_dir=tmp_path / "docs")
        assert not result.passed
        assert result.failures == ["gate 2 failed: key figure trailing_revenue moved from 505,000 to 1,010,000.01 "
                                   "(×2.00, limit ×2) vs published 2026-06-29; customers who moved it most: "
                                   "100 (+505,000.01)"]


def _stop_and_warn(wh: Warehouse, home: Path, monkeypatch, url: str) -> None:
    """The huge order stops the publish through the pipeline's gate stage, with BI's tables
    unchanged; without it, a grade-mix move only warns and the night publishes."""
    monkeypatch.setenv("CRM_HOME", str(home))
    monkeypatch.setenv("AIRFLOW_CONN_CRM_WAREHOUSE", url)
    monkeypatch.setenv("AIRFLOW_CONN_CRM_SOURCE", f"sqlite:///{home / 'source.sqlite'}")  # never read
    _night_and_published(wh)
    _huge_order(wh)
    before = published_checksum(wh)
    runs.start_run(wh, "kf-stop", AS_OF, "test")
    wh.close()
    with pytest.raises(pipeline.GateFailed) as err:
        pipeline.gate_marts("kf-stop", AS_OF)
    assert str(err.value) == f"{REVENUE_STOP}; {SHARE_STOP}"
    with Warehouse(WarehouseConfig.from_url(url)) as again:
        assert published_checksum(again) == before
        summary = runs.run_summary(again, "kf-stop")
        assert summary["gate_verdict"] == "failed" and "trailing_revenue" in summary["message"]
        # the warn case: the night's revenue as published, 40 customers graded C
        again.execute("update audit.customer_value_tiers set trailing_12m_revenue = 100 * customer_id")
        again.execute("update audit.pareto_concentration set top20_revenue_share = 0.78")
        again.execute("update audit.customer_segments set credit_grade = 'C' where customer_id <= 40")
        runs.start_run(again, "kf-warn", AS_OF, "test")
    done = pipeline.gate_marts("kf-warn", AS_OF)
    assert done["passed"]
    with Warehouse(WarehouseConfig.from_url(url)) as again:
        stage = again.query("select details from ops.run_stages where run_id = 'kf-warn' and stage = 'gate'")[0][0]
        details = json.loads(stage) if isinstance(stage, str) else stage
        assert details["warnings"] == [GRADE_WARN]
        assert {f["figure"]: f["status"] for f in details["key_figures"]}["grade_mix"] == "moved"
        pub.publish(again, AS_OF, "kf-warn")
        assert again.scalar("select count(*) from published.customer_segments where credit_grade = 'C'") == 50


def test_a_key_figure_move_stops_the_publish_and_a_warned_one_publishes(tmp_path, monkeypatch):
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    _stop_and_warn(Warehouse(WarehouseConfig.from_url(url)), tmp_path, monkeypatch, url)


@pytest.mark.postgres
def test_a_key_figure_move_stops_the_publish_on_postgres(tmp_path, monkeypatch, pg_database):
    _stop_and_warn(Warehouse(WarehouseConfig.from_url(pg_database)), tmp_path, monkeypatch, pg_database)


def test_key_figures_warn_as_configured(tmp_path):
    with _duck(tmp_path) as wh:
        _night_and_published(wh)
        wh.execute("update audit.customer_segments set credit_grade = 'C' where customer_id <= 40")
        result = gate2_audit(wh, as_of=AS_OF, docs_dir=tmp_path / "docs")
        assert result.passed and result.warnings == [GRADE_WARN]


# ---------------------------------------------------------------------------------------
# the scorecard: open at both ends (held by dbt unit tests, run in test_dbt_unit.py)
# ---------------------------------------------------------------------------------------
def test_the_scorecard_unit_tests_cover_extreme_values():
    spec = yaml.safe_load((ROOT / "dbt_project/models/intermediate/_intermediate__unit_tests.yml").read_text())
    names = {test["name"] for test in spec["unit_tests"]}
    assert {"credit_points_open_ended_bins", "credit_grade_lists_indicators_beyond_the_bins",
            "credit_indicators_with_zero_denominators_and_a_huge_order"} <= names
    bins = next(t for t in spec["unit_tests"] if t["name"] == "credit_points_open_ended_bins")
    assert len(bins["expect"]["rows"]) == 80 and all(r["points"] is not None for r in bins["expect"]["rows"])
