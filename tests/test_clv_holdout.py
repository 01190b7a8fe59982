"""The CLV model's holdout check (crm_pipeline.clv.holdout) against published numbers.

The CDNOW split of Fader, Hardie & Lee (2005): calibration to 1997-09-30, 39 weeks of
holdout to 1998-06-30. Expected values: the paper's parameters, and the expected holdout
purchases per calibration frequency that ``lifetimes`` 0.11.3 computes on the same split
(``tests/fixtures/cdnow/holdout_reference.json``, made once by the script beside it, run
``D_x7``: daily periods in weeks, as this project counts purchases). A small case is
worked by hand.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from crm_pipeline.clv import holdout

CDNOW = Path(__file__).parent / "fixtures" / "cdnow"


@pytest.fixture(scope="module")
def cdnow_frame():
    tx = pd.read_csv(CDNOW / "CDNOW_sample.txt", sep=r"\s+", header=None,
                     names=["master_id", "customer_id", "date", "cds", "amount"], dtype={"date": str})
    tx["date"] = pd.to_datetime(tx["date"], format="%Y%m%d")
    return holdout.calibration_and_holdout(tx, date(1997, 9, 30), date(1998, 6, 30))


@pytest.fixture(scope="module")
def reference():
    return json.loads((CDNOW / "holdout_reference.json").read_text())["runs"]["D_x7"]


def test_the_calibration_fit_gives_the_published_parameters(cdnow_frame, reference):
    fit, _ = holdout.diagnostics(cdnow_frame)
    assert fit["status"] == "ok"
    assert (round(fit["r"], 3), round(fit["alpha"], 3), round(fit["a"], 3), round(fit["b"], 3)) == (
        0.243, 4.414, 0.793, 2.426)  # FHL 2005, Table 1
    assert cdnow_frame["duration_holdout"].iloc[0] == pytest.approx(39.0)
    assert len(cdnow_frame) == reference["customers"] == 2357


@pytest.mark.parametrize("cap, key", [(7, "by_frequency_capped_7"), (1000, "by_frequency")])
def test_expected_holdout_purchases_per_frequency_equal_lifetimes(cdnow_frame, reference, cap, key):
    _, groups = holdout.diagnostics(cdnow_frame, cap=cap)
    groups = groups[groups["frequency_group"] != "all"].reset_index(drop=True)
    expected = reference[key]
    assert list(groups["group_order"]) == [row["frequency_cal"] for row in expected]
    for got, want in zip(groups.itertuples(), expected):
        assert got.customers == want["customers"]
        assert got.actual_purchases_mean == pytest.approx(want["actual_mean"], rel=1e-12)
        assert got.predicted_purchases_mean == pytest.approx(want["predicted_mean"], rel=5e-4)  # 3 significant digits


def test_totals_and_errors(cdnow_frame, reference):
    _, groups = holdout.diagnostics(cdnow_frame)
    total = groups.set_index("frequency_group").loc["all"]
    n = reference["customers"]
    assert total["customers"] == n
    assert total["actual_purchases_mean"] * n == pytest.approx(reference["totals"]["actual_holdout_purchases"])
    assert total["predicted_purchases_mean"] * n == pytest.approx(
        reference["totals"]["predicted_holdout_purchases"], rel=5e-4)
    assert total["purchases_aggregate_error"] == pytest.approx(
        (reference["totals"]["predicted_holdout_purchases"] - reference["totals"]["actual_holdout_purchases"])
        / reference["totals"]["actual_holdout_purchases"], rel=5e-3)
    assert groups.set_index("frequency_group").loc["7+", "customers"] == 64
    # spend is compared for customers with repeat purchases in both periods (491 in lifetimes too)
    assert total["spend_customers"] == reference["gamma_gamma"]["holdout_customers"]
    assert total["predicted_spend_mean"] == pytest.approx(
        reference["gamma_gamma"]["predicted_mean_expected_average_profit"], rel=5e-4)


def test_calibration_and_holdout_by_hand():
    tx = pd.DataFrame({
        "customer_id": [1, 1, 1, 1, 1, 2, 2, 3],
        "date": pd.to_datetime(["2026-01-01", "2026-01-15", "2026-01-15", "2026-02-10", "2026-02-10",
                                "2026-01-20", "2026-03-05", "2026-02-05"]),
        "amount": [10.0, 20.0, 5.0, 30.0, 10.0, 50.0, 70.0, 99.0],
    })
    frame = holdout.calibration_and_holdout(tx, date(2026, 1, 31), date(2026, 3, 31), time_unit="days")
    # customer 3 first bought in the holdout: not a calibration customer
    assert list(frame.index) == [1, 2]
    # customer 1: calibration days 01-01 and 01-15 (25 = 20 + 5 on one day) -> x = 1, t_x = 14,
    # T = 30, m = 25; holdout: one day (02-10, 40); customer 2: one calibration day, one
    # holdout day of 70
    assert frame.loc[1, ["frequency", "recency", "T", "monetary_value"]].tolist() == [1, 14, 30, 25]
    assert frame.loc[1, ["frequency_holdout", "monetary_value_holdout"]].tolist() == [1, 40]
    assert frame.loc[2, ["frequency", "frequency_holdout", "monetary_value_holdout"]].tolist() == [0, 1, 70]
    assert frame["duration_holdout"].iloc[0] == 59


def test_too_few_repeat_buyers_is_a_status_not_an_error():
    frame = pd.DataFrame({"frequency": [0, 0], "recency": [0.0, 0.0], "T": [5.0, 6.0], "monetary_value": [0.0, 0.0],
                          "frequency_holdout": [1, 0], "monetary_value_holdout": [3.0, 0.0],
                          "duration_holdout": [4.0, 4.0]})
    fit, groups = holdout.diagnostics(frame, min_repeat_buyers=30)
    assert fit["status"] == "too_few_repeat_buyers" and groups is None
