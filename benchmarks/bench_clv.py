"""Benchmark of ``crm_pipeline.clv`` against ``lifetimes`` at pipeline scale.

Simulates N customers from known BG/NBD and Gamma-Gamma parameters, builds the
frequency / recency / T / monetary summary the pipeline would build (day-granular ages
and recencies, in weeks), fits both models with our code and, when ``lifetimes`` is
importable, with ``lifetimes`` on the same summary, and prints seconds, speed-up, peak
memory and the parameters side by side with the true ones.

    uv run python benchmarks/bench_clv.py --customers 1000000
    uv run --with 'lifetimes==0.11.3' --with 'setuptools<81' python benchmarks/bench_clv.py

Not a test: nothing here runs under pytest.
"""

from __future__ import annotations

import argparse
import gc
import math
import resource
import time
import tracemalloc
import warnings

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from crm_pipeline import clv

TRUE_BG = {"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.43}
TRUE_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}
MONTHLY_RATE = 1.10 ** (1 / 12) - 1  # 10% a year, as the pipeline's default


def simulate(n: int, seed: int, continuous: bool) -> pd.DataFrame:
    """BG/NBD + Gamma-Gamma customers, T uniform on 1..78 weeks (FHL 2005, section 3)."""
    rng = np.random.default_rng(seed)
    r, alpha, a, b = TRUE_BG.values()
    if continuous:
        T = rng.uniform(1.0, 78.0, n)
    else:  # ages in whole days, as summary_from_transactions produces them
        T = rng.integers(7, 78 * 7 + 1, n) / 7.0
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    dies_after = rng.geometric(p)  # the repeat purchase after which the customer drops out
    arrivals = rng.poisson(lam * T)  # purchases in (0, T] had the customer stayed alive
    x = np.minimum(arrivals, dies_after)
    # the x-th of `arrivals` uniform purchase times on (0, T]
    t_x = np.zeros(n)
    rep = x > 0
    t_x[rep] = T[rep] * rng.beta(x[rep], arrivals[rep] - x[rep] + 1)
    if not continuous:
        t_x = np.floor(t_x * 7.0) / 7.0
    # Gamma-Gamma: ν ~ Gamma(q, γ); the mean of x spends ~ Gamma(p·x, ν·x)
    pp, q, g = TRUE_GG.values()
    nu = rng.gamma(q, 1.0 / g, n)
    m = np.zeros(n)
    m[rep] = rng.gamma(pp * x[rep], 1.0 / (nu[rep] * x[rep]))
    return pd.DataFrame(
        {"frequency": x, "recency": t_x, "T": T, "monetary_value": m},
        index=pd.RangeIndex(n, name="customer_id"),
    )


def ours(summary: pd.DataFrame) -> tuple[dict, dict]:
    x, t_x, T, m = (summary[c].to_numpy(dtype="float64") for c in ("frequency", "recency", "T", "monetary_value"))
    seconds = {}
    started = time.perf_counter()
    bg = clv.fit_bgnbd(x, t_x, T)
    seconds["BG/NBD fit"] = time.perf_counter() - started
    started = time.perf_counter()
    gg = clv.fit_gamma_gamma(x, m)
    seconds["Gamma-Gamma fit"] = time.perf_counter() - started
    started = time.perf_counter()
    predictions = clv.predict(bg, gg, summary, "weeks", annual_discount_rate=0.10)  # the pipeline's path
    seconds["predictions"] = time.perf_counter() - started
    params = {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b, "p": gg.p, "q": gg.q, "gamma": gg.gamma}
    status = {
        "BG/NBD": f"converged={bg.converged} hit_bound={bg.hit_bound}; {bg.message}",
        "Gamma-Gamma": f"converged={gg.converged} hit_bound={gg.hit_bound}; {gg.message}",
    }
    return seconds, {"params": params, "status": status, "predictions": predictions}


def theirs(summary: pd.DataFrame) -> tuple[dict, dict]:
    import lifetimes
    from lifetimes.utils import ConvergenceError

    s = summary
    seconds, params, status = {}, {}, {}
    started = time.perf_counter()
    bgf = lifetimes.BetaGeoFitter(penalizer_coef=0.0)
    try:
        bgf.fit(s["frequency"], s["recency"], s["T"])
        status["BG/NBD"] = "converged (scipy minimize reported success)"
    except ConvergenceError:
        status["BG/NBD"] = "ConvergenceError unpenalised; refitted with penalizer_coef=0.001"
        bgf = lifetimes.BetaGeoFitter(penalizer_coef=0.001)
        bgf.fit(s["frequency"], s["recency"], s["T"])
    seconds["BG/NBD fit"] = time.perf_counter() - started
    params.update(bgf.params_.to_dict())

    rep = s[(s["frequency"] > 0) & (s["monetary_value"] > 0)]
    started = time.perf_counter()
    ggf = lifetimes.GammaGammaFitter(penalizer_coef=0.0)
    try:
        ggf.fit(rep["frequency"], rep["monetary_value"])
        status["Gamma-Gamma"] = "converged (scipy minimize reported success)"
    except ConvergenceError:
        status["Gamma-Gamma"] = "ConvergenceError unpenalised"
    seconds["Gamma-Gamma fit"] = time.perf_counter() - started
    if hasattr(ggf, "params_"):
        params.update(p=ggf.params_["p"], q=ggf.params_["q"], gamma=ggf.params_["v"])

    started = time.perf_counter()
    predictions = {
        "prob_alive": bgf.conditional_probability_alive(s["frequency"], s["recency"], s["T"]),
        "expected_purchases_90d": bgf.conditional_expected_number_of_purchases_up_to_time(
            90 / 7, s["frequency"], s["recency"], s["T"]),
        "expected_purchases_365d": bgf.conditional_expected_number_of_purchases_up_to_time(
            365 / 7, s["frequency"], s["recency"], s["T"]),
    }
    if hasattr(ggf, "params_"):
        predictions["expected_avg_order_value"] = ggf.conditional_expected_average_profit(
            s["frequency"], s["monetary_value"])
        # lifetimes' month is 4.345 weeks (ours 365.25/12 days = 4.348 weeks)
        predictions["clv_12m"] = ggf.customer_lifetime_value(
            bgf, s["frequency"], s["recency"], s["T"], s["monetary_value"],
            time=12, discount_rate=MONTHLY_RATE, freq="W",
        )
    seconds["predictions"] = time.perf_counter() - started
    predictions = {k: np.asarray(v, dtype="float64").ravel() for k, v in predictions.items()}
    return seconds, {"params": params, "status": status, "predictions": predictions}


def timed(fn, summary, repeat: int) -> tuple[dict, dict]:
    """Median seconds per stage over ``repeat`` runs, and the last run's results."""
    runs = []
    for _ in range(max(repeat, 1)):
        gc.collect()
        seconds, result = fn(summary)
        runs.append(seconds)
    return {stage: float(np.median([run[stage] for run in runs])) for stage in runs[0]}, result


def peak_mib(fn, summary) -> float:
    gc.collect()
    tracemalloc.start()
    fn(summary)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def agree_3_sig(a: float | None, b: float | None) -> bool:
    """Within half a unit of the third significant digit of b."""
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= 0.5 * 10 ** (math.floor(math.log10(abs(b))) - 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20050301)
    parser.add_argument("--continuous", action="store_true",
                        help="continuous recency/T (nothing to compress) instead of whole days")
    parser.add_argument("--no-lifetimes", action="store_true", help="skip lifetimes even if importable")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc passes")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per implementation; the table shows the median of each stage")
    args = parser.parse_args()
    console = Console()

    warnings.simplefilter("ignore")
    try:
        if args.no_lifetimes:
            raise ImportError("--no-lifetimes")
        import lifetimes  # noqa: F401

        have_lifetimes = True
    except ImportError as exc:  # lifetimes 0.11.3 imports pkg_resources: needs setuptools<81
        have_lifetimes = False
        console.print(f"[yellow]lifetimes not used ({type(exc).__name__}: {exc})[/yellow]")

    started = time.perf_counter()
    summary = simulate(args.customers, args.seed, args.continuous)
    console.print(
        f"simulated {len(summary):,} customers in {time.perf_counter() - started:.2f} s: "
        f"{int((summary['frequency'] > 0).sum()):,} repeat buyers, "
        f"{'continuous' if args.continuous else 'day-granular'} recency/T in weeks"
    )

    our_s, our = timed(ours, summary, args.repeat)
    their_s, their = timed(theirs, summary, args.repeat) if have_lifetimes else ({}, {"params": {}, "status": {}})
    our_mem = None if args.no_memory else peak_mib(ours, summary)
    their_mem = None if (args.no_memory or not have_lifetimes) else peak_mib(theirs, summary)

    stages = ["BG/NBD fit", "Gamma-Gamma fit", "predictions"]
    our_s["total"] = sum(our_s[k] for k in stages)
    if their_s:
        their_s["total"] = sum(their_s[k] for k in stages)

    timing = Table(title=f"CLV at {args.customers:,} customers: seconds (median of {args.repeat} runs)")
    for col in ("stage", "ours", "lifetimes 0.11.3", "speed-up"):
        timing.add_column(col, justify="left" if col == "stage" else "right")
    for stage in stages + ["total"]:
        t_ours, t_their = our_s[stage], their_s.get(stage)
        timing.add_row(
            stage, f"{t_ours:.3f}",
            "-" if t_their is None else f"{t_their:.3f}",
            "-" if t_their is None else f"{t_their / t_ours:.1f}x",
        )
    timing.add_row(
        "peak traced memory (MiB)",
        "-" if our_mem is None else f"{our_mem:.0f}",
        "-" if their_mem is None else f"{their_mem:.0f}",
        "",
    )
    console.print(timing)

    params = Table(title="parameters")
    for col in ("parameter", "true", "ours", "lifetimes 0.11.3", "ours vs true", "ours = lifetimes (3 s.f.)"):
        params.add_column(col, justify="left" if col == "parameter" else "right")
    truth = {**TRUE_BG, **TRUE_GG}
    all_agree = bool(their["params"])
    for name, true in truth.items():
        mine = our["params"][name]
        other = their["params"].get(name)
        agree = agree_3_sig(mine, other)
        all_agree &= agree
        params.add_row(
            name, f"{true:g}", f"{mine:.4f}", "-" if other is None else f"{other:.4f}",
            f"{(mine / true - 1) * 100:+.2f}%", "-" if other is None else ("yes" if agree else "NO"),
        )
    console.print(params)

    if their.get("predictions"):
        agreement = Table(title="predictions, ours vs lifetimes (same summary)")
        agreement.add_column("column")
        agreement.add_column("max |relative difference|", justify="right")
        for column, values in their["predictions"].items():
            mine = our["predictions"][column].to_numpy()
            rel = np.abs(mine - values) / np.maximum(np.abs(values), 1e-12)
            note = " (month: lifetimes 4.345 weeks, ours 4.348)" if column == "clv_12m" else ""
            agreement.add_row(column, f"{np.nanmax(rel):.1e}{note}")
        console.print(agreement)

    for who, result in (("ours", our), ("lifetimes", their)):
        for model, text in result["status"].items():
            console.print(f"{who} {model}: {text}")
    rusage_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"process max RSS (everything, incl. lifetimes and tracemalloc passes): {rusage_mib:.0f} MiB")
    if their_s:
        speedup = their_s["total"] / our_s["total"]
        console.print(f"parameters agree with lifetimes to 3 significant digits: {'yes' if all_agree else 'NO'}")
        console.print(f">= 10x total speed-up target: {'met' if speedup >= 10 else 'NOT met'} ({speedup:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
