"""Predicted lifetime value (crm_pipeline.clv) against published numbers and hand-worked cases.

Expected values come from the literature on the CDNOW sample (see
tests/fixtures/cdnow/README.md), from the ``lifetimes`` README, from arithmetic done by
hand, or from an independent numerical integration of the model; never from this
module's own output.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad
from scipy.special import betaln

from crm_pipeline import clv
from crm_pipeline.clv import fits as clv_fits

CDNOW = Path(__file__).parent / "fixtures" / "cdnow"
CALIBRATION_END = date(1997, 9, 30)  # 39 weeks after 1997-01-01


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow_summary() -> pd.DataFrame:
    return pd.read_csv(CDNOW / "cdnow_customers_summary.csv", index_col="ID")


@pytest.fixture(scope="module")
def cdnow_summary_money() -> pd.DataFrame:
    df = pd.read_csv(CDNOW / "cdnow_customers_summary_with_transactions.csv", index_col="ID")
    return df.rename(columns={"x": "frequency", "t_x": "recency", "zbar": "monetary_value"})


@pytest.fixture(scope="module")
def cdnow_transactions() -> pd.DataFrame:
    tx = pd.read_csv(
        CDNOW / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "cds", "amount"],
        dtype={"date": str},
    )
    tx["date"] = pd.to_datetime(tx["date"], format="%Y%m%d")
    return tx


@pytest.fixture(scope="module")
def cdnow_bgnbd(cdnow_summary) -> clv.BGNBDFit:
    s = cdnow_summary
    return clv.fit_bgnbd(s["frequency"], s["recency"], s["T"])


# --------------------------------------------------------------------------------------
# BG/NBD: Fader, Hardie & Lee (2005)
# --------------------------------------------------------------------------------------


def test_bgnbd_reproduces_fhl_2005_on_cdnow(cdnow_bgnbd):
    fit = cdnow_bgnbd
    assert fit.converged and not fit.hit_bound, fit.message
    assert fit.n_customers == 2357
    assert round(fit.r, 3) == 0.243
    assert round(fit.alpha, 3) == 4.414
    assert round(fit.a, 3) == 0.793
    assert round(fit.b, 3) == 2.426
    assert round(fit.log_likelihood, 1) == -9582.4


def test_expected_purchases_fhl_2005_worked_example(cdnow_bgnbd):
    # FHL 2005, section 5: x = 2, t_x = 30.43, T = 38.86 -> 1.226 purchases in 39 weeks
    value = clv.expected_purchases(cdnow_bgnbd, 39, 2, 30.43, 38.86)
    assert round(value, 3) == 1.226


def test_next_week_purchases_match_lifetimes_readme(cdnow_bgnbd, cdnow_summary):
    # the lifetimes README ranks CDNOW customers by expected purchases in t = 1 week
    published = {509: 0.424877, 841: 0.474738, 1981: 0.486526, 157: 0.662396, 1516: 0.710623}
    s = cdnow_summary.loc[list(published)]
    got = clv.expected_purchases(cdnow_bgnbd, 1, s["frequency"], s["recency"], s["T"])
    np.testing.assert_allclose(got, list(published.values()), atol=1e-5)


def test_weighted_fit_equals_fit_on_expanded_rows(cdnow_summary, cdnow_bgnbd):
    grouped = cdnow_summary.groupby(["frequency", "recency", "T"]).size().reset_index(name="n")
    assert len(grouped) < len(cdnow_summary)
    fit = clv.fit_bgnbd(grouped["frequency"], grouped["recency"], grouped["T"], weights=grouped["n"])
    for name in ("r", "alpha", "a", "b", "log_likelihood"):
        assert getattr(fit, name) == pytest.approx(getattr(cdnow_bgnbd, name), rel=1e-6)


def test_prob_alive_by_hand(cdnow_bgnbd):
    f = cdnow_bgnbd
    x, t_x, T = 2, 30.43, 38.86
    # Fader, Hardie & Lee (2008) note 021: 1 / (1 + a/(b+x-1) * ((α+T)/(α+t_x))^(r+x))
    odds = f.a / (f.b + x - 1) * ((f.alpha + T) / (f.alpha + t_x)) ** (f.r + x)
    assert clv.prob_alive(f, x, t_x, T) == pytest.approx(1 / (1 + odds), rel=1e-12)
    assert clv.prob_alive(f, 0, 0.0, 38.86) == 1.0  # no repeat purchase: cannot have dropped out


def _expected_purchases_by_integration(fit, t, x, t_x, T):
    """E[Y(t) | x, t_x, T] from the model's definition, not from the 2F1 closed form.

    Alive at T, λ ~ Gamma(r+x, α+T) and p ~ Beta(a, b+x) a posteriori; a live customer
    with (λ, p) makes (1 − e^{−λpt})/p purchases in t on average. Integrating λ out:
    E[(1 − ((α+T)/(α+T+pt))^(r+x)) / p] over p ~ Beta(a, b+x).
    """
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b

    def integrand(p):
        if p == 0:
            return (r + x) * t / (alpha + T)
        return -math.expm1((r + x) * math.log1p(-p * t / (alpha + T + p * t))) / p

    value, _ = quad(integrand, 0, 1, weight="alg", wvar=(a - 1, b + x - 1), epsabs=0, epsrel=1e-11, limit=500)
    growth = value / math.exp(betaln(a, b + x))
    return clv.prob_alive(fit, x, t_x, T) * growth


@pytest.mark.parametrize(
    "t, x, t_x, T",
    [
        (39, 2, 30.43, 38.86),
        (0.5, 0, 0.0, 10.0),
        (52, 1, 1.0, 78.0),
        (13, 25, 30.0, 31.0),
        (104, 300, 70.0, 70.5),  # scipy's hyp2f1 returns NaN here (Γ(c) overflows)
        (520, 1000, 499.0, 500.0),
    ],
)
def test_expected_purchases_agree_with_numerical_integration(cdnow_bgnbd, t, x, t_x, T):
    got = clv.expected_purchases(cdnow_bgnbd, t, x, t_x, T)
    assert np.isfinite(got)
    assert got == pytest.approx(_expected_purchases_by_integration(cdnow_bgnbd, t, x, t_x, T), rel=1e-7)


def test_expected_purchases_near_a_equal_one_is_continuous():
    # a = 1 makes the closed form 0/0; the value must still be smooth in a
    base = {"r": 0.5, "alpha": 2.0, "b": 3.0, "log_likelihood": 0.0, "converged": True, "hit_bound": False,
            "n_customers": 0, "iterations": 0, "seconds": 0.0, "message": ""}
    at_one = clv.BGNBDFit(a=1.0, **base)
    near = clv.BGNBDFit(a=1.00003, **base)
    for x, t_x, T in ((0, 0.0, 0.5), (3, 10.0, 20.0)):
        value = clv.expected_purchases(at_one, 52, x, t_x, T)
        assert np.isfinite(value)
        assert value == pytest.approx(_expected_purchases_by_integration(at_one, 52, x, t_x, T), rel=1e-6)
        assert clv.expected_purchases(near, 52, x, t_x, T) == pytest.approx(
            _expected_purchases_by_integration(near, 52, x, t_x, T), rel=1e-6
        )


# --------------------------------------------------------------------------------------
# Gamma-Gamma: Fader & Hardie (2013), lifetimes README
# --------------------------------------------------------------------------------------


def test_gamma_gamma_reproduces_fader_hardie_on_unrounded_spend(cdnow_transactions):
    s = clv.summary_from_transactions(cdnow_transactions, "customer_id", "date", "amount", CALIBRATION_END)
    fit = clv.fit_gamma_gamma(s["frequency"], s["monetary_value"])
    assert fit.converged and not fit.hit_bound, fit.message
    assert fit.n_customers == 946
    assert round(fit.p, 2) == 6.25
    assert round(fit.q, 2) == 3.74
    assert round(fit.gamma, 2) == 15.44


def test_gamma_gamma_matches_lifetimes_readme_on_rounded_spend(cdnow_summary_money):
    s = cdnow_summary_money
    fit = clv.fit_gamma_gamma(s["frequency"], s["monetary_value"])  # x = 0 rows are ignored
    assert fit.converged and fit.n_customers == 946
    assert (round(fit.p, 2), round(fit.q, 2), round(fit.gamma, 2)) == (6.25, 3.74, 15.45)
    aov = clv.expected_average_order_value(fit, s["frequency"], s["monetary_value"])
    published = {1: 24.658619, 2: 18.911489, 3: 35.170981, 6: 71.462843, 9: 27.282408}
    got = pd.Series(aov, index=s.index).loc[list(published)]
    np.testing.assert_allclose(got, list(published.values()), atol=1e-4)
    assert aov.mean() == pytest.approx(35.2529588256, abs=1e-4)


def test_expected_order_value_by_hand():
    gg = clv.GammaGammaFit(p=6.0, q=4.0, gamma=15.0, log_likelihood=0.0, converged=True, hit_bound=False,
                           n_customers=0, iterations=0, seconds=0.0, message="")
    # population mean p·γ/(q−1) = 90/3 = 30; x = 2, m = 40: (6·(15+80))/(12+3) = 38
    assert clv.expected_average_order_value(gg, 0, 0.0) == pytest.approx(30.0)
    assert clv.expected_average_order_value(gg, 2, 40.0) == pytest.approx(38.0)
    # repeat purchases that all came back (net 0 or below): m = 0 in the same formula,
    # 6·15 / (6·3 + 3) = 90/21, not the population mean 30
    assert clv.expected_average_order_value(gg, 3, 0.0) == pytest.approx(90 / 21)
    assert clv.expected_average_order_value(gg, 3, -5.0) == pytest.approx(90 / 21)
    assert clv.expected_average_order_value(gg, 1, 0.0) == pytest.approx(90 / 9)


# --------------------------------------------------------------------------------------
# summary_from_transactions
# --------------------------------------------------------------------------------------


def test_summary_reproduces_the_cdnow_summary_files(cdnow_transactions, cdnow_summary, cdnow_summary_money):
    s = clv.summary_from_transactions(cdnow_transactions, "customer_id", "date", "amount", CALIBRATION_END)
    assert sorted(s.index) == sorted(cdnow_summary.index)
    ref = cdnow_summary.loc[s.index]
    money = cdnow_summary_money.loc[s.index]
    assert (s["frequency"].to_numpy() == ref["frequency"].to_numpy()).all()
    # the files round to 0.01 (weeks, dollars)
    assert np.abs(s["recency"] - ref["recency"]).max() <= 0.005 + 1e-9
    assert np.abs(s["T"] - ref["T"]).max() <= 0.005 + 1e-9
    assert np.abs(s["monetary_value"] - money["monetary_value"]).max() <= 0.005 + 1e-9
    # same-day transactions exist in the calibration period and must have been merged
    calib = cdnow_transactions[cdnow_transactions["date"] <= pd.Timestamp(CALIBRATION_END)]
    assert calib.duplicated(["customer_id", "date"]).any()


@pytest.fixture()
def hand_transactions() -> pd.DataFrame:
    rows = [
        # A: two on 1 Jan (one purchase of 15), 8 Jan (20), two on 15 Jan (34), one after as_of
        ("A", "2026-01-01 09:00", 10.0),
        ("A", "2026-01-01 17:30", 5.0),
        ("A", "2026-01-08 12:00", 20.0),
        ("A", "2026-01-15 08:00", 30.0),
        ("A", "2026-01-15 23:59", 4.0),
        ("A", "2026-02-01 10:00", 99.0),
        # B: one purchase on as_of itself
        ("B", "2026-01-31 18:00", 50.0),
        # C: two transactions on one day: still no repeat purchase
        ("C", "2026-01-10 10:00", 7.0),
        ("C", "2026-01-10 11:00", 3.0),
        # D: first purchase after as_of: not a customer yet
        ("D", "2026-02-02 10:00", 12.0),
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "ordered_at", "amount"])
    df["ordered_at"] = pd.to_datetime(df["ordered_at"])
    return df


def test_summary_hand_worked_weeks(hand_transactions):
    s = clv.summary_from_transactions(hand_transactions, "customer_id", "ordered_at", "amount", date(2026, 1, 31))
    assert list(s.index) == ["A", "B", "C"]
    a, b, c = s.loc["A"], s.loc["B"], s.loc["C"]
    # A: purchase days 1, 8, 15 Jan -> x = 2, t_x = 14 days, T = 30 days, m = (20 + 34) / 2
    assert a["frequency"] == 2
    assert a["recency"] == pytest.approx(2.0)
    assert a["T"] == pytest.approx(30 / 7)
    assert a["monetary_value"] == pytest.approx(27.0)
    # B: first purchase on as_of
    assert (b["frequency"], b["recency"], b["T"], b["monetary_value"]) == (0, 0.0, 0.0, 0.0)
    # C: same-day transactions are one purchase
    assert (c["frequency"], c["recency"], c["monetary_value"]) == (0, 0.0, 0.0)
    assert c["T"] == pytest.approx(3.0)


def test_summary_hand_worked_days_and_without_amount(hand_transactions):
    s = clv.summary_from_transactions(
        hand_transactions, "customer_id", "ordered_at", None, date(2026, 1, 31), time_unit="days"
    )
    assert "monetary_value" not in s.columns
    assert s.loc["A", ["frequency", "recency", "T"]].tolist() == [2, 14.0, 30.0]
    assert s.loc["C", ["frequency", "recency", "T"]].tolist() == [0, 0.0, 21.0]


def test_summary_rejects_missing_amounts_and_unknown_units(hand_transactions):
    broken = hand_transactions.copy()
    broken.loc[0, "amount"] = np.nan
    with pytest.raises(ValueError):
        clv.summary_from_transactions(broken, "customer_id", "ordered_at", "amount", date(2026, 1, 31))
    with pytest.raises(ValueError):
        clv.summary_from_transactions(
            hand_transactions, "customer_id", "ordered_at", "amount", date(2026, 1, 31), time_unit="months"
        )


# --------------------------------------------------------------------------------------
# time-unit invariance and the CLV convention
# --------------------------------------------------------------------------------------


def test_days_and_weeks_give_the_same_model(cdnow_transactions):
    args = (cdnow_transactions, "customer_id", "date", "amount", CALIBRATION_END)
    weeks = clv.summary_from_transactions(*args, time_unit="weeks")
    days = clv.summary_from_transactions(*args, time_unit="days")
    fw = clv.fit_bgnbd(weeks["frequency"], weeks["recency"], weeks["T"])
    fd = clv.fit_bgnbd(days["frequency"], days["recency"], days["T"])
    assert fw.converged and fd.converged
    assert fd.alpha == pytest.approx(7 * fw.alpha, rel=1e-4)
    for name in ("r", "a", "b"):
        assert getattr(fd, name) == pytest.approx(getattr(fw, name), rel=1e-4)

    np.testing.assert_allclose(
        clv.prob_alive(fd, days["frequency"], days["recency"], days["T"]),
        clv.prob_alive(fw, weeks["frequency"], weeks["recency"], weeks["T"]),
        rtol=1e-4,
    )
    np.testing.assert_allclose(
        clv.expected_purchases(fd, 273, days["frequency"], days["recency"], days["T"]),
        clv.expected_purchases(fw, 39, weeks["frequency"], weeks["recency"], weeks["T"]),
        rtol=1e-4,
    )
    gg = clv.fit_gamma_gamma(weeks["frequency"], weeks["monetary_value"])
    np.testing.assert_allclose(
        clv.clv(fd, gg, days["frequency"], days["recency"], days["T"], days["monetary_value"], time_unit="days"),
        clv.clv(fw, gg, weeks["frequency"], weeks["recency"], weeks["T"], weeks["monetary_value"]),
        rtol=1e-4,
    )


def test_clv_is_monthly_discounted_expected_spend(cdnow_bgnbd, cdnow_summary_money):
    s = cdnow_summary_money
    gg = clv.fit_gamma_gamma(s["frequency"], s["monetary_value"])
    x, t_x, T, m = 2, 30.43, 38.86, 22.35
    month = 365.25 / 12 / 7  # weeks
    monthly_rate = 1.10 ** (1 / 12) - 1
    cumulative = [0.0] + [clv.expected_purchases(cdnow_bgnbd, i * month, x, t_x, T) for i in range(1, 13)]
    aov = clv.expected_average_order_value(gg, x, m)
    expected = sum(
        (cumulative[i] - cumulative[i - 1]) * aov * 0.3 / (1 + monthly_rate) ** i for i in range(1, 13)
    )
    got = clv.clv(cdnow_bgnbd, gg, x, t_x, T, m, annual_discount_rate=0.10, margin_share=0.3)
    assert got == pytest.approx(expected, rel=1e-10)
    # without discounting, 12 months of CLV is a year's expected purchases times order value
    undiscounted = clv.clv(cdnow_bgnbd, gg, x, t_x, T, m, annual_discount_rate=0.0)
    assert undiscounted == pytest.approx(cumulative[12] * aov, rel=1e-10)
    assert got < 0.3 * undiscounted


# --------------------------------------------------------------------------------------
# fit_and_predict: the pipeline's entry point and its guard rails
# --------------------------------------------------------------------------------------

PARAM_KEYS = {
    "r", "alpha", "a", "b", "p", "q", "gamma", "bgnbd_log_likelihood", "gg_log_likelihood",
    "time_unit", "n_customers", "n_repeat_buyers", "converged", "status", "message", "fit_seconds",
}


def test_fit_and_predict_on_cdnow(cdnow_summary_money):
    s = cdnow_summary_money
    margin = pd.Series(0.25, index=s.index)
    params, pred = clv.fit_and_predict(s, CALIBRATION_END, "weeks", margin_share=margin)
    assert PARAM_KEYS <= set(params)
    assert params["status"] == "ok" and params["converged"] is True, params["message"]
    assert (round(params["r"], 3), round(params["alpha"], 3)) == (0.243, 4.414)
    assert (params["n_customers"], params["n_repeat_buyers"]) == (2357, 946)
    assert list(pred.columns) == clv.PREDICTION_COLUMNS
    assert len(pred) == 2357 and pred["customer_id"].tolist() == s.index.tolist()
    assert np.isfinite(pred.drop(columns="customer_id").to_numpy(dtype=float)).all()
    zero = pred[pred["frequency"] == 0]
    assert (zero["prob_alive"] == 1.0).all()
    assert np.allclose(zero["expected_avg_order_value"], params["p"] * params["gamma"] / (params["q"] - 1))
    assert (pred["expected_purchases_365d"] >= pred["expected_purchases_90d"]).all()
    assert (pred["clv_12m"] >= 0).all()
    # the pipeline's 90 days equal 90/7 weeks of the model
    customer1 = pred.set_index("customer_id").loc[1]
    fit = clv.fit_bgnbd(s["frequency"], s["recency"], s["T"])
    assert customer1["expected_purchases_90d"] == pytest.approx(
        clv.expected_purchases(fit, 90 / 7, 2, 30.43, 38.86), rel=1e-6
    )
    _, revenue = clv.fit_and_predict(s, CALIBRATION_END, "weeks")
    np.testing.assert_allclose(pred["clv_12m"], 0.25 * revenue["clv_12m"], rtol=1e-12)


def _small_summary(n_repeat: int, n_total: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    T = rng.uniform(5, 50, n_total)
    x = np.zeros(n_total, dtype=int)
    x[:n_repeat] = rng.integers(1, 5, n_repeat)
    t_x = np.where(x > 0, T * rng.uniform(0.1, 1.0, n_total), 0.0)
    m = np.where(x > 0, rng.gamma(5.0, 8.0, n_total), 0.0)
    return pd.DataFrame(
        {"frequency": x, "recency": t_x, "T": T, "monetary_value": m},
        index=pd.Index(range(n_total), name="customer_id"),
    )


def test_too_few_repeat_buyers_is_a_status_not_an_error():
    params, pred = clv.fit_and_predict(_small_summary(n_repeat=5), date(2026, 6, 30), min_repeat_buyers=30)
    assert pred is None
    assert PARAM_KEYS <= set(params)
    assert params["status"] == "too_few_repeat_buyers"
    assert params["converged"] is False and params["r"] is None
    assert params["n_repeat_buyers"] == 5 and params["n_customers"] == 200


def test_garbage_never_raises():
    nobody_returns = _small_summary(n_repeat=0)
    params, pred = clv.fit_and_predict(nobody_returns, date(2026, 6, 30), min_repeat_buyers=0)
    assert pred is None and params["status"] != "ok"

    empty = nobody_returns.iloc[:0]
    params, pred = clv.fit_and_predict(empty, date(2026, 6, 30))
    assert pred is None and params["status"] == "too_few_repeat_buyers" and params["n_customers"] == 0

    # with no repeat purchase a and b do not enter the likelihood: not a fit
    fit = clv.fit_bgnbd(np.zeros(50), np.zeros(50), np.linspace(1, 50, 50))
    assert not fit.converged

    # every repeat buyer spends exactly the same: Gamma-Gamma has no finite optimum
    same_spend = _small_summary(n_repeat=60)
    same_spend.loc[same_spend["frequency"] > 0, "monetary_value"] = 10.0
    params, pred = clv.fit_and_predict(same_spend, date(2026, 6, 30))
    assert params["status"] in {"ok", "hit_bound", "not_converged"}
    if params["status"] != "ok":
        assert pred is None


def test_fit_recovers_simulated_parameters():
    # BG/NBD simulated as in FHL 2005: λ ~ Gamma(r, α), dropout p ~ Beta(a, b) after each
    # repeat purchase, ages uniform on 1..78 weeks
    rng = np.random.default_rng(2005)
    n = 100_000
    r, alpha, a, b = 0.24, 4.4, 0.79, 2.43
    T = rng.uniform(1, 78, n)
    lam = rng.gamma(r, 1 / alpha, n)
    arrivals = rng.poisson(lam * T)
    x = np.minimum(arrivals, rng.geometric(rng.beta(a, b, n)))
    t_x = np.zeros(n)
    t_x[x > 0] = T[x > 0] * rng.beta(x[x > 0], arrivals[x > 0] - x[x > 0] + 1)
    fit = clv.fit_bgnbd(x, t_x, T)
    assert fit.converged and not fit.hit_bound, fit.message
    assert fit.r == pytest.approx(r, rel=0.1)
    assert fit.alpha == pytest.approx(alpha, rel=0.1)
    assert fit.a == pytest.approx(a, rel=0.15)
    assert fit.b == pytest.approx(b, rel=0.15)


def test_likelihood_derivatives_match_finite_differences(cdnow_summary, cdnow_summary_money):
    # the Newton fit relies on the analytic gradient and Hessian of both likelihoods
    s = cdnow_summary
    bg = clv_fits._BGNBDLikelihood(*(s[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T")), np.ones(len(s)))
    rep = cdnow_summary_money[cdnow_summary_money["frequency"] > 0]
    gg = clv_fits._GammaGammaLikelihood(
        rep["frequency"].to_numpy(dtype=float), rep["monetary_value"].to_numpy(dtype=float), np.ones(len(rep))
    )
    for nll, theta in (
        (bg, np.log([0.3, 5.0, 0.7, 2.0])),
        (bg, np.log([2.0, 1.0, 3.0, 0.5])),
        (gg, np.log([5.0, 3.0, 14.0])),
        (gg, np.log([1.0, 1.5, 40.0])),
    ):
        _, grad, hess = nll(theta, hessian=True)
        step = 1e-6
        for i in range(len(theta)):
            e = np.zeros(len(theta))
            e[i] = step
            (f_plus, g_plus), (f_minus, g_minus) = nll(theta + e), nll(theta - e)
            assert (f_plus - f_minus) / (2 * step) == pytest.approx(grad[i], abs=1e-7)
            np.testing.assert_allclose((g_plus - g_minus) / (2 * step), hess[:, i], atol=1e-7)
