"""The value, acquisition and churn-cause tables of a real night, recomputed with pandas.

One demo night (``wap_helpers.baseline_home``, DuckDB). Each published table is worked out
again here from the published tables it rests on (or from raw), with plain pandas and the
rules of docs/rules.md, never from the model's own SQL.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from wap_helpers import BASE_AS_OF, baseline_home, open_wh

pytestmark = pytest.mark.slow

SEEDS = __import__("pathlib").Path(__file__).parents[1] / "dbt_project" / "seeds"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    home = baseline_home(tmp_path_factory)
    names = ["customer_value_tiers", "profit_concentration", "profit_whale_curve", "customer_value_scores",
             "segment_pnl", "customer_segments", "customer_churn", "reorder_reminders", "churn_reasons",
             "churn_reason_mix", "acquisition_channels", "acquisition_cohorts", "acquisition_cohort_retention"]
    with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as wh:
        tables = {n: wh.query_df(f"select * from published.{n}") for n in names}
        tables["raw_customers"] = wh.query_df(
            "select customer_id, acquisition_channel from raw.customers "
            "qualify row_number() over (partition by customer_id order by _loaded_at desc, _batch_id desc) = 1")
    return {k: v.apply(lambda c: pd.to_numeric(c) if c.dtype == object and c.map(
        lambda v: v is None or hasattr(v, "as_integer_ratio")).all() else c) for k, v in tables.items()}


def test_the_whale_curve(published):
    tiers = published["customer_value_tiers"]
    served = tiers[(tiers.orders_12m > 0) | (tiers.complaints_12m > 0) | (tiers.trailing_12m_revenue != 0)
                   | (tiers.cost_to_serve != 0)]
    ranked = served.sort_values(["profit", "customer_id"], ascending=[False, True])
    profit = ranked["profit"].astype(float).to_numpy()
    n, total = len(profit), profit.sum()
    cumulative = np.cumsum(profit)
    before = cumulative - profit
    row = published["profit_concentration"].iloc[0]
    assert total > 0 and row.customers == n
    assert float(row.total_profit) == pytest.approx(total, abs=0.01)
    assert float(row.peak_profit) == pytest.approx(cumulative.max(), abs=0.01)
    assert row.loss_making_customers == (profit < 0).sum()
    assert float(row.profit_destroyed) == pytest.approx(-profit[profit < 0].sum(), abs=0.01)
    assert float(row.share_of_customers_for_80pct_profit) == pytest.approx((before < 0.8 * total).sum() / n, abs=1e-6)
    assert float(row.share_of_customers_for_90pct_profit) == pytest.approx((before < 0.9 * total).sum() / n, abs=1e-6)
    curve = published["profit_whale_curve"].set_index("percentile")
    assert len(curve) == 101
    for p in (0, 1, 20, 50, 99, 100):
        k = math.ceil(p * n / 100)
        assert curve.loc[p, "customers_up_to"] == k
        assert float(curve.loc[p, "cumulative_profit"]) == pytest.approx(cumulative[k - 1] if k else 0.0, abs=0.01)


def test_the_combined_value_abc(published):
    tiers = published["customer_value_tiers"]
    buyers = tiers[tiers.revenue_rank.notna()].copy()
    weights = pd.read_csv(SEEDS / "value_score_factors.csv").set_index("factor")
    values = {"revenue": buyers.trailing_12m_revenue, "profit": buyers.profit, "tenure": buyers.tenure_days,
              "cost_to_serve": buyers.cost_to_serve}
    score = 0.0
    for factor, v in values.items():
        v = v.astype(float)
        index = v / v.mean() if v.mean() != 0 else v * 0
        sign = 1 if weights.loc[factor, "higher_is_better"] else -1
        score = score + sign * weights.loc[factor, "weight"] * index
    buyers["score"] = score / weights["weight"].sum()
    buyers = buyers.sort_values(["score", "customer_id"], ascending=[False, True])
    before = buyers["score"].cumsum() - buyers["score"]
    total = buyers["score"].sum()
    classes = pd.read_csv(SEEDS / "abc_classes.csv").sort_values("class_order")
    expected = [next((c for c, s in zip(classes.abc_class, classes.cumulative_share) if b < s * total),
                     classes.abc_class.iloc[-1]) for b in before]
    got = published["customer_value_scores"].set_index("customer_id").loc[buyers.customer_id]
    assert list(got["value_abc_class"]) == expected
    assert got["value_score"].astype(float).to_numpy() == pytest.approx(buyers["score"].to_numpy(), abs=1e-5)
    assert published["customer_value_scores"].value_abc_class.isna().sum() == tiers.revenue_rank.isna().sum()


def test_segment_pnl(published):
    joined = published["customer_segments"][["customer_id", "segment", "account_manager"]].merge(
        published["customer_value_tiers"][["customer_id", "profit", "trailing_12m_revenue"]], on="customer_id")
    joined["account_manager"] = joined["account_manager"].fillna("(unassigned)")
    pnl = published["segment_pnl"]
    seg = pnl[pnl.level == "segment"].set_index("segment")
    by_segment = joined.groupby("segment").agg(customers=("customer_id", "size"), profit=("profit", "sum"))
    assert set(seg.index) == set(by_segment.index)
    for name, want in by_segment.iterrows():
        assert seg.loc[name, "customers"] == want.customers
        assert float(seg.loc[name, "profit"]) == pytest.approx(float(want.profit), abs=0.01)
        assert bool(seg.loc[name, "is_break_even"]) == (float(want.profit) >= 0)
    owners = pnl[pnl.level == "account_manager"]
    assert owners.customers.sum() == len(joined)
    assert len(owners) == joined.groupby(["segment", "account_manager"]).ngroups


def test_reminders_and_churn_causes_cover_the_right_customers(published):
    churn = published["customer_churn"]
    expected = pd.to_datetime(churn.expected_next_purchase_date)
    due = churn[(expected >= pd.Timestamp(BASE_AS_OF))
                & (expected <= pd.Timestamp(BASE_AS_OF + timedelta(days=14)))
                & ~churn.is_lost.fillna(False).astype(bool)]
    reminders = published["reorder_reminders"]
    assert set(reminders.customer_id) == set(due.customer_id)
    for _, group in reminders.groupby("account_manager"):
        assert sorted(group.reminder_rank) == list(range(1, len(group) + 1))
    churned = churn[(churn.is_dormant.astype(bool) | churn.is_lost.fillna(False).astype(bool))
                    & churn.last_order_date.notna()]
    reasons = published["churn_reasons"]
    assert set(reasons.customer_id) == set(churned.customer_id) and len(reasons) > 0
    mix = published["churn_reason_mix"]
    per_month = reasons.groupby("churn_month").size()
    for month, n in per_month.items():
        rows = mix[mix.churn_month == month]
        assert (rows.churned_customers == n).all()
        assert rows.customers.sum() == reasons[reasons.churn_month == month].reason_count.clip(lower=1).sum()


def test_acquisition_by_channel_and_cohort(published):
    churn = published["customer_churn"]
    buyers = churn[churn.first_order_date.notna()].merge(published["raw_customers"], on="customer_id")
    buyers["acquisition_channel"] = buyers["acquisition_channel"].fillna("(unknown)")
    channels = published["acquisition_channels"].set_index("acquisition_channel")
    counted = buyers.groupby("acquisition_channel").size()
    assert channels["customers_acquired"].to_dict() == counted.to_dict()
    buyers["cohort"] = pd.to_datetime(buyers["first_order_date"]).dt.to_period("M")
    cohorts = published["acquisition_cohorts"]
    assert cohorts["customers_acquired"].sum() == len(buyers)
    assert len(cohorts) == buyers.groupby(["cohort", "acquisition_channel"]).ngroups
    triangle = published["acquisition_cohort_retention"]
    month0 = triangle[triangle.months_since_acquisition == 0]
    assert (month0.active_customers == month0.cohort_customers).all()  # everyone bought in their first month
