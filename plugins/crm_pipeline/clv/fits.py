"""The two fits: BG/NBD for repeat purchases and Gamma-Gamma for spend.

BG/NBD follows Fader, Hardie & Lee 2005, "Counting your customers the easy way";
Gamma-Gamma follows Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves" and
Fader & Hardie 2013, "The Gamma-Gamma model of monetary value". Time only enters
BG/NBD through ``alpha``, so fitting in days gives ``alpha_days = 7 * alpha_weeks``
and the same r, a, b.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln, polygamma

from crm_pipeline.clv.data import factorize_rows, validated_rft
from crm_pipeline.clv.optimize import LOG_BOUND, minimise_from, weighted_sum


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
    #: covariance of (ln r, ln α, ln a, ln b) from the observed information; None when the
    #: information matrix is not positive definite
    log_covariance: tuple[tuple[float, ...], ...] | None = None

    @property
    def standard_errors(self) -> dict[str, float] | None:
        """Standard errors of r, α, a, b (delta method: value × SE of its logarithm)."""
        return _standard_errors(("r", "alpha", "a", "b"), (self.r, self.alpha, self.a, self.b), self.log_covariance)


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
    #: covariance of (ln p, ln q, ln γ) from the observed information, as for BG/NBD
    log_covariance: tuple[tuple[float, ...], ...] | None = None

    @property
    def standard_errors(self) -> dict[str, float] | None:
        """Standard errors of p, q, γ (delta method: value × SE of its logarithm)."""
        return _standard_errors(("p", "q", "gamma"), (self.p, self.q, self.gamma), self.log_covariance)

    @property
    def v(self) -> float:
        """``lifetimes`` calls γ ``v``."""
        return self.gamma



# --------------------------------------------------------------------------------------
# Parameter uncertainty
# --------------------------------------------------------------------------------------


def log_covariance(nll, theta: np.ndarray) -> tuple[tuple[float, ...], ...] | None:
    """Covariance of the log-parameters at the optimum: the inverse observed information.

    The likelihood objects return the Hessian of the *mean* negative log-likelihood in
    log-parameters, so the information of the whole sample is n times it. Where the
    gradient vanishes (an interior optimum) this is the delta-method image of the
    covariance in natural parameters: Var(θ_i) = Var(ln θ_i) × θ_i². None when the
    information matrix is not positive definite (a flat direction: the data do not
    identify the model).
    """
    try:
        _, _, hess = nll(theta, hessian=True)
        info = nll.n * np.asarray(hess, dtype="float64")
        if not np.all(np.isfinite(info)):
            return None
        np.linalg.cholesky(info)  # raises when not positive definite
        cov = np.linalg.inv(info)
    except (np.linalg.LinAlgError, ArithmeticError, ValueError):
        return None
    cov = (cov + cov.T) / 2.0
    return tuple(tuple(float(v) for v in row) for row in cov)


def _standard_errors(names, values, cov) -> dict[str, float] | None:
    if cov is None:
        return None
    return {name: float(value) * math.sqrt(max(cov[i][i], 0.0)) for i, (name, value) in enumerate(zip(names, values))}


# --------------------------------------------------------------------------------------
# BG/NBD fit
# --------------------------------------------------------------------------------------


def _fit_outcome(info: dict, nll, started: float) -> dict:
    """What every fit reports besides its parameters: likelihood, convergence, size, time."""
    return {
        "log_likelihood": -info["fun"] * nll.n,
        "converged": info["converged"],
        "hit_bound": info["hit_bound"],
        "n_customers": round(nll.n),
        "iterations": info["iterations"],
        "seconds": time.perf_counter() - started,
    }


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
        T0_codes, (self.T0,) = factorize_rows(T[zero])
        self.w0 = np.bincount(T0_codes, weights=w[zero], minlength=len(self.T0))
        # repeat buyers: distinct (x, t_x, T) rows
        codes, (xr, txr, Tr) = factorize_rows(x[~zero], t_x[~zero], T[~zero])
        self.w1 = np.bincount(codes, weights=w[~zero], minlength=len(xr))
        self.n_rows = len(self.T0) + len(xr)
        # distinct x values with their total weight
        xcodes, (ux,) = factorize_rows(np.concatenate([[0.0], xr]))
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
        ll = weighted_sum(wx, gammaln(r + ux) + gammaln(b + ux) - gammaln(a + b + ux))
        ll += n * (-gammaln(r) + r * math.log(alpha) + gammaln(a + b) - gammaln(b))
        g[0] = weighted_sum(wx, digamma(r + ux)) + n * (-digamma(r) + math.log(alpha))
        g[1] = n * r / alpha
        g[2] = -weighted_sum(wx, digamma(a + b + ux)) + n * digamma(a + b)
        g[3] = weighted_sum(wx, digamma(b + ux) - digamma(a + b + ux)) + n * (digamma(a + b) - digamma(b))
        if hessian:
            tri_abx = weighted_sum(wx, polygamma(1, a + b + ux))
            h[0, 0] = weighted_sum(wx, polygamma(1, r + ux)) - n * polygamma(1, r)
            h[0, 1] = n / alpha
            h[1, 1] = -n * r / alpha**2
            h[2, 2] = h[2, 3] = n * polygamma(1, a + b) - tri_abx
            h[3, 3] = h[2, 2] + weighted_sum(wx, polygamma(1, b + ux)) - n * polygamma(1, b)

        # x = 0: −r ln(α+T)
        log_aT0 = np.log(alpha + self.T0)
        inv_aT0 = 1.0 / (alpha + self.T0)
        ll -= r * weighted_sum(self.w0, log_aT0)
        g[0] -= weighted_sum(self.w0, log_aT0)
        g[1] -= r * weighted_sum(self.w0, inv_aT0)
        if hessian:
            h[0, 1] -= weighted_sum(self.w0, inv_aT0)
            h[1, 1] += r * weighted_sum(self.w0, inv_aT0**2)

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
            ll += weighted_sum(w, np.maximum(d, 0.0) + np.log1p(e) - rx * log_aT)
            inv = 1.0 / (1.0 + e)
            pi = np.where(d > 0, inv, e * inv)
            wpi = w * pi
            g[0] -= weighted_sum(w, log_aT) - weighted_sum(wpi, d_log)
            g[1] -= weighted_sum(rx, (w - wpi) * inv_aT + wpi * inv_at)
            g[2] += wpi.sum() / a
            g[3] -= weighted_sum(wpi, inv_bx)
            if hessian:
                h[0, 1] -= weighted_sum(w, inv_aT) + weighted_sum(wpi, inv_at - inv_aT)
                h[1, 1] += weighted_sum(w * rx, inv_aT**2) + weighted_sum(wpi * rx, inv_at**2 - inv_aT**2)
                h[2, 2] -= wpi.sum() / a**2
                h[3, 3] += weighted_sum(wpi, inv_bx**2)
                # π(1−π)·D·Dᵀ with D = ∇A4 − ∇A3 = (d_log, rx(1/(α+T) − 1/(α+t_x)), 1/a, −1/(b+x−1))
                v = wpi * (1.0 - pi)
                D = (d_log, rx * (inv_aT - inv_at), 1.0 / a, -inv_bx)
                for i in range(4):
                    vD = v * D[i]
                    for j in range(i, 4):
                        h[i, j] += weighted_sum(vD, D[j])

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
    Hessian (see :func:`newton`), started from a guess based on observed purchase
    rates, and from other guesses only if that fails. ``converged`` means a proper
    optimum strictly inside the box; ``hit_bound`` means a parameter ran to the edge of
    the box (3e-7 .. 3.3e6), i.e. the data do not identify the model.
    """
    started = time.perf_counter()
    x, t_x, T_, w = validated_rft(frequency, recency, T, weights)
    nll = _BGNBDLikelihood(x, t_x, T_, w)  # ignores t_x where x = 0

    # starting points: the mean purchase rate r/α from the repeat buyers' rate and from
    # everybody's (the truth is usually in between), dropout p ~ Beta(a, b) around 1/4
    repeat_purchases = weighted_sum(nll.w1, nll.x1)
    rate_all = repeat_purchases / max(weighted_sum(nll.w0, nll.T0) + weighted_sum(nll.w1, nll.T1), 1e-12)
    rate_rep = repeat_purchases / max(weighted_sum(nll.w1, nll.tx1), 1e-12)
    if rate_all <= 0 or rate_rep <= 0:
        rate_all = rate_rep = 1.0 / max(float(T_.mean()), 1e-6)
    rate_mid = math.sqrt(rate_all * rate_rep)
    starts = [  # tried in this order until one converges
        np.log([r0, r0 / lam, a0, b0])
        for r0, lam, a0, b0 in ((0.25, rate_mid, 1.0, 3.0), (1.0, rate_rep, 0.5, 1.5), (2.0, rate_all, 2.0, 6.0))
    ]
    theta, info = minimise_from(nll, starts)
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    return BGNBDFit(
        r=r,
        alpha=alpha,
        a=a,
        b=b,
        **_fit_outcome(info, nll, started),
        message=f"{info['message']}; {nll.n_rows} distinct (x, t_x, T) rows",
        log_covariance=log_covariance(nll, theta) if info["converged"] and not info["hit_bound"] else None,
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
        self.s_x_log_m = weighted_sum(self.wx_row, log_m)
        self.s_log_m = weighted_sum(w, log_m)
        self.s_x_log_x = weighted_sum(self.wx_row, np.log(x))

    def __call__(self, theta: np.ndarray, hessian: bool = False):
        params = np.exp(theta)
        p, q, g = params
        ux, wx, n = self.ux, self.wx, self.n
        px = p * ux
        pxq = px + q
        log_gmx = np.log(g + self.mx)
        s_log = weighted_sum(self.w, log_gmx)
        s_x_log = weighted_sum(self.wx_row, log_gmx)
        ll = (
            weighted_sum(wx, gammaln(pxq) - gammaln(px))
            + n * (-gammaln(q) + q * math.log(g))
            + p * (self.s_x_log_m + self.s_x_log_x)
            - self.s_log_m
            - p * s_x_log
            - q * s_log
        )
        inv = 1.0 / (g + self.mx)
        s_x_inv = weighted_sum(self.wx_row, inv)
        s_inv = weighted_sum(self.w, inv)
        grad = np.array([
            weighted_sum(wx * ux, digamma(pxq) - digamma(px)) + self.s_x_log_m + self.s_x_log_x - s_x_log,
            weighted_sum(wx, digamma(pxq)) - n * digamma(q) + n * math.log(g) - s_log,
            n * q / g - p * s_x_inv - q * s_inv,
        ]) * params
        if not hessian:
            return -ll / n, -grad / n
        tri = polygamma(1, pxq)
        inv2 = inv * inv
        h_pg = -s_x_inv
        h_qg = n / g - s_inv
        h = np.array([
            [weighted_sum(wx * ux * ux, tri - polygamma(1, px)), weighted_sum(wx * ux, tri), h_pg],
            [0.0, weighted_sum(wx, tri) - n * polygamma(1, q), h_qg],
            [0.0, 0.0, -n * q / g**2 + p * weighted_sum(self.wx_row, inv2) + q * weighted_sum(self.w, inv2)],
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
    mean_m = weighted_sum(w, m) / w.sum()
    # starting points around the population mean spend p·γ/(q−1) = mean(m)
    starts = [np.log([p0, q0, mean_m * (q0 - 1.0) / p0]) for p0, q0 in ((5.0, 4.0), (1.0, 2.0), (20.0, 10.0))]
    lower = np.array([-LOG_BOUND, math.log1p(1e-6), -LOG_BOUND])
    theta, info = minimise_from(nll, starts, lower=lower)
    p, q, g = (float(v) for v in np.exp(theta))
    return GammaGammaFit(
        p=p,
        q=q,
        gamma=g,
        **_fit_outcome(info, nll, started),
        message=info["message"],
        log_covariance=log_covariance(nll, theta) if info["converged"] and not info["hit_bound"] else None,
    )

