"""Customer summaries for the lifetime-value models: frequency, recency, age and spend.

Builds the per-customer summary from transactions and validates the arrays the fits and
predictions read. The conventions are those of ``lifetimes.utils.summary_data_from_transaction_data``
with daily periods:

* a *purchase* is a customer-day: transactions on the same calendar day are one
  purchase whose amount is their sum;
* ``frequency`` (x) counts repeat purchases, i.e. purchase days minus one;
* ``recency`` (t_x) is the time from the first to the last purchase day and ``T`` the
  time from the first purchase day to ``as_of``, both in days or in weeks (days / 7);
* ``monetary_value`` is the mean amount of the repeat purchases (the first purchase day
  is excluded) and 0 for customers without a repeat purchase.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd

TimeUnit = Literal["weeks", "days"]

#: days per model time unit
DAYS_PER_UNIT: dict[str, float] = {"days": 1.0, "weeks": 7.0}
#: length of a CLV month in days (a twelfth of a Julian year)
DAYS_PER_MONTH = 365.25 / 12


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
    unit = days_per_unit(time_unit)
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

    # factorize, sort and bincount: several times faster than a two-key pandas groupby
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



def days_per_unit(time_unit: str) -> float:
    try:
        return DAYS_PER_UNIT[time_unit]
    except KeyError:
        raise ValueError(f"time_unit must be 'weeks' or 'days', not {time_unit!r}") from None


def read_summary(summary_df: pd.DataFrame):
    """The summary indexed by customer, and validated x, t_x, T, m arrays."""
    summary = summary_df
    if "customer_id" in summary.columns:
        summary = summary.set_index("customer_id")
    missing = {"frequency", "recency", "T", "monetary_value"} - set(summary.columns)
    if missing:
        raise ValueError(f"summary is missing columns {sorted(missing)}")
    if len(summary):
        x, t_x, T, _ = validated_rft(summary["frequency"], summary["recency"], summary["T"], None)
    else:  # no customers yet is a data situation, not an error
        x = t_x = T = np.zeros(0)
    m = summary["monetary_value"].to_numpy(dtype="float64")
    if not np.isfinite(m).all():
        raise ValueError("monetary_value has missing or infinite values")
    return summary, x, t_x, T, m


def validated_rft(frequency, recency, T, weights):
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


def factorize_rows(*cols: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
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


