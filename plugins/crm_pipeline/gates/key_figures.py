"""Gate 2's key figures: the night's business numbers against the last published date.

The figures (customer count, trailing-12-month revenue and margin, the top 20 %'s
revenue share, the segment mix, the grade mix, total 12-month CLV) are computed from the
``audit`` marts and from the ``published`` tables BI reads now. Each figure's limit and
action live once, in the dbt seed ``key_figure_limits`` (``figure``, ``measure``,
``max_move``, ``action``): ``ratio`` figures move beyond their limit when the larger of
new/old and old/new exceeds it (a change of sign, or from zero, always does); ``shift``
figures (shares) when the absolute change exceeds it (for a mix: the share of the segment
or grade that moved most). A move beyond the limit stops the publish (``stop``) or is a
warning (``warn``), in one line naming the figure, the old and new value and the
customers that moved it most. Nothing published yet (the first run), a figure whose
table or column is missing on either side, or a backfill of a date before the published
one compares nothing, and the check says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import pandas as pd

from crm_pipeline.gates.audit_inputs import Seeds, read_frame
from crm_pipeline.gates.results import GateError
from crm_pipeline.warehouse import ident

if TYPE_CHECKING:  # pragma: no cover
    from crm_pipeline.warehouse import Warehouse

LIMITS_SEED = "key_figure_limits"
PUBLISHED = "published"
MEASURES = ("ratio", "shift")
ACTIONS = ("stop", "warn")
#: how many customers a message names
TOP_MOVERS = 3

#: figure -> (table, value column or None for a count, how it is computed)
_SUMS = {
    "trailing_revenue": ("customer_value_tiers", "trailing_12m_revenue"),
    "trailing_margin": ("customer_value_tiers", "trailing_12m_margin"),
    "total_clv": ("customer_segments", "clv_12m"),
}
_MIXES = {"segment_mix": ("customer_segments", "segment"), "grade_mix": ("customer_segments", "credit_grade")}
KNOWN_FIGURES = ("customer_count", *_SUMS, "top20_revenue_share", *_MIXES)


@dataclass
class FigureResult:
    figure: str
    measure: str
    limit: float
    action: str
    status: str                 # "ok", "moved", "skipped"
    old: float | None = None
    new: float | None = None
    move: float | None = None   # the ratio or the absolute shift
    detail: str = ""            # e.g. the segment that moved most, or why skipped
    movers: list[str] = field(default_factory=list)

    def message(self, compared_with: str) -> str:
        what = f" ({self.detail})" if self.detail else ""
        if self.measure == "ratio":
            move = "×inf" if self.move is None or math.isinf(self.move) else f"×{self.move:,.2f}"
            bound = f"limit ×{self.limit:g}"
        else:
            move, bound = f"shift {self.move:.4f}", f"limit {self.limit:g}"
        movers = f"; customers who moved it most: {', '.join(self.movers)}" if self.movers else ""
        return (f"key figure {self.figure}{what} moved from {_fmt(self.old)} to {_fmt(self.new)} "
                f"({move}, {bound}) vs published {compared_with}{movers}")

    def as_check(self) -> dict:
        return {"table": "key figures", "expectation": "key_figure_within_limit", "column": self.figure,
                "success": self.status != "moved" or self.action == "warn", "unexpected_count": int(self.status == "moved"),
                "examples": self.movers, "figure": self.figure, "measure": self.measure, "limit": self.limit,
                "action": self.action, "status": self.status, "old": self.old, "new": self.new,
                "move": "inf" if self.move is not None and math.isinf(self.move) else self.move,
                "detail": self.detail}


def _fmt(value: float | None) -> str:
    if value is None:
        return "null"
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"


def read_limits(seeds: Seeds) -> list[dict]:
    """The rows of the seed ``key_figure_limits``; a bad row stops the gate."""
    frame = seeds.frame(LIMITS_SEED)
    missing = {"figure", "measure", "max_move", "action"} - set(frame.columns)
    if missing:
        raise GateError(f"the seed {LIMITS_SEED} lacks the column(s) {', '.join(sorted(missing))}")
    rows = []
    for rec in frame.to_dict("records"):
        figure, measure, action = str(rec["figure"]), str(rec["measure"]), str(rec["action"])
        if figure not in KNOWN_FIGURES or measure not in MEASURES or action not in ACTIONS:
            raise GateError(f"the seed {LIMITS_SEED} has an unknown row {figure}/{measure}/{action} "
                            f"(figures: {', '.join(KNOWN_FIGURES)}; measures: ratio, shift; actions: stop, warn)")
        try:
            limit = float(rec["max_move"])
        except (TypeError, ValueError):
            raise GateError(f"the seed {LIMITS_SEED}: the limit of {figure} is not a number") from None
        rows.append({"figure": figure, "measure": measure, "limit": limit, "action": action})
    return rows


class _Sides:
    """The audit and published frames the figures read, each read once."""

    def __init__(self, wh: "Warehouse", audit_schema: str):
        self.wh, self.audit_schema = wh, audit_schema
        self._frames: dict[tuple[str, str, tuple[str, ...]], pd.DataFrame | None] = {}

    def frame(self, side: str, table: str, columns: tuple[str, ...]) -> pd.DataFrame | None:
        key = (side, table, columns)
        if key not in self._frames:
            schema = self.audit_schema if side == "audit" else PUBLISHED
            present = set(self.wh.columns(schema, table)) if self.wh.table_exists(schema, table) else set()
            if not set(columns) <= present:
                self._frames[key] = None
            else:
                sql = f"select {', '.join(ident(c) for c in columns)} from {ident(schema)}.{ident(table)}"
                self._frames[key] = read_frame(self.wh, sql, f"{schema}.{table}")
        return self._frames[key]


def _ratio_move(old: float, new: float) -> float:
    if old == new:
        return 1.0
    if old == 0 or new == 0 or (old < 0) != (new < 0):
        return math.inf
    return max(new / old, old / new)


def _movers(old: pd.DataFrame, new: pd.DataFrame, column: str) -> list[str]:
    """The customers whose value of ``column`` changed most, with the change."""
    both = old.merge(new, on="customer_id", how="outer", suffixes=("_old", "_new"))
    delta = both[f"{column}_new"].astype("float64").fillna(0) - both[f"{column}_old"].astype("float64").fillna(0)
    both = both.assign(_delta=delta, _size=delta.abs()).sort_values(["_size", "customer_id"], ascending=[False, True])
    both = both[both["_size"] > 0].head(TOP_MOVERS)
    return [f"{int(cid)} ({d:+,.2f})" for cid, d in zip(both["customer_id"], both["_delta"])]


def _count(sides: _Sides) -> tuple[float, float, str, list[str]] | None:
    old, new = (sides.frame(s, "customer_segments", ("customer_id",)) for s in ("published", "audit"))
    if old is None or new is None:
        return None
    old_ids, new_ids = set(old["customer_id"].astype("int64")), set(new["customer_id"].astype("int64"))
    movers = ([f"{cid} (new)" for cid in sorted(new_ids - old_ids)[:TOP_MOVERS]]
              + [f"{cid} (gone)" for cid in sorted(old_ids - new_ids)[:TOP_MOVERS]])
    return float(len(old)), float(len(new)), "", movers[:TOP_MOVERS]


def _sum(sides: _Sides, table: str, column: str) -> tuple[float, float, str, list[str]] | None:
    old, new = (sides.frame(s, table, ("customer_id", column)) for s in ("published", "audit"))
    if old is None or new is None:
        return None
    total = (lambda f: float(f[column].astype("float64").fillna(0).sum()))
    return total(old), total(new), "", _movers(old, new, column)


def _top_share(sides: _Sides, as_of_old: date | None) -> tuple[float, float, str, list[str]] | None:
    columns = ("as_of", "top20_revenue_share")
    old, new = (sides.frame(s, "pareto_concentration", columns) for s in ("published", "audit"))
    if old is None or new is None or new.empty or old.empty:
        return None
    old = old.assign(as_of=pd.to_datetime(old["as_of"])).sort_values("as_of")
    if as_of_old is not None and (old["as_of"] <= pd.Timestamp(as_of_old)).any():
        old = old[old["as_of"] <= pd.Timestamp(as_of_old)]
    old_value, new_value = old["top20_revenue_share"].iloc[-1], new["top20_revenue_share"].iloc[-1]
    if pd.isna(old_value) or pd.isna(new_value):
        return None
    movers = []
    revenue = _SUMS["trailing_revenue"]
    old_rev, new_rev = (sides.frame(s, revenue[0], ("customer_id", revenue[1])) for s in ("published", "audit"))
    if old_rev is not None and new_rev is not None:
        movers = _movers(old_rev, new_rev, revenue[1])
    return float(old_value), float(new_value), "", movers


def _mix(sides: _Sides, table: str, column: str) -> tuple[float, float, str, list[str]] | None:
    old, new = (sides.frame(s, table, ("customer_id", column)) for s in ("published", "audit"))
    if old is None or new is None or old.empty or new.empty:
        return None
    label = (lambda f: f[column].astype(object).where(f[column].notna(), "none").astype(str))
    old_share = label(old).value_counts(normalize=True)
    new_share = label(new).value_counts(normalize=True)
    shifts = new_share.reindex(old_share.index.union(new_share.index), fill_value=0.0) \
        - old_share.reindex(old_share.index.union(new_share.index), fill_value=0.0)
    order = shifts.abs().sort_values(ascending=False, kind="stable")
    value = order.index[0]
    both = old.assign(_old=label(old)).merge(new.assign(_new=label(new)), on="customer_id", how="outer")
    both[["_old", "_new"]] = both[["_old", "_new"]].fillna("(absent)")
    moved = both[(both["_old"] != both["_new"]) & ((both["_old"] == value) | (both["_new"] == value))]
    moved = moved.sort_values("customer_id").head(TOP_MOVERS)
    movers = [f"{int(cid)} ({a} → {b})" for cid, a, b in zip(moved["customer_id"], moved["_old"], moved["_new"])]
    return float(old_share.get(value, 0.0)), float(new_share.get(value, 0.0)), f"{column} {value}", movers


def check_key_figures(wh: "Warehouse", seeds: Seeds, *, as_of: date,
                      audit_schema: str = "audit") -> tuple[list[FigureResult], str | None]:
    """Every figure of the seed against what is published; returns the results and the
    published date compared with (None: nothing compared, each result says why)."""
    limits = read_limits(seeds)
    sides = _Sides(wh, audit_schema)
    published_as_of = _published_as_of(wh)
    skip = None
    if not wh.table_exists(PUBLISHED, "customer_segments"):
        skip = "nothing published yet"
    elif published_as_of is not None and as_of < published_as_of:
        skip = f"a backfill of {as_of} is not compared with the later published {published_as_of}"
    results = []
    for row in limits:
        result = FigureResult(row["figure"], row["measure"], row["limit"], row["action"], "skipped")
        results.append(result)
        if skip:
            result.detail = skip
            continue
        figure = row["figure"]
        if figure == "customer_count":
            values = _count(sides)
        elif figure in _SUMS:
            values = _sum(sides, *_SUMS[figure])
        elif figure == "top20_revenue_share":
            values = _top_share(sides, published_as_of)
        else:
            values = _mix(sides, *_MIXES[figure])
        if values is None:
            result.detail = "a table or column it needs is missing, on either side"
            continue
        result.old, result.new, result.detail, result.movers = values
        if row["measure"] == "ratio":
            result.move = _ratio_move(result.old, result.new)
            beyond = result.move > row["limit"]
        else:
            result.move = round(abs(result.new - result.old), 6)
            beyond = result.move > row["limit"]
        result.status = "moved" if beyond else "ok"
    compared = published_as_of.isoformat() if published_as_of is not None else "(no date)"
    return results, (None if skip else compared)


def _published_as_of(wh: "Warehouse") -> date | None:
    if not wh.table_exists(PUBLISHED, "customer_segments") or "as_of" not in wh.columns(PUBLISHED, "customer_segments"):
        return None
    value = wh.scalar(f"select max(as_of) from {PUBLISHED}.customer_segments")
    return pd.Timestamp(value).date() if value is not None else None


def key_figure_verdicts(wh: "Warehouse", seeds: Seeds, *, as_of: date, failures: list[str], warnings_: list[str],
                        checks: list[dict], audit_schema: str = "audit") -> list[dict]:
    """Gate 2's key-figure step: a failure per ``stop`` figure that moved beyond its
    limit, a warning per ``warn`` one, a check per figure; returns the figures' records."""
    results, compared = check_key_figures(wh, seeds, as_of=as_of, audit_schema=audit_schema)
    for result in results:
        checks.append(result.as_check())
        if result.status != "moved":
            continue
        text = result.message(compared or "")
        (failures if result.action == "stop" else warnings_).append(
            f"gate 2 {'failed' if result.action == 'stop' else 'warning'}: {text}")
    return [result.as_check() for result in results]
