"""The demo's financial statements: quarterly figures of most enterprise customers, filed
one to two months after each quarter from onboarding until they stop buying, as a random
walk in log revenue with seasonality; a few are restated weeks later."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_pipeline.demo.customers import CustomerTraits
from crm_pipeline.demo.dates import DAY, NEVER, whole_us
from crm_pipeline.demo.versions import change_columns, date_col, money, versions
from crm_pipeline.demo.world import World

_FIGURES = ("revenue", "net_profit", "total_assets", "total_liabilities", "current_assets", "current_liabilities")


def _quarter_of(us: np.ndarray) -> np.ndarray:
    """The quarter a time falls in, numbered ``year * 4 + quarter index``."""
    months = (np.asarray(us) // DAY).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return (months // 12 + 1970) * 4 + (months % 12) // 3


def _quarter_end_us(quarter: np.ndarray) -> np.ndarray:
    """The start of the last day of a quarter numbered as by ``_quarter_of``."""
    next_month = (quarter // 4 - 1970) * 12 + (quarter % 4) * 3 + 3
    return next_month.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) * DAY - DAY


def _cents(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 100), -9e13, 9e13)


def generate_statements(world: World, customers: CustomerTraits) -> pd.DataFrame:
    """The financial statements' row versions."""
    rand, cid = world.rand, customers.customer_id
    files = customers.enterprise & (rand.uniform("f.files", cid) < 0.70)
    filer = cid[files]
    pos = filer - 1

    first_quarter = _quarter_of(customers.created_at[pos]) - 1  # the last closed quarter when onboarded
    horizon_quarter = int(_quarter_of(np.array([world.horizon_end]))[0])
    n_quarters = max(0, int(horizon_quarter - first_quarter.min() + 1)) if len(filer) else 0
    quarter = first_quarter[:, None] + np.arange(n_quarters)[None, :]
    period_end = _quarter_end_us(quarter)
    stop = np.minimum(customers.churn_at[pos], customers.bad_debt_at[pos])
    stop = np.where(stop == NEVER, stop, stop + 180 * DAY)
    filed = period_end + DAY + whole_us(rand.between(30, 60, "f.filed", filer[:, None], quarter) * DAY)
    onboard = customers.created_at[pos] + whole_us(rand.between(1, 14, "f.onb", filer) * DAY)
    if n_quarters:
        filed[:, 0] = np.maximum(filed[:, 0], onboard)

    # a company's quarterly figures: a random walk in log revenue with seasonality
    per_quarter = (filer[:, None], quarter)
    revenue0 = np.exp(np.log(20e6) + 1.3 * rand.normal("f.rev0", filer))
    drift = 0.01 + 0.02 * rand.normal("f.drift", filer)
    shock = 0.06 * rand.normal("f.shock", *per_quarter)
    seasonality = np.array([0.85, 1.0, 1.0, 1.15])[quarter % 4]
    revenue = revenue0[:, None] * np.exp(np.cumsum(drift[:, None] + shock, axis=1)) * seasonality
    margin = (0.05 + 0.06 * rand.normal("f.margin", filer))[:, None] + 0.03 * rand.normal("f.marginq", *per_quarter)
    leverage_kind = rand.choice([85, 10, 5], "f.levk", filer)
    leverage = np.where(leverage_kind == 0, rand.between(0.25, 0.7, "f.lev", filer),
                        np.where(leverage_kind == 1, rand.between(0.7, 0.9, "f.lev", filer),
                                 rand.between(0.9, 1.15, "f.lev", filer)))
    leverage = np.clip(leverage[:, None] + 0.02 * rand.normal("f.levq", *per_quarter), 0.05, 1.3)
    assets = (4 * revenue * np.exp(0.4 * rand.normal("f.turn", filer))[:, None]
              * (1 + 0.02 * rand.normal("f.aq", *per_quarter)))
    current_share = rand.between(0.3, 0.7, "f.cas", filer)[:, None]
    current_ratio = (np.exp(np.log(1.4) + 0.35 * rand.normal("f.cr", filer))[:, None]
                     * np.exp(0.05 * rand.normal("f.crq", *per_quarter)))
    liabilities = assets * leverage
    current_assets = assets * current_share
    current_liabilities = np.minimum(current_assets / current_ratio, liabilities)

    # one row per statement filed by the horizon, before the company stopped
    row_i, quarter_i = np.nonzero((filed <= world.horizon_end) & (period_end < stop[:, None]))
    filing_order = np.lexsort((quarter[row_i, quarter_i], filer[row_i], filed[row_i, quarter_i]))
    row_i, quarter_i = row_i[filing_order], quarter_i[filing_order]
    at = (row_i, quarter_i)
    n_statements = len(row_i)
    statement_id = np.arange(1, n_statements + 1)
    statement_customer, statement_quarter = filer[row_i], quarter[at]
    revenue_cents = _cents(revenue[at])
    profit_cents = _cents(revenue[at] * margin[at])
    base = {
        "statement_id": statement_id,
        "customer_id": statement_customer,
        "period_end": period_end[at],
        "revenue": revenue_cents,
        "net_profit": profit_cents,
        "total_assets": _cents(assets[at]),
        "total_liabilities": _cents(liabilities[at]),
        "current_assets": _cents(current_assets[at]),
        "current_liabilities": _cents(current_liabilities[at]),
        "updated_at": filed[at],
        "is_deleted": np.zeros(n_statements),
    }
    # restatements: a corrected filing weeks later
    statement_keys = (statement_customer, statement_quarter)
    restate = rand.uniform("f.restate", *statement_keys) < 0.04
    revenue_factor = rand.between(0.95, 1.05, "f.rsf", *statement_keys)
    new_revenue = np.rint(revenue_cents * revenue_factor)
    events = [{"statement_id": statement_id[restate],
               "updated_at": (filed[at] + whole_us(rand.between(20, 90, "f.rst", *statement_keys) * DAY))[restate],
               "revenue": new_revenue[restate],
               "net_profit": np.rint(profit_cents + (new_revenue - revenue_cents) * 0.3)[restate]}]
    df = versions("statement_id", base, events)
    out = {"statement_id": df["statement_id"].to_numpy(np.int64),
           "customer_id": df["customer_id"].to_numpy(np.int64),
           "period_end": date_col(df["period_end"].to_numpy(np.int64))}
    for col in _FIGURES:
        out[col] = money(df[col])
    return pd.DataFrame({**out, **change_columns(df)})
