"""``crm clv fit`` on the CDNOW sample (the published parameters) and on broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from crm_pipeline.cli import app

CDNOW = Path(__file__).parent / "fixtures" / "cdnow" / "CDNOW_sample.txt"


@pytest.fixture(scope="module")
def cdnow_csv(tmp_path_factory) -> Path:
    """The CDNOW transactions (whitespace-separated, no header: master id, sample id,
    date YYYYMMDD, CDs, dollars) as the CSV an analyst would have."""
    raw = pd.read_csv(CDNOW, sep=r"\s+", header=None, names=["master_id", "id", "date", "cds", "amount"],
                      dtype={"master_id": str, "id": str, "date": str})
    out = pd.DataFrame({
        "customer_id": raw["id"],
        "date": pd.to_datetime(raw["date"], format="%Y%m%d").dt.strftime("%Y-%m-%d"),
        "amount": raw["amount"],
    })
    path = tmp_path_factory.mktemp("cdnow") / "cdnow.csv"
    out.to_csv(path, index=False)
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, ["clv", "fit", *args])


def test_cdnow_weeks_reproduces_the_published_parameters(cdnow_csv, tmp_path):
    out = tmp_path / "pred.csv"
    result = invoke("--transactions", str(cdnow_csv), "--as-of", "1997-09-30", "--time-unit", "weeks",
                    "--predictions", str(out))
    assert result.exit_code == 0, result.output
    params = json.loads(result.stdout)
    assert params["status"] == "ok" and params["converged"] is True
    assert params["time_unit"] == "weeks" and params["as_of"] == "1997-09-30"
    # Fader, Hardie & Lee (2005); Fader & Hardie (2013)
    assert params["r"] == pytest.approx(0.243, abs=5e-4)
    assert params["alpha"] == pytest.approx(4.414, abs=5e-4)
    assert params["a"] == pytest.approx(0.793, abs=5e-4)
    assert params["b"] == pytest.approx(2.426, abs=5e-4)
    assert params["bgnbd_log_likelihood"] == pytest.approx(-9582.4, abs=0.05)
    assert params["p"] == pytest.approx(6.25, abs=5e-3)
    assert params["q"] == pytest.approx(3.74, abs=5e-3)
    assert params["gamma"] == pytest.approx(15.44, abs=5e-3)
    assert params["n_customers"] == 2357 and params["n_repeat_buyers"] == 946

    pred = pd.read_csv(out, dtype={"customer_id": str})
    assert len(pred) == 2357 and pred["customer_id"].is_unique
    assert list(pred.columns) == ["customer_id", "frequency", "recency", "T", "monetary_value", "prob_alive",
                                  "expected_purchases_90d", "expected_purchases_365d",
                                  "expected_avg_order_value", "clv_12m", "prob_alive_future", "prob_alive_p10",
                                  "prob_alive_p90", "clv_12m_p10", "clv_12m_p90"]
    assert pred["prob_alive"].between(0, 1).all() and (pred["clv_12m"] >= 0).all()
    # customer 0001: x = 2, t_x = 30.43, T = 38.86 weeks (the paper's worked example)
    one = pred.set_index("customer_id").loc["0001"]
    assert one["frequency"] == 2
    assert one["recency"] == pytest.approx(30.43, abs=0.01) and one["T"] == pytest.approx(38.86, abs=0.01)


def test_days_give_alpha_in_days(cdnow_csv):
    result = invoke("--transactions", str(cdnow_csv), "--as-of", "1997-09-30", "--time-unit", "days")
    assert result.exit_code == 0, result.output
    params = json.loads(result.stdout)
    assert params["time_unit"] == "days"
    assert params["alpha"] == pytest.approx(7 * 4.414, abs=7 * 5e-4)
    assert params["r"] == pytest.approx(0.243, abs=5e-4)


def test_same_day_transactions_are_one_purchase_and_columns_by_flag(tmp_path):
    rows = ["cust;when;value"]
    # 40 customers: each buys on two days, customer k twice on its first day
    for k in range(1, 41):
        rows += [f"C{k};2026-01-{k % 28 + 1:02d} 09:00:00;10.5", f"C{k};2026-01-{k % 28 + 1:02d} 17:30:00;4.5",
                 f"C{k};2026-0{2 + k % 4}-15;{20 + k}"]
    path = tmp_path / "tx.csv"
    path.write_text("\n".join(rows).replace(";", ",") + "\n")
    out = tmp_path / "p.csv"
    result = invoke("--transactions", str(path), "--as-of", "2026-06-30", "--customer-col", "cust",
                    "--date-col", "when", "--amount-col", "value", "--predictions", str(out),
                    "--min-repeat-buyers", "10")
    assert result.exit_code in (0, 2), result.output
    params = json.loads(result.stdout)
    assert params["n_customers"] == 40 and params["n_repeat_buyers"] == 40
    if result.exit_code == 0:
        pred = pd.read_csv(out)
        assert "cust" in pred.columns and (pred["frequency"] == 1).all()


def test_too_few_repeat_buyers_prints_the_status_and_exits_2(cdnow_csv, tmp_path):
    out = tmp_path / "p.csv"
    result = invoke("--transactions", str(cdnow_csv), "--as-of", "1997-01-05", "--predictions", str(out))
    assert result.exit_code == 2
    params = json.loads(result.stdout)
    assert params["status"] == "too_few_repeat_buyers" and params["r"] is None
    assert not out.exists()
    assert "too_few_repeat_buyers" in result.stderr


@pytest.mark.parametrize("content,expected", [
    ("", "is empty"),
    ("customer_id,date,amount\n", "no transactions"),
    ("cust,date,amount\n1,2026-01-01,10\n", "has no column 'customer_id'"),
    ("customer_id,date,amount\n1,2026-01-01,10\n1,2026-13-45,5\n", "line 3: date '2026-13-45' is not a date"),
    ("customer_id,date,amount\n1,2026-01-01,ten\n", "line 2: amount 'ten' is not a number"),
    ("customer_id,date,amount\n1,,10\n", "line 2: date is empty"),
    ("customer_id,date,amount\n,2026-01-01,10\n", "line 2: customer_id is empty"),
    ("customer_id,date,amount\n1,2027-01-01,10\n", "no transactions on or before 2026-06-30"),
])
def test_bad_csv_is_one_line_and_exit_1(tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = invoke("--transactions", str(path), "--as-of", "2026-06-30")
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args,expected", [
    (["--as-of", "30/06/2026"], "--as-of '30/06/2026' is not a date"),
    (["--as-of", "2026-06-30", "--time-unit", "months"], "--time-unit 'months'"),
])
def test_bad_options_are_one_line(cdnow_csv, args, expected):
    result = invoke("--transactions", str(cdnow_csv), *args)
    assert result.exit_code == 1
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_file_is_one_line(tmp_path):
    result = invoke("--transactions", str(tmp_path / "nope.csv"), "--as-of", "2026-06-30")
    assert result.exit_code == 1 and "no such file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
