"""Gate 1's outlier rule: an amount implausible against its entity's recent history.

For every money column of an entity, the limit is ``CRM_GATE_OUTLIER_FACTOR`` times the
99th percentile of the absolute non-zero values of that column among the versions in
``raw`` whose ``updated_at`` falls in the ``CRM_GATE_OUTLIER_HISTORY_DAYS`` before the
batch's window end. A row whose absolute amount is above the limit is quarantined under
``outlier:<column>``, a normal quarantine row that can be admitted once someone has
checked it. A column with fewer than ``CRM_GATE_OUTLIER_MIN_ROWS`` such values (a first
load, a young or quiet source, a column that is mostly zero) gets no limit: there is no
distribution to judge against. Both extraction paths use the same limits: the chunked
path through ``gate1_rows``, the SQL path through a term of the suspect predicate that
sends the row to ``gate1_rows``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from crm_pipeline.contract import Entity
from crm_pipeline.warehouse import ident

if TYPE_CHECKING:  # pragma: no cover
    from crm_pipeline.gates.results import GateSettings
    from crm_pipeline.warehouse import Warehouse

#: the percentile of the recent absolute amounts that the factor multiplies
PERCENTILE = 0.99


@dataclass(frozen=True)
class OutlierLimit:
    """The limit of one money column and what it was computed from."""

    column: str
    percentile_value: float  # the p99 of the recent absolute non-zero amounts
    history_rows: int        # how many such amounts the p99 was taken over
    factor: float

    @property
    def limit(self) -> float:
        return self.factor * self.percentile_value

    def as_dict(self) -> dict:
        return {**asdict(self), "limit": self.limit}


def money_columns(entity: Entity) -> list[str]:
    return [column for column, logical in entity.columns.items() if logical == "money"]


def _percentile_sql(wh: "Warehouse", value: str) -> str:
    if wh.kind == "postgres":
        return f"percentile_cont({PERCENTILE}) within group (order by {value})"
    return f"quantile_cont({value}, {PERCENTILE})"


def outlier_limits(wh: "Warehouse", entity: Entity, *, window_end: datetime,
                   settings: "GateSettings") -> dict[str, OutlierLimit]:
    """The limit of each money column of ``entity`` from the versions in raw of the
    ``outlier_history_days`` before ``window_end``; a column with too thin a history (or
    a factor of 0, which turns the rule off) has none."""
    columns = money_columns(entity)
    if not columns or settings.outlier_factor <= 0:
        return {}
    parts = []
    for column in columns:
        value = f"abs(case when {ident(column)} <> 0 then {ident(column)} end)"
        parts += [f"count({value})", _percentile_sql(wh, value)]
    upd = ident(entity.updated_at)
    start = window_end - timedelta(days=float(settings.outlier_history_days))
    row = wh.query(f"select {', '.join(parts)} from raw.{ident(entity.name)} where {upd} >= ? and {upd} < ?",
                   (start, window_end))[0]
    limits: dict[str, OutlierLimit] = {}
    for ix, column in enumerate(columns):
        count, percentile = int(row[2 * ix] or 0), row[2 * ix + 1]
        if count < settings.outlier_min_rows or percentile is None or float(percentile) <= 0:
            continue
        limits[column] = OutlierLimit(column, round(float(percentile), 6), count, float(settings.outlier_factor))
    return limits


def outlier_rows(typed: pd.DataFrame, limit: OutlierLimit) -> np.ndarray:
    """Positions of the rows whose absolute amount is above the limit."""
    values = pd.to_numeric(typed[limit.column], errors="coerce").astype("float64").abs()
    return np.flatnonzero((values > limit.limit).fillna(False).to_numpy(dtype=bool))


def outlier_sql_terms(limits: dict[str, OutlierLimit] | None) -> list[str]:
    """The suspect-predicate terms of the limits (a row above one goes to the exact gate)."""
    return [f"abs({ident(limit.column)}) > {limit.limit!r}" for limit in (limits or {}).values()]


def outlier_reason(column: str, value, params: dict) -> str:
    """One line: the value, the limit and where the limit came from."""
    return (f"{column} value {value} is above {params['factor']:g} × the p{round(PERCENTILE * 100)} "
            f"({params['percentile_value']:,.2f}) of {params['history_rows']:,} recent non-zero values "
            f"= {params['limit']:,.2f}; check it against the source and admit the row if it is right")
