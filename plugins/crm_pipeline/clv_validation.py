"""The CLV model's holdout check in the warehouse: ``intermediate.clv_diagnostics``.

On the nights of ``CRM_CLV_VALIDATE_DAY`` (default the first of each month) and on
``crm clv validate``, the purchase days built for this ``as_of`` (``intermediate.int_orders``,
purchase orders summed per customer and day) are split at ``as_of`` − ``CRM_CLV_HOLDOUT_WEEKS``
weeks: the models are fitted on the calibration part and compared with the holdout
(:mod:`crm_pipeline.clv.holdout`). The rows replace this ``as_of``'s rows of the table in
one transaction; the dbt source ``clv.clv_diagnostics`` feeds the published history table
``clv_model_diagnostics``. A check whose fit is not usable writes one row "all" with its
status and message, so the table says that the check ran and why it says nothing more.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from crm_pipeline import settings
from crm_pipeline.clv import holdout
from crm_pipeline.clv_step import DIAGNOSTICS_COLUMNS, DIAGNOSTICS_TABLE, SCHEMA, ClvSettings, ensure_tables
from crm_pipeline.warehouse import Warehouse


def due(as_of: date) -> bool:
    """Whether the night of ``as_of`` checks the model (``CRM_CLV_VALIDATE_DAY``; 0 never)."""
    day = settings.clv_validate_day()
    return day > 0 and as_of.day == day


def read_purchase_days(wh: Warehouse, as_of: date) -> pd.DataFrame:
    """One row per customer and purchase day up to ``as_of`` with the day's net revenue."""
    if not wh.table_exists(SCHEMA, "int_orders"):
        raise RuntimeError(f"{SCHEMA}.int_orders does not exist: run the dbt staging stage for {as_of} first")
    df = wh.query_numeric_df(
        f"select customer_id, order_date, sum(net_revenue) as amount from {SCHEMA}.int_orders "
        f"where is_purchase and order_date <= cast('{as_of.isoformat()}' as date) group by customer_id, order_date")
    df["amount"] = pd.to_numeric(df["amount"].astype(object), errors="raise").astype("float64")
    df["order_date"] = pd.to_datetime(df["order_date"])
    return df


def run(wh: Warehouse, as_of: date, run_id: str, holdout_weeks: int | None = None,
        clv_settings: ClvSettings | None = None, *, source: Warehouse | None = None) -> dict:
    """Check the model as of ``as_of`` on a holdout, replace this date's rows, return a
    summary; the orders are read from ``source`` (default ``wh``)."""
    clv_settings = clv_settings or ClvSettings.from_env()
    weeks = holdout_weeks or settings.clv_holdout_weeks()
    calibration_end = as_of - timedelta(weeks=weeks)
    ensure_tables(wh)
    purchases = read_purchase_days(source or wh, as_of)
    frame = holdout.calibration_and_holdout(purchases, calibration_end, as_of, clv_settings.time_unit,
                                            customer_col="customer_id", date_col="order_date", amount_col="amount")
    fit, groups = holdout.diagnostics(frame, min_repeat_buyers=clv_settings.min_repeat_buyers)
    if groups is None:
        groups = pd.DataFrame([{"frequency_group": "all", "group_order": holdout.CAP + 1,
                                "customers": int(len(frame))}], columns=holdout.DIAGNOSTIC_COLUMNS)
    rows = groups.copy()
    rows.insert(0, "fit_message", (fit.get("message") or "")[:2000])
    rows.insert(0, "fit_status", fit["status"])
    rows.insert(0, "holdout_weeks", weeks)
    rows.insert(0, "calibration_end", calibration_end)
    rows.insert(0, "run_id", run_id)
    rows.insert(0, "as_of", as_of)
    for name, sql_type in DIAGNOSTICS_COLUMNS.items():
        if sql_type.startswith("double"):
            values = pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype="float64")
            rows[name] = pd.array(np.where(np.isfinite(values), values, np.nan), dtype="Float64")
        elif sql_type == "integer":
            rows[name] = pd.array(pd.to_numeric(rows[name], errors="coerce"), dtype="Int64")
    rows = rows[list(DIAGNOSTICS_COLUMNS)]
    with wh.transaction():
        wh.execute(f"delete from {SCHEMA}.{DIAGNOSTICS_TABLE} where as_of = ?", (as_of,))
        wh.append_df(SCHEMA, DIAGNOSTICS_TABLE, rows)
    total = groups.set_index("frequency_group").loc["all"]
    summary = {"status": fit["status"], "calibration_end": calibration_end.isoformat(), "holdout_weeks": weeks,
               "customers": int(total["customers"])}
    if fit["status"] == "ok":
        summary.update(purchases_mae=round(float(total["purchases_mae"]), 4),
                       purchases_aggregate_error=_rounded(total["purchases_aggregate_error"]),
                       spend_aggregate_error=_rounded(total["spend_aggregate_error"]))
    else:
        summary["message"] = (fit.get("message") or "")[:300]
    return summary


def _rounded(value) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 4)


def read_table(wh: Warehouse, as_of: date) -> pd.DataFrame:
    """This date's rows of the diagnostics table, in group order."""
    cols = ", ".join(DIAGNOSTICS_COLUMNS)
    return wh.query_df(f"select {cols} from {SCHEMA}.{DIAGNOSTICS_TABLE} where as_of = ? order by group_order",
                       (as_of,))
