"""How sure the lifetime-value predictions are: bands from the fitted parameters' uncertainty.

Each fit carries the covariance of its log-parameters (the inverse observed information,
:func:`crm_pipeline.clv.fits.log_covariance`). A prediction's 10th-90th percentile band is
the delta method on the scale where the prediction is closest to normal:

* 12-month CLV = discounted purchases (BG/NBD) × expected order value (Gamma-Gamma) ×
  margin share; on the log scale the two fits' parts add, and the fits are independent,
  so Var(ln CLV) = g_bgᵀ Σ_bg g_bg + g_ggᵀ Σ_gg g_gg, with g the gradients of ln(discounted
  purchases) and ln(order value) in the log-parameters. The band is
  CLV × exp(±z σ), z = the normal 90th percentile (a CLV of 0 has the band [0, 0]).
* P(alive) on the logit scale, whose gradient is analytic:
  logit P = −[(r + x) ln((α+T)/(α+t_x)) + ln a − ln(b + x − 1)]; the band is
  expit(logit P ± z σ). A customer without a repeat purchase is alive with certainty
  under BG/NBD (P = 1, band [1, 1]).

The gradient of the discounted purchases is a forward difference in each of the four
BG/NBD log-parameters (four more evaluations of the per-(x, T) growth grid); everything
else is closed-form, so the bands cost about five predictions, not a bootstrap's
hundreds. ``tests/test_clv_uncertainty.py`` checks the bands against a parametric
bootstrap over the same covariance.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from typing import Callable

from crm_pipeline.clv.fits import BGNBDFit, GammaGammaFit

#: the 90th percentile of the standard normal: the band is the 10th to the 90th percentile
Z_90 = 1.2815515655446004
_STEP = 1e-5  # forward-difference step in a log-parameter


def log_odds_alive_gradient(fit: BGNBDFit, x, t_x, T) -> np.ndarray:
    """d logit P(alive) / d(ln r, ln α, ln a, ln b), one row per customer (x > 0 rows only matter)."""
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    x, t_x, T = (np.asarray(v, dtype="float64") for v in (x, t_x, T))
    with np.errstate(all="ignore"):
        log_ratio = np.log((alpha + T) / (alpha + t_x))
        d_odds_dead = np.stack([
            r * log_ratio,
            (r + x) * alpha * (1.0 / (alpha + T) - 1.0 / (alpha + t_x)),
            np.ones_like(x),
            -b / np.where(x > 0, b + x - 1.0, 1.0),
        ], axis=1)
    return -d_odds_dead


def prob_alive_band(fit: BGNBDFit, prob_alive: np.ndarray, x, t_x, T, z: float = Z_90):
    """(low, high) of P(alive) from the BG/NBD covariance; NaN when the fit has none."""
    p = np.asarray(prob_alive, dtype="float64")
    if fit.log_covariance is None:
        nan = np.full_like(p, np.nan)
        return nan, nan
    cov = np.asarray(fit.log_covariance)
    g = log_odds_alive_gradient(fit, x, t_x, T)
    sigma = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", g, cov, g), 0.0))
    with np.errstate(all="ignore"):
        logit = np.log(p) - np.log1p(-p)
        low = 1.0 / (1.0 + np.exp(-(logit - z * sigma)))
        high = 1.0 / (1.0 + np.exp(-(logit + z * sigma)))
    certain = ~(p < 1.0)  # no repeat purchase: alive with certainty
    return np.where(certain, p, low), np.where(certain, p, high)


def _order_value_log_gradient(gg: GammaGammaFit, x, m) -> np.ndarray:
    """d ln E[order value] / d(ln p, ln q, ln γ), matching expected_average_order_value."""
    x, m = (np.asarray(v, dtype="float64") for v in (x, m))
    repeat = x > 0
    xs = np.where(repeat, x, 0.0)
    ms = np.where(repeat, np.maximum(np.nan_to_num(m, nan=0.0), 0.0), 0.0)
    p, q, g = gg.p, gg.q, gg.gamma
    denominator = p * xs + q - 1.0
    return np.stack([1.0 - p * xs / denominator, -q / denominator, g / (g + xs * ms)], axis=1)


def clv_band(
    bg: BGNBDFit,
    gg: GammaGammaFit,
    clv_12m: np.ndarray,
    x,
    m,
    discounted_purchases: Callable[[BGNBDFit], np.ndarray],
    z: float = Z_90,
):
    """(low, high) of the CLV from both fits' covariances; NaN when either fit has none.

    ``discounted_purchases(fit)`` gives every customer's discounted expected purchases
    under a BG/NBD fit (the CLV's first factor), for the same customers as ``clv_12m``.
    """
    value = np.asarray(clv_12m, dtype="float64")
    if bg.log_covariance is None or gg.log_covariance is None:
        nan = np.full_like(value, np.nan)
        return nan, nan
    with np.errstate(all="ignore"):
        base = np.log(discounted_purchases(bg))
        g_bg = np.empty((len(value), 4))
        for i, name in enumerate(("r", "alpha", "a", "b")):
            moved = replace(bg, **{name: getattr(bg, name) * math.exp(_STEP)})
            g_bg[:, i] = (np.log(discounted_purchases(moved)) - base) / _STEP
        g_gg = _order_value_log_gradient(gg, x, m)
        variance = (np.einsum("ij,jk,ik->i", g_bg, np.asarray(bg.log_covariance), g_bg)
                    + np.einsum("ij,jk,ik->i", g_gg, np.asarray(gg.log_covariance), g_gg))
        spread = np.exp(z * np.sqrt(np.maximum(variance, 0.0)))
    return value / spread, value * spread
