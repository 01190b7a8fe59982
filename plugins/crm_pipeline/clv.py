"""Predicted customer lifetime value: BG/NBD for repeat purchases, Gamma-Gamma for spend.

This module owns the predicted half of domain spec section 6: the frequency / recency /
age summary built from orders, the maximum-likelihood fits of the BG/NBD model (Fader,
Hardie & Lee 2005, "Counting your customers the easy way") and the Gamma-Gamma spend
model (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves"; Fader & Hardie
2013, "The Gamma-Gamma model of monetary value"), and the per-customer predictions
(probability alive, expected purchases, expected order value, discounted 12-month CLV).
It is pure numpy/scipy; the ``lifetimes`` package is used only by the benchmark and as
the source of the CDNOW test fixture. The pipeline calls :func:`fit_and_predict`, which
never raises for data reasons and reports ``status`` 'ok', 'not_converged',
'hit_bound' or 'too_few_repeat_buyers' with the parameters it stores per ``as_of``.

Conventions (the same as ``lifetimes.utils.summary_data_from_transaction_data`` with
daily periods):

* a *purchase* is a customer-day: transactions on the same calendar day are one
  purchase whose amount is their sum;
* ``frequency`` (x) counts repeat purchases, i.e. purchase days minus one;
* ``recency`` (t_x) is the time from the first to the last purchase day and ``T`` the
  time from the first purchase day to ``as_of``, both in days or in weeks (days / 7);
* ``monetary_value`` is the mean amount of the repeat purchases (the first purchase day
  is excluded) and 0 for customers without a repeat purchase.

Time only enters the models through ``alpha`` (BG/NBD), so fitting in days gives
``alpha_days = 7 * alpha_weeks`` and the same r, a, b and the same predictions over the
same calendar horizon.

CLV follows ``lifetimes``' discrete monthly discounting: month i = 1..12 contributes
its expected purchases × expected order value × margin share / (1 + monthly rate)^i,
with monthly rate = (1 + annual rate)^(1/12) − 1. A month is 365.25 / 12 days in both
units (``lifetimes`` uses 30 days or 4.345 weeks, which disagree by 1.4%).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import digamma, gammaln, hyp2f1, polygamma

TimeUnit = Literal["weeks", "days"]

#: days per model time unit
DAYS_PER_UNIT: dict[str, float] = {"days": 1.0, "weeks": 7.0}
#: length of a CLV month in days (a twelfth of a Julian year)
DAYS_PER_MONTH = 365.25 / 12

#: log-parameter box for both fits: parameters between 3e-7 and 3.3e6
_LOG_BOUND = 15.0
#: first-order optimality required to call a fit converged: max |d mean-LL / d log-param|
_GRAD_TOL = 1e-6

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
]


# --------------------------------------------------------------------------------------
# Summary from transactions
# --------------------------------------------------------------------------------------


def summary_from_transactions(
    df: pd.DataFrame,
    customer_col: str,
    date_col: str,
    amount_col: str | None,
    as_of: date,
    time_unit: TimeUnit = "weeks",
) -> pd.DataFrame:
    """Per-customer ``frequency, recency, T[, monetary_value]`` as of ``as_of`` (inclusive).

    Timestamps are truncated to the day; transactions after ``as_of`` are ignored;
    customers whose first purchase is after ``as_of`` do not appear. The result is
    indexed by ``customer_col`` and sorted by it. A missing amount raises ``ValueError``
    (an unconverted amount is a data error upstream, never a zero).
    """
    unit = _days_per_unit(time_unit)
    when = pd.to_datetime(df[date_col])
    if when.isna().any():
        raise ValueError(f"{date_col} has missing values")
    if when.dt.tz is not None:  # the contract's timestamps are naive UTC
        when = when.dt.tz_convert("UTC").dt.tz_localize(None)
    day = when.to_numpy().astype("datetime64[D]").astype("int64")  # days since 1970-01-01
    end = np.datetime64(pd.Timestamp(as_of).date(), "D").astype("int64")
    keep = day <= end
    day = day[keep]
    amount = None
    if amount_col:
        amount = df[amount_col].to_numpy(dtype="float64")[keep]
        if np.isnan(amount).any():
            raise ValueError(f"{amount_col} has missing values")
    customer_codes, customers = pd.factorize(df[customer_col].to_numpy()[keep])
    if (customer_codes < 0).any():
        raise ValueError(f"{customer_col} has missing values")
    order = np.argsort(customers, kind="stable")  # output sorted by customer
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    customer_codes, customers = rank[customer_codes], customers[order]

    # factorize, sort and bincount: about 6x faster than a two-key pandas groupby at 5M rows
    n = len(customers)
    first = np.full(n, np.iinfo("int64").max)
    last = np.full(n, np.iinfo("int64").min)
    np.minimum.at(first, customer_codes, day)
    np.maximum.at(last, customer_codes, day)
    span = int(day.max() - day.min() + 1) if len(day) else 1
    customer_day = np.sort(customer_codes.astype("int64") * span + (day - (day.min() if len(day) else 0)))
    distinct = np.ones(len(customer_day), dtype=bool)
    distinct[1:] = customer_day[1:] != customer_day[:-1]
    frequency = np.bincount(customer_day[distinct] // span, minlength=n) - 1  # purchase days − 1

    out = pd.DataFrame(
        {
            "frequency": frequency.astype("int64"),
            "recency": (last - first) / unit,
            "T": (end - first) / unit,
        },
        index=pd.Index(customers, name=customer_col),
    )
    if amount is not None:
        repeat = day != first[customer_codes]  # the first purchase day is not a repeat
        repeat_total = np.bincount(customer_codes[repeat], weights=amount[repeat], minlength=n)
        out["monetary_value"] = np.where(frequency > 0, repeat_total / np.maximum(frequency, 1), 0.0)
    return out


# --------------------------------------------------------------------------------------
# Fit results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BGNBDFit:
    """A BG/NBD fit; ``alpha`` is in the time unit of the recency / T it was fitted on."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    converged: bool
    hit_bound: bool
    n_customers: int
    iterations: int
    seconds: float
    message: str


@dataclass(frozen=True)
class GammaGammaFit:
    """A Gamma-Gamma fit on repeat buyers; ``gamma`` is the paper's scale parameter γ (v)."""

    p: float
    q: float
    gamma: float
    log_likelihood: float
    converged: bool
    hit_bound: bool
    n_customers: int
    iterations: int
    seconds: float
    message: str

    @property
    def v(self) -> float:
        """``lifetimes`` calls γ ``v``."""
        return self.gamma


# --------------------------------------------------------------------------------------
# BG/NBD fit
# --------------------------------------------------------------------------------------


class _BGNBDLikelihood:
    """Negative mean log-likelihood of BG/NBD, its gradient and Hessian in log-parameters.

    Per customer (FHL 2005, eq. 6):
        LL = lnΓ(r+x) − lnΓ(r) + r ln α + lnB(a, b+x) − lnB(a, b)
             + ln[e^A3 + 1{x>0} e^A4],
        A3 = −(r+x) ln(α+T),  A4 = ln a − ln(b+x−1) − (r+x) ln(α+t_x).
    The terms in x alone are evaluated once per distinct x; the last one once per
    distinct (x, t_x, T) row (rows with x = 0 reduce to −r ln(α+T), once per distinct T).
    With π = e^A4 / (e^A3 + e^A4), the last term's gradient is (1−π)∇A3 + π∇A4 and its
    Hessian (1−π)∇²A3 + π∇²A4 + π(1−π)(∇A4−∇A3)(∇A4−∇A3)ᵀ.
    """

    def __init__(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray):
        self.n = float(w.sum())
        # customers without a repeat purchase: only T matters
        zero = x == 0
        T0_codes, (self.T0,) = _factorize_rows(T[zero])
        self.w0 = np.bincount(T0_codes, weights=w[zero], minlength=len(self.T0))
        # repeat buyers: distinct (x, t_x, T) rows
        codes, (xr, txr, Tr) = _factorize_rows(x[~zero], t_x[~zero], T[~zero])
        self.w1 = np.bincount(codes, weights=w[~zero], minlength=len(xr))
        self.n_rows = len(self.T0) + len(xr)
        # distinct x values with their total weight
        xcodes, (ux,) = _factorize_rows(np.concatenate([[0.0], xr]))
        self.wx = np.bincount(xcodes, weights=np.concatenate([[self.w0.sum()], self.w1]), minlength=len(ux))
        self.ux = ux
        self.x1 = xr
        self.tx1 = txr
        self.T1 = Tr

    def __call__(self, theta: np.ndarray, hessian: bool = False):
        params = np.exp(theta)
        r, alpha, a, b = params
        ux, wx, n = self.ux, self.wx, self.n
        g = np.zeros(4)  # gradient and Hessian of the total LL in (r, α, a, b)
        h = np.zeros((4, 4))

        # terms in x alone
        ll = _wsum(wx, gammaln(r + ux) + gammaln(b + ux) - gammaln(a + b + ux))
        ll += n * (-gammaln(r) + r * math.log(alpha) + gammaln(a + b) - gammaln(b))
        g[0] = _wsum(wx, digamma(r + ux)) + n * (-digamma(r) + math.log(alpha))
        g[1] = n * r / alpha
        g[2] = -_wsum(wx, digamma(a + b + ux)) + n * digamma(a + b)
        g[3] = _wsum(wx, digamma(b + ux) - digamma(a + b + ux)) + n * (digamma(a + b) - digamma(b))
        if hessian:
            tri_abx = _wsum(wx, polygamma(1, a + b + ux))
            h[0, 0] = _wsum(wx, polygamma(1, r + ux)) - n * polygamma(1, r)
            h[0, 1] = n / alpha
            h[1, 1] = -n * r / alpha**2
            h[2, 2] = h[2, 3] = n * polygamma(1, a + b) - tri_abx
            h[3, 3] = h[2, 2] + _wsum(wx, polygamma(1, b + ux)) - n * polygamma(1, b)

        # x = 0: −r ln(α+T)
        log_aT0 = np.log(alpha + self.T0)
        inv_aT0 = 1.0 / (alpha + self.T0)
        ll -= r * _wsum(self.w0, log_aT0)
        g[0] -= _wsum(self.w0, log_aT0)
        g[1] -= r * _wsum(self.w0, inv_aT0)
        if hessian:
            h[0, 1] -= _wsum(self.w0, inv_aT0)
            h[1, 1] += r * _wsum(self.w0, inv_aT0**2)

        # x > 0: ln[e^A3 + e^A4], the "alive at T" and "dropped out right after t_x" branches
        if len(self.x1):
            w, x = self.w1, self.x1
            rx = r + x
            log_aT = np.log(alpha + self.T1)
            log_at = np.log(alpha + self.tx1)
            inv_aT = 1.0 / (alpha + self.T1)
            inv_at = 1.0 / (alpha + self.tx1)
            inv_bx = 1.0 / (b - 1.0 + x)
            d_log = log_aT - log_at  # >= 0
            d = (math.log(a) + np.log(inv_bx)) + rx * d_log  # A4 − A3
            # log-sum-exp and π without overflow; np.logaddexp and scipy's expit are
            # several times slower than this
            e = np.exp(-np.abs(d))
            ll += _wsum(w, np.maximum(d, 0.0) + np.log1p(e) - rx * log_aT)
            inv = 1.0 / (1.0 + e)
            pi = np.where(d > 0, inv, e * inv)
            wpi = w * pi
            g[0] -= _wsum(w, log_aT) - _wsum(wpi, d_log)
            g[1] -= _wsum(rx, (w - wpi) * inv_aT + wpi * inv_at)
            g[2] += wpi.sum() / a
            g[3] -= _wsum(wpi, inv_bx)
            if hessian:
                h[0, 1] -= _wsum(w, inv_aT) + _wsum(wpi, inv_at - inv_aT)
                h[1, 1] += _wsum(w * rx, inv_aT**2) + _wsum(wpi * rx, inv_at**2 - inv_aT**2)
                h[2, 2] -= wpi.sum() / a**2
                h[3, 3] += _wsum(wpi, inv_bx**2)
                # π(1−π)·D·Dᵀ with D = ∇A4 − ∇A3 = (d_log, rx(1/(α+T) − 1/(α+t_x)), 1/a, −1/(b+x−1))
                v = wpi * (1.0 - pi)
                D = (d_log, rx * (inv_aT - inv_at), 1.0 / a, -inv_bx)
                for i in range(4):
                    vD = v * D[i]
                    for j in range(i, 4):
                        h[i, j] += _wsum(vD, D[j])

        grad = g * params
        if not hessian:
            return -ll / n, -grad / n
        h = np.triu(h) + np.triu(h, 1).T
        hess = h * np.outer(params, params) + np.diag(grad)
        return -ll / n, -grad / n, -hess / n


def fit_bgnbd(frequency, recency, T, weights=None) -> BGNBDFit:
    """Maximum-likelihood BG/NBD fit (no penalty).

    ``frequency`` (x), ``recency`` (t_x) and ``T`` are per-customer arrays in one time
    unit; ``weights`` counts customers per row. Identical rows are merged first. The
    optimiser is Newton's method on log-parameters with the analytic gradient and
    Hessian (see :func:`_newton`), started from a guess based on observed purchase
    rates, and from other guesses only if that fails. ``converged`` means a proper
    optimum strictly inside the box; ``hit_bound`` means a parameter ran to the edge of
    the box (3e-7 .. 3.3e6), i.e. the data do not identify the model.
    """
    started = time.perf_counter()
    x, t_x, T_, w = _validated_rft(frequency, recency, T, weights)
    nll = _BGNBDLikelihood(x, t_x, T_, w)  # ignores t_x where x = 0

    # starting points: the mean purchase rate r/α from the repeat buyers' rate and from
    # everybody's (the truth is usually in between), dropout p ~ Beta(a, b) around 1/4
    repeat_purchases = _wsum(nll.w1, nll.x1)
    rate_all = repeat_purchases / max(_wsum(nll.w0, nll.T0) + _wsum(nll.w1, nll.T1), 1e-12)
    rate_rep = repeat_purchases / max(_wsum(nll.w1, nll.tx1), 1e-12)
    if rate_all <= 0 or rate_rep <= 0:
        rate_all = rate_rep = 1.0 / max(float(T_.mean()), 1e-6)
    rate_mid = math.sqrt(rate_all * rate_rep)
    starts = [  # tried in this order until one converges
        np.log([r0, r0 / lam, a0, b0])
        for r0, lam, a0, b0 in ((0.25, rate_mid, 1.0, 3.0), (1.0, rate_rep, 0.5, 1.5), (2.0, rate_all, 2.0, 6.0))
    ]
    theta, info = _minimise_from(nll, starts)
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    return BGNBDFit(
        r=r,
        alpha=alpha,
        a=a,
        b=b,
        log_likelihood=-info["fun"] * nll.n,
        converged=info["converged"],
        hit_bound=info["hit_bound"],
        n_customers=round(nll.n),
        iterations=info["iterations"],
        seconds=time.perf_counter() - started,
        message=f"{info['message']}; {nll.n_rows} distinct (x, t_x, T) rows",
    )


# --------------------------------------------------------------------------------------
# Gamma-Gamma fit
# --------------------------------------------------------------------------------------


class _GammaGammaLikelihood:
    """Negative mean log-likelihood of Gamma-Gamma and its gradient in log-parameters.

    Per repeat buyer with x purchases of mean value m (Fader & Hardie 2013, eq. 3):
        LL = lnΓ(px+q) − lnΓ(px) − lnΓ(q) + q ln γ + (px−1) ln m + px ln x − (px+q) ln(γ+mx)
    """

    def __init__(self, x: np.ndarray, m: np.ndarray, w: np.ndarray):
        self.n = float(w.sum())
        self.x, self.m, self.w = x, m, w
        self.ux, xcodes = np.unique(x, return_inverse=True)
        self.wx = np.bincount(xcodes, weights=w, minlength=len(self.ux))
        self.mx = m * x
        self.wx_row = w * x
        log_m = np.log(m)
        self.s_x_log_m = _wsum(self.wx_row, log_m)
        self.s_log_m = _wsum(w, log_m)
        self.s_x_log_x = _wsum(self.wx_row, np.log(x))

    def __call__(self, theta: np.ndarray, hessian: bool = False):
        params = np.exp(theta)
        p, q, g = params
        ux, wx, n = self.ux, self.wx, self.n
        px = p * ux
        pxq = px + q
        log_gmx = np.log(g + self.mx)
        s_log = _wsum(self.w, log_gmx)
        s_x_log = _wsum(self.wx_row, log_gmx)
        ll = (
            _wsum(wx, gammaln(pxq) - gammaln(px))
            + n * (-gammaln(q) + q * math.log(g))
            + p * (self.s_x_log_m + self.s_x_log_x)
            - self.s_log_m
            - p * s_x_log
            - q * s_log
        )
        inv = 1.0 / (g + self.mx)
        s_x_inv = _wsum(self.wx_row, inv)
        s_inv = _wsum(self.w, inv)
        grad = np.array([
            _wsum(wx * ux, digamma(pxq) - digamma(px)) + self.s_x_log_m + self.s_x_log_x - s_x_log,
            _wsum(wx, digamma(pxq)) - n * digamma(q) + n * math.log(g) - s_log,
            n * q / g - p * s_x_inv - q * s_inv,
        ]) * params
        if not hessian:
            return -ll / n, -grad / n
        tri = polygamma(1, pxq)
        inv2 = inv * inv
        h_pg = -s_x_inv
        h_qg = n / g - s_inv
        h = np.array([
            [_wsum(wx * ux * ux, tri - polygamma(1, px)), _wsum(wx * ux, tri), h_pg],
            [0.0, _wsum(wx, tri) - n * polygamma(1, q), h_qg],
            [0.0, 0.0, -n * q / g**2 + p * _wsum(self.wx_row, inv2) + q * _wsum(self.w, inv2)],
        ])
        h = np.triu(h) + np.triu(h, 1).T
        hess = h * np.outer(params, params) + np.diag(grad)
        return -ll / n, -grad / n, -hess / n


def fit_gamma_gamma(frequency, monetary_value, weights=None) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma fit on the repeat buyers (x > 0 and m > 0).

    Rows with x = 0 or m <= 0 are ignored. q is kept above 1 (the population mean spend
    p·γ/(q−1) must exist for the model to be usable); an optimum at q = 1 shows as
    ``hit_bound``. ``converged`` and ``hit_bound`` as in :func:`fit_bgnbd`.
    """
    started = time.perf_counter()
    x = np.asarray(frequency, dtype="float64").ravel()
    m = np.asarray(monetary_value, dtype="float64").ravel()
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype="float64").ravel()
    if not (len(x) == len(m) == len(w)):
        raise ValueError("frequency, monetary_value and weights must have the same length")
    keep = (x > 0) & (m > 0) & np.isfinite(m) & np.isfinite(x) & (w > 0)
    x, m, w = x[keep], m[keep], w[keep]
    if len(x) == 0:
        return GammaGammaFit(
            p=math.nan, q=math.nan, gamma=math.nan, log_likelihood=math.nan, converged=False,
            hit_bound=False, n_customers=0, iterations=0, seconds=time.perf_counter() - started,
            message="no repeat buyers with positive spend",
        )
    nll = _GammaGammaLikelihood(x, m, w)
    mean_m = _wsum(w, m) / w.sum()
    # starting points around the population mean spend p·γ/(q−1) = mean(m)
    starts = [np.log([p0, q0, mean_m * (q0 - 1.0) / p0]) for p0, q0 in ((5.0, 4.0), (1.0, 2.0), (20.0, 10.0))]
    lower = np.array([-_LOG_BOUND, math.log1p(1e-6), -_LOG_BOUND])
    theta, info = _minimise_from(nll, starts, lower=lower)
    p, q, g = (float(v) for v in np.exp(theta))
    return GammaGammaFit(
        p=p,
        q=q,
        gamma=g,
        log_likelihood=-info["fun"] * nll.n,
        converged=info["converged"],
        hit_bound=info["hit_bound"],
        n_customers=round(nll.n),
        iterations=info["iterations"],
        seconds=time.perf_counter() - started,
        message=info["message"],
    )


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
    codes, (ut, ux, uT) = _factorize_rows(t, x, T)
    growth = _growth_factor(fit, ut, ux, uT)[codes]
    return _scalar_or_array((_prob_alive(fit, x, t_x, T) * growth).reshape(shape))


def expected_average_order_value(gg: GammaGammaFit, x, m):
    """E[spend per purchase | x, m] (Fader & Hardie 2013, eq. 5).

    A weighted mean of the population mean p·γ/(q−1) and the customer's own mean m with
    weight px/(px+q−1) on m. Customers without a repeat purchase, or whose repeat spend
    is not positive (no information the model can use), get the population mean.
    """
    x, m = np.broadcast_arrays(np.asarray(x, dtype="float64"), np.asarray(m, dtype="float64"))
    p, q, g = gg.p, gg.q, gg.gamma
    informative = (x > 0) & (m > 0)
    xs = np.where(informative, x, 0.0)
    ms = np.where(informative, m, 0.0)
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
    _days_per_unit(time_unit)
    _, x, t_x, T, m = _read_summary(summary_df)
    n_repeat = int((x > 0).sum())
    n_repeat_spend = int(((x > 0) & (m > 0)).sum())
    params: dict = {
        "as_of": as_of.isoformat() if hasattr(as_of, "isoformat") else str(as_of),
        "r": None, "alpha": None, "a": None, "b": None,
        "p": None, "q": None, "gamma": None,
        "bgnbd_log_likelihood": None, "gg_log_likelihood": None,
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

    predictions = predict(bg, gg, summary_df, time_unit, annual_discount_rate, margin_share, horizon_days)
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
    NaN CLV). The expected-purchase columns are named after ``horizon_days``.
    """
    unit = _days_per_unit(time_unit)
    summary, x, t_x, T, m = _read_summary(summary_df)
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
    return pd.DataFrame(
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
        }
    )


# --------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------


def _days_per_unit(time_unit: str) -> float:
    try:
        return DAYS_PER_UNIT[time_unit]
    except KeyError:
        raise ValueError(f"time_unit must be 'weeks' or 'days', not {time_unit!r}") from None


def _read_summary(summary_df: pd.DataFrame):
    """The summary indexed by customer, and validated x, t_x, T, m arrays."""
    summary = summary_df
    if "customer_id" in summary.columns:
        summary = summary.set_index("customer_id")
    missing = {"frequency", "recency", "T", "monetary_value"} - set(summary.columns)
    if missing:
        raise ValueError(f"summary is missing columns {sorted(missing)}")
    if len(summary):
        x, t_x, T, _ = _validated_rft(summary["frequency"], summary["recency"], summary["T"], None)
    else:  # no customers yet is a data situation, not an error
        x = t_x = T = np.zeros(0)
    m = summary["monetary_value"].to_numpy(dtype="float64")
    if not np.isfinite(m).all():
        raise ValueError("monetary_value has missing or infinite values")
    return summary, x, t_x, T, m


def _validated_rft(frequency, recency, T, weights):
    x = np.asarray(frequency, dtype="float64").ravel()
    t_x = np.asarray(recency, dtype="float64").ravel()
    T_ = np.asarray(T, dtype="float64").ravel()
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype="float64").ravel()
    if not (len(x) == len(t_x) == len(T_) == len(w)):
        raise ValueError("frequency, recency, T and weights must have the same length")
    if len(x) == 0:
        raise ValueError("no customers")
    if not (np.isfinite(x).all() and np.isfinite(t_x).all() and np.isfinite(T_).all() and np.isfinite(w).all()):
        raise ValueError("frequency, recency, T and weights must be finite")
    if (x < 0).any() or (x != np.round(x)).any():
        raise ValueError("frequency must be a non-negative whole number")
    # tolerate float noise in recency <= T, then clip
    if (t_x < 0).any() or (t_x > T_ + 1e-6 * np.maximum(1.0, T_)).any():
        raise ValueError("recency must satisfy 0 <= recency <= T")
    if (w < 0).any():
        raise ValueError("weights must be non-negative")
    return x, np.minimum(t_x, T_), T_, w


def _factorize_rows(*cols: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Codes of the distinct rows of ``cols`` and each column's value per distinct row.

    Hash-based (pandas.factorize per column, then once on the combined int64 code), so
    O(n) rather than the sort of np.unique(axis=0).
    """
    factorized = [pd.factorize(np.asarray(col), sort=False) for col in cols]
    codes = [c.astype("int64") for c, _ in factorized]
    uniques = [np.asarray(u) for _, u in factorized]
    sizes = [max(len(u), 1) for u in uniques]
    if math.prod(sizes) < 2**62:
        key = codes[0]
        for c, size in zip(codes[1:], sizes[1:]):
            key = key * size + c
        code, ukey = pd.factorize(key, sort=False)
        parts = []
        for size in reversed(sizes):
            parts.append(ukey % size)
            ukey = ukey // size
        return code, [u[part] for u, part in zip(uniques, reversed(parts))]
    # too many combinations for one int64: combine one column at a time
    code, reps = codes[0], [uniques[0]]
    for c, u in zip(codes[1:], uniques[1:]):
        combined, uc = pd.factorize(code * len(u) + c, sort=False)
        reps = [rep[uc // len(u)] for rep in reps] + [u[uc % len(u)]]
        code = combined
    return code, reps


def _wsum(w: np.ndarray, v: np.ndarray) -> float:
    """Σ w·v without BLAS: a threaded ddot was up to 100x slower on a busy 2-core box."""
    return float((w * v).sum())


def _minimise_from(nll, starts: list[np.ndarray], lower: np.ndarray | None = None):
    """Optimise from the first start; only if that fails numerically, from the next ones.

    A parameter running to the edge of the box is a property of the data, not of the
    start, so it ends the search. Returns the best (lowest objective) attempt.
    """
    best = None
    for theta0 in starts:
        theta, info = _newton(nll, theta0, lower=lower)
        if best is None or _finite_or_inf(info["fun"]) < _finite_or_inf(best[1]["fun"]):
            best = (theta, info)
        if info["converged"] or info["hit_bound"]:
            break
    return best


def _finite_or_inf(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def _newton(nll, theta0: np.ndarray, lower: np.ndarray | None = None, max_iter: int = 200):
    """Projected Newton on log-parameters in a box, then an honest convergence verdict.

    Each step solves H·s = −g with H's eigenvalues replaced by max(|λ|, δ) (a descent
    direction even where H is not positive definite), caps the step at 2 in log space
    (a factor e² per parameter), backtracks until the objective decreases enough, and
    holds parameters that sit on the box edge with the gradient pushing outwards. The
    4×4 algebra is plain numpy: scipy's L-BFGS-B spent up to 0.5 s per fit in its
    threaded BLAS on a busy machine, more than the likelihood itself.

    Converged means: finite, strictly inside the box, max |gradient of the mean
    log-likelihood| < _GRAD_TOL, and a positive-definite Hessian, so that a flat
    likelihood (e.g. no repeat buyers, where a and b do not enter it) is not a fit.
    """
    k = len(theta0)
    lo = np.full(k, -_LOG_BOUND) if lower is None else np.asarray(lower, dtype="float64")
    hi = np.full(k, _LOG_BOUND)
    theta = np.clip(np.asarray(theta0, dtype="float64"), lo + 1e-3, hi - 1e-3)
    note = "iteration limit"
    iterations = 0  # accepted steps
    stalled = 0  # consecutive steps that no longer reduce the objective measurably
    with np.errstate(all="ignore"):
        f, g, H = nll(theta, hessian=True)
        for _ in range(max_iter):
            if not (np.isfinite(f) and np.isfinite(g).all() and np.isfinite(H).all()):
                note = "non-finite likelihood"
                break
            held = ((theta <= lo + 1e-12) & (g > 0)) | ((theta >= hi - 1e-12) & (g < 0))
            free = ~held
            if np.max(np.abs(g[free]), initial=0.0) < 1e-12:
                note = "gradient vanished"
                break
            step = np.zeros(k)
            step[free] = _descent_direction(g[free], H[np.ix_(free, free)])
            step *= min(1.0, 2.0 / max(np.max(np.abs(step)), 1e-300))
            slope = float(g @ step)
            # backtracking (Armijo); the Hessian only at the point finally accepted
            t, Hc = 1.0, None
            candidate = np.clip(theta + step, lo, hi)
            fc, gc, Hc = nll(candidate, hessian=True)
            for _ in range(20):
                if np.isfinite(fc) and fc <= f + 1e-4 * t * slope:
                    break
                t *= 0.5
                candidate = np.clip(theta + t * step, lo, hi)
                fc, gc = nll(candidate)
                Hc = None
            else:
                note = "no further decrease possible"
                break
            if Hc is None:
                fc, gc, Hc = nll(candidate, hessian=True)
            moved = np.max(np.abs(candidate - theta))
            stalled = stalled + 1 if f - fc <= 1e-13 * max(1.0, abs(f)) else 0
            theta, f, g, H = candidate, fc, gc, Hc
            iterations += 1
            if moved < 1e-12 or stalled >= 3:
                note = "no further progress"
                break
    hit_bound = bool(((theta - lo < 1e-6) | (hi - theta < 1e-6)).any())
    finite = bool(np.isfinite(f) and np.isfinite(g).all() and np.isfinite(H).all())
    gmax = float(np.max(np.abs(g))) if finite else math.inf
    converged = finite and not hit_bound and gmax < _GRAD_TOL
    problems = []
    if hit_bound:
        problems.append("a parameter is at the edge of its box")
    if converged:
        curvature = float(np.linalg.eigvalsh(0.5 * (H + H.T))[0])
        if not curvature > 1e-7:
            converged = False
            problems.append(f"flat likelihood (min Hessian eigenvalue {curvature:.1e}): not identified")
    message = (
        f"{'converged' if converged else 'NOT converged'} after {iterations} Newton iterations "
        f"({note}), max|grad| {gmax:.1e}" + "".join(f", {p}" for p in problems)
    )
    return theta, {
        "fun": float(f),
        "converged": converged,
        "hit_bound": hit_bound,
        "iterations": iterations,
        "message": message,
    }


def _descent_direction(g: np.ndarray, H: np.ndarray) -> np.ndarray:
    """−H⁻¹g with H's eigenvalues made positive: max(|λ|, 1e-8·max(1, max|λ|))."""
    lam, V = np.linalg.eigh(0.5 * (H + H.T))
    floor = 1e-8 * max(1.0, float(np.max(np.abs(lam))))
    lam = np.maximum(np.abs(lam), floor)
    return -(V @ ((V.T @ g) / lam))


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
        self.codes, (self.ux, self.uT) = _factorize_rows(x, T)
        self.alive = _prob_alive(fit, x, np.where(x == 0, 0.0, t_x), T)

    def growth(self, t: float) -> np.ndarray:
        return _growth_factor(self.fit, np.full(len(self.ux), float(t)), self.ux, self.uT)

    def expected_purchases(self, t: float) -> np.ndarray:
        return self.alive * self.growth(t)[self.codes]

    def discounted_purchases(self, months: int, annual_discount_rate: float, time_unit: str) -> np.ndarray:
        """Σ_i (E[by month i] − E[by month i−1]) / (1 + monthly_rate)^i, i = 1..months."""
        month = DAYS_PER_MONTH / _days_per_unit(time_unit)
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
