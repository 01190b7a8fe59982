"""The CLV step of the nightly run (crm_pipeline.clv_step) on small hand-built warehouses.

The step's input, ``intermediate.int_customer_order_summary``, is written here directly
from purchase histories simulated by the BG/NBD story (Poisson purchases while alive,
dropout after each purchase with a beta-distributed probability), so no dbt is needed.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from crm_pipeline import clv_step
from crm_pipeline.settings import ConfigError
from crm_pipeline.warehouse import Warehouse, WarehouseConfig

AS_OF = date(2026, 6, 30)

SUMMARY_DDL = """create table intermediate.int_customer_order_summary (
    customer_id bigint, as_of date, first_order_date date, last_order_date date,
    order_days integer, frequency integer, recency_days integer, repeat_span_days integer,
    age_days integer, avg_repeat_spend numeric(18, 2), orders_to_date integer,
    total_net_revenue numeric(18, 2), total_gross_margin numeric(18, 2),
    trailing_net_revenue numeric(18, 2), trailing_gross_margin numeric(18, 2),
    trailing_orders integer, product_categories integer, tenure_days integer)"""


def simulate_summary(as_of: date, n: int = 400, prospects: int = 5, seed: int = 7,
                     r: float = 0.6, alpha_days: float = 40.0, a: float = 0.8, b: float = 3.0) -> pd.DataFrame:
    """Rows of int_customer_order_summary for ``n`` BG/NBD buyers plus some prospects.

    Purchase days are whole days (same-day purchases merge into one purchase day); spend
    per purchase day is gamma around a per-customer mean; margin is 30% of revenue,
    except customer 3 (no net revenue: returns only) and customer 4 (margin above revenue).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for cid in range(1, n + 1):
        first = as_of - timedelta(days=int(rng.integers(0, 365)))
        rate = rng.gamma(r, 1.0 / alpha_days)
        p_drop = rng.beta(a, b)
        days, t = [0], 0.0
        horizon = (as_of - first).days
        while True:
            if rng.random() < p_drop:
                break
            t += rng.exponential(1.0 / rate) if rate > 0 else horizon + 1
            if t > horizon:
                break
            if int(t) != days[-1]:
                days.append(int(t))
        mean_spend = rng.gamma(6.0, 20.0)
        spends = rng.gamma(4.0, mean_spend / 4.0, size=len(days)).round(2)
        x = len(days) - 1
        revenue = float(spends.sum())
        margin = round(0.3 * revenue, 2)
        if cid == 3:
            revenue, margin = 0.0, 0.0
        if cid == 4:
            margin = round(1.5 * revenue, 2)
        rows.append({
            "customer_id": cid, "as_of": as_of, "first_order_date": first,
            "last_order_date": first + timedelta(days=days[-1]), "order_days": len(days), "frequency": x,
            "recency_days": horizon - days[-1], "repeat_span_days": days[-1], "age_days": horizon,
            "avg_repeat_spend": round(float(spends[1:].mean()), 2) if x > 0 else None,
            "orders_to_date": len(days), "total_net_revenue": round(revenue, 2), "total_gross_margin": margin,
            "trailing_net_revenue": 0.0, "trailing_gross_margin": 0.0, "trailing_orders": 0,
            "product_categories": 1, "tenure_days": horizon + 10,
        })
    for k in range(prospects):
        rows.append({
            "customer_id": n + 1 + k, "as_of": as_of, "first_order_date": None, "last_order_date": None,
            "order_days": 0, "frequency": None, "recency_days": None, "repeat_span_days": None, "age_days": None,
            "avg_repeat_spend": None, "orders_to_date": 0, "total_net_revenue": 0.0, "total_gross_margin": 0.0,
            "trailing_net_revenue": 0.0, "trailing_gross_margin": 0.0, "trailing_orders": 0,
            "product_categories": 0, "tenure_days": 10,
        })
    df = pd.DataFrame(rows)
    for col in ("frequency", "recency_days", "repeat_span_days", "age_days"):
        df[col] = df[col].astype("Int64")
    return df


def load_summary(wh: Warehouse, df: pd.DataFrame) -> None:
    """(Re)create intermediate.int_customer_order_summary with ``df``, as dbt would."""
    wh.execute("create schema if not exists intermediate")
    wh.execute("drop table if exists intermediate.int_customer_order_summary")
    wh.execute(SUMMARY_DDL)
    wh.append_df("intermediate", "int_customer_order_summary", df)


def few_repeat_buyers(as_of: date) -> pd.DataFrame:
    """Ten buyers, only three of whom came back."""
    df = simulate_summary(as_of, n=10, prospects=1, seed=1)
    keep_repeat = set(df.loc[df["frequency"].fillna(0) > 0, "customer_id"].head(3))
    once = (df["order_days"] > 0) & ~df["customer_id"].isin(keep_repeat)
    df.loc[once, ["order_days", "orders_to_date"]] = 1
    df.loc[once, "frequency"] = 0
    df.loc[once, "repeat_span_days"] = 0
    df.loc[once, "avg_repeat_spend"] = None
    return df


@pytest.fixture()
def duck(tmp_path, monkeypatch):
    for var in ("CRM_CLV_TIME_UNIT", "CRM_CLV_ANNUAL_DISCOUNT_RATE", "CRM_CLV_MIN_REPEAT_BUYERS"):
        monkeypatch.delenv(var, raising=False)
    with Warehouse(WarehouseConfig.from_url(f"duckdb:///{tmp_path / 'w.duckdb'}")) as wh:
        yield wh


def _fit_rows(wh: Warehouse) -> pd.DataFrame:
    return wh.query_df("select * from intermediate.clv_fit order by as_of")


def _predictions(wh: Warehouse, as_of: date | None = None) -> pd.DataFrame:
    where = "" if as_of is None else f" where as_of = cast('{as_of.isoformat()}' as date)"
    df = wh.query_df(f"select * from intermediate.clv_predictions{where} order by as_of, customer_id")
    for col in df.columns:
        if col not in ("as_of",):
            df[col] = pd.to_numeric(df[col])
    return df


def check_ok_run(wh: Warehouse, summary: pd.DataFrame, result: dict) -> pd.DataFrame:
    buyers = summary[summary["order_days"] > 0]
    assert result["status"] == "ok", result
    assert result["n_customers"] == len(buyers)
    assert result["predictions"] == len(buyers)
    assert result["n_repeat_buyers"] == int((buyers["frequency"] > 0).sum())
    assert set(result["params"]) == {"r", "alpha", "a", "b", "p", "q", "gamma"}
    assert all(v is not None and v > 0 for v in result["params"].values())

    fit = _fit_rows(wh)
    assert len(fit) == 1
    row = fit.iloc[0]
    assert row["status"] == "ok" and bool(row["converged"]) and row["time_unit"] == "weeks"
    assert int(row["n_customers"]) == len(buyers) and float(row["annual_discount_rate"]) == pytest.approx(0.10)
    assert row["bgnbd_log_likelihood"] < 0 and row["gg_log_likelihood"] < 0 and row["fit_seconds"] >= 0

    pred = _predictions(wh)
    # one row per buyer, none for prospects
    assert sorted(pred["customer_id"]) == sorted(buyers["customer_id"])
    assert pred["customer_id"].is_unique
    merged = pred.merge(buyers, on="customer_id")
    # the model inputs in weeks
    np.testing.assert_array_equal(merged["frequency_x"], merged["frequency_y"])
    np.testing.assert_allclose(merged["t"], merged["age_days"].astype(float) / 7.0, rtol=1e-12)
    np.testing.assert_allclose(merged["recency"], merged["repeat_span_days"].astype(float) / 7.0, rtol=1e-12)
    zero = merged[merged["frequency_x"] == 0]
    assert len(zero) and (zero["prob_alive"] == 1.0).all() and (zero["monetary_value"] == 0.0).all()
    # customers without a repeat purchase get the population mean order value (all equal, positive)
    assert zero["expected_avg_order_value"].nunique() == 1 and zero["expected_avg_order_value"].iloc[0] > 0
    for col in ("prob_alive", "expected_purchases_90d", "expected_purchases_365d", "expected_avg_order_value",
                "clv_12m", "margin_share"):
        assert pred[col].notna().all(), col
    assert pred["prob_alive"].between(0, 1).all()
    assert (pred["expected_purchases_365d"] >= pred["expected_purchases_90d"]).all()
    assert (pred["clv_12m"] >= 0).all()
    # margin share: own share when there is revenue (clipped to 1), population share otherwise
    share = pred.set_index("customer_id")["margin_share"]
    assert share[1] == pytest.approx(0.3, abs=0.01)
    assert share[4] == 1.0
    positive = buyers[buyers["total_net_revenue"] > 0]
    population = min(1.0, float(positive["total_gross_margin"].sum() / positive["total_net_revenue"].sum()))
    assert share[3] == pytest.approx(population, rel=1e-12)
    return pred


def test_step_writes_predictions_and_the_fit_row(duck):
    summary = simulate_summary(AS_OF)
    load_summary(duck, summary)
    result = clv_step.run(duck, AS_OF, "run-1")
    check_ok_run(duck, summary, result)
    # the simulated population is roughly recovered (alpha in weeks)
    assert 0.2 < result["params"]["r"] < 2.0
    assert 40.0 / 7 / 3 < result["params"]["alpha"] < 40.0 / 7 * 3
    assert set(duck.columns("intermediate", "clv_predictions")) == set(clv_step.PREDICTIONS_COLUMNS)
    assert duck.columns("intermediate", "clv_fit") == list(clv_step.FIT_COLUMNS)


def test_days_give_the_same_predictions_with_alpha_times_seven(duck, monkeypatch):
    summary = simulate_summary(AS_OF)
    load_summary(duck, summary)
    weeks = clv_step.run(duck, AS_OF, "run-w")
    pred_w = _predictions(duck)
    monkeypatch.setenv("CRM_CLV_TIME_UNIT", "days")
    days = clv_step.run(duck, AS_OF, "run-d")
    pred_d = _predictions(duck)
    assert days["time_unit"] == "days" and _fit_rows(duck).iloc[0]["time_unit"] == "days"
    assert days["params"]["alpha"] == pytest.approx(7 * weeks["params"]["alpha"], rel=1e-4)
    assert days["params"]["r"] == pytest.approx(weeks["params"]["r"], rel=1e-4)
    np.testing.assert_allclose(pred_d["prob_alive"], pred_w["prob_alive"], rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(pred_d["clv_12m"], pred_w["clv_12m"], rtol=1e-4, atol=1e-6)


def test_discount_rate_setting_lowers_the_clv(duck, monkeypatch):
    load_summary(duck, simulate_summary(AS_OF))
    clv_step.run(duck, AS_OF, "run-1")
    base = _predictions(duck)["clv_12m"].sum()
    monkeypatch.setenv("CRM_CLV_ANNUAL_DISCOUNT_RATE", "0.5")
    clv_step.run(duck, AS_OF, "run-2")
    assert _predictions(duck)["clv_12m"].sum() < base
    assert float(_fit_rows(duck).iloc[0]["annual_discount_rate"]) == 0.5


def test_too_few_repeat_buyers_writes_the_fit_row_and_no_predictions(duck):
    # an earlier, successful date stays as it is
    earlier = AS_OF - timedelta(days=30)
    load_summary(duck, simulate_summary(earlier))
    assert clv_step.run(duck, earlier, "run-0")["status"] == "ok"
    n_earlier = len(_predictions(duck, earlier))
    # a first successful run for AS_OF, then a re-run on data with too few repeat buyers
    load_summary(duck, simulate_summary(AS_OF))
    assert clv_step.run(duck, AS_OF, "run-1")["status"] == "ok"
    load_summary(duck, few_repeat_buyers(AS_OF))
    result = clv_step.run(duck, AS_OF, "run-2")

    assert result["status"] == "too_few_repeat_buyers"
    assert result["predictions"] == 0 and result["n_repeat_buyers"] == 3
    assert "min_repeat_buyers=30" in result["message"]
    assert all(v is None for v in result["params"].values())
    fit = _fit_rows(duck).set_index("as_of")
    assert len(fit) == 2
    row = fit.loc[pd.Timestamp(AS_OF)] if pd.Timestamp(AS_OF) in fit.index else fit.loc[AS_OF]
    assert row["status"] == "too_few_repeat_buyers" and not bool(row["converged"])
    assert row["run_id"] == "run-2" and pd.isna(row["r"]) and pd.isna(row["gamma"])
    assert int(row["n_customers"]) == 10 and int(row["n_repeat_buyers"]) == 3
    assert len(_predictions(duck, AS_OF)) == 0  # this date's earlier predictions are gone
    assert len(_predictions(duck, earlier)) == n_earlier  # other dates untouched


def test_min_repeat_buyers_setting(duck, monkeypatch):
    load_summary(duck, few_repeat_buyers(AS_OF))
    monkeypatch.setenv("CRM_CLV_MIN_REPEAT_BUYERS", "3")
    result = clv_step.run(duck, AS_OF, "run-1")
    assert result["status"] != "too_few_repeat_buyers"
    assert int(_fit_rows(duck).iloc[0]["min_repeat_buyers"]) == 3


def test_rerun_replaces_this_as_of_and_keeps_other_dates(duck):
    earlier = AS_OF - timedelta(days=1)
    first = simulate_summary(earlier, seed=11)
    load_summary(duck, first)
    clv_step.run(duck, earlier, "run-a")
    summary = simulate_summary(AS_OF)
    load_summary(duck, summary)
    clv_step.run(duck, AS_OF, "run-b")
    before = _predictions(duck, AS_OF)
    clv_step.run(duck, AS_OF, "run-c")  # a retry of the same date
    after = _predictions(duck, AS_OF)
    pd.testing.assert_frame_equal(before, after)  # deterministic, and not doubled
    fit = _fit_rows(duck)
    assert len(fit) == 2 and list(fit["run_id"]) == ["run-a", "run-c"]
    assert len(_predictions(duck, earlier)) == int((first["order_days"] > 0).sum())


def test_fresh_warehouse_without_buyers_creates_the_tables(duck):
    load_summary(duck, simulate_summary(AS_OF, n=0, prospects=3))
    result = clv_step.run(duck, AS_OF, "run-1")
    assert result["status"] == "too_few_repeat_buyers" and result["n_customers"] == 0
    assert duck.table_exists("intermediate", "clv_predictions") and len(_fit_rows(duck)) == 1


def test_summary_of_another_date_is_refused(duck):
    load_summary(duck, simulate_summary(AS_OF - timedelta(days=1)))
    with pytest.raises(RuntimeError, match="built for as_of"):
        clv_step.run(duck, AS_OF, "run-1")


def test_missing_summary_is_refused(duck):
    with pytest.raises(RuntimeError, match="dbt staging stage must run"):
        clv_step.run(duck, AS_OF, "run-1")


@pytest.mark.parametrize("var,value", [
    ("CRM_CLV_TIME_UNIT", "months"),
    ("CRM_CLV_ANNUAL_DISCOUNT_RATE", "ten percent"),
    ("CRM_CLV_ANNUAL_DISCOUNT_RATE", "-0.1"),
    ("CRM_CLV_MIN_REPEAT_BUYERS", "0"),
])
def test_bad_settings_are_one_line_config_errors(duck, monkeypatch, var, value):
    load_summary(duck, simulate_summary(AS_OF, n=50))
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        clv_step.run(duck, AS_OF, "run-1")



def test_non_finite_predictions_are_stored_as_null(duck):
    clv_step.ensure_tables(duck)
    pred = pd.DataFrame({
        "customer_id": [1, 2], "frequency": [0, 3], "recency": [0.0, 2.0], "T": [5.0, 6.0],
        "monetary_value": [0.0, 10.0], "prob_alive": [1.0, 0.5], "expected_purchases_90d": [0.1, np.nan],
        "expected_purchases_365d": [0.4, 1.0], "expected_avg_order_value": [20.0, np.inf], "clv_12m": [3.0, np.nan],
        "prob_alive_future": [1.0, 0.4], "prob_alive_p10": [1.0, np.nan], "prob_alive_p90": [1.0, np.inf],
        "clv_12m_p10": [2.0, -np.inf], "clv_12m_p90": [4.0, np.nan],
    })
    shares = pd.Series([0.3, 0.4], index=pd.Index([1, 2], name="customer_id"))
    duck.append_df("intermediate", "clv_predictions", clv_step._prediction_frame(pred, shares, AS_OF))
    rows = duck.query("select customer_id, as_of, margin_share, expected_purchases_90d, expected_avg_order_value, "
                      "clv_12m, prob_alive_90d, prob_alive_p90, clv_12m_p10 from intermediate.clv_predictions "
                      "order by customer_id")
    assert rows == [(1, AS_OF, 0.3, 0.1, 20.0, 3.0, 1.0, 1.0, 2.0), (2, AS_OF, 0.4, None, None, None, 0.4, None, None)]

@pytest.mark.postgres
def test_postgres_gives_the_same_rows_as_duckdb(pg_database, duck):
    summary = simulate_summary(AS_OF)
    load_summary(duck, summary)
    clv_step.run(duck, AS_OF, "run-duck")
    with Warehouse(WarehouseConfig.from_url(pg_database)) as pg:
        load_summary(pg, summary)
        result = clv_step.run(pg, AS_OF, "run-pg")
        check_ok_run(pg, summary, result)
        # identical DDL
        for table in ("clv_predictions", "clv_fit"):
            assert pg.columns("intermediate", table) == duck.columns("intermediate", table)
        pg_pred = _predictions(pg)
        # rerun and the failure path on PostgreSQL too
        load_summary(pg, few_repeat_buyers(AS_OF))
        assert clv_step.run(pg, AS_OF, "run-pg-2")["status"] == "too_few_repeat_buyers"
        assert len(_predictions(pg)) == 0 and len(_fit_rows(pg)) == 1
    duck_pred = _predictions(duck)
    pg_pred["as_of"] = pd.to_datetime(pg_pred["as_of"])
    duck_pred["as_of"] = pd.to_datetime(duck_pred["as_of"])
    # bit-identical doubles: same inputs in the same order give the same fit
    pd.testing.assert_frame_equal(duck_pred.reset_index(drop=True), pg_pred.reset_index(drop=True),
                                  check_dtype=False, rtol=0, atol=0)


# -- end to end: the real DAG on the demo source -----------------------------------------


@pytest.mark.slow
def test_dag_publishes_clv_tables(tmp_path, monkeypatch):
    """`crm run` on the embedded default publishes customer_lifetime_value and
    clv_model_runs, and customer_segments carries the model's outputs."""
    import duckdb
    from typer.testing import CliRunner

    from crm_pipeline.cli import app

    for var in ("CRM_CLV_TIME_UNIT", "CRM_CLV_ANNUAL_DISCOUNT_RATE", "CRM_CLV_MIN_REPEAT_BUYERS",
                "AIRFLOW_CONN_CRM_SOURCE", "AIRFLOW_CONN_CRM_WAREHOUSE"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["run", "--home", str(home), "--as-of", AS_OF.isoformat(), "--customers", "600"])
    assert result.exit_code == 0, result.output
    assert "clv:" in result.output and "ok" in result.output.split("clv:", 1)[1].splitlines()[0]

    con = duckdb.connect(str(home / "warehouse.duckdb"))  # in-process dbt may hold a read-write one
    try:
        buyers = con.execute(
            "select count(*) from intermediate.int_customer_order_summary where order_days > 0").fetchone()[0]
        assert buyers > 100
        n, distinct, dates = con.execute(
            "select count(*), count(distinct customer_id), count(distinct as_of) "
            "from published.customer_lifetime_value").fetchone()
        assert n == distinct == buyers and dates == 1
        missing = con.execute(
            "select count(*) from intermediate.int_customer_order_summary s "
            "left join published.customer_lifetime_value c on s.customer_id = c.customer_id "
            "where s.order_days > 0 and c.customer_id is null").fetchone()[0]
        assert missing == 0
        bad = con.execute(
            "select count(*) from published.customer_lifetime_value where not (prob_alive between 0 and 1) "
            "or not (prob_purchase_90d between 0 and 1) or clv_12m < 0 or clv_12m is null "
            "or expected_purchases_365d < expected_purchases_90d").fetchone()[0]
        assert bad == 0

        runs = con.execute(
            "select as_of, status, is_converged, time_unit, n_customers, r, alpha, a, b, p, q, gamma, "
            "bgnbd_log_likelihood, gg_log_likelihood, fit_seconds from published.clv_model_runs").fetchall()
        assert len(runs) == 1
        as_of, status, converged, unit, n_customers, r, alpha, a, b, p, q, gamma, ll_bg, ll_gg, secs = runs[0]
        assert (as_of, status, converged, unit, n_customers) == (AS_OF, "ok", True, "weeks", buyers)
        for value in (r, alpha, a, b, p, q, gamma):
            assert 1e-4 < float(value) < 1e5
        assert float(q) > 1 and float(ll_bg) < 0 and float(ll_gg) < 0 and float(secs) >= 0

        seg = con.execute(
            "select count(*) filter (where s.prob_alive is null or s.clv_12m is null), "
            "count(*) filter (where s.purchase_likelihood_method <> 'clv_model'), "
            "count(*) filter (where not (s.purchase_likelihood between 0 and 1)), "
            "count(*) filter (where s.prob_alive <> c.prob_alive or s.clv_12m <> c.clv_12m "
            "                   or s.purchase_likelihood <> c.prob_purchase_90d) "
            "from published.customer_segments s join published.customer_lifetime_value c using (customer_id)"
        ).fetchone()
        assert seg == (0, 0, 0, 0)
        prospects = con.execute(
            "select count(*), count(prob_alive), count(purchase_likelihood) from published.customer_segments s "
            "where customer_id not in (select customer_id from published.customer_lifetime_value)").fetchone()
        assert prospects[1] == prospects[2] == 0
        churn = con.execute(
            "select count(*) from published.customer_churn ch join published.customer_lifetime_value c "
            "using (customer_id) where ch.prob_alive <> c.prob_alive "
            "or (c.prob_alive < 0.1 and not ch.is_lost)").fetchone()[0]
        assert churn == 0
        assert con.execute("select count(avg_clv) from published.segment_profiles "
                           "where customers > 0 and segment <> 'Prospect'").fetchone()[0] > 0
    finally:
        con.close()


def test_tables_of_an_earlier_version_gain_the_new_columns(duck):
    duck.execute("create schema if not exists intermediate")
    duck.execute("create table intermediate.clv_predictions (as_of date not null, customer_id bigint not null, "
                 "clv_12m double precision)")
    duck.execute("insert into intermediate.clv_predictions values (date '2026-01-31', 1, 5.0)")
    clv_step.ensure_tables(duck)
    assert set(clv_step.PREDICTIONS_COLUMNS) <= set(duck.columns("intermediate", "clv_predictions"))
    assert duck.query("select clv_12m, clv_12m_p10, prob_alive_90d from intermediate.clv_predictions") == [
        (5.0, None, None)]
    assert duck.columns("intermediate", "clv_diagnostics") == list(clv_step.DIAGNOSTICS_COLUMNS)
