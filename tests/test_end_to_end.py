"""End to end on the embedded default: demo source → `crm run` (the real Airflow DAG) → DuckDB.

The expected numbers are worked out from the rules, independently of the marts' SQL:
the pyramid split from the number of buyers counted straight from the source, and the
RFM scores of hand-built customers placed at the extremes of each dimension.
"""

from __future__ import annotations

import math
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from crm_pipeline.cli import app

pytestmark = pytest.mark.slow

AS_OF = date(2026, 6, 30)
CUSTOMERS = 2000
FX = {"CNY": 1.0, "USD": 7.10, "EUR": 7.75, "HKD": 0.91}  # the fx_rates seed

# hand-built customers (ids far above the generator's)
CHAMPION, OLD_ONE_TIMER, PROSPECT = 9_000_001, 9_000_002, 9_000_003


def _ts(d: date, hh: int = 12) -> str:
    return f"{d.isoformat()} {hh:02d}:00:00.000000"


def add_hand_built_customers(source: Path, as_of: date) -> None:
    """A champion (ordered on 250 distinct days up to as_of, huge amounts), a customer
    whose only order is on the first day of the demo world, and a prospect."""
    con = sqlite3.connect(source)
    cust_cols = [r[1] for r in con.execute("pragma table_info(customers)")]
    order_cols = [r[1] for r in con.execute("pragma table_info(orders)")]

    def insert(table, cols, row):
        con.execute(f"insert into {table} ({', '.join(row)}) values ({', '.join('?' for _ in row)})",
                    list(row.values()))

    created = date(2023, 7, 1)
    for cid, name in ((CHAMPION, "手工 Champion"), (OLD_ONE_TIMER, "Old One-Timer"), (PROSPECT, "Prospect 张")):
        insert("customers", cust_cols, {
            "customer_id": cid, "name": name, "customer_type": "enterprise", "industry": "retail",
            "region": "East", "acquisition_channel": "referral", "account_manager": "Test Manager",
            "credit_limit": 1_000_000, "status": "active", "created_at": _ts(created, 9),
            "updated_at": _ts(created, 9), "is_deleted": 0,
        })
    order_id = 9_100_000

    def order(cid, d, amount):
        nonlocal order_id
        order_id += 1
        insert("orders", order_cols, {
            "order_id": order_id, "customer_id": cid, "order_date": d.isoformat(), "status": "shipped",
            "currency": "CNY", "gross_amount": amount, "cost_amount": amount * 0.6, "product_category": "hardware",
            "invoice_due_date": (d + timedelta(days=30)).isoformat(), "paid_amount": amount,
            "paid_at": _ts(d + timedelta(days=10)) if d + timedelta(days=10) <= as_of else None,
            "written_off_amount": 0, "updated_at": _ts(d, 13), "is_deleted": 0,
        })

    for i in range(250):
        order(CHAMPION, as_of - timedelta(days=i), 50_000.0)
    order(OLD_ONE_TIMER, created, 10.0)
    con.commit()
    con.close()


def buyers_in_window(source: Path, as_of: date, days: int = 365) -> int:
    """Customers with positive net revenue (placed or shipped orders, in CNY) in the
    365 days ending on as_of, counted straight from the source."""
    con = sqlite3.connect(source)
    start = (as_of - timedelta(days=days - 1)).isoformat()
    rows = con.execute(
        "select o.customer_id, o.currency, o.gross_amount from orders o join customers c using (customer_id) "
        "where not o.is_deleted and not c.is_deleted and o.status in ('placed', 'shipped') "
        "and o.order_date between ? and ?",
        (start, as_of.isoformat()),
    ).fetchall()
    con.close()
    revenue: dict[int, float] = {}
    for cid, cur, amount in rows:
        revenue[cid] = revenue.get(cid, 0.0) + float(amount) * FX[cur]
    return sum(1 for v in revenue.values() if v > 0)


def source_count(source: Path, sql: str, *params) -> int:
    con = sqlite3.connect(source)
    try:
        return con.execute(sql, params).fetchone()[0]
    finally:
        con.close()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("crm-home")
    runner = CliRunner()
    made = runner.invoke(app, ["demo-data", "--home", str(home), "--customers", str(CUSTOMERS),
                               "--until", AS_OF.isoformat()])
    assert made.exit_code == 0, made.output
    add_hand_built_customers(home / "source.sqlite", AS_OF)
    result = runner.invoke(app, ["run", "--home", str(home), "--as-of", AS_OF.isoformat(),
                                 "--customers", str(CUSTOMERS)])
    return home, result


def test_run_succeeds_and_prints_a_summary(first_run):
    home, result = first_run
    assert result.exit_code == 0, result.output
    out = result.output
    for needle in ("success", "extracted", "published", "stages", "gate: passed", "warehouse.duckdb"):
        assert needle in out, f"{needle!r} missing from the summary:\n{out}"
    assert "Traceback" not in out


def test_dbt_keeps_its_parse_and_writes_no_json_artifacts(first_run):
    """Both dbt stages ran with --no-write-json (docs/design.md, "A night's fixed cost"):
    the parse kept for the next stage and night is dbt's parse file alone, with no
    manifest.json beside it."""
    from cosmos import settings as cosmos_settings

    _, result = first_run
    assert result.exit_code == 0, result.output
    # the run was in this process: cosmos read its cache folder when it was first imported
    kept = {p.name for p in (Path(cosmos_settings.cache_dir) / "crm_nightly").rglob("*") if p.is_file()}
    assert "partial_parse.msgpack" in kept and "manifest.json" not in kept, kept


def test_one_segment_row_per_source_customer(first_run):
    home, _ = first_run
    expected = source_count(
        home / "source.sqlite",
        "select count(*) from customers where not is_deleted and substr(created_at, 1, 10) <= ?",
        AS_OF.isoformat(),
    )
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        total, distinct = con.execute(
            "select count(*), count(distinct customer_id) from published.customer_segments"
        ).fetchone()
        nulls = con.execute("select count(*) from published.customer_segments where segment is null").fetchone()[0]
    assert total == distinct == expected
    assert nulls == 0


def test_pyramid_tier_sizes_follow_the_1_4_15_80_split(first_run):
    home, _ = first_run
    n = buyers_in_window(home / "source.sqlite", AS_OF)
    # cumulative cut points 1% / 5% / 20% / 100% of buyers, rounded up to whole customers
    vip = math.ceil(0.01 * n)
    major = math.ceil(0.05 * n) - vip
    ordinary = math.ceil(0.20 * n) - vip - major
    small = n - vip - major - ordinary
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        counts = dict(con.execute(
            "select value_tier, count(*) from published.customer_value_tiers group by value_tier"
        ).fetchall())
    assert n > 500
    assert counts.get("VIP") == vip
    assert counts.get("Major") == major
    assert counts.get("Ordinary") == ordinary
    assert counts.get("Small") == small


def test_rfm_scores_of_hand_built_customers(first_run):
    home, _ = first_run
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        rows = {
            r[0]: r[1:]
            for r in con.execute(
                "select customer_id, recency_days, frequency, r_score, f_score, m_score, rfm_segment "
                "from published.customer_rfm where customer_id in (?, ?, ?)",
                (CHAMPION, OLD_ONE_TIMER, PROSPECT),
            ).fetchall()
        }
        tier = con.execute(
            "select value_tier from published.customer_value_tiers where customer_id = ?", (CHAMPION,)
        ).fetchone()[0]
        prospect_segment = con.execute(
            "select segment from published.customer_segments where customer_id = ?", (PROSPECT,)
        ).fetchone()[0]
    # the champion ordered on as_of (recency 0, the best anyone can have), on more distinct
    # days than any generated customer and for more money: the top score in each dimension
    assert rows[CHAMPION][:2] == (0, 250)
    assert rows[CHAMPION][2:5] == (5, 5, 5)
    assert rows[CHAMPION][5] == "Champions"
    assert tier == "VIP"
    # one order on the first day of the demo world: worst recency, lowest frequency, and no
    # revenue in the trailing year: the bottom score in each dimension
    assert rows[OLD_ONE_TIMER][0] == (AS_OF - date(2023, 7, 1)).days
    assert rows[OLD_ONE_TIMER][1] == 1
    assert rows[OLD_ONE_TIMER][2:5] == (1, 1, 1)
    # never bought: a prospect, not an error
    assert rows[PROSPECT][2:5] == (None, None, None)
    assert rows[PROSPECT][5] == "Prospects"
    assert prospect_segment == "Prospect"


def _months_back(d: date, months: int) -> date:
    m = d.year * 12 + d.month - 1 - months
    return date(m // 12, m % 12 + 1, 1)


def test_retention_metrics_match_their_definition(first_run):
    """Every published period recomputed customer by customer from the purchase days,
    straight from the definitions (active on day x = a purchase in [x - 364, x])."""
    import bisect
    from collections import defaultdict
    from decimal import Decimal

    home, result = first_run
    assert result.exit_code == 0, result.output
    active_days = 365
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        days = con.execute(
            "select customer_id, order_date, sum(net_revenue) from intermediate.int_orders "
            "where is_purchase group by 1, 2 order by 1, 2").fetchall()
        published = con.execute(
            "select period_type, period_start, period_end, measured_through, is_complete, customers_at_start, "
            "retained_customers, churned_customers, new_customers, customers_at_end, start_customers_revenue, "
            "start_customers_prior_revenue, revenue_lost_churned, retention_rate "
            "from published.retention_metrics order by 1, 2").fetchall()
    customers: dict[int, tuple[list[date], list[Decimal]]] = defaultdict(lambda: ([], []))
    for cid, d, revenue in days:
        customers[cid][0].append(d)
        customers[cid][1].append(Decimal(revenue))

    def active(dates: list[date], x: date) -> bool:
        i = bisect.bisect_right(dates, x)
        return i > 0 and dates[i - 1] > x - timedelta(days=active_days)

    def revenue(dates: list[date], amounts: list[Decimal], lo: date, hi: date) -> Decimal:
        return sum(amounts[bisect.bisect_left(dates, lo):bisect.bisect_right(dates, hi)], Decimal(0))

    assert len(published) > 40
    churned_somewhere = 0
    for (ptype, start, end, through, complete, at_start, retained, churned, new, at_end, start_rev,
         prior_rev, lost, rate) in published:
        months = 1 if ptype == "month" else 3
        prior_start = _months_back(start, months)
        prior_through = start - timedelta(days=1) if complete else min(
            prior_start + (through - start), start - timedelta(days=1))
        want = dict(at_start=0, retained=0, new=0, at_end=0, start_rev=Decimal(0), prior_rev=Decimal(0),
                    lost=Decimal(0))
        for dates, amounts in customers.values():
            if start <= dates[0] <= through:
                want["new"] += 1
            is_active_at_end = active(dates, through)
            want["at_end"] += is_active_at_end
            if not active(dates, start - timedelta(days=1)):
                continue
            want["at_start"] += 1
            want["retained"] += is_active_at_end
            want["start_rev"] += revenue(dates, amounts, start, through)
            want["prior_rev"] += revenue(dates, amounts, prior_start, prior_through)
            if not is_active_at_end:
                want["lost"] += revenue(dates, amounts, start - timedelta(days=active_days),
                                        start - timedelta(days=1))
        got = dict(at_start=at_start, retained=retained, new=new, at_end=at_end, start_rev=start_rev,
                   prior_rev=prior_rev, lost=lost)
        assert got == want, (ptype, start)
        assert churned == at_start - retained, (ptype, start)
        churned_somewhere += churned
        if at_start:
            assert float(rate) == pytest.approx(retained / at_start, abs=1e-6)
    assert churned_somewhere > 0


def test_second_day_extracts_only_what_changed(first_run):
    home, first = first_run
    assert first.exit_code == 0, first.output
    next_day = AS_OF + timedelta(days=1)
    result = CliRunner().invoke(app, ["run", "--home", str(home), "--as-of", next_day.isoformat(),
                                      "--customers", str(CUSTOMERS)])
    assert result.exit_code == 0, result.output
    source = home / "source.sqlite"
    lo, hi = f"{next_day.isoformat()} 00:00:00", f"{(next_day + timedelta(days=1)).isoformat()} 00:00:00"
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        batches = con.execute(
            "select entity, is_initial, rows_extracted, rows_duplicate, rows_staged, rows_quarantined "
            "from ops.extract_batches where as_of = ? order by entity", (next_day,)
        ).fetchall()
        as_ofs = [r[0] for r in con.execute(
            "select distinct as_of from published.customer_segment_history order by 1").fetchall()]
    assert len(batches) == 5
    changed_total = 0
    for entity, is_initial, extracted, duplicate, staged, quarantined in batches:
        assert not is_initial
        # every row of the day's changes was staged; the rows re-read because of the
        # overlap margin are exactly the duplicates
        changed = source_count(source, f"select count(*) from {entity} where updated_at >= ? and updated_at < ?", lo, hi)
        assert staged + quarantined == changed, entity
        assert extracted == duplicate + staged + quarantined, entity
        changed_total += changed
    total = sum(source_count(source, f"select count(*) from {e}") for e, *_ in batches)
    assert 0 < changed_total < 0.05 * total
    assert as_ofs == [AS_OF, next_day]
