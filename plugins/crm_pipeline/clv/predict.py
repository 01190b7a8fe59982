"""Per-customer predictions from fitted models, and the pipeline's entry point.

Probability alive (now, and after the first horizon if no purchase happens in it),
expected purchases, expected order value, the discounted 12-month CLV, and the 10th-90th
percentile bands of P(alive) and CLV from the parameters' uncertainty
(:mod:`crm_pipeline.clv.uncertainty`). CLV follows ``lifetimes``' discrete monthly discounting: month i = 1..12 contributes
its expected purchases × expected order value × margin share / (1 + monthly rate)^i,
with monthly rate = (1 + annual rate)^(1/12) − 1. A month is 365.25 / 12 days in both
units (``lifetimes`` uses 30 days or 4.345 weeks, which disagree by 1.4%).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
from scipy.special import hyp2f1

from crm_pipeline.clv.data import DAYS_PER_MONTH, TimeUnit, days_per_unit, factorize_rows, read_summary
from crm_pipeline.clv.fits import BGNBDFit, GammaGammaFit, fit_bgnbd, fit_gamma_gamma
from crm_pipeline.clv.uncertainty import clv_band, prob_alive_band


PREDICTION_COLUMNS = [
    "customer_id",
    "frequency",
    "recency",
    "T",
    "monetary_value",
    "prob_alive",
    "expected_purchases_90d",
    "expected_purchases_365d",
    "expected_avg_order_value",
    "clv_12m",
    "prob_alive_future",
    "prob_alive_p10",
    "prob_alive_p90",
    "clv_12m_p10",
    "clv_12m_p90",
]



# --------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------


def prob_alive(fit: BGNBDFit, x, t_x, T):
    """P(alive at T | x, t_x, T) (Fader, Hardie & Lee 2008, note 021); 1 when x = 0."""
    x, t_x, T = np.broadcast_arrays(*(np.asarray(v, dtype="float64") for v in (x, t_x, T)))
    return _scalar_or_array(_prob_alive(fit, x, t_x, T))


def expected_purchases(fit: BGNBDFit, t, x, t_x, T):
    """E[repeat purchases in (T, T+t] | x, t_x, T] (FHL 2005, eq. 10).

    Written with Euler's transformation of 2F1 so that its parameters do not grow with
    x and so that the factor ((α+T)/(α+T+t))^(r+x) cannot overflow:
        E = P(alive) · (a+b+x−1)/(a−1) · [1 − (1−z)^(a−1) · 2F1(a+b−1−r, a−1; a+b+x−1; z)]
    with z = t/(α+T+t). The hypergeometric term is evaluated once per distinct (t, x, T).
    """
    if np.ndim(t) == 0:
        x, t_x, T = np.broadcast_arrays(*(np.asarray(v, dtype="float64") for v in (x, t_x, T)))
        grid = _Grid(fit, x.ravel(), t_x.ravel(), T.ravel())
        return _scalar_or_array(grid.expected_purchases(float(t)).reshape(x.shape))
    t, x, t_x, T = np.broadcast_arrays(*(np.asarray(v, dtype="float64") for v in (t, x, t_x, T)))
    shape = x.shape
    t, x, t_x, T = (v.ravel() for v in (t, x, t_x, T))
    codes, (ut, ux, uT) = factorize_rows(t, x, T)
    growth = _growth_factor(fit, ut, ux, uT)[codes]
    return _scalar_or_array((_prob_alive(fit, x, t_x, T) * growth).reshape(shape))


def expected_average_order_value(gg: GammaGammaFit, x, m):
    """E[spend per purchase | x, m] (Fader & Hardie 2013, eq. 5).

    A weighted mean of the population mean p·γ/(q−1) and the customer's own mean m with
    weight px/(px+q−1) on m. A customer without a repeat purchase gets the population
    mean. A customer whose repeat purchases all came back (net mean 0, or below) spent
    nothing per repeat purchase: the same formula with m = 0, p·γ/(px+q−1), which falls
    from the population mean toward 0 with every such purchase (docs/rules.md). The fit
    itself uses only positive means; this is what the fitted model says of the others.
    """
    x, m = np.broadcast_arrays(np.asarray(x, dtype="float64"), np.asarray(m, dtype="float64"))
    p, q, g = gg.p, gg.q, gg.gamma
    repeat = x > 0
    xs = np.where(repeat, x, 0.0)
    ms = np.where(repeat, np.maximum(np.nan_to_num(m, nan=0.0), 0.0), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = p * (g + xs * ms) / (p * xs + q - 1.0)
    return _scalar_or_array(value)


def clv(
    bg: BGNBDFit,
    gg: GammaGammaFit,
    x,
    t_x,
    T,
    m,
    months: int = 12,
    annual_discount_rate: float = 0.10,
    margin_share=1.0,
    time_unit: TimeUnit = "weeks",
):
    """Discounted value of the next ``months`` months of purchases.

    ``lifetimes``' discrete monthly convention: month i = 1..months contributes
    (E[purchases by the end of month i] − E[by the end of month i−1]) × E[order value]
    × margin_share / (1 + monthly_rate)^i, with monthly_rate = (1 + annual)^(1/12) − 1
    (so twelve months discount by exactly the annual rate) and a month of 365.25/12 days.
    ``margin_share`` is a scalar or a per-customer array (gross margin / revenue).
    """
    x, t_x, T, m = np.broadcast_arrays(*(np.asarray(v, dtype="float64") for v in (x, t_x, T, m)))
    grid = _Grid(bg, x.ravel(), t_x.ravel(), T.ravel())
    purchases = grid.discounted_purchases(months, annual_discount_rate, time_unit)
    value = purchases.reshape(x.shape) * expected_average_order_value(gg, x, m) * np.asarray(margin_share)
    return _scalar_or_array(value)


# --------------------------------------------------------------------------------------
# The pipeline's entry point
# --------------------------------------------------------------------------------------


def fit_and_predict(
    summary_df: pd.DataFrame,
    as_of: date,
    time_unit: TimeUnit = "weeks",
    annual_discount_rate: float = 0.10,
    margin_share: float | pd.Series | None = None,
    min_repeat_buyers: int = 30,
    horizon_days: tuple[int, int] = (90, 365),
) -> tuple[dict, pd.DataFrame | None]:
    """Fit both models on a summary (from :func:`summary_from_transactions`) and predict.

    ``summary_df`` is indexed by customer (or has a ``customer_id`` column) and has
    ``frequency, recency, T, monetary_value`` in ``time_unit``. Returns
    ``(params, predictions)``: ``params`` always has every key (None where there is no
    fit) and ``predictions`` (see :func:`predict`) is None unless ``status == 'ok'``.
    Data problems (no or too few repeat buyers, degenerate data, no convergence) never
    raise; they show in ``status`` and ``message``. A malformed summary (missing
    columns, recency > T, negative or missing values) is a programming error and raises
    ``ValueError``.
    """
    days_per_unit(time_unit)
    _, x, t_x, T, m = read_summary(summary_df)
    n_repeat = int((x > 0).sum())
    n_repeat_spend = int(((x > 0) & (m > 0)).sum())
    params: dict = {
        "as_of": as_of.isoformat() if hasattr(as_of, "isoformat") else str(as_of),
        "r": None, "alpha": None, "a": None, "b": None,
        "p": None, "q": None, "gamma": None,
        "bgnbd_log_likelihood": None, "gg_log_likelihood": None,
        "standard_errors": {},
        "time_unit": time_unit,
        "n_customers": len(x),
        "n_repeat_buyers": n_repeat,
        "converged": False,
        "status": "too_few_repeat_buyers",
        "message": "",
        "fit_seconds": 0.0,
    }
    if min(n_repeat, n_repeat_spend) < max(min_repeat_buyers, 1):
        params["message"] = (
            f"{n_repeat} repeat buyers ({n_repeat_spend} with positive spend) "
            f"< min_repeat_buyers={min_repeat_buyers}"
        )
        return params, None

    try:
        with np.errstate(all="ignore"):
            bg = fit_bgnbd(x, t_x, T)
            gg = fit_gamma_gamma(x, m)
    except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:  # numerical failure
        params.update(status="not_converged", message=f"fit failed: {type(exc).__name__}: {exc}")
        return params, None
    params.update(
        r=bg.r, alpha=bg.alpha, a=bg.a, b=bg.b,
        p=gg.p, q=gg.q, gamma=gg.gamma,
        bgnbd_log_likelihood=bg.log_likelihood, gg_log_likelihood=gg.log_likelihood,
        standard_errors={**(bg.standard_errors or {}), **(gg.standard_errors or {})},
        converged=bool(bg.converged and gg.converged),
        fit_seconds=bg.seconds + gg.seconds,
        message=f"BG/NBD: {bg.message}; Gamma-Gamma: {gg.message}",
    )
    if bg.hit_bound or gg.hit_bound:
        params["status"] = "hit_bound"
    elif not params["converged"]:
        params["status"] = "not_converged"
    else:
        params["status"] = "ok"
    if params["status"] != "ok":
        return params, None

    predict_started = time.perf_counter()
    predictions = predict(bg, gg, summary_df, time_unit, annual_discount_rate, margin_share, horizon_days)
    params["uncertainty_seconds"] = predictions.attrs.get("uncertainty_seconds", 0.0)
    params["predict_seconds"] = time.perf_counter() - predict_started - params["uncertainty_seconds"]
    n_bad = int((~np.isfinite(predictions["clv_12m"].to_numpy())).sum())
    if n_bad:
        params["message"] += f"; {n_bad} customers have a non-finite CLV"
    return params, predictions


def predict(
    bg: BGNBDFit,
    gg: GammaGammaFit,
    summary_df: pd.DataFrame,
    time_unit: TimeUnit = "weeks",
    annual_discount_rate: float = 0.10,
    margin_share: float | pd.Series | None = None,
    horizon_days: tuple[int, int] = (90, 365),
) -> pd.DataFrame:
    """Per-customer predictions from fitted models (columns :data:`PREDICTION_COLUMNS`).

    ``bg`` must have been fitted in ``time_unit``. ``margin_share`` is None (revenue
    CLV), a scalar, or a Series indexed by customer (customers missing from it get a
    NaN CLV). The expected-purchase columns are named after ``horizon_days``;
    ``prob_alive_future`` is P(alive) at T + the first horizon if no purchase happens until
    then: BG/NBD drops customers out only right after a purchase, so that is P(alive) with
    the same x and t_x and an age of T + horizon.
    """
    unit = days_per_unit(time_unit)
    summary, x, t_x, T, m = read_summary(summary_df)
    if margin_share is None:
        margin = 1.0
    elif isinstance(margin_share, pd.Series):
        margin = margin_share.reindex(summary.index).to_numpy(dtype="float64")
    else:
        margin = float(margin_share)
    with np.errstate(all="ignore"):
        grid = _Grid(bg, x, t_x, T)
        expected = [grid.expected_purchases(days / unit) for days in horizon_days]
        aov = expected_average_order_value(gg, x, m)
        value = grid.discounted_purchases(12, annual_discount_rate, time_unit) * aov * margin
        t_x0 = np.where(x == 0, 0.0, t_x)
        future = _prob_alive(bg, x, t_x0, T + horizon_days[0] / unit)
        bands_started = time.perf_counter()
        alive_low, alive_high = prob_alive_band(bg, grid.alive, x, t_x0, T)
        clv_low, clv_high = clv_band(
            bg, gg, value, x, m,
            lambda fit: _Grid(fit, x, t_x0, T).discounted_purchases(12, annual_discount_rate, time_unit),
        )
        bands_seconds = time.perf_counter() - bands_started
    out = pd.DataFrame(
        {
            "customer_id": summary.index.to_numpy(),
            "frequency": x.astype("int64"),
            "recency": t_x,
            "T": T,
            "monetary_value": m,
            "prob_alive": grid.alive,
            f"expected_purchases_{horizon_days[0]}d": expected[0],
            f"expected_purchases_{horizon_days[1]}d": expected[1],
            "expected_avg_order_value": aov,
            "clv_12m": value,
            "prob_alive_future": future,
            "prob_alive_p10": alive_low,
            "prob_alive_p90": alive_high,
            "clv_12m_p10": clv_low,
            "clv_12m_p90": clv_high,
        }
    )
    out.attrs["uncertainty_seconds"] = bands_seconds  # the bands' share of the prediction time
    return out



def _prob_alive(fit: BGNBDFit, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """1 / (1 + a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)) for x > 0, else 1."""
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    repeat = x > 0
    with np.errstate(all="ignore"):  # exp overflow gives 1/inf = 0, which is right
        log_odds_dead = (r + x) * np.log((alpha + T) / (alpha + t_x)) + (
            math.log(a) - np.log(np.where(repeat, b + x - 1.0, 1.0))
        )
        return np.where(repeat, 1.0 / (1.0 + np.exp(log_odds_dead)), 1.0)


def _growth_factor(fit: BGNBDFit, t: np.ndarray, x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """E[purchases in (T, T+t] | alive at T, x] = (a+b+x−1)/(a−1) · [1 − (1−z)^(a−1) 2F1(...)]."""
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    if abs(a - 1.0) < 1e-4:
        # a = 1 is a removable 0/0 of the closed form; the expectation is smooth in a,
        # so interpolate linearly between a = 1 ± 2e-4
        lo = _growth_factor(replace(fit, a=1.0 - 2e-4), t, x, T)
        hi = _growth_factor(replace(fit, a=1.0 + 2e-4), t, x, T)
        return lo + (a - (1.0 - 2e-4)) / 4e-4 * (hi - lo)
    z = t / (alpha + T + t)
    c = a + b + x - 1.0
    with np.errstate(all="ignore"):
        h = hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
        bad = ~np.isfinite(h)
        if bad.any():  # scipy gives NaN once Γ(c) overflows (c > ~171, i.e. x > ~170)
            h[bad] = _hyp2f1_series(a + b - 1.0 - r, a - 1.0, c[bad], z[bad])
        bracket = -np.expm1((a - 1.0) * np.log1p(-z) + np.log(h))
    return np.where(t > 0, c / (a - 1.0) * bracket, 0.0)


def _hyp2f1_series(A: float, B: float, C: np.ndarray, z: np.ndarray, max_terms: int = 100_000) -> np.ndarray:
    """Gauss series of 2F1(A, B; C; z) for 0 <= z < 1, for where scipy returns NaN.

    Used for large C (many repeat purchases), where the terms shrink fast; entries that
    have not converged after ``max_terms`` terms are NaN rather than a wrong number.
    """
    total = np.ones_like(z)
    term = np.ones_like(z)
    active = np.ones(z.shape, dtype=bool)
    for k in range(max_terms):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            return total
        term[idx] *= (A + k) * (B + k) / ((C[idx] + k) * (k + 1.0)) * z[idx]
        total[idx] += term[idx]
        active[idx] = np.abs(term[idx]) > 1e-17 * np.abs(total[idx])
    total[active] = np.nan
    return total


class _Grid:
    """Predictions for many customers from one BG/NBD fit.

    E[purchases in the next t] = P(alive) × growth(t; x, T): the expensive
    hypergeometric growth term depends on (x, T) only, which repeat far more than
    customers do (ages are whole days), so it is evaluated once per distinct (x, T).
    """

    def __init__(self, fit: BGNBDFit, x: np.ndarray, t_x: np.ndarray, T: np.ndarray):
        self.fit = fit
        self.codes, (self.ux, self.uT) = factorize_rows(x, T)
        self.alive = _prob_alive(fit, x, np.where(x == 0, 0.0, t_x), T)

    def growth(self, t: float) -> np.ndarray:
        return _growth_factor(self.fit, np.full(len(self.ux), float(t)), self.ux, self.uT)

    def expected_purchases(self, t: float) -> np.ndarray:
        return self.alive * self.growth(t)[self.codes]

    def discounted_purchases(self, months: int, annual_discount_rate: float, time_unit: str) -> np.ndarray:
        """Σ_i (E[by month i] − E[by month i−1]) / (1 + monthly_rate)^i, i = 1..months."""
        month = DAYS_PER_MONTH / days_per_unit(time_unit)
        monthly_rate = (1.0 + annual_discount_rate) ** (1.0 / 12.0) - 1.0
        total = np.zeros(len(self.ux))
        previous = np.zeros(len(self.ux))
        for i in range(1, months + 1):
            current = self.growth(i * month)
            total += (current - previous) / (1.0 + monthly_rate) ** i
            previous = current
        return self.alive * total[self.codes]


def _scalar_or_array(value: np.ndarray):
    value = np.asarray(value)
    return float(value) if value.ndim == 0 else value
