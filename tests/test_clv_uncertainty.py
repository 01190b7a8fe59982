"""How sure the CLV model is: standard errors, bands and P(alive) at a future date.

Expected values: the standard errors ``lifetimes`` 0.11.3 reports for CDNOW
(``tests/fixtures/cdnow/standard_error_reference.json``, made once by the script beside
it; the README of ``lifetimes`` shows the same BG/NBD figures rounded: 0.01, 0.38, 0.19,
0.71); a parametric
bootstrap over the same covariance, computed here by brute force (thousands of parameter
draws, each predicted with the plain formulas); and P(alive) written out by hand.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crm_pipeline import clv

CDNOW = Path(__file__).parent / "fixtures" / "cdnow"


@pytest.fixture(scope="module")
def cdnow():
    g = pd.read_csv(CDNOW / "cdnow_customers_summary_with_transactions.csv", index_col="ID")
    summary = pd.DataFrame({"frequency": g["x"], "recency": g["t_x"], "T": g["T"],
                            "monetary_value": np.where(g["x"] > 0, g["zbar"], 0.0)}, index=g.index)
    params, predictions = clv.fit_and_predict(summary, date(1997, 9, 30), min_repeat_buyers=1)
    assert params["status"] == "ok"
    bg = clv.fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])
    gg = clv.fit_gamma_gamma(summary["frequency"], summary["monetary_value"])
    return summary, params, predictions.set_index("customer_id"), bg, gg


def test_standard_errors_match_lifetimes_on_cdnow(cdnow):
    _, params, _, _, _ = cdnow
    se = params["standard_errors"]
    reference = json.loads((CDNOW / "standard_error_reference.json").read_text())
    expected = {**reference["bgnbd"]["lifetimes_se_coef"], **reference["gamma_gamma"]["lifetimes_se_coef"]}
    expected["gamma"] = expected.pop("v")
    assert set(se) == set(expected) == {"r", "alpha", "a", "b", "p", "q", "gamma"}
    for name, value in expected.items():
        assert se[name] == pytest.approx(value, rel=5e-4), name  # three significant digits


def test_a_fit_that_hits_a_bound_has_no_covariance():
    # every customer bought once: the dropout process is not identified
    fit = clv.fit_bgnbd(np.zeros(50), np.zeros(50), np.full(50, 30.0))
    assert fit.log_covariance is None and fit.standard_errors is None


def test_prob_alive_future_by_hand(cdnow):
    summary, _, predictions, bg, _ = cdnow
    r, alpha, a, b = bg.r, bg.alpha, bg.a, bg.b
    for cid in (1, 9, 18):
        x, t_x, T = summary.loc[cid, ["frequency", "recency", "T"]]
        later = T + 90 / 7
        expected = 1.0 / (1.0 + a / (b + x - 1) * ((alpha + later) / (alpha + t_x)) ** (r + x))
        assert predictions.loc[cid, "prob_alive_future"] == pytest.approx(expected, rel=1e-9)
        assert predictions.loc[cid, "prob_alive_future"] < predictions.loc[cid, "prob_alive"]
    one_time = summary.index[summary["frequency"] == 0][:5]
    assert (predictions.loc[one_time, "prob_alive_future"] == 1.0).all()
    assert (predictions.loc[one_time, "prob_alive_p10"] == 1.0).all()


def _draws(fit_values, cov, n, rng):
    return np.exp(rng.multivariate_normal(np.log(fit_values), np.asarray(cov), size=n))


def test_bands_agree_with_a_parametric_bootstrap(cdnow):
    summary, _, predictions, bg, gg = cdnow
    rng = np.random.default_rng(7)
    n = 3000
    bg_draws = _draws([bg.r, bg.alpha, bg.a, bg.b], bg.log_covariance, n, rng)
    gg_draws = _draws([gg.p, gg.q, gg.gamma], gg.log_covariance, n, rng)
    customers = [1, 2, 9, 18, 100, 1000, 1500, 2000]
    s = summary.loc[customers]
    x, t_x, T, m = (s[c].to_numpy(dtype="float64") for c in ("frequency", "recency", "T", "monetary_value"))
    clvs = np.empty((n, len(customers)))
    alive = np.empty((n, len(customers)))
    for i in range(n):
        r, alpha, a, b = bg_draws[i]
        p, q, g = gg_draws[i]
        draw_bg = clv.BGNBDFit(r, alpha, a, b, 0.0, True, False, 0, 0, 0.0, "")
        draw_gg = clv.GammaGammaFit(p, q, g, 0.0, True, False, 0, 0, 0.0, "")
        clvs[i] = clv.clv(draw_bg, draw_gg, x, t_x, T, m)
        # P(alive) written out: 1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)), 1 when x = 0
        with np.errstate(all="ignore"):
            alive[i] = np.where(x > 0, 1.0 / (1.0 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)), 1.0)
    got = predictions.loc[customers]
    for j, cid in enumerate(customers):
        lo, hi = np.percentile(clvs[:, j], [10, 90])
        assert got.loc[cid, "clv_12m_p10"] == pytest.approx(lo, rel=0.03), cid
        assert got.loc[cid, "clv_12m_p90"] == pytest.approx(hi, rel=0.03), cid
        assert got.loc[cid, "clv_12m_p10"] < got.loc[cid, "clv_12m"] < got.loc[cid, "clv_12m_p90"]
        lo, hi = np.percentile(alive[:, j], [10, 90])
        assert got.loc[cid, "prob_alive_p10"] == pytest.approx(lo, abs=0.01), cid
        assert got.loc[cid, "prob_alive_p90"] == pytest.approx(hi, abs=0.01), cid
