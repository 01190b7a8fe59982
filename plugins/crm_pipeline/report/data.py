"""What the nightly report shows, read from ``published.*`` and ``ops.*`` for one date.

Every section is a :class:`Section`: its figures as small frames (aggregates, at most
``SHORT_LIST`` rows per list), a one-line takeaway computed from them, and a note when a
table it needs is not published (the section then says so instead of failing). History
tables are read at the report's date; current tables hold the newest published date, and
the section says so when that is not the report's date.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

import pandas as pd

from crm_pipeline.dbt_vars import dbt_var
from crm_pipeline.errors import first_line
from crm_pipeline.warehouse import Warehouse

SHORT_LIST = 20
#: the P(alive) heatmap's columns: weeks since the last purchase (upper bound, label)
IDLE_BANDS = ((4, "<1 m"), (13, "1-3 m"), (26, "3-6 m"), (52, "6-12 m"))
IDLE_LAST = ">12 m"
TIER_ORDER = ["VIP", "Major", "Ordinary", "Small", "No revenue"]


@dataclass
class Section:
    key: str
    title: str
    takeaway: str = ""
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Reader:
    """Reads ``published`` (and ``ops.published_versions``) in ``wh`` and the run record and
    quarantine in ``control`` (the same warehouse, except on Spark: its control file)."""

    def __init__(self, wh: Warehouse, as_of: date, control: Warehouse | None = None):
        self.wh, self.as_of, self.control = wh, as_of, control or wh
        self._published = set(wh.tables("published"))

    def has(self, *tables: str) -> list[str]:
        """The tables of ``tables`` that are not published (empty: all are)."""
        return [t for t in tables if t not in self._published]

    def df(self, sql: str, params: tuple = (), *, control: bool = False) -> pd.DataFrame:
        frame = (self.control if control else self.wh).query_df(sql, params)
        for col in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[col]) and col != "published_at":  # dates as text
                frame[col] = frame[col].dt.strftime("%Y-%m-%d")
            elif frame[col].dtype == object and frame[col].map(lambda v: isinstance(v, date)).any():
                frame[col] = frame[col].map(lambda v: v.isoformat()[:10] if isinstance(v, date) else v)
        for col in frame.columns:  # PostgreSQL hands numerics over as Decimal
            if frame[col].dtype == object and frame[col].map(lambda v: v is None or hasattr(v, "as_integer_ratio")
                                                              and not isinstance(v, bool)).all():
                frame[col] = pd.to_numeric(frame[col])
        return frame

    def current_as_of(self, table: str) -> date | None:
        value = self.wh.scalar(f"select max(as_of) from published.{table}")
        return None if value is None else date.fromisoformat(str(value)[:10])


def _pct(value: float | None, digits: int = 0) -> str:
    return "–" if value is None or pd.isna(value) else f"{100 * float(value):.{digits}f} %"


def _money(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):,.0f}"


def _current_note(r: _Reader, section: Section, table: str) -> None:
    newest = r.current_as_of(table)
    if newest is not None and newest != r.as_of:
        section.notes.append(f"{table} holds the newest published date, {newest}, not {r.as_of}.")


# -- 1. the night ----------------------------------------------------------------------------


def night(r: _Reader, s: Section) -> Section:
    if not r.control.table_exists("ops", "pipeline_runs"):
        s.missing.append("ops.pipeline_runs")
        return s
    runs = r.df("select run_id, status, gate_verdict, started_at, finished_at, message from ops.pipeline_runs "
                "where as_of = ? order by (status = 'success') desc, started_at desc limit 1", (r.as_of,), control=True)
    if runs.empty:
        s.missing.append(f"a run for {r.as_of}")
        return s
    run = runs.iloc[0]
    s.facts.update(run_id=run.run_id, status=run.status, gate=run.gate_verdict or "–")
    stages = r.df("select stage, status, seconds, details from ops.run_stages where run_id = ? order by started_at",
                  (run.run_id,), control=True)
    gate_details = {}
    for _, row in stages.iterrows():
        if row.stage == "gate" and row.details:
            gate_details = json.loads(row.details)
    s.frames["stages"] = stages[["stage", "status", "seconds"]].assign(seconds=lambda d: d.seconds.astype(float).round(1))
    s.facts["failures"] = gate_details.get("failures", [])[:10]
    s.facts["warnings"] = gate_details.get("warnings", [])[:10]
    if r.control.table_exists("ops", "run_entity_counts"):
        s.frames["entities"] = r.df("select entity, extracted, duplicate, staged, quarantined from ops.run_entity_counts "
                                    "where run_id = ? order by entity", (run.run_id,), control=True)
    waiting = []
    for entity in r.control.tables("quarantine"):
        rows = r.df(f"select _rule as rule, count(*) as rows from quarantine.{entity} where _state = 'waiting' "
                    "group by _rule order by 2 desc", control=True)
        waiting += [{"entity": entity, "rule": x.rule, "rows": int(x.rows)} for x in rows.itertuples()]
    s.frames["waiting"] = pd.DataFrame(waiting, columns=["entity", "rule", "rows"])
    if r.wh.table_exists("ops", "published_versions"):
        s.frames["freshness"] = r.df(
            "select table_name, max(as_of) as newest_as_of, max(published_at) as published_at "
            "from ops.published_versions group by table_name order by table_name")
    total = float(s.frames["stages"]["seconds"].sum())
    extracted = int(s.frames["entities"]["extracted"].sum()) if "entities" in s.frames else 0
    quarantined = int(s.frames["entities"]["quarantined"].sum()) if "entities" in s.frames else 0
    # the report is written by the run itself, before it closes: a running run has published
    outcome = "published" if run.status in ("running", "success") else run.status
    s.takeaway = (f"Run {outcome} in {total:.0f} s: {extracted:,} rows extracted, {quarantined:,} quarantined, "
                  f"{int(s.frames['waiting']['rows'].sum()):,} waiting in quarantine; gate {s.facts['gate']}"
                  + (f" with {len(s.facts['warnings'])} warning(s)" if s.facts["warnings"] else "") + ".")
    return s


# -- 2. value ------------------------------------------------------------------------------


def value(r: _Reader, s: Section) -> Section:
    s.missing = r.has("customer_value_tiers")
    if s.missing:
        return s
    _current_note(r, s, "customer_value_tiers")
    tiers = r.df("select value_tier, count(*) as customers, sum(trailing_12m_revenue) as revenue, "
                 "sum(profit) as profit from published.customer_value_tiers group by value_tier")
    tiers["order"] = tiers.value_tier.map({t: i for i, t in enumerate(TIER_ORDER)}).fillna(99)
    tiers = tiers.sort_values("order").drop(columns="order").reset_index(drop=True)
    buyers = tiers[tiers.value_tier != "No revenue"]
    total_revenue = float(buyers.revenue.sum()) or None
    tiers["revenue_share"] = tiers.revenue / total_revenue if total_revenue else None
    s.frames["pyramid"] = tiers
    abc = r.df("select abc_class, count(*) as customers, sum(trailing_12m_revenue) as revenue "
               "from published.customer_value_tiers where abc_class is not null group by abc_class order by abc_class")
    s.frames["abc"] = abc
    lorenz = r.df("select revenue_rank, trailing_12m_revenue as revenue from published.customer_value_tiers "
                  "where revenue_rank is not null order by revenue_rank")
    if len(lorenz) and total_revenue:
        n = len(lorenz)
        cumulative = lorenz.revenue.astype(float).cumsum() / float(lorenz.revenue.sum())
        points = [0] + [max(1, -(-p * n // 100)) for p in range(1, 101)]
        s.frames["pareto"] = pd.DataFrame({"customer_share": [k / n for k in points],
                                           "revenue_share": [0.0] + [float(cumulative.iloc[k - 1]) for k in points[1:]]})
    if not r.has("profit_whale_curve"):
        s.frames["whale"] = r.df("select customer_share, cumulative_profit_share from published.profit_whale_curve "
                                 "where as_of = ? order by percentile", (r.as_of,))
    vip = tiers[tiers.value_tier == "VIP"]
    n_buyers = int(buyers.customers.sum())
    if len(vip) and n_buyers and total_revenue:
        v = vip.iloc[0]
        s.takeaway = (f"{int(v.customers)} VIP customers, {_pct(v.customers / n_buyers)} of buyers, bring "
                      f"{_pct(float(v.revenue) / total_revenue)} of revenue.")
    if not r.has("profit_concentration"):
        pc = r.df("select * from published.profit_concentration where as_of = ?", (r.as_of,))
        if len(pc):
            p = pc.iloc[0]
            s.facts["whale"] = (f"The profitable {_pct(p.peak_customer_share)} of customers make "
                                f"{_pct(p.peak_profit_share, 1)} of profit; {int(p.loss_making_customers)} loss-makers "
                                f"destroy {_money(p.profit_destroyed)}.")
    return s


# -- 3. RFM ----------------------------------------------------------------------------------


def rfm(r: _Reader, s: Section) -> Section:
    s.missing = r.has("customer_rfm")
    if s.missing:
        return s
    _current_note(r, s, "customer_rfm")
    grid = r.df("select r_score, f_score, count(*) as customers, min(rfm_segment) as segment "
                "from published.customer_rfm where r_score is not null group by r_score, f_score")
    s.frames["grid"] = grid
    segments = r.df("select rfm_segment, count(*) as customers from published.customer_rfm "
                    "group by rfm_segment order by 2 desc")
    s.frames["segments"] = segments
    if len(segments):
        top = segments.iloc[0]
        champions = segments.loc[segments.rfm_segment == "Champions", "customers"].sum()
        s.takeaway = (f"The largest RFM group is {top.rfm_segment} ({int(top.customers)} customers); "
                      f"{int(champions)} are Champions.")
    return s


# -- 4. retention ----------------------------------------------------------------------------


def retention(r: _Reader, s: Section) -> Section:
    s.missing = r.has("retention_metrics")
    if s.missing:
        return s
    _current_note(r, s, "retention_metrics")
    months = r.df("select period_start, retention_rate, churn_rate, acquisition_rate, revenue_lost_churned, "
                  "is_complete from published.retention_metrics where period_type = 'month' order by period_start")
    s.frames["months"] = months.tail(36).reset_index(drop=True)
    if not r.has("acquisition_cohort_retention"):
        tri = r.df("select cohort_month, months_since_acquisition, sum(active_customers) as active, "
                   "sum(cohort_customers) as customers from published.acquisition_cohort_retention "
                   "group by cohort_month, months_since_acquisition order by cohort_month, months_since_acquisition")
        tri["retention_rate"] = tri.active / tri.customers
        keep = sorted(tri.cohort_month.unique())[-18:]
        s.frames["triangle"] = tri[tri.cohort_month.isin(keep) & (tri.months_since_acquisition <= 12)]
    else:
        s.missing.append("acquisition_cohort_retention")
    complete = months[months.is_complete.astype(bool)]
    if len(complete):
        last = complete.iloc[-1]
        s.takeaway = (f"In {str(last.period_start)[:7]} {_pct(last.retention_rate, 1)} of active customers stayed; "
                      f"{_money(last.revenue_lost_churned)} of yearly revenue left with the churned ones.")
    return s


# -- 5. credit -------------------------------------------------------------------------------


def credit(r: _Reader, s: Section) -> Section:
    s.missing = r.has("customer_credit_grades")
    if s.missing:
        return s
    mix = r.df("select grade_quarter, coalesce(credit_grade, '(not graded)') as credit_grade, count(*) as customers "
               "from published.customer_credit_grades where grade_quarter <= ? group by 1, 2 order by 1, 2", (r.as_of,))
    s.frames["mix"] = mix
    if not r.has("credit_grade_migration"):
        mig = r.df("select * from published.credit_grade_migration where grade_quarter = (select max(grade_quarter) "
                   "from published.credit_grade_migration where grade_quarter <= ?)", (r.as_of,))
        s.frames["migration"] = mig
    else:
        s.missing.append("credit_grade_migration")
    if not r.has("credit_scorecard_stability"):
        s.frames["stability"] = r.df(
            "select measure, max(psi) as psi, max(status) as status from published.credit_scorecard_stability "
            "where grade_quarter = (select max(grade_quarter) from published.credit_scorecard_stability "
            "where grade_quarter <= ?) group by measure order by max(psi) desc", (r.as_of,))
    if not r.has("credit_grade_outcomes"):
        s.frames["outcomes"] = r.df("select grade_quarter, credit_grade, grade_order, customers, bad_customers, "
                                    "bad_rate from published.credit_grade_outcomes order by grade_quarter, grade_order")
    if len(mix):
        quarter = mix.grade_quarter.max()
        latest = mix[mix.grade_quarter == quarter]
        graded = latest[latest.credit_grade != "(not graded)"].customers.sum()
        top = latest.sort_values("customers", ascending=False).iloc[0]
        s.takeaway = (f"{int(graded)} customers graded for the quarter from {quarter}; the most common grade is "
                      f"{top.credit_grade} ({int(top.customers)}).")
    return s


# -- 6. segments -----------------------------------------------------------------------------


def segments(r: _Reader, s: Section) -> Section:
    s.missing = r.has("segment_profiles")
    if s.missing:
        return s
    profiles = r.df("select segment, customers, customer_share, revenue_share, avg_clv, is_undersized "
                    "from published.segment_profiles where as_of = ? order by customers desc", (r.as_of,))
    s.frames["profiles"] = profiles
    if not r.has("segment_pnl"):
        s.frames["pnl"] = r.df("select segment, customers, revenue, profit, profit_per_customer, is_break_even "
                               "from published.segment_pnl where as_of = ? and level = 'segment' order by profit desc",
                               (r.as_of,))
    else:
        s.missing.append("segment_pnl")
    if not r.has("segment_migration"):
        s.frames["migration"] = r.df("select from_segment, to_segment, customers from published.segment_migration "
                                     "where as_of = ? and customers > 0", (r.as_of,))
    if len(profiles):
        top = profiles.sort_values("revenue_share", ascending=False).iloc[0]
        undersized = int(profiles.is_undersized.astype(bool).sum())
        s.takeaway = (f"{top.segment} brings {_pct(top.revenue_share)} of revenue with {_pct(top.customer_share)} of "
                      f"customers; {undersized} segment(s) below the minimum size.")
    return s


# -- 7. lifetime value -----------------------------------------------------------------------


def lifetime_value(r: _Reader, s: Section) -> Section:
    s.missing = r.has("customer_lifetime_value")
    if s.missing:
        return s
    # aggregated in the warehouse: the page never holds one row per customer
    where = "from published.customer_lifetime_value where as_of = ? and clv_12m is not null"
    totals = r.df("select count(*) as buyers, sum(clv_12m) as total, sum(case when rn <= greatest(1, n / 10) "
                  f"then clv_12m end) as top_decile from (select clv_12m, row_number() over (order by clv_12m desc) "
                  f"as rn, count(*) over () as n {where}) ranked", (r.as_of,)).iloc[0]
    if not totals.buyers:
        s.notes.append(f"No lifetime value was published for {r.as_of} (the fit of the night was not usable).")
        return s
    s.frames["distribution"] = r.df(
        'select min(clv_12m) as "from", max(clv_12m) as "to", count(*) as customers from (select clv_12m, '
        f"ntile(20) over (order by clv_12m) as band {where}) banded group by band order by band", (r.as_of,))
    idle = "(t - recency)"
    bands = " ".join(f"when {idle} <= {upper} then {i}" for i, (upper, _) in enumerate(IDLE_BANDS))
    alive = r.df(f"select least(frequency, 10) as frequency_band, case {bands} else {len(IDLE_BANDS)} end as idle_order, "
                 f"avg(prob_alive) as mean_prob_alive {where} group by 1, 2 order by 1, 2", (r.as_of,))
    labels = [label for _, label in IDLE_BANDS] + [IDLE_LAST]
    s.frames["alive"] = alive.assign(idle_band=pd.Categorical([labels[int(i)] for i in alive.idle_order],
                                                              categories=labels, ordered=True)).drop(columns="idle_order")
    if not r.has("clv_model_diagnostics"):
        diag = r.df("select * from published.clv_model_diagnostics where as_of = (select max(as_of) from "
                    "published.clv_model_diagnostics where as_of <= ?) order by group_order", (r.as_of,))
        s.frames["calibration"] = diag
        if len(diag):
            total = diag[diag.frequency_group == "all"]
            if len(total) and total.iloc[0].fit_status == "ok":
                t = total.iloc[0]
                s.facts["calibration"] = (f"Checked on {diag.as_of.iloc[0]}: {t.holdout_weeks} weeks held out, predicted "
                                          f"{float(t.predicted_purchases_mean):.2f} repeat purchases per customer against "
                                          f"{float(t.actual_purchases_mean):.2f} actual.")
    else:
        s.missing.append("clv_model_diagnostics")
    total = float(totals.total)
    s.takeaway = (f"{int(totals.buyers):,} buyers worth {_money(total)} of margin in the next 12 months; the top 10 % "
                  f"hold {_pct(float(totals.top_decile) / total if total else None)}.")
    return s


# -- 8. who to call --------------------------------------------------------------------------


def who_to_call(r: _Reader, s: Section) -> Section:
    s.missing = r.has("customer_segments", "customer_churn")
    if s.missing:
        return s
    lists = {}
    tiers = list(dbt_var("large_customer_tiers"))
    # the large tiers (var large_customer_tiers) that are dormant, declining or lost by the
    # rules of customer_churn (docs/rules.md)
    lists[f"At risk ({' and '.join(tiers)})"] = r.df(
        "select s.account_manager, s.customer_id, s.value_tier, s.segment, c.days_since_last_order, "
        "s.prob_alive, s.clv_12m from published.customer_segments s join published.customer_churn c "
        f"using (customer_id) where s.value_tier in ({', '.join('?' for _ in tiers)}) and (c.is_dormant "
        "or c.is_top_customer_decline or c.is_lost) order by s.clv_12m desc nulls last", tuple(tiers))
    if not r.has("reorder_reminders"):
        lists["Reorder due"] = r.df("select account_manager, customer_id, value_tier, expected_next_purchase_date, "
                                    "typical_order_value, clv_12m from published.reorder_reminders order by reminder_rank")
    if not r.has("account_contact_coverage"):
        lists["Coverage gaps"] = r.df(
            "select s.account_manager, a.customer_id, a.value_tier, a.has_economic, a.has_coach, a.roles_covered "
            "from published.account_contact_coverage a join published.customer_segments s using (customer_id) "
            "where a.is_coverage_gap order by a.roles_covered, a.customer_id")
    if not r.has("complaint_summary"):
        lists["Repeat complainers"] = r.df(
            "select s.account_manager, c.customer_id, c.value_tier, c.complaints_last_365d, c.open_backlog "
            "from published.complaint_summary c join published.customer_segments s using (customer_id) "
            "where c.is_repeat_complainer order by c.complaints_last_365d desc")
    managers: dict[str, dict[str, pd.DataFrame]] = {}
    for name, frame in lists.items():
        frame["account_manager"] = frame["account_manager"].fillna("(unassigned)")
        for manager, rows in frame.groupby("account_manager", sort=True):
            managers.setdefault(manager, {})[name] = rows.drop(columns="account_manager").head(SHORT_LIST)
    s.facts["managers"] = dict(sorted(managers.items()))
    s.facts["counts"] = {name: len(frame) for name, frame in lists.items()}
    s.takeaway = "To call: " + "; ".join(f"{name} {n}" for name, n in s.facts["counts"].items()) + "."
    return s


#: (key, title, reader) of every section, in page order
SECTIONS = (
    ("night", "The night", night),
    ("value", "Value", value),
    ("rfm", "RFM", rfm),
    ("retention", "Retention", retention),
    ("credit", "Credit", credit),
    ("segments", "Segments", segments),
    ("clv", "Lifetime value", lifetime_value),
    ("calls", "Who to call", who_to_call),
)


def read(wh: Warehouse, as_of: date, control: Warehouse | None = None) -> list[Section]:
    """Every section of the report for ``as_of`` (the run record read in ``control``,
    default ``wh``); a section that cannot be read says why in one line, and the others
    are still shown."""
    reader = _Reader(wh, as_of, control)
    out = []
    for key, title, build in SECTIONS:
        try:
            out.append(build(reader, Section(key, title)))
        except Exception as exc:  # noqa: BLE001 - one section must not cost the whole page
            out.append(Section(key, title, notes=[f"This section could not be read: {first_line(exc)}"]))
    return out
