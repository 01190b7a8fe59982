"""Does the lifetime-value model predict? Fit on a calibration period, compare with a holdout.

The classic check of Fader, Hardie & Lee (2005): fit BG/NBD and Gamma-Gamma on the
purchases up to ``calibration_end``, predict each customer's repeat purchases over the
holdout (``calibration_end``, ``observation_end``] and compare with what they bought,
grouped by their calibration-period frequency (the calibration chart's data). Customers
are those whose first purchase is in the calibration period; purchases are customer-days
(:func:`crm_pipeline.clv.data.summary_from_transactions`). Spend is compared for the
customers with repeat purchases in both periods: Gamma-Gamma's expected order value from
the calibration period against their mean spend per purchase day in the holdout.

Per group: customers, actual and predicted mean purchases, the mean absolute error per
customer and the aggregate error (Σ predicted − Σ actual) ÷ Σ actual; the same for spend.
The last group holds every frequency from ``cap`` up ("7+"), and a row "all" sums up.
``tests/test_clv_holdout.py`` reproduces the CDNOW split against ``lifetimes``.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from crm_pipeline.clv.data import days_per_unit, summary_from_transactions
from crm_pipeline.clv.fits import fit_bgnbd, fit_gamma_gamma
from crm_pipeline.clv.predict import expected_average_order_value, expected_purchases

#: calibration frequencies 0 .. CAP - 1 have their own group, CAP and more share one
CAP = 7

DIAGNOSTIC_COLUMNS = [
    "frequency_group", "group_order", "customers", "actual_purchases_mean", "predicted_purchases_mean",
    "purchases_mae", "purchases_aggregate_error", "spend_customers", "actual_spend_mean",
    "predicted_spend_mean", "spend_mae", "spend_aggregate_error",
]


def calibration_and_holdout(
    purchases: pd.DataFrame,
    calibration_end: date,
    observation_end: date,
    time_unit: str = "weeks",
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str = "amount",
) -> pd.DataFrame:
    """Per customer: frequency/recency/T/monetary_value in the calibration period and
    ``frequency_holdout`` (purchase days), ``monetary_value_holdout`` (mean spend per
    purchase day, 0 without one) in the holdout; ``duration_holdout`` in ``time_unit``."""
    if observation_end <= calibration_end:
        raise ValueError(f"the holdout ends on {observation_end}, not after the calibration end {calibration_end}")
    calibration = summary_from_transactions(purchases, customer_col, date_col, amount_col, calibration_end, time_unit)
    when = pd.to_datetime(purchases[date_col]).dt.normalize()
    inside = (when > pd.Timestamp(calibration_end)) & (when <= pd.Timestamp(observation_end))
    holdout = pd.DataFrame({
        "customer": purchases.loc[inside, customer_col].to_numpy(),
        "day": when[inside].to_numpy(),
        "amount": pd.to_numeric(purchases.loc[inside, amount_col]).to_numpy(dtype="float64"),
    })
    days = holdout.groupby(["customer", "day"], sort=False)["amount"].sum().reset_index()
    per_customer = days.groupby("customer")["amount"].agg(["count", "mean"])
    out = calibration.copy()
    out["frequency_holdout"] = per_customer["count"].reindex(out.index).fillna(0).astype("int64").to_numpy()
    out["monetary_value_holdout"] = per_customer["mean"].reindex(out.index).fillna(0.0).to_numpy()
    out["duration_holdout"] = (observation_end - calibration_end).days / days_per_unit(time_unit)
    return out


def diagnostics(frame: pd.DataFrame, min_repeat_buyers: int = 1, cap: int = CAP) -> tuple[dict, pd.DataFrame | None]:
    """Fit on the calibration columns of ``frame`` and compare with the holdout.

    Returns ``(fit, groups)``: ``fit`` has the status ('ok', 'too_few_repeat_buyers',
    'not_converged', 'hit_bound'), the parameters and the message; ``groups`` (columns
    :data:`DIAGNOSTIC_COLUMNS`) is None unless the status is 'ok'.
    """
    x = frame["frequency"].to_numpy(dtype="float64")
    t_x = frame["recency"].to_numpy(dtype="float64")
    T = frame["T"].to_numpy(dtype="float64")
    m = frame["monetary_value"].to_numpy(dtype="float64")
    repeat = int(((x > 0) & (m > 0)).sum())
    fit: dict = {"status": "too_few_repeat_buyers", "customers": len(frame), "repeat_buyers": repeat,
                 "message": "", "r": None, "alpha": None, "a": None, "b": None, "p": None, "q": None, "gamma": None}
    if repeat < max(min_repeat_buyers, 1):
        fit["message"] = f"{repeat} repeat buyers in the calibration period < {min_repeat_buyers}"
        return fit, None
    with np.errstate(all="ignore"):
        bg = fit_bgnbd(x, t_x, T)
        gg = fit_gamma_gamma(x, m)
    fit.update(r=bg.r, alpha=bg.alpha, a=bg.a, b=bg.b, p=gg.p, q=gg.q, gamma=gg.gamma,
               message=f"BG/NBD: {bg.message}; Gamma-Gamma: {gg.message}")
    if bg.hit_bound or gg.hit_bound:
        fit["status"] = "hit_bound"
        return fit, None
    if not (bg.converged and gg.converged):
        fit["status"] = "not_converged"
        return fit, None
    fit["status"] = "ok"
    duration = float(frame["duration_holdout"].iloc[0])
    with np.errstate(all="ignore"):
        predicted = np.asarray(expected_purchases(bg, duration, x, t_x, T), dtype="float64")
        predicted_spend = np.asarray(expected_average_order_value(gg, x, m), dtype="float64")
    actual = frame["frequency_holdout"].to_numpy(dtype="float64")
    actual_spend = frame["monetary_value_holdout"].to_numpy(dtype="float64")
    spend_rows = (x > 0) & (actual > 0)
    group = np.minimum(x, cap).astype("int64")
    rows = []
    for order, label in [(g, f"{g}+" if g == cap else str(g)) for g in range(cap + 1)] + [(cap + 1, "all")]:
        members = np.ones_like(x, dtype=bool) if label == "all" else group == order
        if not members.any():
            continue
        rows.append(_group_row(label, order, actual[members], predicted[members],
                               actual_spend[members & spend_rows], predicted_spend[members & spend_rows]))
    return fit, pd.DataFrame(rows, columns=DIAGNOSTIC_COLUMNS)


def _aggregate_error(actual: np.ndarray, predicted: np.ndarray) -> float | None:
    total = float(actual.sum())
    return (float(predicted.sum()) - total) / total if total > 0 else None


def _group_row(label, order, actual, predicted, actual_spend, predicted_spend) -> dict:
    spend = len(actual_spend) > 0
    return {
        "frequency_group": label,
        "group_order": order,
        "customers": int(len(actual)),
        "actual_purchases_mean": float(actual.mean()),
        "predicted_purchases_mean": float(predicted.mean()),
        "purchases_mae": float(np.abs(predicted - actual).mean()),
        "purchases_aggregate_error": _aggregate_error(actual, predicted),
        "spend_customers": int(len(actual_spend)),
        "actual_spend_mean": float(actual_spend.mean()) if spend else None,
        "predicted_spend_mean": float(predicted_spend.mean()) if spend else None,
        "spend_mae": float(np.abs(predicted_spend - actual_spend).mean()) if spend else None,
        "spend_aggregate_error": _aggregate_error(actual_spend, predicted_spend) if spend else None,
    }
