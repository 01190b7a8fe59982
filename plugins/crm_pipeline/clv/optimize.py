"""The maximum-likelihood machinery both fits share: a bounded Newton method in
log-parameters with line search, started from several points.

Parameters live in a log box (``LOG_BOUND``); a fit is called converged when its
first-order optimality is below ``GRAD_TOL``.
"""

from __future__ import annotations

import math

import numpy as np

#: log-parameter box for both fits: parameters between 3e-7 and 3.3e6
LOG_BOUND = 15.0
#: first-order optimality required to call a fit converged: max |d mean-LL / d log-param|
GRAD_TOL = 1e-6


def weighted_sum(w: np.ndarray, v: np.ndarray) -> float:
    """Σ w·v without BLAS: a threaded ddot was up to 100x slower on a busy 2-core box."""
    return float((w * v).sum())


def minimise_from(nll, starts: list[np.ndarray], lower: np.ndarray | None = None):
    """Optimise from the first start; only if that fails numerically, from the next ones.

    A parameter running to the edge of the box is a property of the data, not of the
    start, so it ends the search. Returns the best (lowest objective) attempt.
    """
    best = None
    for theta0 in starts:
        theta, info = newton(nll, theta0, lower=lower)
        if best is None or finite_or_inf(info["fun"]) < finite_or_inf(best[1]["fun"]):
            best = (theta, info)
        if info["converged"] or info["hit_bound"]:
            break
    return best


def finite_or_inf(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def newton(nll, theta0: np.ndarray, lower: np.ndarray | None = None, max_iter: int = 200):
    """Projected Newton on log-parameters in a box, then an honest convergence verdict.

    Each step solves H·s = −g with H's eigenvalues replaced by max(|λ|, δ) (a descent
    direction even where H is not positive definite), caps the step at 2 in log space
    (a factor e² per parameter), backtracks until the objective decreases enough, and
    holds parameters that sit on the box edge with the gradient pushing outwards. The
    4×4 algebra is plain numpy: scipy's L-BFGS-B spent up to 0.5 s per fit in its
    threaded BLAS on a busy machine, more than the likelihood itself.

    Converged means: finite, strictly inside the box, max |gradient of the mean
    log-likelihood| < GRAD_TOL, and a positive-definite Hessian, so that a flat
    likelihood (e.g. no repeat buyers, where a and b do not enter it) is not a fit.
    """
    k = len(theta0)
    lo = np.full(k, -LOG_BOUND) if lower is None else np.asarray(lower, dtype="float64")
    hi = np.full(k, LOG_BOUND)
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
            step[free] = descent_direction(g[free], H[np.ix_(free, free)])
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
    converged = finite and not hit_bound and gmax < GRAD_TOL
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


def descent_direction(g: np.ndarray, H: np.ndarray) -> np.ndarray:
    """−H⁻¹g with H's eigenvalues made positive: max(|λ|, 1e-8·max(1, max|λ|))."""
    lam, V = np.linalg.eigh(0.5 * (H + H.T))
    floor = 1e-8 * max(1.0, float(np.max(np.abs(lam))))
    lam = np.maximum(np.abs(lam), floor)
    return -(V @ ((V.T @ g) / lam))


