"""The CLV step of the nightly run: fit BG/NBD + Gamma-Gamma as of ``as_of`` and store the results.

Runs between the two dbt stages. It reads the per-customer purchase summary that dbt
built for this ``as_of`` (``intermediate.int_customer_order_summary``), fits the models
with :func:`crm_pipeline.clv.fit_and_predict` and writes two tables that the marts read
as the dbt source ``clv`` (``models/marts/__clv_sources.yml``):

* ``intermediate.clv_fit``: one row per ``as_of`` with the fitted parameters, the
  log-likelihoods, the status ('ok', 'not_converged', 'hit_bound',
  'too_few_repeat_buyers'), its message, the time unit, the customer counts, the
  settings used and the fit time;
* ``intermediate.clv_predictions``: one row per buying customer per ``as_of`` (only when
  the status is 'ok'): the model inputs, probability alive, expected purchases in the
  next 90 and 365 days, expected average order value and the discounted 12-month CLV.

Both tables are created when missing, with the same DDL on DuckDB and PostgreSQL, also
when the fit fails (so that the marts can always read them). A run replaces this
``as_of``'s rows of both tables in one transaction and leaves other dates alone; a fit
that is not 'ok' writes its fit row and no predictions, so the marts publish nothing new
for the date and the previously published CLV stays in place.

Model inputs per buyer (a customer with at least one purchase day; prospects get no row):
x = ``frequency`` (purchase days − 1), t_x = ``repeat_span_days`` and T = ``age_days``
divided by the days of the time unit, m = ``avg_repeat_spend`` (0 when x = 0).

Margin share (the gross-margin share applied to the CLV): per customer
``total_gross_margin / total_net_revenue`` clipped to [0, 1] when the customer's net
revenue to date is positive; otherwise the population share Σ margin / Σ revenue over
the buyers with positive revenue, clipped to [0, 1] (0 when no buyer has positive
revenue: no evidence of any margin).

Settings (environment): ``CRM_CLV_TIME_UNIT`` weeks (default) or days;
``CRM_CLV_ANNUAL_DISCOUNT_RATE`` (default 0.10); ``CRM_CLV_MIN_REPEAT_BUYERS`` (default 30,
fewer repeat buyers is status 'too_few_repeat_buyers').
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from crm_pipeline import clv
from crm_pipeline import settings
from crm_pipeline.warehouse import Warehouse

log = logging.getLogger(__name__)

SCHEMA = "intermediate"
SUMMARY_TABLE = "int_customer_order_summary"
PREDICTIONS_TABLE = "clv_predictions"
FIT_TABLE = "clv_fit"
#: written by crm_pipeline.clv_validation on the nights that check the model on a holdout
DIAGNOSTICS_TABLE = "clv_diagnostics"
HORIZON_DAYS = (90, 365)

#: column -> portable SQL type (the same text on DuckDB and PostgreSQL)
PREDICTIONS_COLUMNS: dict[str, str] = {
    "as_of": "date not null",
    "customer_id": "bigint not null",
    "frequency": "integer",
    "recency": "double precision",
    "t": "double precision",
    "monetary_value": "double precision",
    "margin_share": "double precision",
    "prob_alive": "double precision",
    "expected_purchases_90d": "double precision",
    "expected_purchases_365d": "double precision",
    "expected_avg_order_value": "double precision",
    "clv_12m": "double precision",
    "prob_alive_90d": "double precision",
    "prob_alive_p10": "double precision",
    "prob_alive_p90": "double precision",
    "clv_12m_p10": "double precision",
    "clv_12m_p90": "double precision",
}

FIT_COLUMNS: dict[str, str] = {
    "as_of": "date not null",
    "run_id": "varchar",
    "status": "varchar not null",
    "message": "varchar",
    "converged": "boolean",
    "r": "double precision",
    "alpha": "double precision",
    "a": "double precision",
    "b": "double precision",
    "p": "double precision",
    "q": "double precision",
    "gamma": "double precision",
    "bgnbd_log_likelihood": "double precision",
    "gg_log_likelihood": "double precision",
    "time_unit": "varchar",
    "n_customers": "integer",
    "n_repeat_buyers": "integer",
    "annual_discount_rate": "double precision",
    "min_repeat_buyers": "integer",
    "fit_seconds": "double precision",
    "fitted_at": "timestamp",
    **{f"se_{name}": "double precision" for name in ("r", "alpha", "a", "b", "p", "q", "gamma")},
}

DIAGNOSTICS_COLUMNS: dict[str, str] = {
    "as_of": "date not null",
    "run_id": "varchar",
    "calibration_end": "date",
    "holdout_weeks": "integer",
    "fit_status": "varchar",
    "fit_message": "varchar",
    "frequency_group": "varchar",
    "group_order": "integer",
    "customers": "integer",
    "actual_purchases_mean": "double precision",
    "predicted_purchases_mean": "double precision",
    "purchases_mae": "double precision",
    "purchases_aggregate_error": "double precision",
    "spend_customers": "integer",
    "actual_spend_mean": "double precision",
    "predicted_spend_mean": "double precision",
    "spend_mae": "double precision",
    "spend_aggregate_error": "double precision",
}

_PARAM_KEYS = ("r", "alpha", "a", "b", "p", "q", "gamma")


@dataclass(frozen=True)
class ClvSettings:
    time_unit: str = "weeks"
    annual_discount_rate: float = 0.10
    min_repeat_buyers: int = 30

    @classmethod
    def from_env(cls) -> "ClvSettings":
        unit = settings.clv_time_unit(clv.DAYS_PER_UNIT)
        rate = settings.clv_annual_discount_rate()
        min_repeat = settings.clv_min_repeat_buyers()
        return cls(time_unit=unit, annual_discount_rate=rate, min_repeat_buyers=min_repeat)


# -- tables ------------------------------------------------------------------------------


def _ddl(table: str, columns: dict[str, str]) -> str:
    body = ",\n    ".join(f"{name} {sql_type}" for name, sql_type in columns.items())
    return f"create table if not exists {SCHEMA}.{table} (\n    {body}\n)"


def ensure_tables(wh: Warehouse) -> None:
    """Create ``intermediate.clv_predictions``, ``clv_fit`` and ``clv_diagnostics`` if missing, and
    add the columns a table written by an earlier version lacks (NULL on its earlier rows)."""
    wh.execute(f"create schema if not exists {SCHEMA}")
    for table, columns in ((PREDICTIONS_TABLE, PREDICTIONS_COLUMNS), (FIT_TABLE, FIT_COLUMNS),
                           (DIAGNOSTICS_TABLE, DIAGNOSTICS_COLUMNS)):
        wh.execute(_ddl(table, columns))
        have = {c.lower() for c in wh.columns(SCHEMA, table)}
        for name, sql_type in columns.items():
            if name not in have:
                wh.execute(f"alter table {SCHEMA}.{table} add column {name} {sql_type.replace(' not null', '')}")


# -- inputs ------------------------------------------------------------------------------


def read_summary(wh: Warehouse, as_of: date) -> pd.DataFrame:
    """The buyers of ``intermediate.int_customer_order_summary``, sorted by customer_id.

    Raises RuntimeError when the table is missing or was built for another date (the
    dbt staging stage must run first for the same as_of).
    """
    if not wh.table_exists(SCHEMA, SUMMARY_TABLE):
        raise RuntimeError(f"{SCHEMA}.{SUMMARY_TABLE} does not exist: the dbt staging stage must run before clv_fit")
    dates = [r[0] for r in wh.query(f"select distinct as_of from {SCHEMA}.{SUMMARY_TABLE}")]
    built_for = {d if isinstance(d, date) else date.fromisoformat(str(d)[:10]) for d in dates}
    if built_for and built_for != {as_of}:
        raise RuntimeError(
            f"{SCHEMA}.{SUMMARY_TABLE} was built for as_of {sorted(str(d) for d in built_for)}, not {as_of}: "
            "run the dbt staging stage for this date first"
        )
    df = wh.query_numeric_df(
        "select customer_id, frequency, repeat_span_days, age_days, avg_repeat_spend, "
        f"total_net_revenue, total_gross_margin from {SCHEMA}.{SUMMARY_TABLE} "
        "where order_days > 0 order by customer_id"
    )
    # PostgreSQL hands numerics over as Decimal, DuckDB as float64: the same doubles either way
    for col in ("frequency", "repeat_span_days", "age_days", "avg_repeat_spend", "total_net_revenue",
                "total_gross_margin"):
        df[col] = pd.to_numeric(df[col].astype(object).where(df[col].notna(), None), errors="raise").astype("float64")
    df["customer_id"] = df["customer_id"].astype("int64")
    return df.sort_values("customer_id", kind="stable").reset_index(drop=True)


def model_summary(buyers: pd.DataFrame, time_unit: str) -> pd.DataFrame:
    """``frequency, recency, T, monetary_value`` in ``time_unit``, indexed by customer_id."""
    unit = clv.DAYS_PER_UNIT[time_unit]
    x = buyers["frequency"].fillna(0.0).to_numpy()
    span = np.where(x > 0, buyers["repeat_span_days"].fillna(0.0).to_numpy(), 0.0)
    return pd.DataFrame(
        {
            "frequency": x.astype("int64"),
            "recency": span / unit,
            "T": buyers["age_days"].to_numpy(dtype="float64") / unit,
            "monetary_value": np.where(x > 0, buyers["avg_repeat_spend"].fillna(0.0).to_numpy(), 0.0),
        },
        index=pd.Index(buyers["customer_id"].to_numpy(), name="customer_id"),
    )


def margin_shares(buyers: pd.DataFrame) -> pd.Series:
    """Per-customer gross-margin share in [0, 1] (see the module docstring for the fallback)."""
    revenue = buyers["total_net_revenue"].to_numpy(dtype="float64")
    margin = buyers["total_gross_margin"].to_numpy(dtype="float64")
    positive = revenue > 0
    total_revenue = float(revenue[positive].sum())
    population = float(np.clip(margin[positive].sum() / total_revenue, 0.0, 1.0)) if total_revenue > 0 else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.clip(margin / np.where(positive, revenue, 1.0), 0.0, 1.0)
    share = np.where(positive, own, population)
    return pd.Series(share, index=pd.Index(buyers["customer_id"].to_numpy(), name="customer_id"))


# -- the step ----------------------------------------------------------------------------


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def run(wh: Warehouse, as_of: date, run_id: str, settings: ClvSettings | None = None, *,
        source: Warehouse | None = None) -> dict:
    """Fit as of ``as_of``, replace this date's rows of the two tables, return a summary.
    The customer summary is read from ``source`` (default ``wh``: on a Spark warehouse the
    tables are written to the control file and the summary read on Spark).

    Never raises for data reasons (the status says what happened); a missing or stale
    summary table, a bad setting or a warehouse error raise.
    """
    settings = settings or ClvSettings.from_env()
    ensure_tables(wh)
    buyers = read_summary(source or wh, as_of)
    summary = model_summary(buyers, settings.time_unit)
    shares = margin_shares(buyers)
    params, predictions = clv.fit_and_predict(
        summary, as_of, time_unit=settings.time_unit, annual_discount_rate=settings.annual_discount_rate,
        margin_share=shares, min_repeat_buyers=settings.min_repeat_buyers, horizon_days=HORIZON_DAYS,
    )
    status = params["status"]
    fit_row = {
        "as_of": as_of,
        "run_id": run_id,
        "status": status,
        "message": (params.get("message") or "")[:2000],
        "converged": bool(params.get("converged")),
        **{k: _finite_or_none(params.get(k)) for k in _PARAM_KEYS},
        "bgnbd_log_likelihood": _finite_or_none(params.get("bgnbd_log_likelihood")),
        "gg_log_likelihood": _finite_or_none(params.get("gg_log_likelihood")),
        "time_unit": settings.time_unit,
        "n_customers": int(params.get("n_customers") or 0),
        "n_repeat_buyers": int(params.get("n_repeat_buyers") or 0),
        "annual_discount_rate": settings.annual_discount_rate,
        "min_repeat_buyers": settings.min_repeat_buyers,
        "fit_seconds": round(float(params.get("fit_seconds") or 0.0), 3),
        "fitted_at": datetime.now(timezone.utc).replace(tzinfo=None),
        **{f"se_{k}": _finite_or_none((params.get("standard_errors") or {}).get(k)) for k in _PARAM_KEYS},
    }
    rows = _prediction_frame(predictions, shares, as_of) if status == "ok" and predictions is not None else None

    with wh.transaction():
        wh.execute(f"delete from {SCHEMA}.{PREDICTIONS_TABLE} where as_of = ?", (as_of,))
        wh.execute(f"delete from {SCHEMA}.{FIT_TABLE} where as_of = ?", (as_of,))
        cols = list(FIT_COLUMNS)
        marks = ", ".join("?" for _ in cols)
        wh.execute(
            f"insert into {SCHEMA}.{FIT_TABLE} ({', '.join(cols)}) values ({marks})",
            tuple(fit_row[c] for c in cols),
        )
        if rows is not None and len(rows):
            wh.append_df(SCHEMA, PREDICTIONS_TABLE, rows)

    if status != "ok":
        log.warning("CLV fit as of %s: %s (%s); no predictions written, the published CLV stays as it was",
                    as_of, status, fit_row["message"])
    result: dict[str, Any] = {
        "status": status,
        "time_unit": settings.time_unit,
        "n_customers": fit_row["n_customers"],
        "n_repeat_buyers": fit_row["n_repeat_buyers"],
        "predictions": 0 if rows is None else int(len(rows)),
        "fit_seconds": fit_row["fit_seconds"],
        # for crm bench: the prediction without and the bands alone (docs/performance.md)
        "predict_seconds": round(float(params.get("predict_seconds") or 0.0), 3),
        "uncertainty_seconds": round(float(params.get("uncertainty_seconds") or 0.0), 3),
        "params": {k: (None if fit_row[k] is None else float(f"{fit_row[k]:.6g}")) for k in _PARAM_KEYS},
    }
    if status != "ok":
        result["message"] = fit_row["message"][:300]
    return result


def _prediction_frame(predictions: pd.DataFrame, shares: pd.Series, as_of: date) -> pd.DataFrame:
    """The rows of ``intermediate.clv_predictions``: finite doubles, NULL for anything else."""
    out = pd.DataFrame({"as_of": pd.Series([as_of] * len(predictions), dtype="object")})
    out["customer_id"] = predictions["customer_id"].to_numpy().astype("int64")
    out["frequency"] = predictions["frequency"].to_numpy().astype("int64")
    source = {
        "recency": predictions["recency"],
        "t": predictions["T"],
        "monetary_value": predictions["monetary_value"],
        "margin_share": shares.reindex(predictions["customer_id"].to_numpy()).reset_index(drop=True),
        "prob_alive": predictions["prob_alive"],
        "expected_purchases_90d": predictions[f"expected_purchases_{HORIZON_DAYS[0]}d"],
        "expected_purchases_365d": predictions[f"expected_purchases_{HORIZON_DAYS[1]}d"],
        "expected_avg_order_value": predictions["expected_avg_order_value"],
        "clv_12m": predictions["clv_12m"],
        "prob_alive_90d": predictions["prob_alive_future"],
        "prob_alive_p10": predictions["prob_alive_p10"],
        "prob_alive_p90": predictions["prob_alive_p90"],
        "clv_12m_p10": predictions["clv_12m_p10"],
        "clv_12m_p90": predictions["clv_12m_p90"],
    }
    for name, values in source.items():
        arr = np.asarray(values, dtype="float64")
        # a nullable float column: NaN / inf become SQL NULL on both warehouses
        out[name] = pd.array(np.where(np.isfinite(arr), arr, np.nan), dtype="Float64")
    return out[list(PREDICTIONS_COLUMNS)]
