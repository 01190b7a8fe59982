"""The CLV holdout check in the warehouse (crm_pipeline.clv_validation, crm clv validate).

The input, ``intermediate.int_orders``, is written here directly from simulated purchase
histories; the holdout's actual figures are recounted with pandas from those rows. The
model's arithmetic is checked against CDNOW in tests/test_clv_holdout.py.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crm_pipeline import clv_validation
from crm_pipeline.cli import app
from crm_pipeline.warehouse import Warehouse, WarehouseConfig

AS_OF = date(2026, 6, 30)


def simulated_orders(n: int = 300, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows, order_id = [], 0
    for cid in range(1, n + 1):
        day = AS_OF - timedelta(days=int(rng.integers(30, 700)))
        gap = rng.gamma(2.0, 40.0)
        p_drop = rng.beta(1.0, 6.0)  # BG/NBD: each customer's own chance to drop out after a purchase
        while day <= AS_OF:
            order_id += 1
            rows.append((order_id, cid, day, True, round(float(rng.gamma(4.0, 50.0)), 2)))
            if rng.random() < 0.2:  # a second order on the same day: one purchase day
                order_id += 1
                rows.append((order_id, cid, day, True, 10.0))
            if rng.random() < p_drop:
                break
            day += timedelta(days=max(1, int(rng.exponential(gap))))
    order_id += 1
    rows.append((order_id, 1, AS_OF - timedelta(days=3), False, 0.0))  # cancelled: not a purchase
    return pd.DataFrame(rows, columns=["order_id", "customer_id", "order_date", "is_purchase", "net_revenue"])


@pytest.fixture()
def duck(tmp_path):
    cfg = WarehouseConfig(kind="duckdb", duckdb_path=tmp_path / "wh.duckdb")
    with Warehouse(cfg) as wh:
        wh.execute("create schema if not exists intermediate")
        wh.execute("create table intermediate.int_orders (order_id bigint, customer_id bigint, order_date date, "
                   "is_purchase boolean, net_revenue numeric(18, 2))")
        wh.append_df("intermediate", "int_orders", simulated_orders())
        yield wh


def test_the_check_counts_the_holdout_as_it_happened(duck):
    summary = clv_validation.run(duck, AS_OF, "run-1", holdout_weeks=13)
    assert summary["status"] == "ok"
    table = clv_validation.read_table(duck, AS_OF).set_index("frequency_group")
    orders = simulated_orders()
    orders = orders[orders["is_purchase"]]
    days = orders.groupby(["customer_id", "order_date"])["net_revenue"].sum().reset_index()
    cal_end = AS_OF - timedelta(weeks=13)
    first = days.groupby("customer_id")["order_date"].min()
    customers = first[first <= cal_end].index
    held = days[(days["order_date"] > cal_end) & days["customer_id"].isin(customers)]
    calibration = days[(days["order_date"] <= cal_end)]
    repeats = (calibration.groupby("customer_id").size() - 1).reindex(customers)
    assert summary["calibration_end"] == cal_end.isoformat()
    assert table.loc["all", "customers"] == len(customers)
    assert table.loc["all", "actual_purchases_mean"] == pytest.approx(len(held) / len(customers))
    ones = repeats[repeats == 1].index
    assert table.loc["1", "customers"] == len(ones)
    assert table.loc["1", "actual_purchases_mean"] == pytest.approx(held["customer_id"].isin(ones).sum() / len(ones))
    assert table.loc["7+", "customers"] == int((repeats >= 7).sum())
    assert table["customers"].drop("all").sum() == len(customers)
    assert set(table["fit_status"]) == {"ok"}
    # a second check of the same night replaces its rows
    clv_validation.run(duck, AS_OF, "run-2", holdout_weeks=13)
    assert duck.scalar("select count(distinct run_id) from intermediate.clv_diagnostics") == 1


def test_a_check_without_a_usable_fit_says_so_in_one_row(duck, monkeypatch):
    monkeypatch.setenv("CRM_CLV_MIN_REPEAT_BUYERS", "100000")
    summary = clv_validation.run(duck, AS_OF, "run-1", holdout_weeks=13)
    assert summary["status"] == "too_few_repeat_buyers"
    table = clv_validation.read_table(duck, AS_OF)
    assert list(table["frequency_group"]) == ["all"]
    assert table.loc[0, "fit_status"] == "too_few_repeat_buyers" and "< 100000" in table.loc[0, "fit_message"]


@pytest.mark.parametrize("value, day, expected", [("1", 1, True), ("1", 2, False), ("15", 15, True), ("0", 1, False)])
def test_the_check_runs_on_its_day_of_the_month(monkeypatch, value, day, expected):
    monkeypatch.setenv("CRM_CLV_VALIDATE_DAY", value)
    assert clv_validation.due(date(2026, 7, day)) is expected


def test_crm_clv_validate_without_a_warehouse_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["clv", "validate", "--home", str(tmp_path)])
    assert result.exit_code == 1
    assert "no warehouse yet" in result.output and "Traceback" not in result.output
